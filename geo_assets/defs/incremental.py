"""The incremental tile tables on disk: read a partition's previous table, keep its rows
whose key is wanted again (``geo_assets.tables.incremental``), compute the rest, write
the table atomically; and the data version every such asset reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Sequence

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from geo_assets.defs.metadata import data_version_of
from geo_assets.store.parquet import conform, read_table, write_table
from geo_assets.tables.incremental import Compute, Reuse, reuse_rows

STAMP_KEY = b"geo_assets.reuse_stamp"
"""Parquet key-value metadata naming what the rows were computed with, beyond their key."""


def stamp_of(table: pa.Table) -> str | None:
    """The stamp a table read by `read_previous` was written with (None: none)."""
    value = (table.schema.metadata or {}).get(STAMP_KEY)
    return value.decode() if value is not None else None


def read_previous(path: Path, schema: pa.Schema, *, rebuild_incompatible: bool = False) -> pa.Table:
    """A partition's previous table as `schema` (empty when there is none), carrying its
    stamp. `rebuild_incompatible`: a file whose columns can no longer be cast to `schema`
    (new vector sizes) reads as empty, so every row is computed again; otherwise that is
    an error, as for any reader."""
    try:
        raw = read_table(path)
    except FileNotFoundError:
        return schema.empty_table()
    try:
        table = conform(raw, schema, path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        if not rebuild_incompatible:
            raise
        return schema.empty_table()
    stamp = (raw.schema.metadata or {}).get(STAMP_KEY)
    return table.replace_schema_metadata({STAMP_KEY: stamp}) if stamp is not None else table


def update_table(path: Path, schema: pa.Schema, wanted: pa.Table, key: Sequence[str], compute: Compute, *,
                 reusable: Callable | None = None, old: pa.Table | None = None, stamp: str | None = None,
                 keep_old: bool = False, rebuild_incompatible: bool = False, sort_by: Sequence[str] = ()) -> Reuse:
    """One incremental table: the rows for `wanted`, the old ones where the key matches
    (see `reuse_rows`), written atomically to `path`.

    `old`: the previous table when the caller has read it already (`read_previous`).
    `stamp`: what the rows depend on beyond their key columns (a code version, a region);
    rows written under another stamp are not reused. `keep_old`: a cache, not a table: the
    old rows stay and the computed ones are appended (written only when there are any).
    `sort_by`: the table is written (and returned) in this column order; `compute` still
    gets the missing rows in wanted order (batches of the same rows as before, so the
    same numbers)."""
    if old is None:
        old = read_previous(path, schema, rebuild_incompatible=rebuild_incompatible)
    reusable_old = old if stamp is None or stamp_of(old) == stamp else schema.empty_table()
    result = reuse_rows(reusable_old, wanted, key, schema, compute, reusable=reusable)
    if keep_old:
        if result.rows_computed:
            write_table(path, pa.concat_tables([old.select(schema.names).cast(schema), result.computed]))
        return result
    if sort_by:
        order = pc.sort_indices(result.table, [(c, "ascending") for c in sort_by])
        result = dataclasses.replace(result, table=result.table.take(order), reused_mask=result.reused_mask[order.to_numpy()])
    table = result.table
    if stamp is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), STAMP_KEY: stamp.encode()})
    write_table(path, table)
    return result


def data_version_of_columns(table: pa.Table, columns: Sequence[str]) -> dg.DataVersion:
    """`data_version_of` the rows' `a:b:c` strings of these columns (str() of each value)."""
    return data_version_of(":".join(map(str, values)) for values in zip(*(table.column(c).to_pylist() for c in columns)))
