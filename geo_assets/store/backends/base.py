"""What a storage backend offers: the only operations the layer above (layout, locks,
tables, images, catalog) may ask of a place that holds bytes.

A backend works on its own path type (`pathlib.Path` for a local folder, `ObjectPath`
for `s3://`), which also offers the read-side subset of `pathlib.Path` the asset code
uses (`/`, `parent`, `name`, `exists`, `glob`, `read_bytes`, ...). Everything that
differs between places (how a write is made atomic, how a lock excludes other
machines, whether DuckDB needs a filesystem registered) is behind this interface, so
code above it never asks which backend it has.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, BinaryIO, Protocol


class LockTimeout(TimeoutError):
    """Another holder kept the lock for longer than the caller would wait."""


class Backend(Protocol):
    scheme: str  # "" for a local folder, else the URI scheme ("s3")
    is_local: bool  # a folder on this machine: open(), cv2.imread and subprocesses can use its paths
    has_catalog_file: bool  # DuckDB can keep its database file here

    def handles(self, path: Any) -> bool:
        """Whether `path` is this backend's path type."""

    def root(self, uri: str) -> Any:
        """The path object for a root given as text (a folder, or a URI of this scheme)."""

    def read_bytes(self, path) -> bytes:
        """The stored bytes; FileNotFoundError (naming the path) when absent."""

    def open_read(self, path) -> BinaryIO:
        """A read-only binary file object (e.g. for a Parquet footer); FileNotFoundError when absent."""

    def write_bytes(self, path, data: bytes) -> None:
        """Publish `data` at `path` atomically: readers see the old bytes or the new ones, never a part."""

    def exists(self, path) -> bool:
        """Whether a file (object) is stored at `path`."""

    def list(self, folder, suffix: str = "") -> list:
        """Every stored file under `folder` (recursive, sorted) whose name ends in `suffix`;
        hidden names (temp files, leases) left out."""

    def delete(self, path, missing_ok: bool = True) -> None: ...

    def confine(self, path, root):
        """`path` when it stays inside `root`; else UnsafePathError."""

    def lock(self, root, name: str, *, timeout_s: float, ttl_s: float,
             poll_s: float = 0.2) -> AbstractContextManager:
        """Exclusive, per `name` ('/'-separated safe components) under `root`, across every process
        (and machine, where the backend is shared) that uses the same root; LockTimeout after
        `timeout_s`. `ttl_s`: how long a dead holder keeps it, where the backend cannot tell."""

    def remove_temp_files(self, folder) -> int:
        """Remove what a killed writer left in `folder` (call under the lock); the number removed."""

    def attach_duckdb(self, con, root) -> None:
        """Make `root`'s files readable to DuckDB's read_parquet on `con`."""
