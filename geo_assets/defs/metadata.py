"""Small helpers that turn results into Dagster metadata and data versions."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import cv2
import dagster as dg
import numpy as np
import pyarrow as pa


def data_version_of(parts: Iterable[str]) -> dg.DataVersion:
    """A data version from the sorted identities of a partition's rows."""
    h = hashlib.sha256()
    for part in sorted(parts):
        h.update(part.encode())
        h.update(b"\n")
    return dg.DataVersion(h.hexdigest()[:24])


def records_table(records: list[dict], columns: list[str] | None = None) -> dg.MetadataValue:
    """Rows of plain values as a Dagster table (sortable in the UI), typed per column."""
    columns = columns or (list(records[0]) if records else [])

    def kind(values) -> str:
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, bool) for v in present):
            return "bool"
        if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            return "int"
        if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
            return "float"
        return "string"

    schema = dg.TableSchema(columns=[dg.TableColumn(c, kind([r.get(c) for r in records])) for c in columns])
    return dg.MetadataValue.table(records=[dg.TableRecord({c: r.get(c) for c in columns}) for r in records], schema=schema)


def counts_md(counter: Counter | dict, key_name: str = "reason", value_name: str = "count") -> dg.MetadataValue:
    """Counts per key as a table, largest first."""
    rows = sorted(dict(counter).items(), key=lambda kv: (-kv[1], kv[0]))
    return records_table([{key_name: str(k), value_name: int(v)} for k, v in rows], [key_name, value_name])


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """`dagster/column_schema` from a table's pyarrow schema (the UI's Columns tab)."""
    return dg.TableSchema(columns=[dg.TableColumn(f.name, str(f.type)) for f in schema])


def parquet_rows(paths) -> int:
    """Rows in these Parquet files (any backend), from their footers (no data read); missing files count 0."""
    from geo_assets.store.backends import as_path
    from geo_assets.store.parquet import row_count

    return sum(row_count(as_path(p)) for p in paths)


PEAK_RSS_KEY = "process_peak_rss_mib"
"""Metadata key: the peak resident memory of the run's process up to this materialization."""


def process_peak_mib() -> float:
    """Peak resident memory of this process so far, MiB (a warm run worker resets it at each
    run's start, run/warm_worker.py, so it is the run's own peak there)."""
    from geo_assets.runtime.memory import peak_rss_mib

    return peak_rss_mib()


def with_table_metadata(events, row_count: Callable[[], int]):
    """Pass an asset's events through, adding `dagster/row_count` (counted from the files just
    written) and the process's peak memory to its MaterializeResult, so every table asset
    reports them the same way."""
    for event in events:
        if isinstance(event, dg.MaterializeResult):
            event = dg.MaterializeResult(
                asset_key=event.asset_key, metadata={**(event.metadata or {}), "dagster/row_count": row_count(),
                                                     PEAK_RSS_KEY: process_peak_mib()},
                check_results=event.check_results, data_version=event.data_version, tags=event.tags,
            )
        yield event


def table_asset_metadata(schema: pa.Schema) -> dict:
    """Definition metadata for a table asset: its column schema, shown before any run."""
    return {"dagster/column_schema": column_schema(schema)}


def png_md(path: Path, alt: str = "plot") -> dg.MetadataValue:
    """A PNG inline in Markdown metadata (data URI), so the UI shows the plot itself."""
    from geo_assets.store.backends import as_path

    data = base64.b64encode(as_path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})")


def _thumb_data_uri(image_bgr: np.ndarray, width: int = 160) -> str:
    h, w = image_bgr.shape[:2]
    thumb = cv2.resize(image_bgr, (width, max(1, int(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:
        raise ValueError("could not encode a preview thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def preview_md(paths: list[Path], captions: list[str] | None = None, width: int = 160) -> dg.MetadataValue:
    """A few thumbnails inline (base64), with a caption each; images local or s3://."""
    from geo_assets.store.images import UnreadableImage, load_bgr
    from geo_assets.store.backends import as_path

    cells = []
    for i, path in enumerate(paths):
        try:
            image = load_bgr(as_path(path))
        except UnreadableImage:
            continue
        label = captions[i] if captions else as_path(path).stem
        cells.append(f"![{label}]({_thumb_data_uri(image, width)})<br/>{label}")
    if not cells:
        return dg.MetadataValue.md("(no images)")
    return dg.MetadataValue.md(" | ".join(cells) + "\n" + "|".join(["---"] * len(cells)))

OWNERS = ["team:geo-assets"]
"""Who answers for every asset (shown in the UI's asset pages and catalog)."""
