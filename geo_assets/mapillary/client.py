"""MapillaryClient: bbox search with splitting, entity look-ups, downloads, retries.

Works against https://graph.mapillary.com and against the local server
(`geo_assets.synthetic.server`), which speaks the same contract.

- The token comes from the argument or MAPILLARY_ACCESS_TOKEN and is sent only
  as the `Authorization: OAuth <token>` header of Graph requests (never in a
  URL, never with image downloads, which are pre-signed CDN URLs). It never
  appears in exceptions, logs or repr.
- A search box is split into quadrants when a page comes back full (the API
  returns one page of at most `limit` records per box), when the box is larger
  than `max_bbox_area`, or on the API's HTTP 500 code 1 "Please reduce the
  amount of data you are asking for".
- `search_windows` lists a box lazily, oldest first, in captured_at windows:
  a caller that needs only the first few images stops after a window or two
  instead of listing the whole box (see its docstring).
- 429 (honouring Retry-After, capped), 5xx, connection errors, timeouts and
  malformed JSON are retried with exponential backoff; then
  MapillaryUnavailableError. 401/code 190 -> MapillaryAuthError; other 4xx ->
  MapillaryRequestError with the API's message.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import requests

from geo_assets.geo.bbox import BBox
from geo_assets.mapillary.redact import install_log_redaction, redact, strip_query, url_problem
from geo_assets.mapillary.errors import (
    MapillaryAuthError,
    MapillaryDownloadError,
    MapillaryError,
    MapillaryRequestError,
    MapillaryUnavailableError,
)

log = logging.getLogger(__name__)
install_log_redaction()  # urllib3 logs request lines (signed URL queries) at DEBUG

DEFAULT_BASE_URL = "https://graph.mapillary.com"
TOKEN_ENV = "MAPILLARY_ACCESS_TOKEN"
MAX_LIMIT = 2000
MAX_IDS_PER_CALL = 50
DEFAULT_FIELDS: tuple[str, ...] = (
    "id", "computed_geometry", "geometry", "captured_at", "compass_angle", "sequence",
    "width", "height", "thumb_1024_url", "thumb_2048_url", "thumb_original_url",
)
REDUCE_DATA_CODE = 1
MAX_JSON_BYTES = 32_000_000  # a full page of 2,000 records with every field is ~2 MB
MAX_IMAGE_BYTES = 25_000_000
DOWNLOAD_DEADLINE_S = 60.0  # whole download, however slowly the bytes drip
# Search requests one `search_windows` walk (one tile pull) may send. A real tile needs tens;
# an API that always answers a full page would make the splitting send ~87,000 at depth 8.
MAX_SEARCH_REQUESTS = 2000
_CHUNK = 65536


class _TooMuchData(Exception):
    """HTTP 500 code 1: split the box and ask again."""


class _SearchCapped(Exception):
    """The walk's search requests reached `max_search_requests`."""


@dataclass
class SearchWindow:
    """One step of `MapillaryClient.search_windows`.

    `records`: images with captured_at in (previous window's end, `end`], sorted by
    (captured_at, id), none repeated from an earlier window. Everything captured at
    or before `end` has now been listed (`end` None: everything). `beyond_horizon`:
    records listed past a box truncated at the deepest split (on the last window
    only), withheld because the listing past that box's newest record is incomplete.
    """

    records: list[dict]
    end: int | None
    beyond_horizon: int = 0
    capped: bool = False  # the walk stopped at max_search_requests: the tile is listed only up to `end`


def _sec_floor(ms: int) -> int:
    return ms - ms % 1000


def _rec_time(rec: dict) -> int | None:
    t = rec.get("captured_at")
    return t if isinstance(t, int) and not isinstance(t, bool) else None


def _rec_key(rec: dict):
    t = _rec_time(rec)
    return (t if t is not None else -1, str(rec.get("id")))


