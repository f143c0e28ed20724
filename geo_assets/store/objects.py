"""One storage interface over a local folder and `s3://bucket/prefix`.

`ObjectStore.from_uri(uri)` gives a `LocalObjectStore` for a path and an
`S3ObjectStore` for `s3://...`; both take *keys* (relative POSIX paths such as
`tables/embeddings/tile=a/variant=blurred/data.parquet`, each component a plain
name as in `store/layout.py`) and offer the same operations: bytes and Parquet
tables in and out, exists / list / delete, a partition lock, and DuckDB over
the stored Parquet. The assets reach it through `StorageLayout` paths:
store/paths.py's `ObjectPath` for s3:// roots (docs/DEPLOY.md, "Object storage").

Library: fsspec + s3fs. fsspec (and universal-pathlib) already come with
Dagster, so S3 support adds s3fs only; s3fs exposes S3's conditional writes
(`If-None-Match` / `If-Match`), which the cross-machine lock needs and
`pyarrow.fs.S3FileSystem` does not offer; and DuckDB can mount an fsspec
filesystem (`register_filesystem`), so the existing `read_parquet(glob,
hive_partitioning, union_by_name)` SQL runs unchanged over S3 without the
httpfs extension, which cannot be downloaded at run time here. pyarrow reads
and writes Parquet from bytes, so no second S3 client is involved.

Atomic publish:
- local: temp file in the target's folder, fsync, rename (store/parquet.py);
- S3: the whole object is built in memory first and sent as one PUT (or one
  multipart upload, which S3 also publishes only on completion). S3 has no
  rename, and needs none: a reader sees the old object or the new one, never a
  part. Per-partition tables and images are small (MBs), so memory is fine.

Locks: local uses `fcntl` (store/locks.py semantics: released by the kernel
when the holder dies). On S3 a lease object is created with a conditional PUT
(`If-None-Match: *`: exactly one creator wins), renewed by a heartbeat
(`If-Match: <etag>`), taken over only once it has expired (again `If-Match`, so
two waiters cannot both win), and deleted with `If-Match` so a holder never
deletes someone else's lease. Expiry is judged from the object's server-side
LastModified, so only the reader's clock skew (seconds) matters against a TTL
of minutes. AWS S3 and moto honour If-Match on DELETE; a store that ignores it
could let a holder whose lease was already taken over (and who has not yet
noticed, at most ttl/4) delete the new holder's lease.

A lease whose renewals keep failing (a network partition, an expired credential) is
marked lost once a whole TTL has passed since the last renewal that was sent and
accepted: from then on another run may take it over. Every publish to S3 made while a
lease is held in this context (`ObjectPath.write_bytes`, `S3ObjectStore.write_bytes`:
tables, images, model artifacts) first calls `check_held_leases()`, so the holder's
step fails with LeaseLost instead of writing beside the new holder. A stored TTL that
is not a finite positive number, or above MAX_LEASE_TTL_S, counts as the reader's own
TTL, so no lease body can make itself permanent. The body names its holder by an
opaque random id only (no user, host or PID). Where a store lacks
conditional writes, one run per partition must
come from the run queue instead (`dagster/partition` tag limit, deploy/dagster.yaml).
"""

from __future__ import annotations

import contextvars
import json
import math
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from geo_assets.store.layout import safe_component

DEFAULT_LEASE_TTL_S = 120.0
MAX_LEASE_TTL_S = 24 * 3600.0  # a stored TTL above this (or inf, nan, <= 0) is not honoured as stored
# S3's Last-Modified has whole seconds: a lease renewed at 12.9 s reads as 12 s.
LAST_MODIFIED_RESOLUTION_S = 1.0


class LockTimeout(TimeoutError):
    """Another holder kept the lock for longer than the caller would wait."""


class LeaseLost(RuntimeError):
    """The lease expired and was taken over (or could not be renewed) while held:
    another run may have written the same partition, so the holder's step must fail."""


# The leases held in this context (thread / task): every S3 publish checks them first.
_HELD_LEASES: contextvars.ContextVar[tuple] = contextvars.ContextVar("geo_assets_held_leases", default=())


