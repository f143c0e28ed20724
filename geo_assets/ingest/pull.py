"""pull_tile(): the new images of one tile -> stored files, rows and rejects.

Incremental by design: search the tile from the cursor (the newest captured_at
already stored; the API's start is inclusive, so records equal to the cursor come
back and are skipped by id), walk the unknown records in (captured_at, id) order,
validate, download, validate the bytes, dedupe by id and sha256, and write each
accepted image atomically. It stops once `max_new` images are accepted; rejects
do not count toward `max_new`. Every candidate walked is either a row or a reject,
so with the caller storing both (and passing their ids back as `known_ids`) the
cursor never skips an image and a rejected id is never retried. Records outside
the tile (validate_record's `outside_tile`) are skipped, not returned: they belong
to another tile, and their captured_at must not move this tile's cursor.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from geo_assets.geo.tiles import Tile
from geo_assets.ingest.validate import (
    URL_FIELDS,
    ImageRejected,
    RejectReason,
    parse_captured_at,
    validate_image_bytes,
    validate_record,
)
from geo_assets.mapillary.errors import MapillaryDownloadError, MapillaryError, MapillaryUnavailableError
from geo_assets.store.layout import StorageLayout
from geo_assets.store.parquet import atomic_write_bytes

_log = logging.getLogger(__name__)

PULL_FIELDS: tuple[str, ...] = ("id", "computed_geometry", "geometry", "captured_at", "sequence", *URL_FIELDS)

RAW_IMAGES_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("lat", pa.float64()),
    ("lon", pa.float64()),
    ("captured_at", pa.int64()),
    ("source", pa.string()),
    ("sha256", pa.string()),
    ("path", pa.string()),  # relative to StorageLayout.root, POSIX separators
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("sequence_id", pa.string()),  # '' when the source gave none; the split groups by it
])

RAW_REJECTS_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("captured_at", pa.int64()),  # null when the record had none
])

# This many image downloads in a row failing with MapillaryUnavailableError
# (retries exhausted) is an outage, not bad images: raise instead of rejecting.
OUTAGE_AFTER_CONSECUTIVE_FAILURES = 3


@dataclass
class PullResult:
    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def _reject(image_id: str, reason: str, detail: str, captured_at: int | None) -> dict:
    return {"image_id": str(image_id), "reason": reason, "detail": str(detail)[:500], "captured_at": captured_at}


def _fetch(client, cand: dict) -> tuple[bytes | None, object]:
    """Download and validate one candidate: (data, ValidatedImage) or (None, (reason, detail, exc))."""
    url = cand["url"]
    for attempt in (0, 1):
        try:
            data = client.download_image(url)
            break
        except MapillaryDownloadError as exc:
            if exc.status == 403 and attempt == 0:  # expired signed URL: ask for the image again
                try:
                    fresh = client.get_images([cand["image_id"]], fields=("id", *URL_FIELDS))
                except MapillaryError as exc2:
                    return None, ("download_failed", f"URL expired and refresh failed: {exc2}", exc2)
                url = next((fresh[0][k] for k in URL_FIELDS if fresh and fresh[0].get(k)), None)
                if url is None:
                    return None, ("download_failed", "URL expired and the refreshed record has no URL", exc)
                continue
            return None, ("download_failed", str(exc), exc)
        except MapillaryError as exc:
            return None, ("download_failed", str(exc), exc)
    try:
        return data, validate_image_bytes(data)
    except ImageRejected as exc:
        return None, (exc.reason, exc.detail, exc)


def pull_tile(
    client,
    tile: Tile,
    layout: StorageLayout,
    *,
    known_ids: set[str],
    known_sha256: set[str],
    start_captured_at: int | None,
    max_new: int,
    source: str,
    log=None,
    download_workers: int = 4,
) -> PullResult:
    """Pull up to `max_new` new images of `tile` (see the module docstring).

    Raises the client's MapillaryError when the search itself fails (API outage,
    bad token) or downloads fail repeatedly with retries exhausted.
    """
    logger = log or _log
    started = time.perf_counter()
    before = dict(getattr(client, "stats", {}) or {})
    result = PullResult()
    stats = Counter()
    if max_new <= 0:
        result.stats = {"searched": 0, "candidates": 0, "accepted": 0, "rejected": 0, "requests": 0, "retries": 0,
                        "seconds": 0.0, "images_per_second": 0.0, "bytes": 0}
        return result

    records = client.search_images(tile.bbox, fields=PULL_FIELDS, start_captured_at=start_captured_at)
    stats["searched"] = len(records)

    seen_ids: set[str] = set()
    seen_sha: set[str] = set(known_sha256)
    candidates: list[dict] = []  # metadata-valid, in (captured_at, id) order
    ordered: list[tuple[str, object]] = []  # ("reject", dict) or ("cand", index)
    for rec in records:
        rid = rec.get("id") if isinstance(rec, dict) else None
        if rid is None or str(rid).strip() == "":
            stats["missing_id"] += 1  # nothing to store it under, or to skip it by next time
            continue
        rid = str(rid).strip()
        if rid in known_ids:
            stats["known_skipped"] += 1
            continue
        checked = validate_record(rec, tile.bbox)
        if isinstance(checked, RejectReason) and checked.reason == "outside_tile":
            # Another tile's image (edge points, or ids repeated from another answer):
            # not stored here, or its captured_at would move this tile's cursor.
            stats["outside_tile"] += 1
            continue
        if isinstance(checked, RejectReason):
            ordered.append(("reject", _reject(rid, checked.reason, checked.detail,
                                              _captured(rec))))
            continue
        if checked["image_id"] in seen_ids:
            ordered.append(("reject", _reject(checked["image_id"], "duplicate_id", "id listed twice in the search answer",
                                              checked["captured_at"])))
            continue
        seen_ids.add(checked["image_id"])
        ordered.append(("cand", len(candidates)))
        candidates.append(checked)

    # Walk in order; download in parallel batches of what is still needed.
    fetched: dict[int, tuple] = {}
    consecutive_unavailable = 0
    pos = 0
    with ThreadPoolExecutor(max_workers=max(1, download_workers)) as pool:
        while pos < len(ordered) and len(result.rows) < max_new:
            kind, item = ordered[pos]
            if kind == "reject":
                result.rejects.append(item)
                pos += 1
                continue
            if item not in fetched:
                need = max_new - len(result.rows)
                batch = [i for k, i in ordered[pos:] if k == "cand"][: max(need, 1)]
                for i, res in zip(batch, pool.map(lambda i: _fetch(client, candidates[i]), batch)):
                    fetched[i] = res
            cand = candidates[item]
            data, outcome = fetched.pop(item)
            pos += 1
            if data is None:
                reason, detail, exc = outcome
                if isinstance(exc, MapillaryUnavailableError):
                    consecutive_unavailable += 1
                    if consecutive_unavailable >= OUTAGE_AFTER_CONSECUTIVE_FAILURES:
                        raise exc
                else:
                    consecutive_unavailable = 0
                result.rejects.append(_reject(cand["image_id"], reason, detail, cand["captured_at"]))
                continue
            consecutive_unavailable = 0
            valid = outcome
            if valid.sha256 in seen_sha:
                result.rejects.append(_reject(cand["image_id"], "duplicate_sha256",
                                              f"same bytes as an image already stored (sha256 {valid.sha256[:12]}...)",
                                              cand["captured_at"]))
                continue
            seen_sha.add(valid.sha256)
            path = layout.raw_image_path(tile.key, cand["image_id"])
            atomic_write_bytes(path, data)
            stats["bytes"] += len(data)
            result.rows.append({
                "image_id": cand["image_id"],
                "lat": float(cand["lat"]),
                "lon": float(cand["lon"]),
                "captured_at": int(cand["captured_at"]),
                "source": source,
                "sha256": valid.sha256,
                "path": path.relative_to(layout.root).as_posix(),
                "width": int(valid.width),
                "height": int(valid.height),
                "sequence_id": cand.get("sequence_id", ""),
            })

    seconds = time.perf_counter() - started
    after = dict(getattr(client, "stats", {}) or {})
    reasons = Counter(r["reason"] for r in result.rejects)
    result.stats = {
        "searched": stats["searched"],
        "known_skipped": stats["known_skipped"],
        "outside_tile": stats["outside_tile"],
        "candidates": pos,
        "accepted": len(result.rows),
        "rejected": len(result.rejects),
        "rejected_by_reason": dict(reasons),
        "requests": int(after.get("requests", 0) - before.get("requests", 0)),
        "retries": int(after.get("retries", 0) - before.get("retries", 0)),
        "bytes": stats["bytes"],
        "seconds": round(seconds, 3),
        "images_per_second": round(len(result.rows) / seconds, 2) if seconds > 0 and result.rows else 0.0,
    }
    logger.info(  # one preformatted string: Dagster's context.log works like a logger too
        f"tile {tile.key}: {stats['searched']} searched, {stats['known_skipped']} known, {len(result.rows)} new images, "
        f"{len(result.rejects)} rejected{' ' + str(dict(reasons)) if reasons else ''} in {seconds:.2f}s"
    )
    return result


def _captured(rec) -> int | None:
    return parse_captured_at(rec.get("captured_at")) if isinstance(rec, dict) else None
