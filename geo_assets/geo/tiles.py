"""Split the region into square tiles: the partitions of the ingestion assets."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from geo_assets.geo.bbox import BBox

_NUM = r"-?\d+\.\d{2}"
_KEY_RE = re.compile(rf"^(?P<lat0>{_NUM})_(?P<lon0>{_NUM})_(?P<lat1>{_NUM})_(?P<lon1>{_NUM})$")


@dataclass(frozen=True)
class Tile:
    bbox: BBox

    @property
    def key(self) -> str:
        """Partition key: south-west then north-east corner, lat before lon,
        e.g. '51.90_-0.40_53.90_1.60'."""
        b = self.bbox
        return f"{b.min_lat:.2f}_{b.min_lon:.2f}_{b.max_lat:.2f}_{b.max_lon:.2f}"

    @classmethod
    def from_key(cls, key: str) -> "Tile":
        m = _KEY_RE.match(key)
        if not m:
            raise ValueError(f"not a tile key: {key!r} (expected like '51.90_-0.40_53.90_1.60')")
        return cls(BBox(float(m["lon0"]), float(m["lat0"]), float(m["lon1"]), float(m["lat1"])))


def _land_fraction(bbox: BBox, samples: int = 12) -> float:
    from geo_assets.data.land_mask import is_land

    lats = np.linspace(bbox.min_lat, bbox.max_lat, samples)
    lons = np.linspace(bbox.min_lon, bbox.max_lon, samples)
    grid_lat, grid_lon = np.meshgrid(lats, lons)
    return float(np.mean(is_land(grid_lat, grid_lon)))


@lru_cache(maxsize=32)
def tiles_for_region(boxes: tuple[BBox, ...], tile_size: float, min_land_fraction: float = 0.05) -> tuple[Tile, ...]:
    """Tiles of `tile_size` degrees covering every box, keeping those with some land.

    Tiles are clipped to their box, so no tile reaches outside the region and
    no two tiles overlap (the boxes themselves must not overlap); a tile is dropped when less than `min_land_fraction` of it is land, since
    street images are never there.
    """
    if tile_size <= 0:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    tiles: list[Tile] = []
    seen: set[str] = set()
    for box in boxes:
        n_rows = math.ceil(round(box.height / tile_size, 9))
        n_cols = math.ceil(round(box.width / tile_size, 9))
        for r in range(n_rows):
            for c in range(n_cols):
                min_lat = round(box.min_lat + r * tile_size, 6)
                min_lon = round(box.min_lon + c * tile_size, 6)
                bbox = BBox(min_lon, min_lat, min(round(min_lon + tile_size, 6), box.max_lon), min(round(min_lat + tile_size, 6), box.max_lat))
                if _land_fraction(bbox) < min_land_fraction:
                    continue
                tile = Tile(bbox)
                if tile.key not in seen:
                    seen.add(tile.key)
                    tiles.append(tile)
    return tuple(sorted(tiles, key=lambda t: (t.bbox.min_lat, t.bbox.min_lon)))
