"""DuckDB catalog: views over the Parquet tables, so SQL sees every partition.

DuckDB lets one process write a database file at a time. Steps never write
data into DuckDB: they write Parquet files (atomically), and the catalog only
holds views over Parquet globs. Creating a view takes the write lock for a
moment, so it goes through an OS file lock and retries; readers open the file
read-only, or query the Parquet files directly when the file is busy.

`refresh_views` never fails the step that calls it: the step's data has
already landed in Parquet by then, and the views are a convenience. When the
file stays locked (another process holds geo.duckdb open for writing, e.g. a
DuckDB shell) it logs a warning, remembers the tables in `geo.duckdb.pending`,
and the next refresh (any step, any process) creates them too.

On s3:// storage there is no catalog file (DuckDB cannot write its database file to
S3): `refresh_views` does nothing, and `query_connection` builds the same views in
memory over `s3://` globs, read through the fsspec filesystem registered with DuckDB
(no httpfs extension, which cannot be downloaded here).

`query_connection` is read-only: once the views exist, DuckDB's external access is
switched off (only the tables folder stays readable, through `allowed_directories`)
and its configuration locked, so SQL cannot read other files or buckets, write,
attach databases or install extensions; `refuse_writes` also refuses any statement
that is not a query before it runs (DuckDB would still let COPY write into the tables folder).
"""

from __future__ import annotations

import fcntl
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from geo_assets.store.layout import TABLES, StorageLayout
from geo_assets.store.locks import flock_until

log = logging.getLogger(__name__)

REFRESH_WAIT_S = 10.0  # how long a step waits for the catalog before it gives up (and warns)


class CatalogBusy(RuntimeError):
    pass


@contextmanager
def _file_lock(path: Path, deadline: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as fh:
        flock_until(fh, deadline, lambda: CatalogBusy(f"{path.with_suffix('.lock')} stayed locked"), 0.05)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _connect_with_retry(path: Path, read_only: bool, deadline: float) -> duckdb.DuckDBPyConnection:
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:  # lock held by another process
            if time.monotonic() + delay > deadline:
                raise CatalogBusy(f"DuckDB file {path} stayed locked: {str(exc).splitlines()[0][:200]}") from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _pending_path(layout: StorageLayout) -> Path:
    return layout.duckdb_path.with_name(layout.duckdb_path.name + ".pending")


def _read_pending(layout: StorageLayout) -> set[str]:
    try:
        names = _pending_path(layout).read_text().split()
    except OSError:
        return set()
    return {n for n in names if n in TABLES}


def _write_pending(layout: StorageLayout, tables: set[str]) -> None:
    from geo_assets.store.parquet import atomic_write_bytes

    path = _pending_path(layout)
    try:
        if tables:
            atomic_write_bytes(path, ("\n".join(sorted(tables)) + "\n").encode())
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("DuckDB catalog: cannot record pending views in %s: %s", path, exc)


def _view_sql(layout: StorageLayout, table: str) -> str:
    glob = layout.table_glob(table).replace("'", "''")
    return (
        f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{glob}', "
        "hive_partitioning = true, union_by_name = true)"
    )


def refresh_views(layout: StorageLayout, tables: tuple[str, ...] = TABLES, *, wait_s: float = REFRESH_WAIT_S,
                  logger=None) -> list[str]:
    """(Re)create a view for every table that has at least one Parquet file, plus
    any left pending by an earlier refresh that could not get the file.

    Never raises: on a busy or broken catalog file it warns (through `logger`, or
    this module's log), records the tables as pending and returns []."""
    from geo_assets.store.paths import ObjectPath

    if isinstance(layout.root, ObjectPath):
        return []  # no catalog file on S3: query_connection builds the views per connection
    logger = logger or log
    wanted = set(tables) | _read_pending(layout)
    present = [t for t in TABLES if t in wanted and any((layout.root / "tables" / t).glob("**/*.parquet"))]
    if not present:
        return []
    deadline = time.monotonic() + max(0.0, wait_s)
    try:
        with _file_lock(layout.duckdb_path, deadline):
            con = _connect_with_retry(layout.duckdb_path, read_only=False, deadline=deadline)
            try:
                for table in present:
                    con.execute(_view_sql(layout, table))
            finally:
                con.close()
    except (CatalogBusy, duckdb.Error, OSError) as exc:
        _write_pending(layout, set(present))
        logger.warning(
            f"DuckDB catalog {layout.duckdb_path}: views not refreshed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); the data is saved in Parquet, and the next refresh "
            f"creates views for {', '.join(present)}"
        )
        return []
    if _pending_path(layout).exists():
        _write_pending(layout, set())
    return present


# Statement types that only read. DESCRIBE, SHOW, SUMMARIZE and WITH parse as SELECT.
READ_ONLY_STATEMENTS = ("SELECT", "EXPLAIN")


class QueryRefused(ValueError):
    """A statement that is not a read-only query."""


def refuse_writes(sql: str) -> None:
    """QueryRefused naming the first statement in `sql` that is not a read-only query.
    A statement DuckDB cannot parse raises its own duckdb.ParserException."""
    for statement in duckdb.extract_statements(sql):
        kind = statement.type.name
        if kind not in READ_ONLY_STATEMENTS:
            words = statement.query.strip().split(None, 1)
            shown = words[0].upper() if words else kind
            raise QueryRefused(f"{shown} statements are not allowed (queries are read-only: "
                               "SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)")


def _lock_down(con: duckdb.DuckDBPyConnection, tables_dir: str) -> None:
    """No file or bucket access but the tables folder, and no way to change that back."""
    con.execute("SET allowed_directories = ?", [[tables_dir.rstrip("/") + "/"]])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


@contextmanager
def query_connection(layout: StorageLayout):
    """A read-only connection that sees every table: in-memory views over the same Parquet
    globs, so reading never contends for the catalog file's lock. Works for local and s3://
    roots. It reads the tables folder and nothing else (module docstring)."""
    from geo_assets.store.paths import ObjectPath

    con = duckdb.connect(":memory:")
    try:
        if isinstance(layout.root, ObjectPath):
            # One listing of tables/ instead of one per table; DuckDB reads s3:// through s3fs.
            con.register_filesystem(layout.root.fs)
            present = {k.split("/", 1)[0] for k in (layout.root / "tables").keys() if k.endswith(".parquet")}
        else:
            present = {t for t in TABLES if any((layout.root / "tables" / t).glob("**/*.parquet"))}
        for table in TABLES:
            if table in present:
                con.execute(_view_sql(layout, table))
        _lock_down(con, str(layout.root / "tables"))
        yield con
    finally:
        con.close()
