"""LocalMapillaryServer: the Mapillary Graph API v4 contract over a SyntheticWorld.

Binds 127.0.0.1 only and runs a ThreadingHTTPServer in a background thread.

Routes (shapes as in docs/MAPILLARY.md):
- `GET /images?bbox=minLon,minLat,maxLon,maxLat&fields=&limit=&start_captured_at=&end_captured_at=`
  -> {"data": [...]}: the first `limit` matches (default and max 2000) in
  (captured_at, id) order, so a full page means "split the box".
- `GET /{id}?fields=` -> one record; `GET /?ids=a,b&fields=` (or `/ids=a,b`)
  -> {"a": {...}, "b": {...}}, at most 50 ids.
- `GET /thumbs/{256|1024|2048|original}/{id}.jpg` -> JPEG bytes (image/jpeg);
  no token needed (like Mapillary's pre-signed CDN URLs).

Hardening: each connection times out after `connection_timeout` seconds of
silence, at most `max_connections` are served at once (more wait in the listen
backlog), a Host header other than a loopback name is refused (421: DNS
rebinding), tokens are compared in constant time, and neither the debug log nor
`request_log` ever holds a token.

Auth: with a token configured, Graph routes need `Authorization: OAuth <token>`
or `access_token=<token>`; else 401 code 190. Errors use the Graph shape
{"error": {"message", "type", "code", "fbtrace_id"}}.

FaultConfig switches (deterministic; replace `server.faults` on a live server
to change them, which restarts their counters) inject 429s, 500s, slow
answers, malformed JSON, truncated JPEGs, records without geometry, ids
repeated across pages, "reduce the amount of data" errors and 403s on images.
"""

from __future__ import annotations

import argparse
import hmac
import itertools
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

from geo_assets.geo.bbox import BBox

log = logging.getLogger(__name__)

MAX_LIMIT = 2000
MAX_IDS = 50
REDUCE_DATA_MESSAGE = "Please reduce the amount of data you are asking for, then retry your request"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost")
HOST_HEADER_NAMES = ("127.0.0.1", "localhost", "[::1]")
CONNECTION_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64
REQUEST_LOG_MAX = 100_000
THUMB_SIZES = {"256": 256, "1024": 1024, "2048": 2048, "original": None}

IMAGE_FIELDS = frozenset({
    "id", "geometry", "computed_geometry", "altitude", "computed_altitude", "captured_at", "compass_angle",
    "computed_compass_angle", "computed_rotation", "exif_orientation", "camera_type", "camera_parameters", "make",
    "model", "width", "height", "thumb_256_url", "thumb_1024_url", "thumb_2048_url", "thumb_original_url",
    "creator", "sequence", "quality_score", "atomic_scale", "is_pano",
})


@dataclass
class FaultConfig:
    """Fault switches. Each `*_first_n` counts the requests it hits since the config
    was set. On arrival a request takes a 429 while any are left, else a 500 while
    any are left; a request past both takes one slow and one malformed switch each
    (independently, so one request can be both: slow_first_n=1 and
    malformed_json_first_n=1 cost a client one retry if it waits, one if it times
    out). Image-route requests count only with `faults_on_images`; Graph routes
    only with `faults_on_api` (default)."""

    rate_limit_first_n: int = 0  # HTTP 429 "Application request limit reached" + Retry-After
    retry_after_seconds: int = 1
    server_error_first_n: int = 0  # HTTP 500 code 2 (transient)
    slow_first_n: int = 0  # sleep `slow_seconds` before answering (client timeouts)
    slow_seconds: float = 0.0
    malformed_json_first_n: int = 0  # 200 with a truncated JSON body
    truncated_image_ids: set[str] = field(default_factory=set)  # JPEG cut in half
    truncate_images_every_n: int = 0  # JPEG cut in half for catalogue index % n == 0
    missing_geometry_every_n: int = 0  # no geometry/computed_geometry for index % n == 0
    duplicate_ids: bool = False  # each page repeats ids of the previous answer
    duplicate_count: int = 3
    too_much_data_above: int | None = None  # HTTP 500 code 1 when a search matches more
    forbidden_images_first_n: int = 0  # HTTP 403 on image downloads (expired signed URL)
    faults_on_images: bool = False  # 429 / 500 / slow also hit the image route
    faults_on_api: bool = True  # 429 / 500 / slow hit the Graph routes (False: images only)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # with the query, access_token removed
    status: int
    seconds: float
    had_access_token: bool = False  # the query carried access_token (value never kept)
    had_authorization: bool = False  # an Authorization header was sent (value never kept)


