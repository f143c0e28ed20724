"""The configured list of geocell sizes: `storage/geocells.txt`, one size per line.

The file is what users (and `geo-assets geocell add/remove`) edit; the geocell
sensor turns differences between it and Dagster's dynamic partitions into
partition adds/removes and training runs. Without the file, the list comes from
GEO_ASSETS_GEOCELLS or the defaults ("0.05", "0.1").

Every size read or added is checked against the region: a size whose grid has
more than MAX_GEOCELLS cells (geo/geocells.py) is refused with the count and
the cap, so no tiny size reaches a partition, a model or memory.
"""

from __future__ import annotations

from pathlib import Path

from geo_assets.geo.bbox import region_bounds
from geo_assets.geo.geocells import check_geocell_count, geocell_key
from geo_assets.config.settings import GeoSettings
from geo_assets.store.parquet import atomic_write_bytes
from geo_assets.store.backends import storage_root

FILE_NAME = "geocells.txt"


def config_path(storage_dir: Path) -> Path:
    return storage_root(storage_dir) / FILE_NAME


def checked_key(size: str | float, settings: GeoSettings | None = None) -> str:
    """The partition key of `size`, refused (ValueError) past the cell cap for the region."""
    key = geocell_key(size)
    settings = settings or GeoSettings.from_env()
    check_geocell_count(region_bounds(settings.region), float(key))
    return key


def read_geocells(storage_dir: Path, settings: GeoSettings | None = None, *, check_cap: bool = True) -> list[str]:
    settings = settings or GeoSettings.from_env()
    path = config_path(storage_dir)
    if not path.exists():
        sizes = list(settings.geocell_sizes)
        if check_cap:
            for s in sizes:
                try:
                    checked_key(s, settings)
                except ValueError as exc:
                    raise ValueError(f"GEO_ASSETS_GEOCELLS: {exc}") from None
        return sizes
    sizes = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            key = checked_key(line, settings) if check_cap else geocell_key(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {exc}") from None
        if key not in sizes:
            sizes.append(key)
    return sorted(sizes, key=float)


def write_geocells(storage_dir: Path, sizes: list[str]) -> list[str]:
    keys = sorted({geocell_key(s) for s in sizes}, key=float)
    body = "# geocell sizes in degrees, one per line (geo-assets geocell add/remove edits this)\n" + "".join(f"{k}\n" for k in keys)
    atomic_write_bytes(config_path(storage_dir), body.encode())
    return keys


def add_geocell(storage_dir: Path, size: str | float) -> tuple[list[str], bool]:
    key = checked_key(size)
    with _list_lock(storage_dir):  # read-modify-write: two CLIs at once must not lose a size
        current = read_geocells(storage_dir)
        if key in current:
            return current, False
        return write_geocells(storage_dir, current + [key]), True


def remove_geocell(storage_dir: Path, size: str | float) -> tuple[list[str], bool]:
    key = geocell_key(size)
    with _list_lock(storage_dir):
        current = read_geocells(storage_dir, check_cap=False)  # a refused size can always be removed
        if key not in current:
            return current, False
        return write_geocells(storage_dir, [s for s in current if s != key]), True


def _list_lock(storage_dir: Path):
    from geo_assets.store.locks import partition_lock

    return partition_lock(storage_root(storage_dir), "geocells", "list", timeout_s=60.0)
