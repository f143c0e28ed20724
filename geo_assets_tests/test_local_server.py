"""The local Mapillary-compatible server, spoken to with plain HTTP."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from PIL import Image

from geo_assets.geo.bbox import BBox
from geo_assets.synthetic.server import FaultConfig, LocalMapillaryServer, main
from geo_assets.synthetic.world import SyntheticWorld

TOKEN = "MLY|test-token-123456"
BOX = BBox(-2.4, 52.9, -1.9, 53.6)  # Manchester: a few hundred images
AUTH = {"Authorization": f"OAuth {TOKEN}"}


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=0)


@pytest.fixture
def server(world):
    with LocalMapillaryServer(world, token=TOKEN) as srv:
        yield srv


def _get(server, path, params=None, headers=AUTH, timeout=10):
    return requests.get(server.base_url + path, params=params, headers=headers, timeout=timeout)


def test_search_contract(server, world):
    r = _get(server, "/images", {"bbox": BOX.to_query(), "fields": "id,computed_geometry,captured_at,thumb_1024_url"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    data = r.json()["data"]
    expected = world.search(BOX)
    assert [d["id"] for d in data] == [m.id for m in expected]
    first, meta = data[0], expected[0]
    assert set(first) == {"id", "computed_geometry", "captured_at", "thumb_1024_url"}
    assert first["computed_geometry"] == {"type": "Point", "coordinates": [meta.lon, meta.lat]}  # [lon, lat]
    assert first["captured_at"] == meta.captured_at
    assert first["thumb_1024_url"].startswith(server.base_url + "/thumbs/1024/")
    only_id = _get(server, "/images", {"bbox": BOX.to_query()}).json()["data"]
    assert set(only_id[0]) == {"id"}
    assert server.base_url.startswith("http://127.0.0.1:")


def test_limit_returns_first_matches_so_a_full_page_means_split(server, world):
    data = _get(server, "/images", {"bbox": BOX.to_query(), "fields": "captured_at", "limit": "50"}).json()["data"]
    assert len(data) == 50
    assert [d["id"] for d in data] == [m.id for m in world.search(BOX)[:50]]
    capped = _get(server, "/images", {"bbox": "-6,50,2,55", "limit": "999999"}).json()["data"]
    assert len(capped) == 2000  # default and maximum


def test_time_window_iso_or_epoch(server, world):
    found = world.search(BOX)
    t = found[40].captured_at
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t // 1000))
    by_ms = _get(server, "/images", {"bbox": BOX.to_query(), "start_captured_at": str(t)}).json()["data"]
    by_iso = _get(server, "/images", {"bbox": BOX.to_query(), "start_captured_at": iso}).json()["data"]
    assert by_ms[0]["id"] == found[40].id
    assert {d["id"] for d in by_ms} <= {d["id"] for d in by_iso}
    bad = _get(server, "/images", {"bbox": BOX.to_query(), "start_captured_at": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 100


def test_entity_routes(server, world):
    ids = world.ids[:3]
    one = _get(server, f"/{ids[0]}", {"fields": "id,geometry,width,height,creator,sequence"}).json()
    assert one["id"] == ids[0] and one["width"] == 640 and one["creator"]["username"] == world.meta(ids[0]).creator
    many = _get(server, "/", {"ids": ",".join(ids), "fields": "id,captured_at"}).json()
    assert list(many) == ids and many[ids[1]]["captured_at"] == world.meta(ids[1]).captured_at
    sdk_form = _get(server, "/ids=" + ",".join(ids), {"fields": "id"}).json()
    assert list(sdk_form) == ids
    too_many = _get(server, "/", {"ids": ",".join(world.ids[:51])})
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == 100
    unknown = _get(server, "/1234567890123456")
    assert unknown.status_code == 400 and "does not exist" in unknown.json()["error"]["message"]


def test_image_route(server, world):
    image_id = world.ids[7]
    r = requests.get(f"{server.base_url}/thumbs/1024/{image_id}.jpg", timeout=10)  # no token needed
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert r.content == world.render(image_id).jpeg
    assert Image.open(io.BytesIO(r.content)).size == (640, 480)
    small = requests.get(f"{server.base_url}/thumbs/256/{image_id}.jpg", timeout=10)
    assert Image.open(io.BytesIO(small.content)).size == (256, 192)
    missing = requests.get(f"{server.base_url}/thumbs/1024/1.jpg", timeout=10)
    assert missing.status_code == 404 and not missing.headers["Content-Type"].startswith("image/")


def test_auth(server):
    params = {"bbox": BOX.to_query(), "limit": "1"}
    for headers in ({}, {"Authorization": "OAuth wrong"}):
        r = _get(server, "/images", params, headers=headers)
        err = r.json()["error"]
        assert r.status_code == 401 and err["code"] == 190 and err["type"] == "OAuthException" and err["fbtrace_id"]
    assert _get(server, "/images", {**params, "access_token": TOKEN}, headers={}).status_code == 200
    assert _get(server, "/images", params).status_code == 200
    # the log keeps no secret
    assert all(TOKEN not in rec.path and "access_token" not in rec.path for rec in server.request_log)
    assert any(rec.had_access_token for rec in server.request_log)
    assert [rec.status for rec in server.request_log] == [401, 401, 200, 200]


def test_errors_unknown_field_and_too_much_data(world):
    with LocalMapillaryServer(world, max_bbox_area=0.1) as srv:
        bad = _get(srv, "/images", {"bbox": BOX.to_query(), "fields": "id,nonsense"})
        assert bad.status_code == 400
        assert bad.json()["error"]["code"] == 100 and "nonsense" in bad.json()["error"]["message"]
        big = _get(srv, "/images", {"bbox": BOX.to_query()})
        assert big.status_code == 500
        assert big.json()["error"] == {**big.json()["error"], "code": 1,
                                        "message": "Please reduce the amount of data you are asking for, then retry your request"}
        small = BBox(-2.3, 53.4, -2.1, 53.5)
        assert _get(srv, "/images", {"bbox": small.to_query()}).status_code == 200
        assert _get(srv, "/images", {"bbox": "1,2,3"}).status_code == 400
        assert _get(srv, "/images", {}).status_code == 400


def test_fault_switches(server, world):
    params = {"bbox": BOX.to_query(), "fields": "id,computed_geometry,geometry,captured_at", "limit": "30"}
    server.faults = FaultConfig(rate_limit_first_n=1, retry_after_seconds=7, server_error_first_n=1, malformed_json_first_n=1)
    r = _get(server, "/images", params)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    r = _get(server, "/images", params)
    assert r.status_code == 500 and r.json()["error"]["code"] == 2
    r = _get(server, "/images", params)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    assert _get(server, "/images", params).json()["data"]  # faults used up

    server.set_faults(missing_geometry_every_n=5)
    data = _get(server, "/images", params).json()["data"]
    missing = [d for d in data if "computed_geometry" not in d]
    assert missing and all("geometry" not in d for d in missing)
    assert all(world.meta(d["id"]).index % 5 == 0 for d in missing)

    server.faults = FaultConfig(duplicate_ids=True, duplicate_count=3)
    first = _get(server, "/images", {**params, "bbox": "-2.4,52.9,-2.15,53.6"}).json()["data"]
    second = _get(server, "/images", {**params, "bbox": "-2.15,52.9,-1.9,53.6"}).json()["data"]
    assert {d["id"] for d in second} & {d["id"] for d in first}

    victim = world.ids[3]
    server.faults = FaultConfig(truncated_image_ids={victim}, forbidden_images_first_n=1)
    assert requests.get(f"{server.base_url}/thumbs/1024/{victim}.jpg", timeout=10).status_code == 403
    cut = requests.get(f"{server.base_url}/thumbs/1024/{victim}.jpg", timeout=10).content
    assert cut == world.render(victim).jpeg[: len(world.render(victim).jpeg) // 2]

    server.faults = FaultConfig(slow_first_n=1, slow_seconds=1.0)
    with pytest.raises(requests.Timeout):
        _get(server, "/images", params, timeout=0.2)
    assert _get(server, "/images", params, timeout=5).status_code == 200

    # switches are decided on arrival: one request can be both slow and malformed
    server.faults = FaultConfig(slow_first_n=1, slow_seconds=0.3, malformed_json_first_n=1)
    started = time.perf_counter()
    r = _get(server, "/images", params)
    assert time.perf_counter() - started >= 0.3
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    assert _get(server, "/images", params).json()["data"]

    server.faults = FaultConfig(too_much_data_above=10)
    assert _get(server, "/images", params).json()["error"]["code"] == 1
    server.faults = None
    assert _get(server, "/images", params).status_code == 200


def test_loopback_only_and_stop(world):
    with pytest.raises(ValueError):
        LocalMapillaryServer(world, host="0.0.0.0")
    srv = LocalMapillaryServer(world).start()
    url = srv.base_url
    s = requests.Session()
    assert s.get(url + "/images", params={"bbox": BOX.to_query(), "limit": "1"}, timeout=5).status_code == 200
    srv.stop()
    with pytest.raises(requests.ConnectionError):
        s.get(url + "/images", params={"bbox": BOX.to_query(), "limit": "1"}, timeout=5)
    assert "stopped" in repr(srv)


def test_main_requires_token_env(monkeypatch, capsys):
    monkeypatch.delenv("GEO_TEST_UNSET_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        main(["--port", "0", "--token-env", "GEO_TEST_UNSET_TOKEN"])
    assert "GEO_TEST_UNSET_TOKEN" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_serves_until_interrupted(tmp_path):
    env = {**os.environ, "GEO_TEST_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "geo_assets.synthetic.server", "--port", "0", "--seed", "0", "--token-env", "GEO_TEST_TOKEN"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # Started with SIGINT ignored, as a child of a process that ignores it inherits:
        # the server must still stop on Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line and TOKEN not in line
        base = line.split(" at ")[1].split(" ")[0].rstrip(";")
        r = requests.get(base + "/images", params={"bbox": BOX.to_query(), "limit": "2"}, headers=AUTH, timeout=10)
        assert r.status_code == 200 and len(r.json()["data"]) == 2
    finally:
        proc.send_signal(2)  # Ctrl-C
        try:
            proc.wait(timeout=60)  # ~0.2 s when idle; generous for a loaded 2-core CI machine
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"server ignored Ctrl-C for 60 s; stderr: {proc.communicate()[1][-2000:]}")
    assert proc.returncode == 0
