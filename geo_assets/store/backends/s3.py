"""`s3://bucket/prefix` (AWS S3 or any S3-compatible server: MinIO, moto, R2).

Paths: `ObjectPath` offers the subset of `pathlib.Path` that asset code uses (`/`,
`parent`, `name`, `exists`, `read_bytes`, `glob`, `relative_to`, ...), so code
written against `Path` runs unchanged over S3. It has no `__fspath__`, so handing
one to `open()`, `cv2.imread` or `Path()` fails loudly instead of writing a local
file named `s3:/...`. Every component joined onto it is checked by store/names.py:
no '..' and no hidden names, so it cannot leave its root or clash with leases.

Library: fsspec + s3fs. fsspec already comes with Dagster, so S3 support adds s3fs
only; s3fs exposes S3's conditional writes (`If-None-Match` / `If-Match`), which the
lease needs and `pyarrow.fs.S3FileSystem` does not offer; and DuckDB can mount an
fsspec filesystem (`register_filesystem`), so the same `read_parquet(glob, ...)` SQL
runs over S3 without the httpfs extension, which cannot be downloaded at run time
here. One client per bucket and environment (`bucket_store`): building one costs
~50 ms. Listing caches are off, since other machines write too. Endpoint and
credentials come from the environment only (AWS_* variables, a profile, or workload
identity; AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL picks an S3-compatible server).

Atomic publish: the whole object is built in memory and sent as one PUT (or one
multipart upload, which S3 also publishes only on completion). S3 has no rename and
needs none: a reader sees the old object or the new one. Per-partition tables and
images are small (MBs), so memory is fine.

Leases (the lock): a lease object `<root>/.leases/locks/<name>.lease` is created with
a conditional PUT (`If-None-Match: *`: exactly one creator wins), renewed by a
heartbeat (`If-Match: <etag>`), taken over only once it has expired (again
`If-Match`, so two waiters cannot both win), and deleted with `If-Match` so a holder
never deletes someone else's lease. Expiry is judged from the object's server-side
LastModified, so only the reader's clock skew (seconds) matters against a TTL of
minutes. AWS S3 and moto honour If-Match on DELETE; a store that ignores it could let
a holder whose lease was already taken over (and who has not yet noticed, at most
ttl/4) delete the new holder's lease.

A lease whose renewals keep failing (a network partition, an expired credential) is
marked lost once a whole TTL has passed since the last renewal that was sent and
accepted: from then on another run may take it over. Every publish made while a lease
is held in this context (tables, images, model artifacts: all go through
`ObjectPath.write_bytes`) first calls `check_held_leases()`, so the holder's step
fails with LeaseLost instead of writing beside the new holder. A stored TTL that is
not a finite positive number, or above MAX_LEASE_TTL_S, counts as the reader's own
TTL, so no lease body can make itself permanent. The body names its holder by an
opaque random id only (no user, host or PID). Where a store lacks conditional writes,
one run per partition must come from the run queue instead (`dagster/partition` tag
limit, deploy/dagster.yaml).
"""

from __future__ import annotations

import contextvars
import functools
import json
import math
import os
import posixpath
import re
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Iterator

from geo_assets.store.backends.base import LockTimeout
from geo_assets.store.names import check_key, safe_component

DEFAULT_LEASE_TTL_S = 120.0
MAX_LEASE_TTL_S = 24 * 3600.0  # a stored TTL above this (or inf, nan, <= 0) is not honoured as stored
# S3's Last-Modified has whole seconds: a lease renewed at 12.9 s reads as 12 s.
LAST_MODIFIED_RESOLUTION_S = 1.0


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


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key prefix) of `s3://bucket/prefix`; every prefix component checked."""
    rest = str(uri).removeprefix("s3://").strip("/")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"storage URI {uri!r} names no bucket")
    key = key.strip("/")
    return bucket, check_key(key, "prefix") if key else ""


class S3Store:
    """One s3fs client for a bucket, and the lease operations on it."""

    def __init__(self, uri: str, **storage_options):
        import s3fs

        self.bucket, self.prefix = parse_s3_uri(uri)
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
        return f"S3Store('s3://{self.bucket}/{self.prefix}')"

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
        """The lease `<prefix>/.leases/locks/<name>.lease` (".leases" cannot clash with data:
        data keys have no hidden components)."""
        name = check_key(name, "lock name")
        key = f".leases/locks/{name}.lease"
        lease = S3Lease(self, f"{self.prefix}/{key}" if self.prefix else key, ttl_s)
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


class S3Lease:
    """A lease object in the bucket; see the module docstring for the protocol."""

    def __init__(self, store: S3Store, s3_key: str, ttl_s: float):
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


@functools.lru_cache(maxsize=16)
def _bucket_store(bucket: str, endpoint: str, key_id: str) -> S3Store:
    return S3Store(f"s3://{bucket}")


def bucket_store(bucket: str) -> S3Store:
    """The shared client of `bucket` for the current endpoint and credentials."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""
    return _bucket_store(bucket, endpoint, os.environ.get("AWS_ACCESS_KEY_ID", ""))


def _glob_regex(pattern: str) -> re.Pattern:
    """pathlib glob semantics over '/'-separated keys: '**/' is zero or more folders, '*' part of one name."""
    parts = pattern.split("/")
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        out.append("".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in part)
                   + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z")