class _ApiError(Exception):
    def __init__(self, status: int, message: str, code: int, type_: str = "OAuthException", headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type_
        self.headers = headers or {}


def parse_time_param(value: str, name: str) -> int:
    """Epoch ms (digits) or ISO 8601 -> epoch ms."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _ApiError(400, f"(#100) Invalid parameter {name}: expected ISO 8601 or epoch milliseconds, got {value!r}", 100) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalMapillary/1.0"
    app: "LocalMapillaryServer"  # set on the subclass each server makes

    def setup(self) -> None:
        super().setup()
        self.app._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.app._track(self.connection, False)

    def log_message(self, format: str, *args) -> None:  # quiet; request_log keeps the record
        from geo_assets.mapillary.redact import redact

        if log.isEnabledFor(logging.DEBUG):  # the request line carries access_token=... in its query
            log.debug("local mapillary: %s", redact(format % args))

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host.split("]", 1)[0] + "]"
        else:
            name = host.rsplit(":", 1)[0] if ":" in host else host
        return name in HOST_HEADER_NAMES

    def do_GET(self) -> None:  # noqa: N802
        started = time.perf_counter()
        if not self._host_allowed():
            status, headers, body = self.app._error(_ApiError(421, "Misdirected request: Host must be a loopback name", 1))
        else:
            status, headers, body = self.app._dispatch(self.path, self.headers)
        # Logged before the answer is sent: a client that has its answer can rely on the log.
        self.app._log_request("GET", self.path, status, time.perf_counter() - started, "Authorization" in self.headers)
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout, OSError):
            self.close_connection = True  # the client gave up (timeout)


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Clients over max_connections wait in the listen backlog; socketserver's default of 5
    # drops further SYNs, so a burst of clients would time out connecting instead of waiting.
    request_queue_size = 128
    slots: threading.BoundedSemaphore  # set per server: at most this many handler threads
    stopping: threading.Event

    def process_request(self, request, client_address) -> None:
        # Called from the accept loop: waiting here leaves further clients in the backlog.
        while not self.slots.acquire(timeout=0.1):
            if self.stopping.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError)):
            log.debug("local mapillary: client %s dropped the connection (%s)", client_address, exc)
            return
        log.exception("local mapillary: error while serving %s", client_address)


class LocalMapillaryServer:
    """Mapillary-compatible HTTP API over a SyntheticWorld, on 127.0.0.1."""

    def __init__(self, world, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 faults: FaultConfig | None = None, max_bbox_area: float | None = None,
                 image_cache_size: int = 256, connection_timeout: float = CONNECTION_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the local server binds loopback only (127.0.0.1), not {host!r}")
        self.world = world
        self.host = "127.0.0.1"
        self._port = int(port)
        self.__token = token or None
        self.max_bbox_area = max_bbox_area
        self._lock = threading.Lock()
        self._faults = faults or FaultConfig()
        self._counters: dict[str, int] = {}
        self._reset_counters()
        self._prev_page: list[int] = []
        self.request_log: list[RequestRecord] = []
        self._served = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._conns: set = set()
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = int(image_cache_size)
        self._trace = itertools.count(1)
        self.connection_timeout = float(connection_timeout)
        self.max_connections = max(1, int(max_connections))

    # -- lifecycle --

    def start(self) -> "LocalMapillaryServer":
        if self._httpd is not None:
            return self
        handler = type("BoundHandler", (_Handler,), {"app": self, "timeout": self.connection_timeout})
        httpd = _QuietHTTPServer((self.host, self._port), handler)
        httpd.slots = threading.BoundedSemaphore(self.max_connections)
        httpd.stopping = self._stopping
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"local-mapillary-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()  # wake handlers sleeping on a slow fault
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:  # close keep-alive connections so nothing answers after stop()
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "LocalMapillaryServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.base_url if self._httpd else "stopped"
        return f"LocalMapillaryServer({state}, images={len(self.world)}, token={'***' if self.__token else None})"

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        if self._httpd is None and self._port == 0:
            raise RuntimeError("server not started: call start() or use it as a context manager")
        return f"http://{self.host}:{self._port}"

    # -- faults and bookkeeping --

    @property
    def faults(self) -> FaultConfig:
        return self._faults

    @faults.setter
    def faults(self, value: FaultConfig | None) -> None:
        with self._lock:
            self._faults = value or FaultConfig()
            self._reset_counters()
            self._prev_page = []

    def set_faults(self, **switches) -> FaultConfig:
        """Replace every switch (unnamed ones off, counters restart):
        `server.set_faults(rate_limit_first_n=2, retry_after_seconds=0)`."""
        self.faults = FaultConfig(**switches)
        return self._faults

    def _reset_counters(self) -> None:
        f = self._faults
        self._counters = {
            "rate": f.rate_limit_first_n, "error": f.server_error_first_n, "slow": f.slow_first_n,
            "malformed": f.malformed_json_first_n, "forbidden": f.forbidden_images_first_n,
        }

    def _take(self, key: str) -> bool:
        with self._lock:
            if self._counters.get(key, 0) > 0:
                self._counters[key] -= 1
                return True
            return False

    def _track(self, conn, add: bool) -> None:
        with self._lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def _log_request(self, method: str, raw_path: str, status: int, seconds: float, had_auth: bool = False) -> None:
        parts = urlsplit(raw_path)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = [(k, v) for k, v in pairs if k != "access_token"]
        path = parts.path + ("?" + urlencode(query, safe=",:") if query else "")
        record = RequestRecord(method, path, status, round(seconds, 4), len(query) != len(pairs), had_auth)
        with self._lock:
            self._served += 1
            self.request_log.append(record)
            if len(self.request_log) > REQUEST_LOG_MAX:  # a long-running server keeps the newest half
                del self.request_log[: REQUEST_LOG_MAX // 2]

    @property
    def request_count(self) -> int:
        """Requests answered since start (request_log keeps at most the newest REQUEST_LOG_MAX)."""
        return self._served

    def status_counts(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for r in list(self.request_log):
            out[r.status] = out.get(r.status, 0) + 1
        return out

    # -- dispatch --

    def _json(self, status: int, payload, extra: dict | None = None) -> tuple[int, dict, bytes]:
        headers = {"Content-Type": "application/json; charset=UTF-8"}
        headers.update(extra or {})
        return status, headers, json.dumps(payload, separators=(",", ":")).encode()

    def _error(self, e: _ApiError) -> tuple[int, dict, bytes]:
        trace = f"A{next(self._trace):08d}synthetic"
        body = {"error": {"message": e.message, "type": e.type, "code": e.code, "fbtrace_id": trace}}
        return self._json(e.status, body, e.headers)

    def _dispatch(self, raw_path: str, headers) -> tuple[int, dict, bytes]:
        try:
            parts = urlsplit(raw_path)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            path = parts.path
            if path.startswith("/thumbs/"):
                return self._image(path)
            self._check_auth(headers, query)
            # Every fault is decided when the request arrives (a slow answer that the
            # client gave up on still uses up its malformed-JSON switch).
            if self._faults.faults_on_api:
                slow = self._transient_faults()
            else:
                slow = False
            malformed = self._take("malformed")
            if slow:
                self._stopping.wait(self._faults.slow_seconds)
            if path == "/images":
                payload = self._search(query)
            elif path in ("/", "") and "ids" in query:
                payload = self._many(query["ids"], query)
            elif path.startswith("/ids="):
                payload = self._many(path[len("/ids="):], query)
            elif re.fullmatch(r"/\d+", path):
                payload = self._one(path[1:], query)
            else:
                raise _ApiError(400, f"Unknown path components: {path}", 2500)
            body = json.dumps(payload, separators=(",", ":")).encode()
            if malformed:
                body = body[: max(1, len(body) // 2)]
            return 200, {"Content-Type": "application/json; charset=UTF-8"}, body
        except _ApiError as e:
            return self._error(e)
        except Exception as exc:  # a bug in the server: answer like the Graph API does
            log.exception("local mapillary server error")
            return self._error(_ApiError(500, f"An unexpected error has occurred: {type(exc).__name__}", 2))

    def _check_auth(self, headers, query: dict) -> None:
        token = self.__token
        if token is None:
            return
        given = None
        auth = headers.get("Authorization")
        if auth:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() in ("oauth", "bearer"):
                given = value.strip()
        if given is None:
            given = query.get("access_token")
        if given is None:
            raise _ApiError(401, "An active access token must be used to query information about the current user.", 190)
        if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")):
            raise _ApiError(401, "Invalid OAuth access token - Cannot parse access token", 190)

    def _transient_faults(self) -> bool:
        """Raise the 429 / 500 switches in that order; return whether to answer slowly."""
        if self._take("rate"):
            f = self._faults
            raise _ApiError(429, "Application request limit reached", 4, headers={"Retry-After": str(int(f.retry_after_seconds))})
        if self._take("error"):
            raise _ApiError(500, "An unexpected error has occurred. Please retry your request later.", 2)
        return self._take("slow")

    def _fields(self, query: dict) -> list[str]:
        raw = query.get("fields", "")
        fields = [f.strip() for f in raw.split(",") if f.strip()]
        for f in fields:
            if f not in IMAGE_FIELDS:
                raise _ApiError(400, f"(#100) Tried accessing nonexisting field ({f}) on node type (Image)", 100)
        return ["id"] + [f for f in dict.fromkeys(fields) if f != "id"]

    def _record(self, index: int, fields: list[str]) -> dict:
        m = self.world.meta_at(index)
        f = self._faults
        drop_geometry = f.missing_geometry_every_n > 0 and m.index % f.missing_geometry_every_n == 0
        rec: dict = {}
        id_int = int(m.id)
        for name in fields:
            if name == "id":
                rec["id"] = m.id
            elif name in ("geometry", "computed_geometry"):
                if drop_geometry:
                    continue
                lat, lon = m.lat, m.lon
                if name == "geometry":  # raw GPS: a few metres off the computed position
                    lat += ((id_int % 97) - 48) * 1.5e-6
                    lon += ((id_int // 97 % 89) - 44) * 2.5e-6
                rec[name] = {"type": "Point", "coordinates": [lon, lat]}
            elif name == "captured_at":
                rec[name] = m.captured_at
            elif name in ("compass_angle", "computed_compass_angle"):
                rec[name] = m.compass_angle if name == "compass_angle" else round((m.compass_angle + 1.3) % 360, 6)
            elif name in ("altitude", "computed_altitude"):
                rec[name] = round(5 + 900 * m.elevation, 2)
            elif name == "computed_rotation":
                rec[name] = [0.0, 0.0, 0.0]
            elif name == "exif_orientation":
                rec[name] = 1
            elif name == "camera_type":
                rec[name] = "perspective"
            elif name == "camera_parameters":
                rec[name] = [0.85, 0.0, 0.0]
            elif name == "make":
                rec[name] = m.camera_make
            elif name == "model":
                rec[name] = m.camera_model
            elif name == "width":
                rec[name] = m.width
            elif name == "height":
                rec[name] = m.height
            elif name.startswith("thumb_"):
                size = name[len("thumb_"):-len("_url")]
                rec[name] = f"{self.base_url}/thumbs/{size}/{m.id}.jpg"
            elif name == "creator":
                rec[name] = {"id": str(abs(hash_username(m.creator))), "username": m.creator}
            elif name == "sequence":
                rec[name] = m.sequence
            elif name == "quality_score":
                rec[name] = round(0.5 + (id_int % 500) / 1000, 3)
            elif name == "atomic_scale":
                rec[name] = 1.0
            elif name == "is_pano":
                rec[name] = False
        return rec

    def _search(self, query: dict) -> dict:
        if "bbox" not in query:
            raise _ApiError(400, "(#100) The parameter bbox is required for image search", 100)
        try:
            bbox = BBox.from_query(query["bbox"])
        except ValueError as exc:
            raise _ApiError(400, f"(#100) Invalid parameter bbox: {exc}", 100) from None
        fields = self._fields(query)
        try:
            limit = int(query.get("limit", MAX_LIMIT))
        except ValueError:
            raise _ApiError(400, f"(#100) Invalid parameter limit: {query.get('limit')!r}", 100) from None
        if limit < 1:
            raise _ApiError(400, f"(#100) Invalid parameter limit: {limit}", 100)
        limit = min(limit, MAX_LIMIT)
        start = parse_time_param(query["start_captured_at"], "start_captured_at") if query.get("start_captured_at") else None
        end = parse_time_param(query["end_captured_at"], "end_captured_at") if query.get("end_captured_at") else None
        if self.max_bbox_area is not None and bbox.area > self.max_bbox_area:
            raise _ApiError(500, REDUCE_DATA_MESSAGE, 1)
        idx = self.world.search_indices(bbox, start, end)
        f = self._faults
        if f.too_much_data_above is not None and idx.size > f.too_much_data_above:
            raise _ApiError(500, REDUCE_DATA_MESSAGE, 1)
        page = [int(i) for i in idx[:limit]]
        if f.duplicate_ids:
            with self._lock:
                prev = self._prev_page
                self._prev_page = list(page)
            present = set(page)
            dups = [i for i in prev if i not in present][: max(0, f.duplicate_count)]
            page = (dups + page)[:limit]
        return {"data": [self._record(i, fields) for i in page]}

    def _one(self, image_id: str, query: dict) -> dict:
        fields = self._fields(query)
        if image_id not in self.world:
            raise _ApiError(400, f"Unsupported get request. Object with ID '{image_id}' does not exist", 100, "GraphMethodException")
        return self._record(self.world.index_of(image_id), fields)

    def _many(self, ids_text: str, query: dict) -> dict:
        ids = [i.strip() for i in ids_text.split(",") if i.strip()]
        if not ids:
            raise _ApiError(400, "(#100) The parameter ids is empty", 100)
        if len(ids) > MAX_IDS:
            raise _ApiError(400, f"(#100) Too many IDs. Maximum: {MAX_IDS}", 100)
        fields = self._fields(query)
        missing = [i for i in ids if i not in self.world]
        if missing:
            raise _ApiError(400, f"(#803) Some of the aliases you requested do not exist: {','.join(missing)}", 803)
        return {i: self._record(self.world.index_of(i), fields) for i in ids}

    def _image(self, path: str) -> tuple[int, dict, bytes]:
        m = re.fullmatch(r"/thumbs/(256|1024|2048|original)/(\d+)\.jpg", path)
        if not m or m.group(2) not in self.world:
            return 404, {"Content-Type": "text/html; charset=UTF-8"}, b"<html><body>Not Found</body></html>"
        f = self._faults
        if f.faults_on_images:
            try:
                if self._transient_faults():
                    self._stopping.wait(f.slow_seconds)
            except _ApiError as e:
                return self._error(e)
        if self._take("forbidden"):
            return 403, {"Content-Type": "text/html; charset=UTF-8"}, b"<html><body>URL signature expired</body></html>"
        image_id = m.group(2)
        meta = self.world.meta(image_id)
        size = THUMB_SIZES[m.group(1)]
        w, h = meta.width, meta.height
        if size is not None and size < w:  # thumbnails never upscale
            h = int(round(h * size / w))
            w = size
        key = (image_id, w, h)
        with self._lock:
            data = self._cache.get(key)
            if data is not None:
                self._cache.move_to_end(key)
        if data is None:
            data = self.world.render(image_id, w, h).jpeg
            with self._lock:
                self._cache[key] = data
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        if image_id in f.truncated_image_ids or (f.truncate_images_every_n > 0 and meta.index % f.truncate_images_every_n == 0):
            data = data[: len(data) // 2]
        return 200, {"Content-Type": "image/jpeg", "Cache-Control": "max-age=3600"}, data


def hash_username(name: str) -> int:
    """Stable numeric creator id from a username (Python's hash() is salted)."""
    h = 1469598103934665603
    for ch in name.encode():
        h = ((h ^ ch) * 1099511628211) % (1 << 61)
    return h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geo_assets.synthetic.server",
        description="Serve the synthetic UK over the Mapillary Graph API v4 contract on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic world seed")
    parser.add_argument("--token-env", default=None, metavar="VAR",
                        help="require the token held in this environment variable")
    parser.add_argument("--max-bbox-area", type=float, default=None,
                        help="answer 500 code 1 for larger boxes (the real API wants < 0.01)")
    args = parser.parse_args(argv)
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            parser.error(f"environment variable {args.token_env} is not set or empty")
    from geo_assets.synthetic.world import SyntheticWorld

    world = SyntheticWorld(seed=args.seed)
    server = LocalMapillaryServer(world, port=args.port, token=token, max_bbox_area=args.max_bbox_area)
    server.start()
    # Ctrl-C and SIGTERM both stop it cleanly, even when started by a process that
    # ignores SIGINT (a child inherits an ignored SIGINT, and Python keeps it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"synthetic Mapillary ({len(world)} images, seed {args.seed}) at {server.base_url}"
          f"{' (token required)' if token else ''}; Ctrl-C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
