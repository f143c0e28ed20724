"""Land or sea, for the tile grid and the synthetic world: global-land-mask's 1 km
GLOBE mask, with the UK's window of it shipped as ``land_mask_uk.npz``.

Why a window: ``global_land_mask.globe`` decompresses the whole 21600 x 43200 mask
on import (seconds: PERFORMANCE.md), and every Dagster run process builds the tile
partitions (which need it) when it loads the definitions, so each tile run's start-up
paid for it. The window (lat 48-62,
lon -12-4; 1,681 x 1,921 cells, bit-packed, 22 KB) loads in milliseconds and gives
exactly the package's answer for every point inside it (same index arithmetic,
tested); a query with any point outside it falls back to the package.

``python -m geo_assets.data.land_mask --regenerate`` rewrites the file from the
installed global-land-mask.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np

NPZ_PATH = Path(__file__).with_name("land_mask_uk.npz")
WINDOW = (-12.0, 48.0, 4.0, 62.0)  # min_lon, min_lat, max_lon, max_lat


class _Window:
    def __init__(self, data) -> None:
        self.rows, self.cols = (int(v) for v in data["shape"])
        self.mask = np.unpackbits(data["bits"])[: self.rows * self.cols].reshape(self.rows, self.cols).astype(bool)
        self.i0, self.j0 = int(data["i0"]), int(data["j0"])
        # The package's own axis values, so the index arithmetic below is its own.
        self.lat0, self.lat1, self.lat_min, self.lat_max = (float(v) for v in data["lat_axis"])
        self.lon0, self.lon1, self.lon_min, self.lon_max = (float(v) for v in data["lon_axis"])

    def indices(self, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # globe.lat_to_index / lon_to_index: clamp to the axis, then truncate toward zero.
        lat = np.clip(lat, self.lat_min, self.lat_max)
        lon = np.clip(lon, self.lon_min, self.lon_max)
        i = ((lat - self.lat0) / (self.lat1 - self.lat0)).astype("int") - self.i0
        j = ((lon - self.lon0) / (self.lon1 - self.lon0)).astype("int") - self.j0
        return i, j


@functools.lru_cache(maxsize=1)
def _window() -> _Window:
    with np.load(NPZ_PATH) as data:
        return _Window(data)


def is_land(lat, lon) -> np.ndarray:
    """``global_land_mask.globe.is_land(lat, lon)``, answered from the shipped window when
    every point lies inside it."""
    lat = np.asarray(lat, dtype=float)
    lon = np.asarray(lon, dtype=float)
    if np.any(np.abs(lat) > 90) or np.any(np.abs(lon) > 180):
        raise ValueError("latitude must be within [-90, 90] and longitude within [-180, 180]")
    min_lon, min_lat, max_lon, max_lat = WINDOW
    if lat.size and (lat.min() >= min_lat and lat.max() <= max_lat and lon.min() >= min_lon and lon.max() <= max_lon):
        w = _window()
        i, j = w.indices(lat, lon)
        if i.size and i.min() >= 0 and j.min() >= 0 and i.max() < w.rows and j.max() < w.cols:
            return w.mask[i, j]
    from global_land_mask import globe

    return globe.is_land(lat, lon)


def regenerate(path: Path = NPZ_PATH) -> Path:
    """Cut the window out of the installed global-land-mask and write it (bit-packed)."""
    from global_land_mask import globe

    min_lon, min_lat, max_lon, max_lat = WINDOW
    rows = globe.lat_to_index(np.array([min_lat, max_lat]))
    cols = globe.lon_to_index(np.array([min_lon, max_lon]))
    i0, i1 = int(rows.min()), int(rows.max()) + 1
    j0, j1 = int(cols.min()), int(cols.max()) + 1
    mask = ~np.asarray(globe._mask[i0:i1, j0:j1], dtype=bool)  # the package's mask is ocean
    lat_axis = [globe._lat[0], globe._lat[1], globe._lat.min(), globe._lat.max()]
    lon_axis = [globe._lon[0], globe._lon[1], globe._lon.min(), globe._lon.max()]
    np.savez_compressed(path, bits=np.packbits(mask.reshape(-1)), shape=np.array(mask.shape), i0=i0, j0=j0,
                        lat_axis=np.array(lat_axis, dtype=np.float64), lon_axis=np.array(lon_axis, dtype=np.float64))
    _window.cache_clear()
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python -m geo_assets.data.land_mask --regenerate")
    print(regenerate())