def _forget(lease) -> None:
    # By identity, not ContextVar.reset: leases are not always released in the order taken,
    # and a reset would bring back one released in between.
    _HELD_LEASES.set(tuple(held for held in _HELD_LEASES.get() if held is not lease))


def check_held_leases() -> None:
    """LeaseLost when a lease held in this context has been lost; call before any publish."""
    for lease in _HELD_LEASES.get():
        lease.check()


def valid_ttl(value, what: str) -> float:
    """`value` as seconds when finite and in (0, MAX_LEASE_TTL_S]; else ValueError naming `what`."""
    try:
        ttl = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of seconds, got {str(value)[:40]!r}") from None
    if not math.isfinite(ttl) or not 0 < ttl <= MAX_LEASE_TTL_S:
        raise ValueError(f"{what} must be a finite number of seconds in (0, {MAX_LEASE_TTL_S:.0f}], got {str(value)[:40]!r}")
    return ttl


def check_key(key: str, what: str = "key") -> str:
    """`key` when every '/'-separated part is one plain name (no '..', no hidden
    names, no empty parts); else UnsafePathError (a ValueError)."""
    parts = str(key).split("/")
    for part in parts:
        safe_component(part, what)
    return "/".join(parts)


def check_prefix(prefix: str) -> str:
    prefix = str(prefix).strip("/")
    return check_key(prefix, "prefix") if prefix else ""


def _conform(table: pa.Table, schema: pa.Schema | None, where: str) -> pa.Table:
    """Same contract as store/parquet.read_table: the schema's columns, cast, in order."""
    if schema is None:
        return table
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"{where} lacks columns {missing}; delete it to rebuild")
    return table.select(schema.names).cast(schema)


def _hidden(key: str) -> bool:
    return any(part.startswith(".") for part in key.split("/"))


def table_to_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


class ObjectStore(ABC):
    """Storage rooted at a local folder or an S3 prefix. Keys are relative to the root."""

    @staticmethod
    def from_uri(uri: str | os.PathLike, **storage_options) -> "ObjectStore":
        text = str(uri)
        if text.startswith("s3://"):
            return S3ObjectStore(text, **storage_options)
        if "://" in text and not text.startswith("file://"):
            raise ValueError(f"unsupported storage URI {text!r}: use a local path or s3://bucket/prefix")
        return LocalObjectStore(text.removeprefix("file://"))

    is_remote: bool = False

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """The full path or URI of `key` (what DuckDB / pyarrow see)."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when absent."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Publish `data` at `key` atomically: readers see the old object or the new one."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        """Keys under `prefix` (recursive, sorted) ending in `suffix`; temp files excluded."""

    @abstractmethod
    def delete(self, key: str, missing_ok: bool = True) -> None: ...

    @abstractmethod
    def lock(self, name: str, *, timeout_s: float = 3600.0, ttl_s: float = DEFAULT_LEASE_TTL_S,
             poll_s: float = 0.5):
        """Context manager: exclusive across every process (and, on S3, machine) using this store."""

    # Parquet through bytes, so both backends share one code path and S3 gets one PUT.
    def write_table(self, key: str, table: pa.Table) -> None:
        self.write_bytes(key, table_to_bytes(table))

    def read_table(self, key: str, schema: pa.Schema | None = None) -> pa.Table:
        """A Parquet object; a missing one reads as an empty table of `schema` (FileNotFoundError without)."""
        try:
            data = self.read_bytes(key)
        except FileNotFoundError:
            if schema is None:
                raise
            return schema.empty_table()
        return _conform(pq.read_table(pa.BufferReader(data)), schema, self.uri(key))

    # DuckDB
    def parquet_glob(self, prefix: str) -> str:
        """A `read_parquet` glob for every Parquet file under `prefix`."""
        return self.uri(check_prefix(prefix)).rstrip("/") + "/**/*.parquet"

    def duckdb_connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection that can `read_parquet(self.parquet_glob(...))`."""
        return duckdb.connect(":memory:")

    def create_view(self, con: duckdb.DuckDBPyConnection, name: str, prefix: str) -> bool:
        """A view `name` over the Hive-partitioned Parquet under `prefix`, as store/catalog.py
        builds them; False (no view) when there are no files yet (read_parquet fails on an empty glob)."""
        safe_component(name, "view name")
        if not self.list(prefix, suffix=".parquet"):
            return False
        glob = self.parquet_glob(prefix).replace("'", "''")
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{glob}', "
                    "hive_partitioning = true, union_by_name = true)")
        return True

    def arrow_dataset(self, prefix: str) -> pads.Dataset:
        """The same Parquet files as a pyarrow dataset (Hive partition columns included);
        DuckDB can query it by name after `con.register(name, dataset)`."""
        keys = self.list(prefix, suffix=".parquet")
        return pads.dataset([self._fs_path(k) for k in keys], filesystem=self._arrow_fs(), format="parquet",
                            partitioning="hive", partition_base_dir=self._fs_path(check_prefix(prefix)))

    @abstractmethod
    def _fs_path(self, key: str) -> str: ...

    @abstractmethod
    def _arrow_fs(self): ...


