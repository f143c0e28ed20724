"""Per-partition locks: two runs of the same asset partition take turns instead of
both doing a read-modify-write of the same files."""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def partition_lock(root: Path, asset: str, partition: str, timeout_s: float = 3600.0):
    path = Path(root) / "locks" / asset / f"{partition}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create folder {path.parent}: {exc.strerror or exc}") from exc
    with open(path, "w") as fh:
        flock_until(fh, time.monotonic() + timeout_s,
                    lambda: TimeoutError(f"{asset}[{partition}] stayed locked by another run for {timeout_s:.0f}s"), 0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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


def remove_orphan_temp_files(folder: Path) -> int:
    """Temp files left by a killed writer (`.<name>.<random>.tmp`); call under the lock."""
    folder = Path(folder)
    if not folder.exists():
        return 0
    removed = 0
    for p in folder.glob(".*.tmp"):
        p.unlink(missing_ok=True)
        removed += 1
    return removed
