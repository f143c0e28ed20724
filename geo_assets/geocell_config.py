"""The configured list of geocell sizes: `storage/geocells.txt`, one size per line.

The file is what users (and `geo-assets geocell add/remove`) edit; the geocell
sensor turns differences between it and Dagster's dynamic partitions into
partition adds/removes and training runs. Without the file, the list comes from
GEO_ASSETS_GEOCELLS or the defaults ("0.05", "0.1").
"""

from __future__ import annotations

from pathlib import Path

from geo_assets.geo.geocells import geocell_key
from geo_assets.settings import GeoSettings
from geo_assets.store.parquet import atomic_write_bytes

FILE_NAME = "geocells.txt"


def config_path(storage_dir: Path) -> Path:
    return Path(storage_dir) / FILE_NAME


def read_geocells(storage_dir: Path, settings: GeoSettings | None = None) -> list[str]:
    path = config_path(storage_dir)
    if not path.exists():
        return list((settings or GeoSettings.from_env()).geocell_sizes)
    sizes = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            key = geocell_key(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {exc}") from exc
        if key not in sizes:
            sizes.append(key)
    return sorted(sizes, key=float)


def write_geocells(storage_dir: Path, sizes: list[str]) -> list[str]:
    keys = sorted({geocell_key(s) for s in sizes}, key=float)
    body = "# geocell sizes in degrees, one per line (geo-assets geocell add/remove edits this)\n" + "".join(f"{k}\n" for k in keys)
    atomic_write_bytes(config_path(storage_dir), body.encode())
    return keys


def add_geocell(storage_dir: Path, size: str | float) -> tuple[list[str], bool]:
    key = geocell_key(size)
    current = read_geocells(storage_dir)
    if key in current:
        return current, False
    return write_geocells(storage_dir, current + [key]), True


def remove_geocell(storage_dir: Path, size: str | float) -> tuple[list[str], bool]:
    key = geocell_key(size)
    current = read_geocells(storage_dir)
    if key not in current:
        return current, False
    return write_geocells(storage_dir, [s for s in current if s != key]), True
