"""Tables: Parquet files in and out of any backend, each write atomic (a crash or a
concurrent reader sees the old file or the new one, never half of one).

A table is encoded to bytes in memory (zstd) and published by the path's backend in
one step; Parquet written to a buffer is byte-for-byte what pyarrow writes to a file,
so the bytes do not depend on where the table is stored. Every read goes through
`read_table`, which conforms it to the caller's schema (the one schema check) and
reports the read to store/reads.py.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from geo_assets.store import reads
from geo_assets.store.backends import as_path, backend_for


def table_to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def atomic_write_bytes(path, data: bytes) -> None:
    """Publish `data` at `path` (any backend) atomically."""
    path = as_path(path)
    backend_for(path).write_bytes(path, bytes(data))


def write_table(path, table: pa.Table) -> None:
    """Publish `table` as a Parquet file at `path` atomically."""
    path = as_path(path)
    backend_for(path).write_bytes(path, table_to_bytes(table))


def conform(table: pa.Table, schema: pa.Schema | None, where) -> pa.Table:
    """`table` as `schema`: its columns, cast, in order (extra columns dropped); ValueError
    naming `where` when a column is missing (a file from an older schema: rebuild it)."""
    if schema is None:
        return table
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"{where} lacks columns {missing}; delete it to rebuild")
    return table.select(schema.names).cast(schema)


def read_table(path, schema: pa.Schema | None = None) -> pa.Table:
    """Read a Parquet file; a missing file reads as an empty table of `schema`
    (FileNotFoundError without one)."""
    path = as_path(path)
    reads.note(path)
    try:
        data = backend_for(path).read_bytes(path)
    except FileNotFoundError:
        if schema is None:
            raise FileNotFoundError(str(path)) from None
        return schema.empty_table()
    return conform(pq.read_table(pa.BufferReader(data)), schema, path)


def row_count(path) -> int:
    """Rows in a Parquet file from its footer (no data read); 0 when it is missing."""
    path = as_path(path)
    reads.note(path)
    try:
        with backend_for(path).open_read(path) as fh:
            return pq.ParquetFile(fh).metadata.num_rows
    except FileNotFoundError:
        return 0


def rows_by(table: pa.Table, key: str) -> dict[str, dict]:
    return {row[key]: row for row in table.to_pylist()}
