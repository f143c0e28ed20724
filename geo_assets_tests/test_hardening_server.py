"""Issue 13, the local server: connection timeouts, bounded threads, loopback Host
header, no token in its debug log. Spoken to with plain sockets and requests."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import requests

from geo_assets.synthetic.server import LocalMapillaryServer
from geo_assets.synthetic.world import SyntheticWorld

TOKEN = "MLY|hardening-token-0042"


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=0)


def test_host_header_must_be_a_loopback_name(world):
    with LocalMapillaryServer(world, token=TOKEN) as srv:
        url = f"{srv.base_url}/images?bbox=-1.2,53.9,-0.9,54.1&fields=id&limit=1"
        auth = {"Authorization": f"OAuth {TOKEN}"}
        for host in ("evil.example", "evil.example:80", "127.0.0.1.evil.example", "10.0.0.1"):
            resp = requests.get(url, headers={**auth, "Host": host}, timeout=10)
            assert resp.status_code == 421, host
        for host in ("127.0.0.1", f"127.0.0.1:{srv.port}", "localhost", f"localhost:{srv.port}"):
            assert requests.get(url, headers={**auth, "Host": host}, timeout=10).status_code == 200, host


def test_no_token_in_the_debug_log(world, caplog):
    caplog.set_level(logging.DEBUG, logger="geo_assets.synthetic.server")
    with LocalMapillaryServer(world, token=TOKEN) as srv:
        resp = requests.get(f"{srv.base_url}/images", params={"bbox": "-1.2,53.9,-0.9,54.1", "fields": "id",
                                                              "access_token": TOKEN}, timeout=10)
        assert resp.status_code == 200
        requests.get(f"{srv.base_url}/images", params={"bbox": "x", "access_token": TOKEN + "x"}, timeout=10)
    assert "local mapillary" in caplog.text  # the request lines are logged ...
    assert TOKEN not in caplog.text  # ... without the token
    assert all(TOKEN not in r.path for r in srv.request_log)


def test_a_silent_connection_is_closed_after_the_timeout(world):
    with LocalMapillaryServer(world, connection_timeout=0.5) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /images HTTP/1.1\r\n")  # never finishes its headers
            started = time.perf_counter()
            data = s.recv(1024)
            assert data == b"" or data.startswith(b"HTTP/1.")  # closed (maybe after a 408)
            assert time.perf_counter() - started < 4


def _handler_threads() -> int:
    return sum(1 for t in threading.enumerate() if "process_request_thread" in t.name)


def test_idle_connections_cannot_make_unbounded_threads(world):
    with LocalMapillaryServer(world, connection_timeout=5, max_connections=3) as srv:
        before = _handler_threads()
        socks = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(40)]  # past the default backlog of 5
        try:
            time.sleep(0.5)
            assert _handler_threads() - before <= 3
        finally:
            for s in socks:
                s.close()
        # once they go, the server answers again
        deadline = time.monotonic() + 10
        while True:
            try:
                resp = requests.get(f"{srv.base_url}/thumbs/1024/1.jpg", timeout=2)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline
        assert resp.status_code == 404
