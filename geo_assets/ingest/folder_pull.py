"""pull_folder_tile(): the new photos of one tile from a local folder -> stored files, rows, rejects.

The folder source's twin of `pull.pull_tile`, with the same rows, reject reasons,
duplicate-position filter and stats. Per pull of one tile:

1. list the folder (`folder.scan`: safe walk, stat only) and read the sidecars;
2. for each photo whose (size, mtime_ns) is not in this tile's manifest, read its header
   (EXIF position, time, sequence); unchanged files are not opened;
3. give every photo without a sequence one cut from capture time and distance (over the
   whole folder, so every tile agrees);
4. the tile owns the photos whose position it contains; photos no tile can hold (no
   position, a garbled one, or outside the region) belong to the first tile of the region,
   so each becomes one reject row (`missing_coordinates`, `bad_coordinates`,
   `outside_region`) instead of being silently dropped;
5. walk the owned photos not known yet in (capture time, path) order: read the bytes, id =
   digest of the content (stable across pulls, renames and machines; a file whose content
   changes is a new image, and its earlier version stays stored), check, store.

A file already stored or rejected under its id is skipped by its manifest entry without
being read. Capture times are not a cursor here: a photo added later with an older time
is still new.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Sequence

from geo_assets.folder.metadata import PhotoMeta
from geo_assets.folder.scan import MANIFEST_STATE, UNREADABLE, Manifest, list_folder, read_content, read_header
from geo_assets.folder.sequences import TimedPoint, cut_sequences
from geo_assets.folder.sidecars import read_sidecars
from geo_assets.geo.tiles import Tile
from geo_assets.ingest.pull import DUPLICATE_DISTANCE_M, PullResult, _Positions, _reject
from geo_assets.ingest.validate import ImageRejected, RejectReason, record_coordinates, validate_image_bytes
from geo_assets.store.layout import StorageLayout
from geo_assets.store.parquet import atomic_write_bytes

_log = logging.getLogger(__name__)


def image_id_of(sha256_hex: str) -> str:
    """18 decimal digits from the content's SHA-256: ids are digits everywhere (they name files)."""
    return f"{int(sha256_hex[:16], 16) % 10**18:018d}"


def _position(meta: PhotoMeta) -> tuple[float, float] | RejectReason:
    if meta.lat is None or meta.lon is None:
        return RejectReason("missing_coordinates", "no GPS position in its EXIF, in mapillary_image_description.json "
                                                   "or in a CSV sidecar")
    if not (math.isfinite(meta.lat) and math.isfinite(meta.lon)):
        return RejectReason("bad_coordinates", f"position from {meta.position_from or 'EXIF'} is not a number")
    return record_coordinates({"geometry": {"coordinates": [meta.lon, meta.lat]}})


def owner_of(meta: PhotoMeta, tiles: Sequence[Tile]) -> tuple[str, RejectReason | None]:
    """(tile key that records this photo, why it cannot be stored or None)."""
    pos = _position(meta)
    if isinstance(pos, RejectReason):
        return tiles[0].key, pos
    lat, lon = pos
    for t in tiles:
        if t.bbox.contains(lat, lon):
            return t.key, None
    return tiles[0].key, RejectReason("outside_region", f"({lat:.6f}, {lon:.6f}) is in no tile of the configured region "
                                                        f"(GEO_ASSETS_REGION)")


