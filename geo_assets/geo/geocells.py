"""Square geocells over the region (seed 3.3): row-major ids, centres, offsets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geo_assets.geo.bbox import BBox


def parse_geocell_size(text: str | float) -> float:
    """'0.05' -> 0.05, with a clear error for anything that is not a positive size."""
    try:
        size = float(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"geocell size must be a number of degrees, got {text!r}") from exc
    if not (0 < size <= 10) or math.isnan(size):
        raise ValueError(f"geocell size must be in (0, 10] degrees, got {text!r}")
    return size


def geocell_key(size: float) -> str:
    """Canonical partition key for a size: 0.05 -> '0.05', 0.1 -> '0.1'."""
    return f"{parse_geocell_size(size):g}"


@dataclass(frozen=True)
class GeocellGrid:
    """A grid of `size`-degree cells anchored at the region's south-west corner."""

    bounds: BBox
    size: float

    @property
    def n_rows(self) -> int:
        return math.ceil(round(self.bounds.height / self.size, 9))

    @property
    def n_cols(self) -> int:
        return math.ceil(round(self.bounds.width / self.size, 9))

    @property
    def n_cells(self) -> int:
        return self.n_rows * self.n_cols

    def cell_of(self, lat, lon):
        """Cell id(s) for point(s); points on the far edges fall in the last row/col."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if np.any((lat < self.bounds.min_lat) | (lat > self.bounds.max_lat) | (lon < self.bounds.min_lon) | (lon > self.bounds.max_lon)):
            raise ValueError("point outside the geocell grid's bounds")
        row = np.minimum(((lat - self.bounds.min_lat) // self.size).astype(np.int64), self.n_rows - 1)
        col = np.minimum(((lon - self.bounds.min_lon) // self.size).astype(np.int64), self.n_cols - 1)
        ids = row * self.n_cols + col
        return int(ids) if ids.ndim == 0 else ids

    def centre_of(self, cell_id):
        """(lat, lon) centre(s) of cell id(s)."""
        ids = np.asarray(cell_id, dtype=np.int64)
        if np.any((ids < 0) | (ids >= self.n_cells)):
            raise ValueError(f"geocell id out of range [0, {self.n_cells})")
        row, col = ids // self.n_cols, ids % self.n_cols
        lat = self.bounds.min_lat + (row + 0.5) * self.size
        lon = self.bounds.min_lon + (col + 0.5) * self.size
        if lat.ndim == 0:
            return float(lat), float(lon)
        return lat, lon

    def centres_table(self) -> np.ndarray:
        """(n_cells, 2) lat/lon of every centre, for vectorised decoding on device."""
        lat, lon = self.centre_of(np.arange(self.n_cells))
        return np.stack([lat, lon], axis=1)