class LocalObjectStore(ObjectStore):
    """A folder: temp file + rename for atomic publish, fcntl for locks."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _fs_path(self, key: str) -> str:
        return str(self.root / key) if key else str(self.root)

    def _arrow_fs(self):
        from pyarrow.fs import LocalFileSystem

        return LocalFileSystem()

    def uri(self, key: str = "") -> str:
        return str(self._path(key)) if key else str(self.root)

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        from geo_assets.store.parquet import atomic_write_bytes

        atomic_write_bytes(self._path(key), data)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        prefix = check_prefix(prefix)
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return []
        keys = []
        for p in base.rglob("*"):
            rel = p.relative_to(self.root).as_posix()
            # Temp files of a write in flight (".<name>.<rand>.tmp") and .locks/ are not objects.
            if _hidden(rel) or not p.is_file() or not rel.endswith(suffix):
                continue
            keys.append(rel)
        return sorted(keys)

    def delete(self, key: str, missing_ok: bool = True) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            if not missing_ok:
                raise

    @contextmanager
    def lock(self, name: str, *, timeout_s: float = 3600.0, ttl_s: float = DEFAULT_LEASE_TTL_S,
             poll_s: float = 0.5):
        import fcntl

        from geo_assets.store.locks import flock_until

        # ttl_s does not apply: the kernel drops an fcntl lock when its holder dies.
        path = self.root / ".locks" / (check_key(name, "lock name") + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as fh:
            flock_until(fh, time.monotonic() + timeout_s,
                        lambda: LockTimeout(f"lock {name} stayed held for {timeout_s:.0f}s"), min(poll_s, 0.2))
            try:
                yield None
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _s3_error(exc: BaseException) -> tuple[str, int]:
    """(error code, HTTP status) of an S3 error, whether raw botocore or translated by s3fs."""
    for e in (exc, exc.__cause__, exc.__context__):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            return (str(response.get("Error", {}).get("Code", "")),
                    int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0))
    return "", 0


def _precondition_failed(exc: BaseException) -> bool:
    code, status = _s3_error(exc)
    return code == "PreconditionFailed" or status == 412


def _conflict(exc: BaseException) -> bool:
    # S3 answers 409 ConditionalRequestConflict when two conditional writes race: retry.
    code, status = _s3_error(exc)
    return code == "ConditionalRequestConflict" or status == 409


def _not_found(exc: BaseException) -> bool:
    code, status = _s3_error(exc)
    return isinstance(exc, FileNotFoundError) or code in ("NoSuchKey", "404") or status == 404


class S3ObjectStore(ObjectStore):
    """`s3://bucket/prefix` through s3fs. Credentials and region come from the environment
    (AWS_* variables, a profile, or workload identity): never from config or code. An
    S3-compatible server (MinIO, moto, R2) is chosen with AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL."""

    is_remote = True

    def __init__(self, uri: str, **storage_options):
        import s3fs

        rest = uri.removeprefix("s3://").strip("/")
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise ValueError(f"storage URI {uri!r} names no bucket")
        self.bucket = bucket
        self.prefix = check_prefix(prefix)
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options = {
            # Other machines write too: a cached listing would hide their objects.
            "use_listings_cache": False,
            "skip_instance_cache": True,
            **({"endpoint_url": endpoint} if endpoint else {}),
            **storage_options,
        }
        self.fs = s3fs.S3FileSystem(**options)

    def __repr__(self) -> str:
        return f"S3ObjectStore('s3://{self.bucket}/{self.prefix}')"

    def _key(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fs_path(self, key: str) -> str:
        full = f"{self.prefix}/{key}".strip("/") if self.prefix else key
        return f"{self.bucket}/{full}".rstrip("/")

    def _arrow_fs(self):
        from pyarrow.fs import FSSpecHandler, PyFileSystem

        return PyFileSystem(FSSpecHandler(self.fs))

    def uri(self, key: str = "") -> str:
        return "s3://" + self._fs_path(check_key(key) if key else "")

    def read_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(self._fs_path(check_key(key)))

    def write_bytes(self, key: str, data: bytes) -> None:
        # One PUT of the finished bytes (multipart above s3fs's 50 MB chunk, also atomic).
        check_held_leases()
        self.fs.pipe_file(self._fs_path(check_key(key)), bytes(data))

    def exists(self, key: str) -> bool:
        return self.fs.isfile(self._fs_path(check_key(key)))

    def list(self, prefix: str = "", suffix: str = "") -> list[str]:
        prefix = check_prefix(prefix)
        base = self._fs_path(prefix)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        root = self._fs_path("") + "/"
        keys = [p[len(root):] for p in found if p.startswith(root)]
        return sorted(k for k in keys if k.endswith(suffix) and not _hidden(k))

    def delete(self, key: str, missing_ok: bool = True) -> None:
        path = self._fs_path(check_key(key))
        if not missing_ok and not self.fs.isfile(path):
            raise FileNotFoundError(self.uri(key))
        self.fs.rm_file(path)

    def duckdb_connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        # DuckDB reads s3:// through this fsspec filesystem: no httpfs extension needed.
        con.register_filesystem(self.fs)
        return con

    # Lease
    def _head(self, s3_key: str) -> dict | None:
        try:
            return self.fs.call_s3("head_object", Bucket=self.bucket, Key=s3_key)
        except Exception as exc:  # noqa: BLE001 - s3fs translates botocore errors to OSErrors
            if _not_found(exc):
                return None
            raise

    def _put_conditional(self, s3_key: str, body: bytes, **condition) -> str | None:
        """ETag of the new object, or None when the condition did not hold (or raced)."""
        try:
            return self.fs.call_s3("put_object", Bucket=self.bucket, Key=s3_key, Body=body,
                                   **condition)["ETag"]
        except Exception as exc:  # noqa: BLE001
            if isinstance(exc, FileExistsError) or _precondition_failed(exc) or _conflict(exc):
                return None
            raise

    @contextmanager
    def lock(self, name: str, *, timeout_s: float = 3600.0, ttl_s: float = DEFAULT_LEASE_TTL_S,
             poll_s: float = 0.5) -> Iterator["S3Lease"]:
        # ".leases/" cannot clash with data: data keys have no hidden components.
        name = check_key(name, "lock name")
        lease = S3Lease(self, f"{self.prefix}/.leases/{name}.lease" if self.prefix else f".leases/{name}.lease", ttl_s)
        lease.acquire(timeout_s, poll_s)
        _HELD_LEASES.set(_HELD_LEASES.get() + (lease,))
        try:
            yield lease
        except BaseException:
            _forget(lease)
            lease.release()
            raise
        _forget(lease)
        lost = lease.release()
        if lost:
            raise LeaseLost(f"lease {name} was lost while held: {lost}")


class S3Lease:
    """A lease object in the bucket; see the module docstring for the protocol."""

    def __init__(self, store: S3ObjectStore, s3_key: str, ttl_s: float):
        self.store = store
        self.s3_key = s3_key
        self.ttl_s = valid_ttl(ttl_s, "the lease's ttl_s")
        self.owner = uuid.uuid4().hex  # opaque: the bucket's readers learn nothing about the holder
        self.etag: str | None = None
        self.lost: str | None = None
        # monotonic time at which the last accepted write of the lease was *sent*: S3's
        # LastModified is no earlier, so a taker (which waits ttl + 1 s past it) never comes first.
        self._renewed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._etag_lock = threading.Lock()

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "ttl_s": self.ttl_s,
                           "renewed_at": datetime.now(timezone.utc).isoformat()}).encode()

    def _meta(self) -> dict:
        return {"ttl-s": repr(self.ttl_s)}

    def holder(self) -> str:
        """Who holds the lease now (for messages), or '' when nobody does."""
        try:
            return json.loads(self.store.fs.cat_file(f"{self.store.bucket}/{self.s3_key}")).get("owner", "?")
        except Exception:  # noqa: BLE001 - only for messages
            return ""

    def acquire(self, timeout_s: float, poll_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            sent = time.monotonic()
            etag = self.store._put_conditional(self.s3_key, self._body(), IfNoneMatch="*", Metadata=self._meta())
            if etag is None:
                head = self.store._head(self.s3_key)
                if head is not None:
                    # The holder's TTL (object metadata, read with the ETag in one HEAD), not ours.
                    try:
                        ttl = valid_ttl(head.get("Metadata", {}).get("ttl-s", self.ttl_s), "stored ttl")
                    except ValueError:  # inf, nan, <= 0, huge or garbled: not honoured as stored
                        ttl = self.ttl_s
                    age = (datetime.now(timezone.utc) - head["LastModified"]).total_seconds()
                    if age > ttl + LAST_MODIFIED_RESOLUTION_S:
                        # Expired (holder died without releasing): take it over only if nobody renewed it meanwhile.
                        sent = time.monotonic()
                        etag = self.store._put_conditional(self.s3_key, self._body(), IfMatch=head["ETag"],
                                                           Metadata=self._meta())
            if etag is not None:
                self.etag = etag
                self._renewed_at = sent
                self._thread = threading.Thread(target=self._heartbeat, name=f"lease:{self.s3_key}", daemon=True)
                self._thread.start()
                return
            if time.monotonic() + poll_s > deadline:
                raise LockTimeout(f"lease s3://{self.store.bucket}/{self.s3_key} stayed held by "
                                  f"{self.holder() or 'another run'} for {timeout_s:.0f}s")
            time.sleep(poll_s)

    def _heartbeat(self) -> None:
        interval = self.ttl_s / 4  # three chances to renew before it expires
        while not self._stop.wait(interval):
            if self._expired():
                return
            try:
                with self._etag_lock:
                    sent = time.monotonic()
                    etag = self.store._put_conditional(self.s3_key, self._body(), IfMatch=self.etag,
                                                       Metadata=self._meta())
                    if etag is None:
                        self.lost = "renewal refused: another holder took the lease after it expired"
                        return
                    self.etag = etag
                    self._renewed_at = sent
            except Exception:  # noqa: BLE001 - a network blip: try again next tick, unless a whole TTL has gone
                if self._expired():
                    return

    def _expired(self) -> bool:
        """True (and the lease marked lost) once a whole TTL has passed since the last accepted renewal."""
        if self.lost:
            return True
        silent = time.monotonic() - self._renewed_at
        if self._renewed_at and silent >= self.ttl_s:
            self.lost = (f"renewals failed for {silent:.1f}s, at least the lease's TTL of {self.ttl_s:g}s: "
                         "another run may hold it now")
            return True
        return False

    def check(self) -> None:
        """Raise LeaseLost when the lease was taken over or its renewals failed for a whole TTL;
        judged now, not by the heartbeat alone (its request may hang). Called before every publish."""
        if self._expired():
            raise LeaseLost(f"lease s3://{self.store.bucket}/{self.s3_key}: {self.lost}; nothing more is published")

    def release(self) -> str | None:
        """Stop renewing and delete the lease if it is still ours; the reason it was lost, if it was."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost:
            return self.lost
        try:
            with self._etag_lock:
                self.store.fs.call_s3("delete_object", Bucket=self.store.bucket, Key=self.s3_key, IfMatch=self.etag)
        except Exception as exc:  # noqa: BLE001
            if _precondition_failed(exc):
                return "another holder took the lease before it was released"
            if not _not_found(exc):
                raise
        return None