class ObjectPath:
    """An object (or key prefix) in a bucket: `s3://<bucket>/<key>`."""

    __slots__ = ("bucket", "key")

    def __init__(self, bucket: str, key: str = ""):
        self.bucket = bucket
        self.key = key.strip("/")

    @classmethod
    def from_uri(cls, uri: str) -> "ObjectPath":
        return cls(*parse_s3_uri(uri))

    @property
    def store(self):
        return bucket_store(self.bucket)

    @property
    def fs(self):
        return self.store.fs

    @property
    def _fs_path(self) -> str:
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    # pure path operations
    def joinpath(self, *parts) -> "ObjectPath":
        names = [p for part in parts for p in str(part).split("/") if p not in ("", ".")]
        for name in names:
            safe_component(name, "path component")  # no '..', no hidden names: stays under the root
        return ObjectPath(self.bucket, "/".join(([self.key] if self.key else []) + names))

    def __truediv__(self, part) -> "ObjectPath":
        return self.joinpath(part)

    @property
    def parent(self) -> "ObjectPath":
        return ObjectPath(self.bucket, posixpath.dirname(self.key))

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    def with_name(self, name: str) -> "ObjectPath":
        return self.parent / name

    def with_suffix(self, suffix: str) -> "ObjectPath":
        return self.parent / PurePosixPath(self.name).with_suffix(suffix).name

    def relative_to(self, other: "ObjectPath") -> PurePosixPath:
        if not isinstance(other, ObjectPath) or other.bucket != self.bucket:
            raise ValueError(f"{self} is not under {other}")
        if not other.key:
            return PurePosixPath(self.key)
        if not self.key.startswith(other.key + "/"):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.key[len(other.key) + 1:])

    def as_posix(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return f"s3://{self._fs_path}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, ObjectPath) and (self.bucket, self.key) == (other.bucket, other.key)

    def __hash__(self) -> int:
        return hash((self.bucket, self.key))

    def __lt__(self, other: "ObjectPath") -> bool:
        return (self.bucket, self.key) < (other.bucket, other.key)

    # object operations
    def is_file(self) -> bool:
        return bool(self.key) and self.fs.isfile(self._fs_path)

    def is_dir(self) -> bool:
        return self.fs.isdir(self._fs_path)

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def read_bytes(self) -> bytes:
        try:
            return self.fs.cat_file(self._fs_path)
        except FileNotFoundError:
            raise FileNotFoundError(str(self)) from None

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """One PUT of the finished bytes: readers see the old object or the new one. Refused
        (LeaseLost) when a lease held by this step was lost: another run may own the partition."""
        check_held_leases()
        self.fs.pipe_file(self._fs_path, bytes(data))
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def open(self, mode: str = "rb"):
        """Read-only file object (e.g. for a Parquet footer); writes go through write_bytes."""
        if mode != "rb":
            raise ValueError("ObjectPath.open is read-only ('rb'): publish with write_bytes / store functions")
        return self.fs.open(self._fs_path, "rb")

    def unlink(self, missing_ok: bool = False) -> None:
        if not self.is_file():
            if missing_ok:
                return
            raise FileNotFoundError(str(self))
        check_held_leases()
        self.fs.rm_file(self._fs_path)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: S3 has no folders, an object's key creates its prefix."""

    def keys(self) -> list[str]:
        """Every object key under this prefix, relative to it, sorted (hidden ones, e.g. leases, left out)."""
        base = self._fs_path + "/"
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        rel = (p[len(base):] for p in found if p.startswith(base))
        return sorted(r for r in rel if r and not any(part.startswith(".") for part in r.split("/")))

    def glob(self, pattern: str) -> list["ObjectPath"]:
        regex = _glob_regex(pattern)
        return [self.joinpath(k) for k in self.keys() if regex.match(k)]

    def rglob(self, pattern: str) -> list["ObjectPath"]:
        return self.glob("**/" + pattern)


class S3Backend:
    scheme = "s3"
    is_local = False
    # DuckDB cannot write its database file to S3: views are built per connection instead.
    has_catalog_file = False

    def handles(self, path) -> bool:
        return isinstance(path, ObjectPath)

    def root(self, uri: str) -> ObjectPath:
        return ObjectPath.from_uri(uri)

    def read_bytes(self, path: ObjectPath) -> bytes:
        return path.read_bytes()

    def open_read(self, path: ObjectPath):
        return path.open("rb")

    def write_bytes(self, path: ObjectPath, data: bytes) -> None:
        path.write_bytes(data)

    def exists(self, path: ObjectPath) -> bool:
        return path.is_file()

    def list(self, folder: ObjectPath, suffix: str = "") -> list[ObjectPath]:
        return [folder.joinpath(k) for k in folder.keys() if k.endswith(suffix)]

    def delete(self, path: ObjectPath, missing_ok: bool = True) -> None:
        path.unlink(missing_ok=missing_ok)

    def confine(self, path: ObjectPath, root: ObjectPath) -> ObjectPath:
        # joinpath already refused '..' and hidden components: nothing can resolve elsewhere.
        return path

    def lock(self, root: ObjectPath, name: str, *, timeout_s: float, ttl_s: float, poll_s: float = 0.5):
        return S3Store(str(root)).lock(name, timeout_s=timeout_s, ttl_s=ttl_s, poll_s=poll_s)

    def remove_temp_files(self, folder: ObjectPath) -> int:
        return 0  # an object is published whole by one PUT: no temp object exists

    def attach_duckdb(self, con, root: ObjectPath) -> None:
        con.register_filesystem(root.fs)
