"""Paths that work for a local folder and for `s3://bucket/prefix`.

`storage_root(text)` gives a `pathlib.Path` for a local folder and an `ObjectPath`
for `s3://...`. `ObjectPath` offers the subset of `pathlib.Path` that the asset
code uses (`/`, `parent`, `name`, `exists`, `read_bytes`, `glob`, `relative_to`,
...), backed by the `S3ObjectStore` of store/objects.py, so asset code written
against `Path` runs unchanged over S3, and the store functions (parquet.py,
images.py, locks.py, catalog.py) dispatch on the type.

Why a small class and not universal-pathlib's UPath: every object operation here
goes through one `S3ObjectStore` per root (listing cache off, since other machines
write too; endpoint and credentials from the environment only), which also owns
the lease and the DuckDB registration; and an `ObjectPath` has no `__fspath__`, so
handing one to `open()`, `cv2.imread` or `Path()` fails loudly instead of writing a
local file named `s3:/...`.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
from pathlib import Path, PurePosixPath

from geo_assets.store.layout import safe_component


def is_remote(uri) -> bool:
    return isinstance(uri, ObjectPath) or str(uri).startswith("s3://")


def storage_root(value) -> "Path | ObjectPath":
    """A root folder from a setting: ObjectPath for s3://..., else an absolute local Path."""
    if isinstance(value, ObjectPath):
        return value
    text = str(value)
    if text.startswith("s3://"):
        return ObjectPath.from_uri(text)
    if "://" in text and not text.startswith("file://"):
        raise ValueError(f"unsupported storage URI {text!r}: use a local folder or s3://bucket/prefix")
    return Path(text.removeprefix("file://")).expanduser().resolve()


def as_path(value) -> "Path | ObjectPath":
    """`value` as a path object without resolving it (a ready ObjectPath or Path stays as is)."""
    if isinstance(value, (ObjectPath, Path)):
        return value
    text = str(value)
    return ObjectPath.from_uri(text) if text.startswith("s3://") else Path(text)


@functools.lru_cache(maxsize=16)
def _bucket_store(bucket: str, endpoint: str, key_id: str):
    # One s3fs client per bucket and environment: building one per path costs ~50 ms.
    from geo_assets.store.objects import S3ObjectStore

    return S3ObjectStore(f"s3://{bucket}")


def bucket_store(bucket: str):
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
        rest = uri.removeprefix("s3://").strip("/")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ValueError(f"storage URI {uri!r} names no bucket")
        return cls(bucket).joinpath(key) if key else cls(bucket)

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
        from geo_assets.store.objects import check_held_leases

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
        from geo_assets.store.objects import check_held_leases

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
