"""Square geocells over the region (seed 3.3): row-major ids, centres, offsets.

The cell count grows with 1/size^2, and the model's classification head has one
output (257 parameters) per cell: over the UK region 0.05 degrees gives 44,000
cells, 0.01 gives 1.1 million (a 283M-parameter head), 0.0001 eleven billion.
A grid above MAX_GEOCELLS cells (200,000: about 0.023 degrees over the UK
region; 51M head parameters) is refused wherever a size is added or a grid is
built: the CLI, the geocell sensor, storage/geocells.txt and GeocellGrid itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geo_assets.geo.bbox import BBox


MAX_GEOCELLS = 200_000
HEAD_PARAMS_PER_CELL = 257  # Linear(256, n_cells): 256 weights + 1 bias per cell


def grid_shape(bounds: BBox, size: float) -> tuple[int, int]:
    """(rows, cols) of `size`-degree cells covering `bounds` (Python ints: no overflow)."""
    return math.ceil(round(bounds.height / size, 9)), math.ceil(round(bounds.width / size, 9))


def smallest_size_within_cap(bounds: BBox, cap: int = MAX_GEOCELLS) -> float:
    """The smallest size (3 significant digits) whose grid over `bounds` has at most `cap` cells."""
    size = math.sqrt(bounds.height * bounds.width / cap)
    step = 10.0 ** (math.floor(math.log10(size)) - 2)
    k = math.ceil(size / step)
    while True:
        candidate = float(f"{k * step:.3g}")
        rows, cols = grid_shape(bounds, candidate)
        if rows * cols <= cap:
            return candidate
        k += 1


def check_geocell_count(bounds: BBox, size: float, cap: int = MAX_GEOCELLS) -> int:
    """The number of cells of a `size` grid over `bounds`; ValueError past `cap`,
    with the count, the head size and the cap in the message."""
    try:
        rows, cols = grid_shape(bounds, size)
    except OverflowError:  # e.g. 1e-320: the ratio is inf, so there is no count to show
        raise ValueError(
            f"geocell size {size:g} is too small to count its cells over the region (over 10^308); the cap is "
            f"{cap:,} cells: use a size of at least {smallest_size_within_cap(bounds, cap):g} degrees") from None
    n = rows * cols
    if n > cap:
        raise ValueError(
            f"geocell size {size:g} gives {n:,} cells over the region ({rows:,} x {cols:,}; a "
            f"{n * HEAD_PARAMS_PER_CELL:,}-parameter classification head); the cap is {cap:,} cells: "
            f"use a size of at least {smallest_size_within_cap(bounds, cap):g} degrees"
        )
    return n


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

    def __post_init__(self) -> None:
        if not (isinstance(self.size, (int, float)) and math.isfinite(self.size) and self.size > 0):
            raise ValueError(f"geocell size must be a positive number of degrees, got {self.size!r}")
        check_geocell_count(self.bounds, float(self.size))

    @property
    def n_rows(self) -> int:
        return grid_shape(self.bounds, self.size)[0]

    @property
    def n_cols(self) -> int:
        return grid_shape(self.bounds, self.size)[1]

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