class _BoxStream:
    """Where one search box's time-window listing stands."""

    __slots__ = ("box", "depth", "to", "span", "count", "done", "truncated")

    def __init__(self, box: BBox, depth: int = 0) -> None:
        self.box = box
        self.depth = depth  # quadrant splits from an initial box
        self.to: int | None = None  # listed completely up to here (inclusive ms); None: not asked yet
        self.span = 0  # length of its last complete finite window (ms)
        self.count = 0  # records in that window
        self.done = False  # listed completely to the end of time
        self.truncated = False  # full at the deepest split: cannot be listed past `to`

    def quadrants(self) -> list["_BoxStream"]:
        out = []
        for q in self.box.quadrants():
            child = _BoxStream(q, self.depth + 1)
            child.to, child.span, child.count = self.to, self.span, self.count
            out.append(child)
        return out


def to_epoch_ms(value: int | float | str | datetime | None) -> int | None:
    """Epoch ms from epoch ms (int/digits) or ISO 8601 ('2022-08-16T16:42:46Z')."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"not a time: {value!r}")
        return int(value)
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(round(dt.timestamp() * 1000))
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 time or epoch ms: {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def _iso(ms: int, round_up: bool = False) -> str:
    """ISO 8601 in whole seconds (the documented form); start rounds down, end up,
    so the window never loses an image."""
    seconds = ms // 1000 + (1 if round_up and ms % 1000 else 0)
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _short_url(url: str) -> str:
    """scheme://host/path without the query (signed URLs carry signatures)."""
    return strip_query(url)


class _BodyTooLarge(Exception):
    pass


class _DeadlinePassed(Exception):
    pass


