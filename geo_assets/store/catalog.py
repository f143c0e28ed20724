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

Where the backend cannot hold DuckDB's database file (s3://), `refresh_views` does
nothing, and `query_connection` builds the same views in memory over the backend's
globs, read through the filesystem the backend registers with DuckDB.

`query_connection` is read-only: once the views exist, DuckDB's external access is
switched off (only the tables folder stays readable, through `allowed_directories`)
and its configuration locked, so SQL cannot read other files or buckets, write,
attach databases or install extensions; `refuse_writes` also refuses any statement
that is not a query before it runs (DuckDB would still let COPY write into the tables folder).
While store/reads.py records, the connection reports the tables each statement names.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from geo_assets.store import reads
from geo_assets.store.backends import backend_for
from geo_assets.store.backends.local import file_lock
from geo_assets.store.layout import TABLES, StorageLayout
from geo_assets.store.parquet import atomic_write_bytes

log = logging.getLogger(__name__)

REFRESH_WAIT_S = 10.0  # how long a step waits for the catalog before it gives up (and warns)


class CatalogBusy(RuntimeError):
    pass


def _catalog_lock(path: Path, deadline: float):
    lock = path.with_suffix(".lock")
    return file_lock(lock, deadline, lambda: CatalogBusy(f"{lock} stayed locked"), 0.05)


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
    path = _pending_path(layout)
    try:
        if tables:
            atomic_write_bytes(path, ("\n".join(sorted(tables)) + "\n").encode())
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("DuckDB catalog: cannot record pending views in %s: %s", path, exc)


def _present_tables(layout: StorageLayout) -> set[str]:
    """Tables with at least one Parquet file (one listing of tables/)."""
    tables = layout.root / "tables"
    return {f.relative_to(tables).parts[0] for f in backend_for(tables).list(tables, ".parquet")} & set(TABLES)


def view_sql(layout: StorageLayout, table: str) -> str:
    """The one definition of a table's view: every Parquet file of it, Hive columns included."""
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
    if not backend_for(layout.root).has_catalog_file:
        return []  # query_connection builds the views per connection
    logger = logger or log
    wanted = set(tables) | _read_pending(layout)
    on_disk = _present_tables(layout)
    present = [t for t in TABLES if t in wanted and t in on_disk]
    if not present:
        return []
    deadline = time.monotonic() + max(0.0, wait_s)
    try:
        with _catalog_lock(layout.duckdb_path, deadline):
            con = _connect_with_retry(layout.duckdb_path, read_only=False, deadline=deadline)
            try:
                for table in present:
                    con.execute(view_sql(layout, table))
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
    con = duckdb.connect(":memory:")
    try:
        backend_for(layout.root).attach_duckdb(con, layout.root)
        present = _present_tables(layout)
        for table in TABLES:
            if table in present:
                con.execute(view_sql(layout, table))
        _lock_down(con, str(layout.root / "tables"))
        yield _RecordingConnection(con, layout) if reads.active() else con
    finally:
        con.close()


def tables_named(sql: str) -> set[str]:
    """The stored tables `sql` names (parsed, not run: parameters need no values)."""
    parser = duckdb.connect(":memory:")
    try:
        tree = parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0]
    finally:
        parser.close()
    names: set[str] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and node.get("table_name") in TABLES:
                names.add(node["table_name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(tree))
    return names


class _RecordingConnection:
    """A query connection that reports each statement's tables to store/reads.py (only
    while a recorder is active); everything else goes to the DuckDB connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, layout: StorageLayout):
        self._con = con
        self._layout = layout

    def _note(self, sql: str) -> None:
        for table in sorted(tables_named(sql)):
            reads.note(self._layout.root / "tables" / table)

    def execute(self, sql: str, *args, **kwargs):
        self._note(sql)
        return self._con.execute(sql, *args, **kwargs)

    def sql(self, sql: str, *args, **kwargs):
        self._note(sql)
        return self._con.sql(sql, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._con, name)
