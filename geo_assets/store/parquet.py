"""Atomic Parquet writes: a crash leaves the old file or the new one, never half of one.

Every write goes to a temp file in the target's folder (`.<name>.<random>.tmp`),
is fsynced, given the mode the umask allows (mkstemp alone makes 0600), and
renamed over the target; the folder is fsynced so the rename survives a power
cut. Temp files of the same target left by a killed writer (older than
ORPHAN_AGE_S) are removed by the next write of that target, in every folder.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


ORPHAN_AGE_S = 600.0


def _remote(path) -> bool:
    # An s3:// path (store/paths.py ObjectPath): one PUT publishes atomically, no temp file.
    from geo_assets.store.paths import ObjectPath

    return isinstance(path, ObjectPath)


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


def _file_mode() -> int:
    return 0o666 & ~_current_umask()


def _new_temp(path: Path) -> tuple[int, str]:
    _ensure_dir(path.parent)
    remove_orphans_of(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
    except OSError:
        pass
    return fd, tmp


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
    if _remote(path):
        return 0
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


def _publish(path: Path, write) -> None:
    """`write(temp_path)` into a temp file beside `path`, fsync it, then rename it over
    `path`: readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = _new_temp(path)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    if _remote(path):
        path.write_bytes(data)
        return
    _publish(path, lambda tmp: Path(tmp).write_bytes(data))


def write_table(path: Path, table: pa.Table) -> None:
    """Write `table` to `path` via a temp file in the same folder and an atomic rename
    (on S3: the finished file in one PUT)."""
    if _remote(path):
        from geo_assets.store.objects import table_to_bytes

        path.write_bytes(table_to_bytes(table))
        return
    _publish(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def read_table(path: Path, schema: pa.Schema | None = None) -> pa.Table:
    """Read a Parquet file; a missing file reads as an empty table of `schema`."""
    if _remote(path):
        try:
            table = pq.read_table(pa.BufferReader(path.read_bytes()))
        except FileNotFoundError:
            if schema is None:
                raise
            return schema.empty_table()
    else:
        path = Path(path)
        if not path.exists():
            if schema is None:
                raise FileNotFoundError(path)
            return schema.empty_table()
        table = pq.read_table(path)
    if schema is not None:
        missing = [f.name for f in schema if f.name not in table.column_names]
        if missing:
            raise ValueError(f"{path} lacks columns {missing}; delete it to rebuild")
        table = table.select(schema.names).cast(schema)
    return table


def _ensure_dir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create folder {folder}: {exc.strerror}") from exc
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"folder {folder} is not writable")


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def rows_by(table: pa.Table, key: str) -> dict[str, dict]:
    return {row[key]: row for row in table.to_pylist()}
