"""One place that knows where every artifact lives under storage/ and models/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Tables stored as Hive-style folders so DuckDB globs see tile/variant columns.
TABLES = ("raw_images", "raw_rejects", "ocr_text", "blur_regions", "captions", "embeddings")


@dataclass(frozen=True)
class StorageLayout:
    root: Path
    models_root: Path

    def raw_image_path(self, tile: str, image_id: str) -> Path:
        return self.root / "images" / "raw" / tile / f"{image_id}.jpg"

    def blurred_image_path(self, tile: str, image_id: str) -> Path:
        return self.root / "images" / "blurred" / tile / f"{image_id}.jpg"

    def table_path(self, table: str, tile: str, variant: str | None = None) -> Path:
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; known: {TABLES}")
        base = self.root / "tables" / table / f"tile={tile}"
        if variant is not None:
            base = base / f"variant={variant}"
        return base / "data.parquet"

    def table_glob(self, table: str) -> str:
        return str(self.root / "tables" / table / "**" / "*.parquet")

    def cache_path(self, name: str, tile: str) -> Path:
        """Per-tile cache files: concurrent runs on different tiles never share a file."""
        return self.root / "cache" / name / f"tile={tile}.parquet"

    @property
    def duckdb_path(self) -> Path:
        return self.root / "geo.duckdb"

    def model_dir(self, blur: str, geocell: str) -> Path:
        return self.models_root / blur / geocell

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"