def _read_body(resp: requests.Response, max_bytes: int, deadline: float) -> bytes:
    """The body, read as it arrives (read1: one socket read per call, so a server that
    drips bytes cannot outlast `deadline`), refused past `max_bytes`."""
    length = resp.headers.get("Content-Length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise _BodyTooLarge(f"{int(length)} bytes is over the {max_bytes} byte limit")
    raw = resp.raw
    chunks, total = [], 0
    while True:
        if time.monotonic() > deadline:
            raise _DeadlinePassed()
        chunk = raw.read1(_CHUNK, decode_content=True) if hasattr(raw, "read1") else raw.read(_CHUNK, decode_content=True)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes:
            raise _BodyTooLarge(f"body is over the {max_bytes} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


class MapillaryClient:
    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        token: str | None = None,
        timeout: float = 10.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_bbox_area: float | None = None,
        session: requests.Session | None = None,
        *,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        user_agent: str = "geo_assets/0.1 (+mapillary client)",
        download_deadline: float = DOWNLOAD_DEADLINE_S,
        max_json_bytes: int = MAX_JSON_BYTES,
        search_limit: int = MAX_LIMIT,
        max_split_depth: int = 8,
        allow_private_addresses: bool = True,
        max_search_requests: int = MAX_SEARCH_REQUESTS,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if max_bbox_area is not None and max_bbox_area <= 0:
            raise ValueError("max_bbox_area must be positive")
        self.base_url = base_url.rstrip("/")
        self.__token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.max_retry_after = float(max_retry_after)
        self.max_bbox_area = max_bbox_area
        self.user_agent = user_agent
        self.download_deadline = float(download_deadline)
        self.search_limit = int(search_limit)
        self.max_split_depth = int(max_split_depth)
        # False for the real API (mapillary/addresses.py); the local servers live on 127.0.0.1.
        self.allow_private_addresses = bool(allow_private_addresses)
        if int(max_search_requests) < 1:
            raise ValueError("max_search_requests must be >= 1")
        self.max_search_requests = int(max_search_requests)
        self._search_budget: int | None = None  # requests left in the current search_windows walk
        self.last_search_horizon: int | None = None
        self.max_json_bytes = int(max_json_bytes)
        self._session = session
        self._idle: list[requests.Session] = []
        self._own_sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.stats: dict[str, int] = {
            "requests": 0, "retries": 0, "rate_limited": 0, "server_errors": 0, "timeouts": 0,
            "connection_errors": 0, "malformed": 0, "pages": 0, "full_pages": 0, "splits": 0,
            "records": 0, "duplicates_dropped": 0, "truncated_boxes": 0, "window_shrinks": 0, "outside_window": 0,
            "downloads": 0, "download_bytes": 0,
        }

    # -- plumbing --

    def __repr__(self) -> str:
        return f"MapillaryClient(base_url={self.base_url!r}, token={'***' if self.__token else None})"

    @property
    def has_token(self) -> bool:
        return bool(self.__token)

    def close(self) -> None:
        with self._lock:
            sessions, self._own_sessions, self._idle = self._own_sessions, [], []
        for s in sessions:
            s.close()

    def __enter__(self) -> "MapillaryClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _http(self):
        """A session for one request: the caller's, or one from a small pool (one per
        concurrent request, reused afterwards, so threads never share one)."""
        if self._session is not None:
            yield self._session
            return
        with self._lock:
            s = self._idle.pop() if self._idle else None
        if s is None:
            s = requests.Session()
            s.headers["User-Agent"] = self.user_agent
            with self._lock:
                self._own_sessions.append(s)
        try:
            yield s
        finally:
            with self._lock:
                self._idle.append(s)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def _scrub(self, text: str) -> str:
        """No token and no URL query string (signatures) in any text we log or raise."""
        return redact(text, (self.__token,) if self.__token else ())

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"OAuth {self.__token}"} if self.__token else {}

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after))
        return min(self.max_backoff, self.backoff * (2**attempt))

    @staticmethod
    def _retry_after(resp: requests.Response) -> float | None:
        value = resp.headers.get("Retry-After")
        if value is None:
            return None
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
        except (TypeError, ValueError):
            return None

    @staticmethod
    def _api_error_body(resp: requests.Response, body: bytes | None) -> tuple[str, int | None, str | None]:
        """(message, code, type) from a Graph error body, or the HTTP reason."""
        parsed = None
        if body:
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            err = parsed["error"]
            code = err.get("code")
            return str(err.get("message", ""))[:500], code if isinstance(code, int) else None, err.get("type")
        return (resp.reason or f"HTTP {resp.status_code}"), None, None

    def _gave_up(self, what: str, err: str) -> MapillaryUnavailableError:
        return MapillaryUnavailableError(
            f"Mapillary {what}: gave up after {self.max_retries + 1} attempts; last error: {err}",
            attempts=self.max_retries + 1,
            last_error=err,
        )

    def _sleep(self, what: str, err: str, attempt: int, retry_after: float | None) -> None:
        delay = self._delay(attempt, retry_after)
        self._count("retries")
        log.info("Mapillary %s failed (%s); retry %d/%d in %.2fs", what, self._scrub(err), attempt + 1, self.max_retries, delay)
        if delay > 0:
            time.sleep(delay)

    def _get_json(self, path: str, params: dict, what: str):
        url = self.base_url + path
        err = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            self._count("requests")
            deadline = time.monotonic() + max(self.download_deadline, self.timeout)
            try:
                with self._http() as http, http.get(url, params=params, headers=self._auth_headers(),
                                                    timeout=self.timeout, stream=True) as resp:
                    status = resp.status_code
                    limit = self.max_json_bytes if status == 200 else 65536
                    try:
                        body = _read_body(resp, limit, deadline)
                    except _BodyTooLarge as exc:
                        if status == 200:
                            raise MapillaryRequestError(f"Mapillary {what}: answer refused: {exc}", status=status) from None
                        body = b""
            except MapillaryError:
                raise
            except (requests.Timeout, _DeadlinePassed):
                self._count("timeouts")
                err = f"timed out after {self.timeout:g}s"
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                    requests.exceptions.MissingSchema) as exc:
                raise MapillaryRequestError(f"Mapillary {what}: bad URL ({type(exc).__name__})") from None
            except (requests.RequestException, OSError) as exc:
                self._count("connection_errors")
                err = f"{type(exc).__name__}: {self._scrub(str(exc))}"
            else:
                if status == 200:
                    try:
                        data = json.loads(body)
                    except ValueError:
                        self._count("malformed")
                        err = "malformed JSON in a 200 answer"
                    else:
                        if isinstance(data, dict) and isinstance(data.get("error"), dict):
                            message, code, _ = self._api_error_body(resp, body)
                            self._raise_for_api_error(what, status, message, code)
                        return data
                else:
                    message, code, _ = self._api_error_body(resp, body)
                    message = self._scrub(message)
                    if status == 429:
                        self._count("rate_limited")
                        retry_after = self._retry_after(resp)
                        err = f"HTTP 429 {message}".strip()
                    elif status >= 500:
                        if code == REDUCE_DATA_CODE:
                            raise _TooMuchData(message)
                        self._count("server_errors")
                        err = f"HTTP {status} {message}".strip()
                    else:
                        self._raise_for_api_error(what, status, message, code)
            if attempt < self.max_retries:
                self._sleep(what, err, attempt, retry_after)
        raise self._gave_up(what, err)

    def _raise_for_api_error(self, what: str, status: int, message: str, code: int | None):
        message = self._scrub(message)
        if status == 401 or code == 190:
            hint = "" if self.__token else f" (no token: pass token= or set {TOKEN_ENV})"
            raise MapillaryAuthError(f"Mapillary {what}: authentication failed (HTTP {status}, code {code}): {message}{hint}",
                                     status=status, code=code)
        raise MapillaryRequestError(f"Mapillary {what}: HTTP {status}, code {code}: {message}",
                                    status=status, code=code, api_message=message)

    # -- search --

    def _initial_boxes(self, bbox: BBox) -> list[BBox]:
        if self.max_bbox_area is None or bbox.area <= self.max_bbox_area:
            return [bbox]
        k = math.ceil(math.sqrt(bbox.area / self.max_bbox_area) * (1 + 1e-9))
        while (bbox.width / k) * (bbox.height / k) > self.max_bbox_area:
            k += 1
        boxes = []
        for r in range(k):
            for c in range(k):
                boxes.append(BBox(
                    bbox.min_lon + bbox.width * c / k,
                    bbox.min_lat + bbox.height * r / k,
                    bbox.max_lon if c == k - 1 else bbox.min_lon + bbox.width * (c + 1) / k,
                    bbox.max_lat if r == k - 1 else bbox.min_lat + bbox.height * (r + 1) / k,
                ))
        return boxes

    def search_page(self, bbox: BBox, fields: Sequence[str] = DEFAULT_FIELDS, start_captured_at=None,
                    end_captured_at=None, limit: int = MAX_LIMIT) -> list[dict]:
        """One `GET /images` call (no splitting). Raises _TooMuchData on code 1."""
        params = {"bbox": bbox.to_query(), "fields": ",".join(fields), "limit": str(int(limit))}
        start = to_epoch_ms(start_captured_at)
        end = to_epoch_ms(end_captured_at)
        if start is not None:
            params["start_captured_at"] = _iso(start)
        if end is not None:
            params["end_captured_at"] = _iso(end, round_up=True)
        if self._search_budget is not None:
            if self._search_budget <= 0:
                raise _SearchCapped()
            self._search_budget -= 1
        data = self._get_json("/images", params, f"image search bbox={params['bbox']}")
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise MapillaryUnavailableError(f"Mapillary image search bbox={params['bbox']}: answer has no 'data' list")
        self._count("pages")
        return [r for r in data["data"] if isinstance(r, dict)]

    def _search_settings(self, limit, max_depth, fields) -> tuple[int, int, list[str]]:
        """Page size and split depth (the client's defaults unless given), and the fields with id
        and captured_at first: what every search needs."""
        limit = self.search_limit if limit is None else limit
        max_depth = self.max_split_depth if max_depth is None else int(max_depth)
        if not 1 <= int(limit) <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
        return int(limit), max_depth, list(dict.fromkeys(["id", "captured_at", *fields]))

    def search_images(
        self,
        bbox: BBox,
        fields: Sequence[str] = DEFAULT_FIELDS,
        start_captured_at: int | str | None = None,
        end_captured_at: int | str | None = None,
        limit: int | None = None,
        max_depth: int | None = None,
    ) -> list[dict]:
        """Every image in `bbox`, deduplicated by id, sorted by (captured_at, id).

        `id` and `captured_at` are always requested. Times are epoch ms or ISO 8601;
        start is inclusive.
        """
        limit, max_depth, fields = self._search_settings(limit, max_depth, fields)
        start = to_epoch_ms(start_captured_at)
        end = to_epoch_ms(end_captured_at)
        seen: dict[str, dict] = {}
        horizon: int | None = None
        stack = [(b, 0) for b in reversed(self._initial_boxes(bbox))]
        while stack:
            box, depth = stack.pop()
            try:
                page = self.search_page(box, fields, start, end, limit)
            except _TooMuchData as exc:
                if depth >= max_depth:
                    raise MapillaryRequestError(
                        f"Mapillary image search bbox={box.to_query()}: still 'reduce the amount of data' at split depth "
                        f"{depth} (max_depth={max_depth}): {exc}", status=500, code=REDUCE_DATA_CODE) from None
                self._count("splits")
                stack.extend((q, depth + 1) for q in reversed(box.quadrants()))
                continue
            for rec in page:
                rid = rec.get("id")
                if rid is None:
                    continue
                rid = str(rid)
                if rid in seen:
                    self._count("duplicates_dropped")
                else:
                    seen[rid] = rec
            if len(page) >= limit:
                self._count("full_pages")
                if depth < max_depth:
                    self._count("splits")
                    stack.extend((q, depth + 1) for q in reversed(box.quadrants()))
                else:
                    self._count("truncated_boxes")
                    # The page holds the box's first `limit` records in captured_at order:
                    # past its newest, this box is incomplete.
                    times = [r.get("captured_at") for r in page]
                    times = [t for t in times if isinstance(t, int) and not isinstance(t, bool)]
                    if times:
                        horizon = max(times) if horizon is None else min(horizon, max(times))
                    log.warning("Mapillary image search bbox=%s: page still full at split depth %d; "
                                "some images there may be missing", box.to_query(), depth)
        self._count("records", len(seen))
        # Callers that keep a cursor must not move it past this (None: nothing truncated).
        self.last_search_horizon = horizon
        return sorted(seen.values(), key=_rec_key)

    def search_windows(
        self,
        bbox: BBox,
        fields: Sequence[str] = DEFAULT_FIELDS,
        start_captured_at: int | str | None = None,
        limit: int | None = None,
        max_depth: int | None = None,
    ) -> Iterator[SearchWindow]:
        """The images of `bbox` from `start_captured_at` (inclusive), oldest first, in
        windows of captured_at: stop iterating once you have enough.

        Together the windows hold what `search_images(bbox, start_captured_at=...)`
        returns, in the same (captured_at, id) order, but each is listed only when
        asked for, so a caller wanting the first 90 images of a tile with 100,000s
        does not list them all. Each initial box (see `max_bbox_area`) is first asked
        for everything from the start; a box that answers a page that is not full is
        listed to the end of time and never asked again. A full page shrinks that
        box's window (to before the newest second on the page, or by half, whichever
        ends earlier) until it is not full; a box still full over one second is split
        in space as `search_images` does (and past its deepest split sets the
        horizon, as there). Code 1 splits the box into quadrants, each going on from
        where the box stood. A window is yielded once every box is listed up to its
        end: nothing captured at or before `end` is missing, so a cursor never passes
        an image it did not see. The next window of a box starts at that end
        (inclusive; repeats dropped by id) and is sized to hold about half a page at
        the rate its last window showed (at least twice as long), or open-ended when
        that window was empty or once past now. No ordering of a page is relied on
        for completeness: a window is complete only when its page was not full.
        After the last window, `last_search_horizon` is set as by `search_images`.

        At most `max_search_requests` searches are sent: at the cap the walk ends with
        a last window `capped=True` holding only what every box has listed completely
        (a cursor taken from it never passes an unseen image), `last_search_horizon` at its end.
        """
        self._search_budget = self.max_search_requests
        try:
            yield from self._search_windows(bbox, fields, start_captured_at, limit, max_depth)
        finally:
            self._search_budget = None

    def _search_windows(self, bbox, fields, start_captured_at, limit, max_depth) -> Iterator[SearchWindow]:
        limit, max_depth, fields = self._search_settings(limit, max_depth, fields)
        start = to_epoch_ms(start_captured_at)
        first = None if start is None else _sec_floor(start)  # what the API's whole-second start means
        self.last_search_horizon = None
        streams = [_BoxStream(b) for b in self._initial_boxes(bbox)]
        seen: set[str] = set()
        pending: list[dict] = []  # listed, not yet yielded (newer than the last window end)
        asked: list[_BoxStream] = list(streams)
        while True:
            while asked:
                bs = asked.pop(0)
                try:
                    split = self._advance(bs, first, fields, limit, max_depth, pending, seen)
                except _SearchCapped:
                    yield self._capped_window(streams, pending)
                    return
                if split:  # code 1: the box is too big for the API; its quadrants go on from where it stood
                    k = streams.index(bs)
                    streams[k:k + 1] = split
                    asked[0:0] = split
            open_ = [bs for bs in streams if not bs.done]
            end = min(bs.to for bs in open_) if open_ else None
            stuck = any(bs.truncated and bs.to == end for bs in open_)
            if end is None:
                out, pending = pending, []
            else:
                out = [r for r in pending if _rec_key(r)[0] <= end]
                pending = [r for r in pending if _rec_key(r)[0] > end]
            out.sort(key=_rec_key)
            self._count("records", len(out))
            if end is None or stuck:
                if stuck:
                    self.last_search_horizon = end
                yield SearchWindow(out, end, len(pending) if stuck else 0)
                return
            if out:
                yield SearchWindow(out, end)
            asked = [bs for bs in open_ if bs.to == end]

    def _capped_window(self, streams: list[_BoxStream], pending: list[dict]) -> SearchWindow:
        """The last window of a walk stopped at the request cap: the records up to where every
        open box is listed completely; none when some box was never listed at all."""
        self._count("search_capped")
        open_ = [bs for bs in streams if not bs.done]
        ends = [bs.to for bs in open_]
        if any(e is None for e in ends):
            out, end = [], None
        else:
            end = min(ends) if ends else None
            out = sorted((r for r in pending if end is None or _rec_key(r)[0] <= end), key=_rec_key)
        self.last_search_horizon = end
        self._count("records", len(out))
        log.warning("Mapillary image search: stopped after %d requests (max_search_requests); the listing is "
                    "complete only up to %s", self.max_search_requests, "nothing" if not out and end is None else end)
        return SearchWindow(out, end, len(pending) - len(out), capped=True)

    def _advance(self, bs: _BoxStream, first: int | None, fields: list[str], limit: int, max_depth: int,
                 pending: list[dict], seen: set[str]) -> list[_BoxStream] | None:
        """List one more complete window of box `bs` into `pending` and move `bs.to`;
        or, on the API's code 1, return the box's quadrants to list instead."""
        lo = bs.to if bs.to is not None else first  # window start (whole seconds, inclusive)
        if bs.to is None or bs.count == 0:
            hi = None  # first ask, or nothing in its last window: everything from here
        else:
            # Aim at half a page: grow by the records the last window held (at least double).
            grow = max(2.0, limit / 2 / bs.count)
            hi = lo + max(_sec_floor(int(bs.span * grow)), 1000)
            if hi > time.time() * 1000 + 86_400_000:
                hi = None  # past now: ask for the rest of time
        while True:
            try:
                page = self.search_page(bs.box, fields, lo, hi, limit)
            except _TooMuchData as exc:
                if bs.depth >= max_depth:
                    raise MapillaryRequestError(
                        f"Mapillary image search bbox={bs.box.to_query()}: still 'reduce the amount of data' at split "
                        f"depth {bs.depth} (max_depth={max_depth}): {exc}", status=500, code=REDUCE_DATA_CODE) from None
                self._count("splits")
                return bs.quadrants()
            times = [t for t in (_rec_time(r) for r in page) if t is not None]
            base = lo if lo is not None else (_sec_floor(min(times)) if times else None)
            if len(page) < limit:
                self._take(page, lo, hi, pending, seen)
                if hi is None:
                    bs.done = True
                else:
                    bs.to, bs.span, bs.count = hi, hi - (base if base is not None else hi - 1000), len(page)
                return None
            self._count("full_pages")
            self._count("window_shrinks")
            # Shrink the window: to before the newest second on the page (a page in
            # captured_at order then fits), or by half, whichever ends earlier.
            ends = [_sec_floor(max(times)) - 1000] if times else []
            if base is not None:
                top = hi if hi is not None else max(int(time.time() * 1000), max(times, default=0))
                ends.append(_sec_floor(base + (top - base) // 2))
            new_hi = min(ends) if ends else None
            if new_hi is not None and base is not None and new_hi >= base + 1000:
                hi = new_hi
                continue
            # Full over one second (or no time to go by): split the box in space.
            end = hi if base is None else base + 1000 if hi is None else min(base + 1000, hi)
            recs = self.search_images(bs.box, fields, lo, end, limit, max(0, max_depth - bs.depth))
            self._count("records", -len(recs))  # counted when yielded
            horizon, self.last_search_horizon = self.last_search_horizon, None
            self._take(recs, lo, end, pending, seen)
            if horizon is not None:
                bs.to, bs.truncated = horizon if end is None else min(horizon, end), True
            elif end is None:
                bs.done = True
            else:
                bs.to, bs.span, bs.count = end, end - base, len(recs)
            return None

    def _take(self, page: list[dict], lo: int | None, hi: int | None, pending: list[dict], seen: set[str]) -> None:
        """Records of a complete window [lo, hi] not listed before into `pending`. A
        record outside the window asked for (a server ignoring a bound) is dropped:
        its own window lists it, in order."""
        for rec in page:
            rid = rec.get("id")
            if rid is None:
                continue
            t = _rec_time(rec)
            if t is not None and ((lo is not None and t < lo) or (hi is not None and t > hi)):
                self._count("outside_window")
                continue
            rid = str(rid)
            if rid in seen:
                self._count("duplicates_dropped")
                continue
            seen.add(rid)
            pending.append(rec)

    # -- entities --

    def get_image(self, image_id: str, fields: Sequence[str] = DEFAULT_FIELDS) -> dict:
        image_id = str(image_id)
        if not image_id.isdigit():
            raise ValueError(f"image ids are numeric strings, got {image_id!r}")
        data = self._get_json(f"/{image_id}", {"fields": ",".join(fields)}, f"image {image_id}")
        if not isinstance(data, dict):
            raise MapillaryUnavailableError(f"Mapillary image {image_id}: answer is not an object")
        return data

    def get_images(self, ids: Iterable[str], fields: Sequence[str] = DEFAULT_FIELDS) -> list[dict]:
        """Records for `ids` (50 per call), in the order asked; ids the API omits are skipped."""
        ids = [str(i) for i in ids]
        for i in ids:
            if not i.isdigit():
                raise ValueError(f"image ids are numeric strings, got {i!r}")
        out: list[dict] = []
        for k in range(0, len(ids), MAX_IDS_PER_CALL):
            chunk = ids[k:k + MAX_IDS_PER_CALL]
            data = self._get_json("/", {"ids": ",".join(chunk), "fields": ",".join(fields)}, f"{len(chunk)} images by id")
            if not isinstance(data, dict):
                raise MapillaryUnavailableError("Mapillary images by id: answer is not an object")
            for i in chunk:
                rec = data.get(i)
                if isinstance(rec, dict):
                    out.append(rec)
        return out

    # -- downloads --

    def download_image(self, url: str, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
        """Bytes of a JPEG thumbnail URL (thumb_*_url). No token is sent: the URLs are pre-signed.

        Raises MapillaryDownloadError (at once, never retried) for a URL that is not
        absolute http(s), a Content-Type other than image/jpeg, a body over
        `max_bytes`, or a 4xx (403: expired URL, ask for the image again);
        MapillaryUnavailableError when transport failures (connection errors,
        timeouts, the whole-download deadline, 429, 5xx) outlast the retries.
        No message quotes the URL's query (signatures)."""
        short = _short_url(url)
        what = f"download {short}"
        problem = url_problem(url) if isinstance(url, str) else "URL is not a string"
        if problem is None and not self.allow_private_addresses:
            from urllib.parse import urlsplit

            from geo_assets.mapillary.addresses import non_public_host

            parts = urlsplit(url)
            problem = non_public_host(parts.hostname, parts.port)
        if problem:
            raise MapillaryDownloadError(f"Mapillary download: {problem}", bad_url=True)
        err = "no attempt made"
        for attempt in range(self.max_retries + 1):
            retry_after = None
            self._count("requests")
            deadline = time.monotonic() + self.download_deadline
            try:
                with self._http() as http, http.get(url, timeout=self.timeout, stream=True,
                                                    allow_redirects=False) as resp:
                    status = resp.status_code
                    if status == 200:
                        ctype = resp.headers.get("Content-Type", "")
                        if ctype.split(";")[0].strip().lower() not in ("image/jpeg", "image/jpg", "image/pjpeg"):
                            raise MapillaryDownloadError(
                                f"Mapillary {what}: expected a JPEG, got Content-Type {ctype[:60] or 'none'!r}",
                                status=status)
                        length = resp.headers.get("Content-Length")
                        try:
                            data = _read_body(resp, max_bytes, deadline)
                        except _BodyTooLarge as exc:
                            raise MapillaryDownloadError(f"Mapillary {what}: {exc}", status=status) from None
                        if length is not None and length.strip().isdigit() and len(data) != int(length):
                            err = f"incomplete body ({len(data)} of {length.strip()} bytes)"
                        else:
                            self._count("downloads")
                            self._count("download_bytes", len(data))
                            return data
                    elif status == 429:
                        self._count("rate_limited")
                        retry_after = self._retry_after(resp)
                        err = "HTTP 429"
                    elif status >= 500:
                        self._count("server_errors")
                        err = f"HTTP {status}"
                    else:
                        hint = " (signed URL expired? ask for the image again)" if status == 403 else ""
                        if 300 <= status < 400:
                            hint = " (redirects are not followed)"
                        reason = redact(resp.reason or "")[:80]
                        raise MapillaryDownloadError(f"Mapillary {what}: HTTP {status} {reason}".rstrip() + hint,
                                                     status=status)
            except MapillaryError:
                raise
            except _DeadlinePassed:
                self._count("timeouts")
                err = f"download took longer than {self.download_deadline:g}s"
            except requests.Timeout:
                self._count("timeouts")
                err = f"timed out after {self.timeout:g}s"
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                    requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader, UnicodeError) as exc:
                raise MapillaryDownloadError(f"Mapillary {what}: bad URL ({type(exc).__name__})", bad_url=True) from None
            except ValueError as exc:
                # urllib3's LocationParseError (a ValueError, not a requests error) for a host it
                # cannot encode, raised while connecting: the URL is bad, not the network.
                raise MapillaryDownloadError(f"Mapillary {what}: bad URL ({type(exc).__name__})", bad_url=True) from None
            except (requests.RequestException, OSError) as exc:
                self._count("connection_errors")
                err = f"{type(exc).__name__}: {self._scrub(str(exc))}"
            if attempt < self.max_retries:
                self._sleep(what, err, attempt, retry_after)
        raise self._gave_up(what, err)
