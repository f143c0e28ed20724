"""pull_tile(): the new images of one tile -> stored files, rows and rejects.

Incremental by design: search the tile from the cursor (the newest captured_at
already stored; the API's start is inclusive, so records equal to the cursor come
back and are skipped by id), walk the unknown records in (captured_at, id) order,
validate, download, validate the bytes, dedupe by id and sha256, and write each
accepted image atomically. It stops once `max_new` images are accepted; rejects
do not count toward `max_new`. The search is bounded: the client lists the tile
in captured_at windows (`MapillaryClient.search_windows`) and the next window is
asked for only when the walk (or a download batch) runs out of candidates, so a
pull of 90 images from a tile with 100,000s lists a window or two, not the tile.
Every window is complete up to its end, so the walk never passes an image the
search did not list. Every candidate walked is either a row or a reject,
so with the caller storing both (and passing their ids back as `known_ids`) the
cursor never skips an image and a rejected id is never retried. Records outside
the tile (validate_record's `outside_tile`) are skipped, not returned: they belong
to another tile, and their captured_at must not move this tile's cursor.

Outages: only transport failures (connection errors, timeouts, 429/5xx after
retries) count. A bad URL, a 4xx or a non-JPEG answer is a reject of that one
record at once. A transport failure is a reject as soon as any other download
of the same pull succeeds (the image host is up; that record is bad). When
OUTAGE_AFTER_CONSECUTIVE_FAILURES transport failures come in a row with no
success after them, the pull raises MapillaryUnavailableError carrying
`.partial` (the rows and rejects walked before the first of those failures, which
the caller stores: the cursor never passes an unreachable image), and each of
those records gets a strike in `cache/download_strikes/tile=<tile>.json`. A
record that has struck out in MAX_DOWNLOAD_STRIKES pulls becomes a
`download_failed` reject, so a few hostile records cannot block a tile forever
(a real outage lasting that many pulls costs those few images).

Duplicate positions (seed 003): a record within `duplicate_distance_m` metres of
an image already kept in the same sequence (stored before, or accepted earlier
in this pull) is the reject `duplicate_position`, before any download. Records
without a sequence id are never compared.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


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
from geo_assets.mapillary.redact import redact
from geo_assets.store.layout import StorageLayout, UnsafePathError
from geo_assets.store.parquet import atomic_write_bytes

_log = logging.getLogger(__name__)

PULL_FIELDS: tuple[str, ...] = ("id", "computed_geometry", "geometry", "captured_at", "sequence", *URL_FIELDS)

# This many image downloads in a row failing with MapillaryUnavailableError
# (retries exhausted) is an outage, not bad images: raise instead of rejecting.
OUTAGE_AFTER_CONSECUTIVE_FAILURES = 3
# A record whose download failed in this many outage-ending pulls is rejected.
MAX_DOWNLOAD_STRIKES = 3
# Seed 003's duplicate filter: same sequence and closer than this (metres). Dense
# sequences put neighbours 5-30 m apart, so 2 m only catches the same spot twice.
DUPLICATE_DISTANCE_M = 2.0
STRIKES_STATE = "download_strikes"


@dataclass
class PullResult:
    rows: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def _reject(image_id: str, reason: str, detail: str, captured_at: int | None) -> dict:
    # Details can quote API text and error messages: never a URL query (signatures).
    return {"image_id": str(image_id)[:64], "reason": reason, "detail": redact(detail)[:500], "captured_at": captured_at}


def _metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Equirectangular distance in metres (exact enough below a kilometre)."""
    k = math.pi / 180
    x = (lon2 - lon1) * k * math.cos((lat1 + lat2) / 2 * k)
    y = (lat2 - lat1) * k
    return 6_371_008.8 * math.hypot(x, y)


