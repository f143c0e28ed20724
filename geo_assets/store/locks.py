"""Per-partition locks: two runs of the same asset partition take turns instead of
both doing a read-modify-write of the same files.

One lock per (asset, partition), whatever the caller and the backend: the backend's
lock named `<asset>/<partition>` under the storage root (local: an fcntl lock on
`<root>/locks/<asset>/<partition>.lock`, released by the kernel when the holder dies;
s3://: the lease `<prefix>/.leases/locks/<asset>/<partition>.lease`, which works across
machines, and which a dead holder keeps until it expires, GEO_ASSETS_LEASE_TTL_S,
default 120 s). Also the clean-ups a run does under its partition's lock.
"""

from __future__ import annotations

import os

from geo_assets.store.backends import as_path, backend_for
from geo_assets.store.backends.s3 import DEFAULT_LEASE_TTL_S, valid_ttl
from geo_assets.store.names import safe_component


def partition_lock(root, asset: str, partition: str, timeout_s: float = 3600.0):
    """Context manager, exclusive per (asset, partition) under `root`; LockTimeout (a
    TimeoutError) after `timeout_s`. Both names must be one plain path component
    (UnsafePathError otherwise), checked before any folder, file or lease is made.
    On s3:// it yields the lease, which every publish inside checks."""
    asset = safe_component(asset, "lock asset name")
    partition = safe_component(partition, "lock partition name")
    root = as_path(root)
    return backend_for(root).lock(root, f"{asset}/{partition}", timeout_s=timeout_s, ttl_s=lease_ttl_s())


def lease_ttl_s() -> float:
    """GEO_ASSETS_LEASE_TTL_S (default 120 s); ValueError unless finite and positive."""
    value = os.environ.get("GEO_ASSETS_LEASE_TTL_S")
    return valid_ttl(value, "GEO_ASSETS_LEASE_TTL_S") if value else DEFAULT_LEASE_TTL_S


def remove_orphan_temp_files(folder) -> int:
    """Temp files left by a killed writer in `folder`; call under the lock."""
    folder = as_path(folder)
    return backend_for(folder).remove_temp_files(folder)


def remove_unlisted_images(folder, listed_ids: set[str]) -> list[str]:
    """Remove `<id>.jpg` files in `folder` whose id the table does not list (written by a pull
    that failed or was killed before its table row was stored); call under the tile's lock.
    Their ids are not known, so the next pull fetches and lists them again. Returns the names removed."""
    folder = as_path(folder)
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
