"""MapillaryClient against a real LocalMapillaryServer on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import logging
import traceback

import pytest

from geo_assets.geo.bbox import BBox
from geo_assets.mapillary.client import DEFAULT_FIELDS, MapillaryClient, to_epoch_ms
from geo_assets.mapillary.errors import (
    MapillaryAuthError,
    MapillaryDownloadError,
    MapillaryRequestError,
    MapillaryUnavailableError,
)
from geo_assets.synthetic.server import FaultConfig, LocalMapillaryServer
from geo_assets.synthetic.world import SyntheticWorld

TOKEN = "MLY|secret-token-7f3a9c"
BOX = BBox(-2.4, 52.9, -1.9, 53.6)  # Manchester and around: ~300 images
DENSE = BBox(-0.6, 51.2, 0.4, 51.8)  # London: ~1,000 images


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=0)


@pytest.fixture(scope="module")
def server(world):
    with LocalMapillaryServer(world, token=TOKEN) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_faults(request):
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        srv.faults = None
        yield
        srv.faults = None
    else:
        yield


def client_for(server, **kw) -> MapillaryClient:
    kw.setdefault("backoff", 0.001)
    kw.setdefault("timeout", 5.0)
    kw.setdefault("token", TOKEN)
    return MapillaryClient(base_url=server.base_url, **kw)


def _ids(records):
    return [r["id"] for r in records]


def test_search_happy_path(server, world):
    c = client_for(server)
    recs = c.search_images(BOX)
    assert _ids(recs) == [m.id for m in world.search(BOX)]
    assert set(recs[0]) == set(DEFAULT_FIELDS)
    assert recs[0]["computed_geometry"]["coordinates"] == [world.meta(recs[0]["id"]).lon, world.meta(recs[0]["id"]).lat]
    assert c.stats["requests"] == 1 and c.stats["retries"] == 0
    # the token goes in the header, never in a URL
    assert all(rec.had_authorization and not rec.had_access_token for rec in server.request_log[-1:])


def test_full_page_splits_into_quadrants_and_returns_everything(server, world):
    c = client_for(server)
    recs = c.search_images(DENSE, fields=("id", "captured_at"), limit=200)
    expected = world.search(DENSE)
    assert len(expected) > 800
    assert sorted(_ids(recs)) == sorted(m.id for m in expected)
    assert [r["captured_at"] for r in recs] == sorted(r["captured_at"] for r in recs)
    assert c.stats["splits"] > 0 and c.stats["full_pages"] > 0


def test_time_window_and_cursor(server, world):
    c = client_for(server)
    all_recs = c.search_images(BOX, fields=("id",))
    cursor = all_recs[100]["captured_at"]
    later = c.search_images(BOX, fields=("id",), start_captured_at=cursor)
    assert all_recs[100]["id"] in _ids(later)  # start is inclusive
    assert all(r["captured_at"] >= cursor - 1000 for r in later)
    iso = c.search_images(BOX, fields=("id",), start_captured_at="2024-01-01T00:00:00Z", end_captured_at="2024-06-30T23:59:59Z")
    lo, hi = to_epoch_ms("2024-01-01T00:00:00Z"), to_epoch_ms("2024-06-30T23:59:59Z")
    assert iso and all(lo <= r["captured_at"] <= hi for r in iso)


def test_client_side_max_bbox_area_grid(server, world):
    c = client_for(server, max_bbox_area=0.05)
    recs = c.search_images(BOX, fields=("id",))
    assert sorted(_ids(recs)) == sorted(m.id for m in world.search(BOX))
    assert c.stats["requests"] >= 0.35 / 0.05


def test_server_reduce_data_error_splits(world):
    with LocalMapillaryServer(world, max_bbox_area=0.1) as srv:
        c = MapillaryClient(srv.base_url, backoff=0.001)
        recs = c.search_images(BOX, fields=("id",))
        assert sorted(_ids(recs)) == sorted(m.id for m in world.search(BOX))
        assert c.stats["splits"] >= 1 and c.stats["retries"] == 0
    with LocalMapillaryServer(world, faults=FaultConfig(too_much_data_above=120)) as srv:
        c = MapillaryClient(srv.base_url, backoff=0.001)
        recs = c.search_images(BOX, fields=("id",))
        assert sorted(_ids(recs)) == sorted(m.id for m in world.search(BOX))
        with pytest.raises(MapillaryRequestError, match="reduce the amount of data"):
            c.search_images(BOX, fields=("id",), max_depth=0)


def test_duplicate_ids_across_pages_are_deduped(server, world):
    server.faults = FaultConfig(duplicate_ids=True, duplicate_count=5)
    c = client_for(server)
    recs = c.search_images(BOX, fields=("id", "captured_at"), limit=60)
    ids = _ids(recs)
    assert len(ids) == len(set(ids))
    assert set(ids) >= {m.id for m in world.search(BOX)}
    assert c.stats["duplicates_dropped"] > 0


def test_get_images_in_chunks_of_50(server, world):
    c = client_for(server)
    ids = world.ids[:120]
    recs = c.get_images(ids, fields=("id", "captured_at"))
    assert _ids(recs) == ids
    assert c.stats["requests"] == 3
    one = c.get_image(ids[0], fields=("id", "width"))
    assert one == {"id": ids[0], "width": 640}
    with pytest.raises(MapillaryRequestError, match="does not exist") as info:
        c.get_image("1234567890123456")
    assert info.value.code == 100 and info.value.status == 400


def test_unknown_field_is_a_request_error(server):
    c = client_for(server)
    with pytest.raises(MapillaryRequestError, match="nonexisting field") as info:
        c.search_images(BOX, fields=("id", "bogus"))
    assert info.value.code == 100 and c.stats["retries"] == 0


def test_download_checks_type_and_size(server, world):
    c = client_for(server)
    image_id = world.ids[11]
    url = f"{server.base_url}/thumbs/1024/{image_id}.jpg"
    assert c.download_image(url) == world.render(image_id).jpeg
    with pytest.raises(MapillaryDownloadError, match="over the 1000 byte limit"):
        c.download_image(url, max_bytes=1000)
    with pytest.raises(MapillaryDownloadError, match="HTTP 401"):
        c.download_image(f"{server.base_url}/images?bbox={BOX.to_query()}")  # no token is sent with downloads
    with LocalMapillaryServer(world) as open_server:
        with pytest.raises(MapillaryDownloadError, match="expected a JPEG, got Content-Type 'application/json"):
            c.download_image(f"{open_server.base_url}/images?bbox={BOX.to_query()}&limit=1")  # JSON, not an image
    with pytest.raises(MapillaryDownloadError, match="HTTP 404"):
        c.download_image(f"{server.base_url}/thumbs/1024/1.jpg")
    server.faults = FaultConfig(forbidden_images_first_n=1)
    with pytest.raises(MapillaryDownloadError, match="expired") as info:
        c.download_image(url)
    assert info.value.status == 403
    # downloads never carry the token (the URLs are pre-signed)
    assert not any(rec.had_authorization for rec in server.request_log if rec.path.startswith("/thumbs/"))


@pytest.mark.parametrize("faults", [
    FaultConfig(rate_limit_first_n=2, retry_after_seconds=0),
    FaultConfig(server_error_first_n=3),
    FaultConfig(malformed_json_first_n=2),
    FaultConfig(rate_limit_first_n=1, retry_after_seconds=0, server_error_first_n=1, malformed_json_first_n=1),
], ids=["429", "500", "malformed", "mixed"])
def test_transient_faults_are_retried(server, world, faults):
    server.faults = faults
    c = client_for(server)
    recs = c.search_images(BOX, fields=("id",))
    assert _ids(recs) == [m.id for m in world.search(BOX)]
    n_faults = faults.rate_limit_first_n + faults.server_error_first_n + faults.malformed_json_first_n
    assert c.stats["retries"] == n_faults and c.stats["requests"] == n_faults + 1


def test_retry_after_is_honoured_but_capped(server):
    server.faults = FaultConfig(rate_limit_first_n=1, retry_after_seconds=30)
    c = client_for(server, max_retry_after=0.05)
    import time

    started = time.perf_counter()
    c.search_images(BOX, fields=("id",))
    assert time.perf_counter() - started < 5
    assert c.stats["rate_limited"] == 1


def test_timeouts_are_retried(server, world):
    server.faults = FaultConfig(slow_first_n=2, slow_seconds=1.0)
    c = client_for(server, timeout=0.25)
    recs = c.search_images(BOX, fields=("id",))
    assert len(recs) == len(world.search(BOX))
    assert c.stats["timeouts"] == 2 and c.stats["retries"] == 2


def test_faults_on_image_downloads(server, world):
    image_id = world.ids[12]
    url = f"{server.base_url}/thumbs/1024/{image_id}.jpg"
    server.faults = FaultConfig(rate_limit_first_n=1, retry_after_seconds=0, server_error_first_n=1, faults_on_images=True)
    c = client_for(server)
    assert c.download_image(url) == world.render(image_id).jpeg
    assert c.stats["retries"] == 2


def test_gives_up_with_unavailable_error(server, caplog):
    server.faults = FaultConfig(server_error_first_n=10)
    c = client_for(server, max_retries=2)
    with caplog.at_level(logging.INFO, logger="geo_assets.mapillary.client"):
        with pytest.raises(MapillaryUnavailableError, match="gave up after 3 attempts") as info:
            c.search_images(BOX)
    assert "HTTP 500" in str(info.value)
    assert sum("retry" in r.getMessage() for r in caplog.records) == 2
    assert TOKEN not in caplog.text


def test_connection_refused_is_unavailable(world):
    srv = LocalMapillaryServer(world).start()
    url = srv.base_url
    srv.stop()
    c = MapillaryClient(url, token=TOKEN, max_retries=1, backoff=0.001, timeout=1)
    with pytest.raises(MapillaryUnavailableError, match="ConnectionError") as info:
        c.search_images(BOX)
    assert TOKEN not in str(info.value)


def _all_text(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    cur = exc.__cause__ or exc.__context__
    while cur is not None:
        parts += [str(cur), repr(cur)]
        cur = cur.__cause__ or cur.__context__
    return "\n".join(parts)


def test_bad_or_missing_token_is_auth_error_without_leaking(server, caplog, monkeypatch):
    monkeypatch.delenv("MAPILLARY_ACCESS_TOKEN", raising=False)
    wrong = "MLY|wrong-token-do-not-print"
    with caplog.at_level(logging.DEBUG):
        bad = client_for(server, token=wrong)
        with pytest.raises(MapillaryAuthError) as info:
            bad.search_images(BOX)
        assert info.value.code == 190 and info.value.status == 401
        assert wrong not in _all_text(info.value) and wrong not in repr(bad)
        assert bad.stats["retries"] == 0

        missing = MapillaryClient(server.base_url, backoff=0.001)
        with pytest.raises(MapillaryAuthError, match="MAPILLARY_ACCESS_TOKEN"):
            missing.search_images(BOX)

        # errors forced with the right token: retries, give-up, bad download, 4xx
        good = client_for(server, max_retries=1)
        server.faults = FaultConfig(server_error_first_n=5, rate_limit_first_n=1, retry_after_seconds=0)
        with pytest.raises(MapillaryUnavailableError) as info2:
            good.search_images(BOX)
        server.faults = None
        with pytest.raises(MapillaryRequestError) as info3:
            good.get_image("1234567890123456")
        with pytest.raises(MapillaryDownloadError) as info4:
            good.download_image(f"{server.base_url}/images?bbox={BOX.to_query()}")
    for exc in (info2.value, info3.value, info4.value):
        assert TOKEN not in _all_text(exc)
    assert TOKEN not in repr(good) and "***" in repr(good)
    assert TOKEN not in caplog.text and wrong not in caplog.text
    assert all(TOKEN not in rec.path and wrong not in rec.path for rec in server.request_log)


def test_token_from_environment(server, monkeypatch):
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", TOKEN)
    c = MapillaryClient(server.base_url, backoff=0.001)
    assert c.has_token
    assert len(c.search_images(BOX, fields=("id",), limit=100)) > 100  # splits on full pages


# -- bounded search: captured_at windows (issue 13) ---------------------------------


def _windowed(c: MapillaryClient, bbox: BBox, **kw) -> tuple[list[dict], list]:
    records, ends = [], []
    for w in c.search_windows(bbox, **kw):
        assert ends == [] or ends[-1] is not None
        assert all(ends[-1] < r["captured_at"] for r in w.records) if ends else True  # nothing at or before an earlier end
        assert w.end is None or all(r["captured_at"] <= w.end for r in w.records)
        records += w.records
        ends.append(w.end)
    return records, ends


@pytest.mark.parametrize("kw", [
    {"limit": 60},
    {"limit": 60, "max_bbox_area": 0.04},  # several initial boxes merged by time
    {"limit": 200, "start": 100},  # from a cursor
    {"limit": 2000},  # the default: one page, one window
])
def test_windows_hold_what_search_images_lists_in_the_same_order(server, world, kw):
    kw = dict(kw)
    start_at = kw.pop("start", None)
    limit = kw.pop("limit")
    c = client_for(server, search_limit=limit, **kw)
    full = c.search_images(DENSE, fields=("id", "captured_at"))
    start = full[start_at]["captured_at"] if start_at is not None else None
    if start is not None:
        full = c.search_images(DENSE, fields=("id", "captured_at"), start_captured_at=start)
    recs, ends = _windowed(c, DENSE, fields=("id", "captured_at"), start_captured_at=start)
    assert _ids(recs) == _ids(full)
    assert ends[-1] is None and c.last_search_horizon is None
    assert (len(ends) == 1) == (limit == 2000)


def test_windows_stop_early_with_few_requests(server, world):
    c = client_for(server, search_limit=60)
    c.search_images(DENSE, fields=("id",))
    full_requests = c.stats["requests"]
    c = client_for(server, search_limit=60)
    got = []
    for w in c.search_windows(DENSE, fields=("id", "captured_at")):
        got += w.records
        if len(got) >= 40:
            break
    assert _ids(got[:40]) == [m.id for m in world.search(DENSE)][:40]
    assert c.stats["requests"] <= 3 < full_requests / 5


def test_windows_survive_duplicate_ids_and_reduce_data_errors(world):
    with LocalMapillaryServer(world, faults=FaultConfig(duplicate_ids=True, duplicate_count=5)) as srv:
        c = MapillaryClient(srv.base_url, backoff=0.001, search_limit=60)
        recs, _ = _windowed(c, BOX, fields=("id", "captured_at"))
        assert _ids(recs) == [m.id for m in world.search(BOX)]  # repeats dropped, order kept
    with LocalMapillaryServer(world, faults=FaultConfig(too_much_data_above=120)) as srv:
        c = MapillaryClient(srv.base_url, backoff=0.001)
        recs, _ = _windowed(c, BOX, fields=("id", "captured_at"))
        assert _ids(recs) == [m.id for m in world.search(BOX)]
        assert c.stats["splits"] >= 1 and c.stats["retries"] == 0  # code 1 splits the box, as search_images does


def test_windows_split_a_box_the_server_finds_too_big(world):
    with LocalMapillaryServer(world, max_bbox_area=0.1) as srv:  # BOX is 0.35 square degrees
        c = MapillaryClient(srv.base_url, backoff=0.001, search_limit=60)
        recs, _ = _windowed(c, BOX, fields=("id", "captured_at"))
        assert _ids(recs) == [m.id for m in world.search(BOX)]
        assert c.stats["splits"] >= 1 and c.stats["retries"] == 0
        whole = c.stats["requests"]
        c = MapillaryClient(srv.base_url, backoff=0.001, search_limit=60)
        c.search_images(BOX, fields=("id",))
        assert whole <= c.stats["requests"] * 1.5  # never far above listing the box outright
        with pytest.raises(MapillaryRequestError, match="reduce the amount of data"):
            next(c.search_windows(BOX, fields=("id",), max_depth=0))