class _Positions:
    """Kept (lat, lon) per sequence, for the duplicate-position filter."""

    def __init__(self, threshold_m: float, known: dict[str, list[tuple[float, float]]] | None) -> None:
        self.threshold_m = float(threshold_m)
        self.by_seq: dict[str, list[tuple[float, float]]] = {k: list(v) for k, v in (known or {}).items() if k}

    def near(self, cand: dict) -> float | None:
        """Distance (m) to the nearest kept image of the same sequence within the threshold."""
        seq = cand.get("sequence_id") or ""
        if self.threshold_m <= 0 or not seq:
            return None
        best = None
        for lat, lon in self.by_seq.get(seq, ()):
            d = _metres(cand["lat"], cand["lon"], lat, lon)
            if d < self.threshold_m and (best is None or d < best):
                best = d
        return best

    def add(self, cand: dict) -> None:
        seq = cand.get("sequence_id") or ""
        if seq:
            self.by_seq.setdefault(seq, []).append((cand["lat"], cand["lon"]))


def _load_strikes(layout: StorageLayout, tile_key: str) -> dict[str, int]:
    path = layout.state_path(STRIKES_STATE, tile_key)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}


def _save_strikes(layout: StorageLayout, tile_key: str, strikes: dict[str, int]) -> None:
    path = layout.state_path(STRIKES_STATE, tile_key)
    if not strikes:
        path.unlink(missing_ok=True)
        return
    atomic_write_bytes(path, json.dumps(strikes, sort_keys=True).encode())


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
                except (MapillaryError, ValueError) as exc2:
                    return None, ("download_failed", f"URL expired and refresh failed: {redact(exc2)}", exc2)
                url = next((fresh[0][k] for k in URL_FIELDS if fresh and isinstance(fresh[0].get(k), str)
                            and fresh[0][k].strip()), None)
                if url is None:
                    return None, ("download_failed", "URL expired and the refreshed record has no URL", exc)
                continue
            return None, ("bad_url" if exc.bad_url else "download_failed", redact(exc), exc)
        except MapillaryError as exc:
            return None, ("download_failed", redact(exc), exc)
        except Exception as exc:  # noqa: BLE001 - anything else about one record must not fail the tile
            return None, ("download_failed", f"{type(exc).__name__}: {redact(exc)}"[:500], exc)
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
    known_positions: dict[str, list[tuple[float, float]]] | None = None,
    duplicate_distance_m: float = DUPLICATE_DISTANCE_M,
) -> PullResult:
    """Pull up to `max_new` new images of `tile` (see the module docstring).

    `known_positions`: sequence id -> (lat, lon) of images already stored, for the
    duplicate-position filter (0 m turns it off). Raises the client's
    MapillaryError when the search itself fails (API outage, bad token): with
    `.partial` (a PullResult to store) when a later search window fails after the
    walk began; and MapillaryUnavailableError with `.partial` when downloads fail
    as an outage.
    """
    logger = log or _log
    started = time.perf_counter()
    before = dict(getattr(client, "stats", {}) or {})
    result = PullResult()
    stats = Counter()
    if max_new <= 0:
        result.stats = {"searched": 0, "windows": 0, "candidates": 0, "accepted": 0, "rejected": 0, "requests": 0, "retries": 0,
                        "seconds": 0.0, "images_per_second": 0.0, "bytes": 0}
        return result

    # The tile's images from the cursor, oldest first, one captured_at window at a
    # time: asked for only when the walk needs more candidates. A box still full at
    # the deepest split ends the windows at its newest record (the horizon): nothing
    # newer is walked now, so the cursor stays before the gap and the next pull
    # searches from there.
    windows = client.search_windows(tile.bbox, fields=PULL_FIELDS, start_captured_at=start_captured_at)
    exhausted = False
    seen_ids: set[str] = set()
    seen_sha: set[str] = set(known_sha256)
    candidates: list[dict] = []  # metadata-valid, in (captured_at, id) order
    ordered: list[tuple[str, object]] = []  # ("reject", dict) or ("cand", index)

    def more() -> bool:
        """Classify the next search window into `ordered`; False when none is left."""
        nonlocal exhausted
        if exhausted:
            return False
        try:
            window = next(windows, None)
        except MapillaryError as exc:
            if ordered:  # the walk began: what it stored so far stays valid
                result.stats = _stats(stats, result, pos, client, before, started)
                exc.partial = result
            raise
        if window is None:
            exhausted = True
            return False
        stats["windows"] += 1
        stats["searched"] += len(window.records)
        if window.capped:
            stats["search_capped"] += 1
            exhausted = True  # the walk ended at the request cap: nothing past window.end is complete
        stats["beyond_truncation"] += window.beyond_horizon
        for rec in window.records:
            rid = rec.get("id") if isinstance(rec, dict) else None
            if rid is None or isinstance(rid, bool) or str(rid).strip() == "":
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
                if rid[:64] in seen_ids:
                    continue  # the same bad record twice: one reject row is enough
                seen_ids.add(rid[:64])
                ordered.append(("reject", _reject(rid, checked.reason, checked.detail, _captured(rec))))
                continue
            if checked["image_id"] in seen_ids:
                ordered.append(("reject", _reject(checked["image_id"], "duplicate_id",
                                                  "id listed twice in the search answer", checked["captured_at"])))
                continue
            seen_ids.add(checked["image_id"])
            ordered.append(("cand", len(candidates)))
            candidates.append(checked)
        return True

    positions = _Positions(duplicate_distance_m, known_positions)
    strikes = _load_strikes(layout, tile.key)
    strikes_changed = False
    # Transport failures not yet known to be bad records (no success since), and the
    # rejects walked after the first of them: both wait for the next success.
    pending: list[tuple[dict, str, MapillaryUnavailableError]] = []
    held: list[dict] = []
    downloads_ok = 0

    def emit(rej: dict) -> None:
        (held if pending else result.rejects).append(rej)

    def flush_pending(why: str) -> None:
        for cand, detail, _ in pending:
            result.rejects.append(_reject(cand["image_id"], "download_failed", f"{detail} ({why})", cand["captured_at"]))
        result.rejects.extend(held)
        pending.clear()
        held.clear()

    # Walk in order; download in parallel batches of what is still needed.
    fetched: dict[int, tuple] = {}
    pos = 0
    with ThreadPoolExecutor(max_workers=max(1, download_workers)) as pool:
        while len(result.rows) < max_new:
            if pos >= len(ordered):
                if more():
                    continue
                break
            kind, item = ordered[pos]
            if kind == "reject":
                emit(item)
                pos += 1
                continue
            cand = candidates[item]
            near = positions.near(cand)
            if near is not None:
                fetched.pop(item, None)
                emit(_reject(cand["image_id"], "duplicate_position",
                             f"{near:.2f} m from an image already kept in sequence {cand['sequence_id']} "
                             f"(threshold {positions.threshold_m:g} m)", cand["captured_at"]))
                pos += 1
                continue
            if item not in fetched:
                need = max_new - len(result.rows)
                # Skip likely duplicates (near a kept image, or near an earlier one of this
                # batch): fetched on demand only if the earlier one is rejected after all.
                tentative = _Positions(positions.threshold_m, positions.by_seq)
                batch = []
                j = pos
                while len(batch) < max(need, 1):
                    if j >= len(ordered):
                        if more():
                            continue
                        break
                    k, i = ordered[j]
                    j += 1
                    if k != "cand" or (i != item and tentative.near(candidates[i]) is not None):
                        continue
                    batch.append(i)
                    tentative.add(candidates[i])
                for i, res in zip(batch, pool.map(lambda i: _fetch(client, candidates[i]), batch)):
                    fetched[i] = res
            data, outcome = fetched.pop(item)
            pos += 1
            if data is None:
                reason, detail, exc = outcome
                if not isinstance(exc, MapillaryUnavailableError):
                    emit(_reject(cand["image_id"], reason, detail, cand["captured_at"]))
                    continue
                if downloads_ok:
                    # Other downloads of this pull worked: this record is bad, not the host.
                    emit(_reject(cand["image_id"], reason, detail, cand["captured_at"]))
                    continue
                pending.append((cand, detail, exc))
                if len(pending) < OUTAGE_AFTER_CONSECUTIVE_FAILURES:
                    continue
                for c, _, _ in pending:
                    strikes[c["image_id"]] = strikes.get(c["image_id"], 0) + 1
                strikes_changed = True
                if all(strikes[c["image_id"]] >= MAX_DOWNLOAD_STRIKES for c, _, _ in pending):
                    for c, _, _ in pending:
                        strikes.pop(c["image_id"], None)
                    flush_pending(f"unreachable in {MAX_DOWNLOAD_STRIKES} pulls in a row")
                    continue
                _save_strikes(layout, tile.key, strikes)
                result.stats = _stats(stats, result, pos, client, before, started)
                exc = pending[0][2]
                exc.partial = result  # rows and rejects walked before the first failure
                logger.warning(
                    f"tile {tile.key}: {len(pending)} image downloads in a row failed with no download working "
                    f"(an outage?); keeping {len(result.rows)} new images and {len(result.rejects)} rejects walked before "
                    f"them; strikes {[strikes[c['image_id']] for c, _, _ in pending]} of {MAX_DOWNLOAD_STRIKES}"
                )
                raise exc
            valid = outcome
            downloads_ok += 1
            if pending:
                flush_pending("other downloads of this pull worked")
            if valid.sha256 in seen_sha:
                result.rejects.append(_reject(cand["image_id"], "duplicate_sha256",
                                              f"same bytes as an image already stored (sha256 {valid.sha256[:12]}...)",
                                              cand["captured_at"]))
                continue
            try:
                path = layout.raw_image_path(tile.key, cand["image_id"])
            except UnsafePathError as exc:  # validate_record keeps ids to digits; defence in depth
                result.rejects.append(_reject(cand["image_id"], "bad_id", str(exc), cand["captured_at"]))
                continue
            seen_sha.add(valid.sha256)
            atomic_write_bytes(path, data)
            positions.add(cand)
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
    windows.close()
    if pending:  # fewer than the outage count, and the walk ended: per-record failures
        flush_pending(f"fewer than {OUTAGE_AFTER_CONSECUTIVE_FAILURES} in a row")
    done = {r["image_id"] for r in result.rows} | {r["image_id"] for r in result.rejects}
    if strikes_changed or any(i in strikes for i in done):
        _save_strikes(layout, tile.key, {k: v for k, v in strikes.items() if k not in done})

    result.stats = _stats(stats, result, pos, client, before, started)
    if stats["search_capped"]:
        newest = max((r["captured_at"] for r in result.rows + result.rejects if r.get("captured_at") is not None),
                     default=start_captured_at)
        logger.warning(
            f"tile {tile.key}: incomplete: the image search stopped at {getattr(client, 'max_search_requests', '?')} "
            f"requests (max_search_requests); stored what was listed completely, and the next pull resumes from "
            f"captured_at {newest if newest is not None else 'the start'}")
    reasons = result.stats["rejected_by_reason"]
    logger.info(  # one preformatted string: Dagster's context.log works like a logger too
        f"tile {tile.key}: {stats['searched']} searched in {stats['windows']} windows, {stats['known_skipped']} known, {len(result.rows)} new images, "
        f"{len(result.rejects)} rejected{' ' + str(dict(reasons)) if reasons else ''} in {result.stats['seconds']:.2f}s"
    )
    return result


def _stats(stats: Counter, result: PullResult, pos: int, client, before: dict, started: float) -> dict:
    seconds = time.perf_counter() - started
    after = dict(getattr(client, "stats", {}) or {})
    reasons = Counter(r["reason"] for r in result.rejects)
    return {
        "searched": stats["searched"],  # records listed (the windows asked for, not the whole tile)
        "windows": stats["windows"],
        "known_skipped": stats["known_skipped"],
        "outside_tile": stats["outside_tile"],
        "beyond_truncation": stats["beyond_truncation"],
        "search_capped": bool(stats["search_capped"]),  # the tile's listing stopped at max_search_requests
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


def _captured(rec) -> int | None:
    return parse_captured_at(rec.get("captured_at")) if isinstance(rec, dict) else None
