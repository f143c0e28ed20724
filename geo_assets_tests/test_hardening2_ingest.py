"""Issue 22 through the hostile HTTP server and real Dagster materializations: URLs the HTTP
client cannot parse are `bad_url` rejects (item 4), a failed pull leaves no image file without a
table row, and the low items on URLs (redaction by parsing, private addresses, the request cap)."""

from __future__ import annotations

import json
import logging

import dagster as dg
import pytest

from geo_assets.geo.bbox import BBox
from geo_assets.geo.tiles import Tile
from geo_assets.ingest.pull import pull_tile
from geo_assets.mapillary.client import MapillaryClient
from geo_assets.store.layout import StorageLayout
from geo_assets.store.parquet import read_table
from geo_assets.store.schemas import RAW_IMAGES_SCHEMA, RAW_REJECTS_SCHEMA
from geo_assets_tests.hostile_api import HostileApi, record
from geo_assets_tests.test_hardening_ingest import _failure_text, _materialize_raw, _tile_key_and_box

SECRET = "SIGxSECRETx22"
UNPARSEABLE = ["http://a..b/x.jpg", "http://x../y.jpg", "http://" + "a" * 64 + ".example/x.jpg",
               "http://.lead/x.jpg", "http://" + ("abcdefgh." * 29) + "com/x.jpg"]  # last: a host over 253 characters


@pytest.fixture
def api():
    with HostileApi() as a:
        yield a


def _records(api, box, urls_by_id: dict[str, str], t0: int = 1_600_000_000_000) -> None:
    lon, lat0 = (box.min_lon + box.max_lon) / 2, box.min_lat + 0.1
    api.records = [record(i, url, lon=lon, lat=lat0 + n * 0.01, captured_at=t0 + n)
                   for n, (i, url) in enumerate(urls_by_id.items())]


def test_unparseable_urls_are_bad_url_rejects_and_do_not_block_the_tile(api, tmp_path, monkeypatch):
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "t0ken")
    key, box = _tile_key_and_box()
    urls = {"500": api.image("a.jpg", 1), "501": api.image("b.jpg", 2)}  # downloaded before the bad ones
    urls.update({str(510 + n): u + f"?sig={SECRET}" for n, u in enumerate(UNPARSEABLE)})
    urls["520"] = api.image("c.jpg", 3)
    _records(api, box, urls)
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    with dg.instance_for_test() as instance:
        result = _materialize_raw(instance, tmp_path, api)
        assert result.success, _failure_text(result)
    images = read_table(layout.table_path("raw_images", key), RAW_IMAGES_SCHEMA)
    rejects = read_table(layout.table_path("raw_rejects", key), RAW_REJECTS_SCHEMA)
    assert sorted(images["image_id"].to_pylist()) == ["500", "501", "520"]
    assert dict(zip(rejects["image_id"].to_pylist(), rejects["reason"].to_pylist())) == {
        str(510 + n): "bad_url" for n in range(len(UNPARSEABLE))}
    assert SECRET not in json.dumps(rejects.to_pylist(), default=str)
    files = sorted(p.stem for p in (layout.root / "images" / "raw" / key).glob("*.jpg"))
    assert files == ["500", "501", "520"]


def test_the_client_refuses_an_unparseable_url_as_a_bad_url(api):
    from geo_assets.mapillary.errors import MapillaryDownloadError

    client = MapillaryClient(api.base_url, token="t", max_retries=0, allow_private_addresses=True)
    for url in UNPARSEABLE:
        with pytest.raises(MapillaryDownloadError, match="bad URL|URL host") as info:
            client.download_image(url)
        assert getattr(info.value, "bad_url", False), url


def test_image_files_without_table_rows_are_removed_by_the_next_pull(api, tmp_path, monkeypatch):
    """A pull killed (or failed) after some downloads leaves files the table does not list; the
    next pull of the tile removes them under the tile's lock, so the folder holds only listed images."""
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "t0ken")
    key, box = _tile_key_and_box()
    _records(api, box, {"600": api.image("a.jpg", 4)})
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    folder = layout.root / "images" / "raw" / key
    folder.mkdir(parents=True)
    (folder / "999.jpg").write_bytes(b"left by a killed pull")
    with dg.instance_for_test() as instance:
        result = _materialize_raw(instance, tmp_path, api)
        assert result.success, _failure_text(result)
    assert sorted(p.name for p in folder.iterdir()) == ["600.jpg"]


# -- low: redaction by parsing -------------------------------------------------------


@pytest.mark.parametrize("path", ["a)b.jpg", "a'b.jpg", 'a"b.jpg', "a]b}c>.jpg"])
def test_a_query_after_a_quote_or_bracket_in_the_path_never_reaches_rejects_or_logs(api, path, caplog, tmp_path):
    from geo_assets_tests.hostile_api import closed_port

    caplog.set_level(logging.DEBUG)
    port = closed_port()
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    api.records = [record("700", f"http://127.0.0.1:{port}/img/{path}?sig={SECRET}&x=1", lat=54.0)]
    client = MapillaryClient(api.base_url, token="t", max_retries=0, backoff=0.001, timeout=3.0)
    res = pull_tile(client, Tile(BBox(-1.20, 53.90, -0.90, 54.10)), layout, known_ids=set(), known_sha256=set(),
                    start_captured_at=None, max_new=5, source="hostile", download_workers=1)
    assert [r["reason"] for r in res.rejects] == ["download_failed"]
    detail = res.rejects[0]["detail"]
    assert SECRET not in detail and "127.0.0.1" in detail, detail
    assert SECRET not in caplog.text


