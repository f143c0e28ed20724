"""A throwaway Mapillary-shaped HTTP server for hardening tests: it serves whatever
records and bodies a test hands it (hostile ids, URLs, sizes, slow drips).

- `GET /images?...` -> {"data": api.records} (every record, whatever the box), or
  `api.search_body` verbatim when set (e.g. a huge JSON body). With
  `api.honour_search`: the records in the bbox and the start/end_captured_at
  window, in (captured_at, id) order, `limit` of them.
- `GET /?ids=a,b` -> {id: record} for the records with those ids.
- `GET /img/<name>` -> `api.files[name]`: (status, content_type, body) or a
  callable(handler) that writes the answer itself.
Everything is logged (path with query) in `api.paths`.
"""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from PIL import Image


def noise_jpeg(seed: int, size: tuple[int, int] = (640, 480), fmt: str = "JPEG") -> bytes:
    """A JPEG that passes every quality check (colour variance, sharpness), distinct per seed."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1] // 8, size[0] // 8, 3), dtype=np.uint8)
    img = Image.fromarray(arr).resize(size, Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def record(image_id, url: str, lon: float = -1.05, lat: float = 54.0, captured_at: int = 1_600_000_000_000,
           sequence: str | None = "seqA") -> dict:
    rec = {"id": image_id, "computed_geometry": {"type": "Point", "coordinates": [lon, lat]},
           "captured_at": captured_at, "thumb_1024_url": url}
    if sequence is not None:
        rec["sequence"] = sequence
    return rec


class HostileApi:
    def __init__(self) -> None:
        self.records: list[dict] = []
        self.search_body: bytes | None = None
        self.honour_search = False  # True: filter by bbox, start and end, sort, apply limit
        self.files: dict[str, object] = {}
        self.paths: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                api.paths.append(self.path)
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query))
                if parts.path == "/images":
                    if api.search_body is not None:
                        return self._send(200, "application/json", api.search_body)
                    recs = api.records
                    if api.honour_search:  # like the real API: records in the box and time window, oldest first, `limit` of them
                        from datetime import datetime

                        x0, y0, x1, y1 = (float(v) for v in query["bbox"].split(","))
                        start_ms, end_ms = (
                            int(datetime.fromisoformat(query[k].replace("Z", "+00:00")).timestamp() * 1000) if query.get(k) else None
                            for k in ("start_captured_at", "end_captured_at"))
                        recs = [r for r in recs if x0 <= r["computed_geometry"]["coordinates"][0] < x1
                                and y0 <= r["computed_geometry"]["coordinates"][1] < y1
                                and (start_ms is None or r["captured_at"] >= start_ms)
                                and (end_ms is None or r["captured_at"] <= end_ms)]
                        recs = sorted(recs, key=lambda r: (r["captured_at"], str(r["id"])))[: int(query.get("limit", 2000))]
                    return self._send(200, "application/json", json.dumps({"data": recs}).encode())
                if parts.path == "/" and "ids" in query:
                    wanted = set(query["ids"].split(","))
                    found = {str(r["id"]): r for r in api.records if str(r.get("id")) in wanted}
                    return self._send(200, "application/json", json.dumps(found).encode())
                if parts.path.startswith("/img/"):
                    entry = api.files.get(parts.path[len("/img/"):])
                    if callable(entry):
                        return entry(self)
                    if entry is not None:
                        return self._send(*entry)
                self._send(404, "text/plain", b"not found")

            def _send(self, status: int, ctype: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # clients that give up (deadline tests) are expected

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "HostileApi":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def image(self, name: str, seed: int) -> str:
        """Serve a good JPEG at /img/<name>; returns its URL."""
        self.files[name] = (200, "image/jpeg", noise_jpeg(seed))
        return f"{self.base_url}/img/{name}"


def drip(body: bytes, every_s: float, ctype: str = "image/jpeg"):
    """A handler that sends `body` one byte every `every_s` seconds (a slow-loris CDN)."""

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        try:
            for b in body:
                h.wfile.write(bytes([b]))
                h.wfile.flush()
                time.sleep(every_s)
        except OSError:
            pass

    return handle


def closed_port() -> int:
    """A local port nothing listens on (connection refused)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
