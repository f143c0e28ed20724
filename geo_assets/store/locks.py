"""Per-partition locks: two runs of the same asset partition take turns instead of
both doing a read-modify-write of the same files.

Local storage: fcntl on a file under <root>/locks (the kernel releases it when the
holder dies). s3:// storage: the S3 lease of store/objects.py under
<prefix>/.leases/locks/, which works across machines; a holder that dies leaves it
until it expires (GEO_ASSETS_LEASE_TTL_S, default 120 s), then the next run takes it over.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def partition_lock(root: Path, asset: str, partition: str, timeout_s: float = 3600.0):
    """Exclusive per (asset, partition). Both names must be one plain path component
    (UnsafePathError otherwise), checked before any folder, file or lease is made."""
    from geo_assets.store.layout import safe_component
    from geo_assets.store.paths import ObjectPath

    asset = safe_component(asset, "lock asset name")
    partition = safe_component(partition, "lock partition name")
    if isinstance(root, ObjectPath):
        with _lease_store(str(root)).lock(f"locks/{asset}/{partition}", timeout_s=timeout_s, ttl_s=lease_ttl_s()) as lease:
            yield lease  # every S3 publish inside checks it (store/objects.py)
        return
    path = Path(root) / "locks" / asset / f"{partition}.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"cannot create folder {path.parent}: {exc.strerror or exc}") from exc
    with open(path, "w") as fh:
        flock_until(fh, time.monotonic() + timeout_s,
                    lambda: TimeoutError(f"{asset}[{partition}] stayed locked by another run for {timeout_s:.0f}s"), 0.2)
        try:
            yield None
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lease_ttl_s() -> float:
    """GEO_ASSETS_LEASE_TTL_S (default 120 s); ValueError unless finite and positive."""
    from geo_assets.store.objects import DEFAULT_LEASE_TTL_S, valid_ttl

    value = os.environ.get("GEO_ASSETS_LEASE_TTL_S")
    return valid_ttl(value, "GEO_ASSETS_LEASE_TTL_S") if value else DEFAULT_LEASE_TTL_S


def _lease_store(uri: str):
    from geo_assets.store.objects import S3ObjectStore

    return S3ObjectStore(uri)


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
    """Temp files left by a killed writer (`.<name>.<random>.tmp`); call under the lock.
    None on S3: an object is published whole by one PUT, so no temp object exists."""
    from geo_assets.store.paths import ObjectPath

    if isinstance(folder, ObjectPath):
        return 0
    folder = Path(folder)
    if not folder.exists():
        return 0
    removed = 0
    for p in folder.glob(".*.tmp"):
        p.unlink(missing_ok=True)
        removed += 1
    return removed


def remove_unlisted_images(folder: Path, listed_ids: set[str]) -> list[str]:
    """Remove `<id>.jpg` files in `folder` whose id the table does not list (written by a pull
    that failed or was killed before its table row was stored); call under the tile's lock.
    Their ids are not known, so the next pull fetches and lists them again. Returns the names removed."""
    removed = []
    try:
        files = list(folder.glob("*.jpg")) if folder.exists() else []
    except OSError:
        return removed
    for p in files:
        if p.stem not in listed_ids:
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return sorted(removed)
