"""Storage backends, and the one place that picks one for a path or a URI.

A local folder (local.py) and `s3://bucket/prefix` (s3.py) implement base.Backend. A
third (say `gs://`) is one new module implementing it, listed in BACKENDS. Code above
this package calls `backend_for(path)` and never tests a path's type itself.
"""

from __future__ import annotations

from pathlib import Path

from geo_assets.store.backends.base import Backend, LockTimeout
from geo_assets.store.backends.local import LocalBackend
from geo_assets.store.backends.s3 import S3Backend

LOCAL = LocalBackend()
BACKENDS: tuple[Backend, ...] = (LOCAL, S3Backend())

__all__ = ["BACKENDS", "Backend", "LockTimeout", "as_path", "backend_for", "is_local", "storage_root"]


def backend_for(path) -> Backend:
    """The backend whose path type `path` is; TypeError for anything else (e.g. a str)."""
    for backend in BACKENDS:
        if backend.handles(path):
            return backend
    raise TypeError(f"not a storage path: {path!r} ({type(path).__name__}); use storage_root() or as_path()")


def _by_scheme(text: str) -> Backend:
    scheme, sep, _ = text.partition("://")
    if not sep or scheme == "file":
        return LOCAL
    for backend in BACKENDS:
        if backend.scheme == scheme:
            return backend
    known = ", ".join(f"{b.scheme}://" for b in BACKENDS if b.scheme)
    raise ValueError(f"unsupported storage URI {text!r}: use a local folder or {known}")


def storage_root(value):
    """A root from a setting: the backend's path for a URI, else an absolute local Path."""
    if any(b.handles(value) for b in BACKENDS if b is not LOCAL):
        return value
    return _by_scheme(str(value)).root(str(value))


def as_path(value):
    """`value` as a storage path without resolving a local one (a ready path stays as is)."""
    if any(b.handles(value) for b in BACKENDS):
        return value
    text = str(value)
    backend = _by_scheme(text)
    return Path(text.removeprefix("file://")) if backend is LOCAL else backend.root(text)


def is_local(path) -> bool:
    """Whether `path` is a folder or file on this machine (so open() and subprocesses can use it)."""
    return backend_for(as_path(path)).is_local
