"""One place that knows where every artifact lives under storage/ and models/.

Every path is built from names that may come from outside (image ids from the
API, partition keys, table variants), so each name must be one plain path
component, and the finished path must resolve inside its root: anything else is
a ValueError, never a file written elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geo_assets.store.backends import as_path, backend_for
from geo_assets.store.names import UnsafePathError, safe_component

__all__ = ["TABLES", "StorageLayout", "UnsafePathError", "safe_component"]

# Tables stored as Hive-style folders so DuckDB globs see tile/variant columns.
# Each table is named after the asset that writes it (raw_rejects: raw_images's rejects).
TABLES = ("raw_images", "raw_rejects", "ocr_text", "blurred_images", "captions", "embeddings", "attack_guesses")


@dataclass(frozen=True)
class StorageLayout:
    root: Path  # or any backend's path (an s3:// ObjectPath): same operations
    models_root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", as_path(self.root))
        object.__setattr__(self, "models_root", as_path(self.models_root))

    def _under_root(self, *parts: str) -> Path:
        return backend_for(self.root).confine(self.root.joinpath(*parts), self.root)

    def raw_image_path(self, tile: str, image_id: str) -> Path:
        return self._under_root("images", "raw", safe_component(tile, "tile key"),
                                safe_component(image_id, "image id") + ".jpg")

    def blurred_image_path(self, tile: str, image_id: str) -> Path:
        return self._under_root("images", "blurred", safe_component(tile, "tile key"),
                                safe_component(image_id, "image id") + ".jpg")

    def table_path(self, table: str, tile: str, variant: str | None = None) -> Path:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; known: {TABLES}")
        parts = ["tables", table, safe_component(f"tile={tile}", "tile key")]
        if variant is not None:
            parts.append(safe_component(f"variant={variant}", "variant"))
        return self._under_root(*parts, "data.parquet")

    def tile_table_files(self, table: str, tile: str) -> list[Path]:
        """Every Parquet file of one tile of `table` (one, or one per variant)."""
        folder = self.table_path(table, tile).parent
        return backend_for(folder).list(folder, ".parquet")

    def table_glob(self, table: str) -> str:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; known: {TABLES}")
        return str(self.root / "tables" / table) + "/**/*.parquet"

    def cache_path(self, name: str, tile: str) -> Path:
        """Per-tile cache files: concurrent runs on different tiles never share a file."""
        return self._under_root("cache", safe_component(name, "cache name"),
                                safe_component(f"tile={tile}", "tile key") + ".parquet")

    def state_path(self, name: str, tile: str) -> Path:
        """Small per-tile JSON state (e.g. download strikes), next to the caches."""
        return self._under_root("cache", safe_component(name, "state name"),
                                safe_component(f"tile={tile}", "tile key") + ".json")

    @property
    def duckdb_path(self) -> Path:
        return self.root / "geo.duckdb"

    def model_dir(self, blur: str, geocell: str) -> Path:
        folder = self.models_root / safe_component(blur, "blur variant") / safe_component(geocell, "geocell")
        return backend_for(self.models_root).confine(folder, self.models_root)

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"