def pull_folder_tile(
    folder: str | os.PathLike,
    tile: Tile,
    layout: StorageLayout,
    *,
    tiles: Sequence[Tile],
    known_ids: set[str],
    known_sha256: set[str],
    max_new: int,
    source: str = "folder",
    log=None,
    known_positions: dict[str, list[tuple[float, float]]] | None = None,
    duplicate_distance_m: float = DUPLICATE_DISTANCE_M,
) -> PullResult:
    """Pull up to `max_new` new photos of `tile` from `folder` (see the module docstring).
    Raises folder.scan.FolderMissingError when the folder is not there."""
    logger = log or _log
    started = time.perf_counter()
    if not tiles or tile.key not in {t.key for t in tiles}:
        raise ValueError(f"tile {tile.key} is not one of the region's {len(tiles)} tiles")
    stats: Counter = Counter()
    result = PullResult()
    exclude = (layout.root,) if isinstance(layout.root, os.PathLike) else ()
    listing = list_folder(folder, exclude=exclude)
    sidecar_fields, warnings = read_sidecars(listing.sidecars, listing.root)
    for w in warnings:
        logger.warning(f"image folder: {w}")

    manifest_path = layout.state_path(MANIFEST_STATE, tile.key)
    old = Manifest.load(manifest_path, listing.root)
    manifest = Manifest(listing.root)
    metas: dict[str, PhotoMeta] = {}
    for photo in listing.photos:
        entry = old.lookup(photo)
        if entry is None:
            stats["header_reads"] += 1
            entry = {"size": photo.size, "mtime_ns": photo.mtime_ns, "meta": read_header(photo).to_json()}
        meta = PhotoMeta.from_json(entry["meta"])
        if not meta.error.startswith(UNREADABLE):  # a file we may not open now is asked again next pull
            manifest.entries[photo.rel] = entry
        if photo.rel in sidecar_fields:
            meta = meta.overlaid(sidecar_fields[photo.rel])
        metas[photo.rel] = meta

    # Sequences for photos that name none, over the whole folder (every tile cuts the same).
    timed = []
    for rel, meta in metas.items():
        if not meta.sequence_id and meta.captured_at is not None and not isinstance(_position(meta), RejectReason):
            timed.append(TimedPoint(rel, os.path.dirname(rel), meta.captured_at, meta.lat, meta.lon))
    for rel, seq in cut_sequences(timed).items():
        metas[rel] = PhotoMeta(**{**metas[rel].__dict__, "sequence_id": seq})

    owned = []
    for photo in listing.photos:
        owner, why = owner_of(metas[photo.rel], tiles)
        if owner == tile.key:
            owned.append((photo, why))
        else:
            stats["other_tiles"] += 1
    owned.sort(key=lambda pw: (metas[pw[0].rel].captured_at or 0, pw[0].rel))

    positions = _Positions(duplicate_distance_m, known_positions)
    seen_ids: set[str] = set()
    seen_sha: set[str] = set(known_sha256)
    walked = 0
    for photo, why in owned:
        entry = manifest.entries.get(photo.rel, {})
        if entry.get("image_id") in known_ids:
            stats["known_skipped"] += 1
            continue
        if len(result.rows) >= max_new:
            break
        walked += 1
        meta = metas[photo.rel]
        name = ascii(photo.rel)
        try:
            if meta.error.startswith(UNREADABLE):
                raise OSError(meta.error)
            data = read_content(photo)
        except (OSError, ValueError) as exc:
            stats["unreadable"] += 1  # not recorded: tried again next pull
            logger.warning(f"image folder: {name} not read: {getattr(exc, 'strerror', None) or exc}")
            continue
        stats["content_reads"] += 1
        sha = hashlib.sha256(data).hexdigest()
        image_id = image_id_of(sha)
        entry.update(sha256=sha, image_id=image_id)
        if image_id in known_ids:  # a renamed or copied file of a known image
            stats["known_skipped"] += 1
            continue
        if image_id in seen_ids:
            stats["duplicate_files"] += 1  # the same bytes under two names in this pull: one image
            continue
        seen_ids.add(image_id)

        def reject(reason: str, detail: str) -> None:
            result.rejects.append(_reject(image_id, reason, f"{name}: {detail}", meta.captured_at))

        if meta.error or meta.fmt != "JPEG":
            # The header did not open as a JPEG: the decoder's verdict names the reason.
            try:
                validate_image_bytes(data)
            except ImageRejected as exc:
                reject(exc.reason, exc.detail)
                continue
        if why is not None:
            reject(why.reason, why.detail)
            continue
        if meta.captured_at is None:
            reject("missing_captured_at", "no capture time in its EXIF (DateTimeOriginal, GPS time, MAPCaptureTime) "
                                          "or in a sidecar")
            continue
        cand = {"image_id": image_id, "lat": float(meta.lat), "lon": float(meta.lon), "sequence_id": meta.sequence_id}
        near = positions.near(cand)
        if near is not None:
            reject("duplicate_position", f"{near:.2f} m from an image already kept in sequence {meta.sequence_id} "
                                         f"(threshold {positions.threshold_m:g} m)")
            continue
        try:
            valid = validate_image_bytes(data)
        except ImageRejected as exc:
            reject(exc.reason, exc.detail)
            continue
        if valid.sha256 in seen_sha:
            reject("duplicate_sha256", f"same bytes as an image already stored (sha256 {valid.sha256[:12]}...)")
            continue
        path = layout.raw_image_path(tile.key, image_id)
        atomic_write_bytes(path, data)
        seen_sha.add(valid.sha256)
        positions.add(cand)
        stats["bytes"] += len(data)
        result.rows.append({
            "image_id": image_id, "lat": cand["lat"], "lon": cand["lon"], "captured_at": int(meta.captured_at),
            "source": source, "sha256": valid.sha256, "path": path.relative_to(layout.root).as_posix(),
            "width": int(valid.width), "height": int(valid.height), "sequence_id": meta.sequence_id,
        })

    if manifest.entries != old.entries:
        atomic_write_bytes(manifest_path, manifest.to_bytes())
    seconds = time.perf_counter() - started
    reasons = Counter(r["reason"] for r in result.rejects)
    result.stats = {
        "searched": len(listing.photos), "windows": 0, "known_skipped": stats["known_skipped"],
        "outside_tile": stats["other_tiles"], "beyond_truncation": 0, "candidates": walked,
        "accepted": len(result.rows), "rejected": len(result.rejects), "rejected_by_reason": dict(reasons),
        "requests": 0, "retries": 0, "bytes": stats["bytes"], "seconds": round(seconds, 3),
        "images_per_second": round(len(result.rows) / seconds, 2) if seconds > 0 and result.rows else 0.0,
        # The folder's own counts: files opened (header only, then whole) and files never opened.
        "files": len(listing.photos), "header_reads": stats["header_reads"], "content_reads": stats["content_reads"],
        "unreadable": stats["unreadable"], "duplicate_files": stats["duplicate_files"],
        "sidecars": len(listing.sidecars), "sidecar_records": len(sidecar_fields), "skipped": dict(listing.skipped),
    }
    logger.info(
        f"tile {tile.key}: folder of {len(listing.photos)} photos, {stats['other_tiles']} in other tiles, "
        f"{stats['known_skipped']} known, {stats['header_reads']} headers and {stats['content_reads']} files read, "
        f"{len(result.rows)} new images, {len(result.rejects)} rejected{' ' + str(dict(reasons)) if reasons else ''}"
        f"{', skipped ' + str(dict(listing.skipped)) if listing.skipped else ''} in {seconds:.2f}s"
    )
    return result
