"""DuckDB catalog: views over the Parquet tables, so SQL sees every partition.

DuckDB lets one process write a database file at a time. Steps never write
data into DuckDB: they write Parquet files (atomically), and the catalog only
holds views over Parquet globs. Creating a view takes the write lock for a
moment, so it goes through an OS file lock and retries; readers open the file
read-only, or query the Parquet files directly when the file is busy.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from geo_assets.store.layout import TABLES, StorageLayout


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _connect_with_retry(path: Path, read_only: bool, attempts: int = 40) -> duckdb.DuckDBPyConnection:
    delay = 0.05
    for attempt in range(attempts):
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:  # lock held by another process
            if attempt == attempts - 1:
                raise RuntimeError(f"DuckDB file {path} stayed locked: {exc}") from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def _view_sql(layout: StorageLayout, table: str) -> str:
    glob = layout.table_glob(table).replace("'", "''")
    return (
        f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{glob}', "
        "hive_partitioning = true, union_by_name = true)"
    )


def refresh_views(layout: StorageLayout, tables: tuple[str, ...] = TABLES) -> list[str]:
    """(Re)create a view for every table that has at least one Parquet file."""
    present = [t for t in tables if any((layout.root / "tables" / t).glob("**/*.parquet"))]
    if not present:
        return []
    with _file_lock(layout.duckdb_path):
        con = _connect_with_retry(layout.duckdb_path, read_only=False)
        try:
            for table in present:
                con.execute(_view_sql(layout, table))
        finally:
            con.close()
    return present


@contextmanager
def query_connection(layout: StorageLayout):
    """A connection that sees every table: in-memory views over the same Parquet
    globs, so reading never contends for the catalog file's lock."""
    con = duckdb.connect(":memory:")
    try:
        for table in TABLES:
            if any((layout.root / "tables" / table).glob("**/*.parquet")):
                con.execute(_view_sql(layout, table))
        yield con
    finally:
        con.close()
