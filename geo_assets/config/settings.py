"""Project-wide settings: defaults, each overridable by one environment variable.

The data-set size is one setting away: GEO_ASSETS_IMAGES_PER_TILE (and
GEO_ASSETS_TILE_SIZE for how many tiles the region splits into).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from geo_assets.geo.bbox import UK_REGION, BBox
from geo_assets.geo.geocells import geocell_key
from geo_assets.synthetic.world import DEFAULT_PLACE_TEXT_SHARE, check_place_text_share

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the repository: geo_assets/config/settings.py

DEFAULT_TILE_SIZE = 2.0
DEFAULT_IMAGES_PER_TILE = 90
DEFAULT_GEOCELL_SIZES = ("0.05", "0.1")
BLUR_VARIANTS = ("unblurred", "blurred")
SOURCES = ("synthetic", "mapillary", "folder")
FOLDER_ENV = "GEO_ASSETS_FOLDER"


def _env_path(name: str, default: Path):
    """A local folder (absolute Path) or, for `s3://bucket/prefix`, an ObjectPath (never
    passed through Path(), which would turn it into a local folder named 's3:')."""
    from geo_assets.store.backends import storage_root

    value = os.environ.get(name)
    return storage_root(value) if value else default.resolve()


def _env_number(name: str, default, kind: type):
    """`kind(value)` of the variable (int or float), the default when unset, a clear error otherwise."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return kind(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from exc


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (os.environ.get(name) or default).strip()
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _env_share(name: str, default: float) -> float:
    try:
        return check_place_text_share(_env_number(name, default, float))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _env_region(name: str, default: tuple[BBox, ...]) -> tuple[BBox, ...]:
    """Boxes as 'minLon,minLat,maxLon,maxLat' separated by ';' (the tests use a small one)."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return tuple(BBox.from_query(part) for part in value.split(";") if part.strip())
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from exc


@dataclass(frozen=True)
class GeoSettings:
    storage_dir: Path  # or an s3:// ObjectPath (store/backends/s3.py)
    models_dir: Path
    region: tuple[BBox, ...] = UK_REGION
    tile_size: float = DEFAULT_TILE_SIZE
    images_per_tile: int = DEFAULT_IMAGES_PER_TILE
    geocell_sizes: tuple[str, ...] = DEFAULT_GEOCELL_SIZES
    source: str = "synthetic"
    max_epochs: int | None = None  # GEO_ASSETS_MAX_EPOCHS: cap on training epochs (None: the model's default)
    folder: str | None = None  # GEO_ASSETS_FOLDER: the photo folder of source "folder"
    # GEO_ASSETS_PLACE_TEXT_SHARE: synthetic world only, share of images whose text names their place
    place_text_share: float = DEFAULT_PLACE_TEXT_SHARE

    def with_storage(self, storage_dir: Path | str, models_dir: Path | str) -> "GeoSettings":
        """The same settings over other data and model folders (benchmarks, tests)."""
        from geo_assets.store.backends import storage_root

        return replace(self, storage_dir=storage_root(storage_dir), models_dir=storage_root(models_dir))

    @classmethod
    def from_env(cls) -> "GeoSettings":
        region = _env_region("GEO_ASSETS_REGION", UK_REGION)
        sizes = os.environ.get("GEO_ASSETS_GEOCELLS")
        geocells = tuple(geocell_key(s) for s in sizes.split(",") if s.strip()) if sizes else DEFAULT_GEOCELL_SIZES
        source = _env_choice("GEO_ASSETS_SOURCE", "synthetic", SOURCES)
        folder = (os.environ.get(FOLDER_ENV) or "").strip() or None
        if source == "folder" and folder is None:
            raise ValueError(f"GEO_ASSETS_SOURCE=folder needs {FOLDER_ENV}, the folder of geotagged JPEGs to read")
        return cls(
            storage_dir=_env_path("GEO_ASSETS_STORAGE", PROJECT_ROOT / "storage"),
            models_dir=_env_path("GEO_ASSETS_MODELS", PROJECT_ROOT / "models"),
            region=region,
            tile_size=_env_number("GEO_ASSETS_TILE_SIZE", DEFAULT_TILE_SIZE, float),
            images_per_tile=_env_number("GEO_ASSETS_IMAGES_PER_TILE", DEFAULT_IMAGES_PER_TILE, int),
            geocell_sizes=geocells,
            source=source,
            max_epochs=_env_number("GEO_ASSETS_MAX_EPOCHS", None, int),
            # Absolute now, so every run process reads the same folder whatever its working directory.
            folder=str(Path(folder).expanduser().absolute()) if folder else None,
            place_text_share=_env_share("GEO_ASSETS_PLACE_TEXT_SHARE", DEFAULT_PLACE_TEXT_SHARE),
        )