def test_redact_parses_each_url():
    from geo_assets.mapillary.redact import REDACTED, redact

    cases = {
        "GET http://h/a)b.jpg?sig=S1 failed": f"GET http://h/a)b.jpg{REDACTED} failed",
        "url: /p'q.jpg?sig=S2": f"url: /p'q.jpg{REDACTED}",
        "(http://h/p?sig=S4)": f"(http://h/p{REDACTED}",
        "http://user:S5@h/p": f"http://h/p{REDACTED}",
        "http://h/p#S6": f"http://h/p{REDACTED}",
        "no url here? fine": "no url here? fine",
        "http://h/plain/path stays": "http://h/plain/path stays",
    }
    for text, expected in cases.items():
        assert redact(text) == expected, text


# -- low: private, loopback and link-local image hosts --------------------------------


def test_mapillary_source_refuses_non_public_image_hosts_without_a_request(api, tmp_path, monkeypatch):
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "t0ken")
    key, box = _tile_key_and_box()
    good = api.image("p.jpg", 5)
    urls = {"800": good,  # 127.0.0.1: loopback
            "801": good.replace("127.0.0.1", "localhost"),
            "802": "http://169.254.169.254/latest/meta-data/iam",
            "803": "http://10.1.2.3/x.jpg",
            "804": "http://[::1]:1/x.jpg",
            "805": "http://[::ffff:127.0.0.1]:1/x.jpg",
            "806": "http://0.0.0.0/x.jpg"}
    _records(api, box, urls)
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    with dg.instance_for_test() as instance:
        result = _materialize_raw(instance, tmp_path, api, allow_private_addresses=False)
        assert result.success, _failure_text(result)
    rejects = read_table(layout.table_path("raw_rejects", key), RAW_REJECTS_SCHEMA)
    assert dict(zip(rejects["image_id"].to_pylist(), rejects["reason"].to_pylist())) == {i: "bad_url" for i in urls}
    assert all("non-public address" in d for d in rejects["detail"].to_pylist())
    assert not any(p.startswith("/img/") for p in api.paths), "an image was fetched from a refused host"
    # with the switch on (tests, the synthetic source) the same loopback image is fetched
    with dg.instance_for_test() as instance:
        _records(api, box, {"810": good}, t0=1_700_000_000_000)
        assert _materialize_raw(instance, tmp_path, api, allow_private_addresses=True).success
    assert read_table(layout.table_path("raw_images", key), RAW_IMAGES_SCHEMA)["image_id"].to_pylist() == ["810"]


def test_public_address_rule():
    from geo_assets.mapillary.addresses import is_public_address

    for private in ("127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
                    "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "224.0.0.1", "ff02::1"):
        assert not is_public_address(private), private
    for public in ("8.8.8.8", "151.101.1.1", "2a00:1450:4009:81f::200e"):
        assert is_public_address(public), public


# -- low: a cap on the search requests of one tile pull -------------------------------


def _always_full(api, n: int, t0: int = 1_600_000_000_000) -> list[dict]:
    """An API that answers every search with the same full page of `n` records, whatever the box
    or window: the splitting never gets a page that is not full."""
    recs = [record(str(900 + i), api.image(f"f{i}.jpg", 20 + i), lat=54.0 + i * 0.001, captured_at=t0 + i * 1000)
            for i in range(n)]
    api.search_body = json.dumps({"data": recs}).encode()
    return recs


def _search_calls(api) -> int:
    return sum(p.startswith("/images") for p in api.paths)


def test_a_tile_pull_stops_at_the_search_request_cap_and_says_it_is_incomplete(api, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    _always_full(api, 5)
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    client = MapillaryClient(api.base_url, token="t", max_retries=0, backoff=0.001, timeout=3.0, search_limit=5,
                             max_search_requests=40)
    res = pull_tile(client, Tile(BBox(-1.20, 53.90, -0.90, 54.10)), layout, known_ids=set(), known_sha256=set(),
                    start_captured_at=None, max_new=50, source="hostile", download_workers=1)
    assert _search_calls(api) == 40, _search_calls(api)
    assert res.stats["search_capped"] is True
    assert "incomplete" in caplog.text and "max_search_requests" in caplog.text
    # nothing was listed completely, so nothing is stored and the cursor cannot move
    assert res.rows == [] and res.rejects == []


def test_the_request_cap_is_a_resource_setting_reported_in_the_materialization(api, tmp_path, monkeypatch):
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "t0ken")
    _always_full(api, 5)
    with dg.instance_for_test() as instance:
        result = _materialize_raw(instance, tmp_path, api, max_search_requests=25)
        assert result.success, _failure_text(result)
        (mat,) = result.asset_materializations_for_node("raw_images")
    assert mat.metadata["search_incomplete"].value is True
    assert _search_calls(api) <= 25
