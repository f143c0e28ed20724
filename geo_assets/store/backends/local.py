"""A folder on this machine.

Atomic publish: the bytes go to a temp file in the target's folder
(`.<name>.<random>.tmp`), are fsynced, given the mode the umask allows (mkstemp alone
makes 0600), and renamed over the target; the folder is then fsynced so the rename
survives a power cut. Temp files of the same target left by a killed writer (older
than ORPHAN_AGE_S) are removed by the next write of that target.

Locks: an fcntl lock on `<root>/locks/<name>.lock`. The kernel drops it when the
holder dies, so no TTL applies. flock locks belong to an open file, so two threads
of one process exclude each other as two processes do.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from geo_assets.store.backends.base import LockTimeout
from geo_assets.store.names import UnsafePathError, check_key

ORPHAN_AGE_S = 600.0


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def _current_umask() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it the old way (briefly set, then restored)
    os.umask(mask)
    return mask


def _ensure_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create folder {folder}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"folder {folder} is not writable")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_orphans_of(path: Path, min_age_s: float = ORPHAN_AGE_S) -> int:
    """Remove `.<name>.*.tmp` files of `path` older than `min_age_s` (a killed writer's)."""
    path = Path(path)
    removed = 0
    now = time.time()
    try:
        candidates = list(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return 0
    for p in candidates:
        try:
            if now - p.stat().st_mtime >= min_age_s:
                p.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def flock_until(fh, deadline: float, on_timeout, poll_s: float) -> None:
    """Take an exclusive flock on `fh`, polling until `deadline` (monotonic), then raise on_timeout()."""
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise on_timeout() from None
            time.sleep(poll_s)


@contextmanager
def file_lock(path: Path, deadline: float, on_timeout, poll_s: float):
    """Hold an exclusive flock on the file `path` (created with its folder) until the block ends."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create folder {path.parent}: {exc.strerror or exc}") from exc
    with open(path, "w") as fh:
        flock_until(fh, deadline, on_timeout, poll_s)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class LocalBackend:
    scheme = ""
    is_local = True
    has_catalog_file = True

    def handles(self, path) -> bool:
        return isinstance(path, Path)

    def root(self, uri: str) -> Path:
        return Path(uri.removeprefix("file://")).expanduser().resolve()

    def read_bytes(self, path: Path) -> bytes:
        return Path(path).read_bytes()

    def open_read(self, path: Path):
        return open(path, "rb")

    def write_bytes(self, path: Path, data: bytes) -> None:
        path = Path(path)
        _ensure_dir(path.parent)
        remove_orphans_of(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            try:
                os.fchmod(fd, 0o666 & ~_current_umask())
            except OSError:
                pass
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_dir(path.parent)

    def exists(self, path: Path) -> bool:
        return Path(path).is_file()

    def list(self, folder: Path, suffix: str = "") -> list[Path]:
        folder = Path(folder)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.rglob("*")
                      if p.name.endswith(suffix) and not _hidden(p.relative_to(folder).as_posix()) and p.is_file())

    def delete(self, path: Path, missing_ok: bool = True) -> None:
        Path(path).unlink(missing_ok=missing_ok)

    def confine(self, path: Path, root: Path) -> Path:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            raise UnsafePathError(f"path {path} resolves outside {root}")
        return path

    @contextmanager
    def lock(self, root: Path, name: str, *, timeout_s: float, ttl_s: float, poll_s: float = 0.2):
        # ttl_s does not apply: the kernel drops an fcntl lock when its holder dies.
        path = Path(root) / "locks" / (check_key(name, "lock name") + ".lock")
        with file_lock(path, time.monotonic() + timeout_s,
                       lambda: LockTimeout(f"{name} stayed locked by another run for {timeout_s:.0f}s"), poll_s):
            yield None

    def remove_temp_files(self, folder: Path) -> int:
        folder = Path(folder)
        if not folder.exists():
            return 0
        removed = 0
        for p in folder.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            removed += 1
        return removed

    def attach_duckdb(self, con, root: Path) -> None:
        """Nothing to do: DuckDB reads local files itself."""
