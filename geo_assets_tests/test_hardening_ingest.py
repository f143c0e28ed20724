"""Issue 13: hostile API records against a real pull (a throwaway HTTP server, the real
client, pull_tile and the raw_images asset). Nothing is mocked."""

from __future__ import annotations

import json
import logging
import os
import time
import traceback

import dagster as dg
import pytest

from geo_assets.defs.partitions import tile_keys
from geo_assets.defs.resources import ImageSourceResource, StorageResource
from geo_assets.geo.bbox import BBox
from geo_assets.geo.tiles import Tile
from geo_assets.ingest.pull import MAX_DOWNLOAD_STRIKES, pull_tile
from geo_assets.store.schemas import RAW_IMAGES_SCHEMA, RAW_REJECTS_SCHEMA
from geo_assets.mapillary.client import MapillaryClient
from geo_assets.mapillary.errors import MapillaryDownloadError, MapillaryRequestError, MapillaryUnavailableError
from geo_assets.store.layout import StorageLayout, UnsafePathError
from geo_assets.store.parquet import read_table
from geo_assets_tests.hostile_api import HostileApi, closed_port, drip, noise_jpeg, record

TILE = Tile(BBox(-1.20, 53.90, -0.90, 54.10))
SECRET = "SIGxSECRETx42"


@pytest.fixture
def api():
    with HostileApi() as a:
        yield a


@pytest.fixture
def layout(tmp_path) -> StorageLayout:
    return StorageLayout(tmp_path / "deep" / "er" / "storage", tmp_path / "deep" / "er" / "models")


def _client(api, **kw) -> MapillaryClient:
    kw.setdefault("backoff", 0.001)
    kw.setdefault("timeout", 3.0)
    kw.setdefault("max_retries", 1)
    return MapillaryClient(api.base_url, token="t0ken", **kw)


def _pull(client, layout, max_new=100, **kw):
    return pull_tile(client, TILE, layout, known_ids=set(), known_sha256=set(), start_captured_at=None,
                     max_new=max_new, source="hostile", download_workers=kw.pop("workers", 1), **kw)


def _lat(i: int) -> float:
    return 53.95 + i * 0.001  # ~110 m apart: never duplicate positions


# -- item 1: ids -------------------------------------------------------------------


def test_hostile_ids_are_rejected_and_nothing_is_written_outside_storage(api, layout, tmp_path):
    hostile = ["../../../../../x", "sub/dir/x", "..", "12a", "1 2", "-5", "１２３", "9" * 40, "/etc/x"]
    api.records = [record(rid, api.image(f"h{i}.jpg", i), lat=_lat(i), captured_at=1_600_000_000_000 + i)
                   for i, rid in enumerate(hostile)]
    api.records.append(record("1001", api.image("good.jpg", 99), lat=_lat(50), captured_at=1_600_000_000_100))
    res = _pull(_client(api), layout)
    assert [r["image_id"] for r in res.rows] == ["1001"]
    assert {r["reason"] for r in res.rejects} == {"bad_id"} and len(res.rejects) == len(hostile)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [f"deep/er/storage/images/raw/{TILE.key}/1001.jpg"]
    assert not any(p.name == "sub" for p in tmp_path.rglob("*"))


def test_layout_refuses_every_path_outside_its_root(tmp_path):
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    bad = [
        lambda: layout.raw_image_path("t1", "../../x"),
        lambda: layout.raw_image_path("t1", "sub/x"),
        lambda: layout.raw_image_path("../..", "1"),
        lambda: layout.blurred_image_path("t1", ".."),
        lambda: layout.table_path("raw_images", "../../../x"),
        lambda: layout.table_path("captions", "t1", "../x"),
        lambda: layout.cache_path("captions", "a/b"),
        lambda: layout.cache_path("../x", "t1"),
        lambda: layout.model_dir("..", "0.1"),
        lambda: layout.model_dir("blurred", "../../etc"),
    ]
    for make in bad:
        with pytest.raises(UnsafePathError):
            make()
    # a folder inside storage that is a symlink to elsewhere is refused too
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "storage" / "images" / "raw").mkdir(parents=True)
    os.symlink(outside, tmp_path / "storage" / "images" / "raw" / "t9")
    with pytest.raises(UnsafePathError, match="outside"):
        layout.raw_image_path("t9", "1")
    # ordinary names still work
    tile = "51.90_-2.40_53.90_-0.40"
    assert layout.raw_image_path(tile, "123").name == "123.jpg"
    assert layout.table_path("captions", tile, "blurred").parent.name == "variant=blurred"
    assert layout.model_dir("blurred", "1e-05").name == "1e-05"


# -- item 3: signed URLs -----------------------------------------------------------


def _dead(i: int, port: int) -> str:
    return f"http://127.0.0.1:{port}/img/{i}.jpg?sig={SECRET}&Expires=99"


def test_signed_urls_never_reach_rejects_logs_or_errors(api, layout, caplog):
    caplog.set_level(logging.DEBUG)  # urllib3 logs request lines, queries included, at DEBUG
    port = closed_port()
    api.records = [
        record("11", _dead(1, port), lat=_lat(1), captured_at=1_600_000_000_001),  # connection refused
        record("12", api.image(f"ok.jpg?sig={SECRET}", 1).replace("ok.jpg", "missing.jpg") + f"?sig={SECRET}",
               lat=_lat(2), captured_at=1_600_000_000_002),  # 404
        record("13", api.image("ok2.jpg", 2) + f"?sig={SECRET}", lat=_lat(3), captured_at=1_600_000_000_003),
    ]
    res = _pull(_client(api), layout)
    assert [r["image_id"] for r in res.rows] == ["13"]
    assert {r["image_id"]: r["reason"] for r in res.rejects} == {"11": "download_failed", "12": "download_failed"}
    assert any(f"sig={SECRET}" in p for p in api.paths)  # the server did get the signed URL
    stored = json.dumps(res.rejects) + json.dumps(res.rows) + json.dumps(res.stats)
    assert SECRET not in stored and "127.0.0.1" in stored  # the detail keeps scheme://host/path
    assert SECRET not in caplog.text

    # an outage: every download refused; the exception and its traceback carry no query either
    api.records = [record(str(20 + i), _dead(i, port), lat=_lat(i), captured_at=1_600_000_000_010 + i) for i in range(4)]
    with pytest.raises(MapillaryUnavailableError) as info:
        _pull(_client(api), layout)
    text = "".join(traceback.format_exception(info.value)) + repr(info.value.partial)
    assert SECRET not in text and SECRET not in caplog.text


def _tile_key_and_box():
    key = tile_keys()[0]
    return key, Tile.from_key(key).bbox


def _materialize_raw(instance, tmp_path, api, **source):
    resources = {
        "storage": StorageResource(storage_dir=str(tmp_path / "storage"), models_dir=str(tmp_path / "models")),
        "image_source": ImageSourceResource(kind="mapillary", base_url=api.base_url, token=dg.EnvVar("MAPILLARY_ACCESS_TOKEN"),
                                            max_retries=1, backoff_s=0.001, timeout_s=3.0,
                                            **{"allow_private_addresses": True, **source}),
    }
    from geo_assets.defs.assets.ingest import build_raw_images
    from geo_assets.defs.partitions import tile_partitions_for

    key, _ = _tile_key_and_box()
    return dg.materialize([build_raw_images(tile_partitions_for())], partition_key=key, instance=instance,
                          resources=resources, raise_on_error=False,
                          run_config={"ops": {"raw_images": {"config": {"images_per_tile": 50}}}})


def _failure_text(result) -> str:
    return "\n".join(str(e.event_specific_data) for e in result.all_events if e.is_failure)


def test_dagster_failure_and_tables_carry_no_signature_and_dead_records_do_not_block_the_tile(api, tmp_path, monkeypatch):
    """Item 3 in Dagster's failure messages and raw_rejects; item 4's 'never block a tile
    for good': three records whose downloads always fail come first."""
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "t0ken")
    key, box = _tile_key_and_box()
    lon, lat0 = (box.min_lon + box.max_lon) / 2, box.min_lat + 0.1
    port = closed_port()
    api.records = [record(str(100 + i), _dead(i, port), lon=lon, lat=lat0 + i * 0.01, captured_at=1_600_000_000_000 + i)
                   for i in range(3)]
    api.records += [record(str(200 + i), api.image(f"g{i}.jpg", i) + f"?sig={SECRET}", lon=lon, lat=lat0 + 0.5 + i * 0.01,
                           captured_at=1_600_000_001_000 + i) for i in range(4)]
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    with dg.instance_for_test() as instance:
        for attempt in range(1, MAX_DOWNLOAD_STRIKES):
            result = _materialize_raw(instance, tmp_path, api)
            assert not result.success
            text = _failure_text(result)
            assert "outage" in text and SECRET not in text and "127.0.0.1" in text
            assert read_table(layout.table_path("raw_images", key), RAW_IMAGES_SCHEMA).num_rows == 0
        result = _materialize_raw(instance, tmp_path, api)  # the third strike: rejects, and the tile moves on
        assert result.success, _failure_text(result)
    images = read_table(layout.table_path("raw_images", key), RAW_IMAGES_SCHEMA)
    rejects = read_table(layout.table_path("raw_rejects", key), RAW_REJECTS_SCHEMA)
    assert sorted(images["image_id"].to_pylist()) == ["200", "201", "202", "203"]
    assert dict(zip(rejects["image_id"].to_pylist(), rejects["reason"].to_pylist())) == {
        "100": "download_failed", "101": "download_failed", "102": "download_failed"}
    assert SECRET not in " ".join(rejects["detail"].to_pylist())
    assert all(f"{MAX_DOWNLOAD_STRIKES} pulls" in d for d in rejects["detail"].to_pylist())


# -- item 4: bad URLs --------------------------------------------------------------


def test_bad_urls_are_rejected_at_once_and_never_count_as_an_outage(api, layout):
    bad = ["file:///etc/passwd", "ftp://127.0.0.1/x.jpg", "http://", "javascript:alert(1)", "http://[::1/x.jpg",
           "http://127.0.0.1:99999/x.jpg", "/img/relative.jpg", "http://a b/x.jpg", "gopher://127.0.0.1:70/_x"]
    api.records = [record(str(300 + i), url, lat=_lat(i), captured_at=1_600_000_000_000 + i) for i, url in enumerate(bad)]
    api.records.append(record("399", api.image("fine.jpg", 7), lat=_lat(40), captured_at=1_600_000_000_099))
    client = _client(api, max_retries=5, backoff=0.2)
    started = time.perf_counter()
    res = _pull(client, layout)
    assert time.perf_counter() - started < 5
    assert [r["image_id"] for r in res.rows] == ["399"]
    assert {r["reason"] for r in res.rejects} == {"bad_url"} and len(res.rejects) == len(bad)
    assert client.stats["retries"] == 0
    assert not any("passwd" in p for p in api.paths)
    # the client itself refuses them without a retry
    for url in ("file:///etc/passwd", "ftp://h/x.jpg", "http://"):
        with pytest.raises(MapillaryDownloadError):
            client.download_image(url)
    assert client.stats["retries"] == 0


def test_one_dead_download_after_a_working_one_is_a_reject_not_an_outage(api, layout):
    port = closed_port()
    api.records = [record("401", api.image("a.jpg", 1), lat=_lat(1), captured_at=1_600_000_000_001)]
    api.records += [record(str(410 + i), _dead(i, port), lat=_lat(10 + i), captured_at=1_600_000_000_010 + i)
                    for i in range(4)]
    res = _pull(_client(api), layout)
    assert [r["image_id"] for r in res.rows] == ["401"]
    assert [r["reason"] for r in res.rejects] == ["download_failed"] * 4


def test_outage_keeps_what_was_walked_before_it_and_the_cursor_stops_there(api, layout):
    port = closed_port()
    api.records = [record("501", api.image("a.jpg", 1), lat=_lat(1), captured_at=1_600_000_000_001),
                   record("502", "file:///x", lat=_lat(2), captured_at=1_600_000_000_002)]
    # the downloads of 503-505 fail: the image host (a second port) is down
    api.records += [record(str(503 + i), _dead(i, port), lat=_lat(3 + i), captured_at=1_600_000_000_003 + i)
                    for i in range(3)]
    api.records.append(record("509", "ftp://x/y.jpg", lat=_lat(9), captured_at=1_600_000_000_009))
    with pytest.raises(MapillaryUnavailableError) as info:
        # The first good download counts as proof the host is up, so start after it.
        pull_tile(_client(api), TILE, layout, known_ids={"501"}, known_sha256=set(), start_captured_at=None,
                  max_new=10, source="hostile", download_workers=1)
    partial = info.value.partial
    assert partial.rows == [] and [r["image_id"] for r in partial.rejects] == ["502"]  # 509 is after the failures


# -- low: deadline, JSON cap, JPEG only --------------------------------------------


def test_slow_drip_download_hits_the_overall_deadline(api):
    api.files["slow.jpg"] = drip(noise_jpeg(1), every_s=0.05)  # each read is quick, the whole would take minutes
    client = _client(api, max_retries=0, timeout=2.0, download_deadline=1.0)
    started = time.perf_counter()
    with pytest.raises(MapillaryUnavailableError, match="longer than 1s"):
        client.download_image(f"{api.base_url}/img/slow.jpg")
    assert time.perf_counter() - started < 3


def test_json_answers_over_the_cap_are_refused(api):
    api.search_body = b'{"data": [' + b'{"id": "1"},' * 200_000 + b'{"id": "2"}]}'
    client = _client(api, max_json_bytes=1_000_000)
    with pytest.raises(MapillaryRequestError, match="over the 1000000 byte limit"):
        client.search_images(TILE.bbox)
    assert client.stats["retries"] == 0


def test_only_jpeg_is_accepted(api, layout):
    png = noise_jpeg(3, fmt="PNG")
    api.files["png-as-png.jpg"] = (200, "image/png", png)
    api.files["png-as-jpeg.jpg"] = (200, "image/jpeg", png)
    api.files["gif.jpg"] = (200, "image/gif", b"GIF89a" + b"\x00" * 100)
    api.records = [record(str(600 + i), f"{api.base_url}/img/{name}", lat=_lat(i), captured_at=1_600_000_000_000 + i)
                   for i, name in enumerate(["png-as-png.jpg", "png-as-jpeg.jpg", "gif.jpg"])]
    api.records.append(record("699", api.image("real.jpg", 4), lat=_lat(9), captured_at=1_600_000_000_099))
    res = _pull(_client(api), layout)
    assert [r["image_id"] for r in res.rows] == ["699"]
    reasons = {r["image_id"]: (r["reason"], r["detail"]) for r in res.rejects}
    assert reasons["600"][0] == "download_failed" and "JPEG" in reasons["600"][1]
    assert reasons["601"][0] == "not_jpeg" and "PNG" in reasons["601"][1]
    assert reasons["602"][0] == "download_failed"


# -- seed 003: duplicate positions --------------------------------------------------


def test_duplicate_positions_in_a_sequence_are_rejected_but_sequence_neighbours_kept(api, layout):
    base_lat, lon = 54.0, -1.05
    m = 1 / 111_195  # degrees of latitude per metre
    spots = [  # (id, metres north, sequence)
        ("701", 0.0, "seqA"),
        ("702", 1.0, "seqA"),   # 1 m from 701, same sequence: duplicate
        ("703", 5.0, "seqA"),   # 5 m: the next frame of a dense sequence, kept
        ("704", 6.5, "seqA"),   # 1.5 m from 703: duplicate
        ("705", 0.5, "seqB"),   # another sequence at the same spot: kept
        ("706", 30.0, "seqA"),  # kept
        ("707", 0.2, None),     # no sequence: never compared, kept
    ]
    api.records = [record(rid, api.image(f"{rid}.jpg", i), lon=lon, lat=base_lat + north * m,
                          captured_at=1_600_000_000_000 + i, sequence=seq)
                   for i, (rid, north, seq) in enumerate(spots)]
    res = _pull(_client(api), layout)
    assert [r["image_id"] for r in res.rows] == ["701", "703", "705", "706", "707"]
    assert {r["image_id"]: r["reason"] for r in res.rejects} == {"702": "duplicate_position", "704": "duplicate_position"}
    assert "threshold 2 m" in res.rejects[0]["detail"]
    assert not any("/img/702.jpg" in p for p in api.paths)  # rejected before any download
    # across pulls: positions already stored count, and 0 m turns the filter off
    api.records = [record("708", api.image("708.jpg", 8), lon=lon, lat=base_lat + 0.3 * m,
                          captured_at=1_600_000_000_100, sequence="seqA")]
    known = {"seqA": [(base_lat, lon)]}
    again = _pull(_client(api), layout, known_positions=known)
    assert [r["reason"] for r in again.rejects] == ["duplicate_position"]
    off = _pull(_client(api), layout, known_positions=known, duplicate_distance_m=0)
    assert [r["image_id"] for r in off.rows] == ["708"]


# -- low: the cursor never passes a box truncated at the deepest split ----------------


def _pull_until_done(client, layout, max_new, pulls=20, check=None):
    rows, rejects = [], []
    for _ in range(pulls):
        known = {r["image_id"] for r in rows + rejects}
        times = [r["captured_at"] for r in rows + rejects]
        res = pull_tile(client, TILE, layout, known_ids=known, known_sha256={r["sha256"] for r in rows},
                        start_captured_at=max(times) if times else None, max_new=max_new, source="hostile",
                        download_workers=1)
        rows += res.rows
        rejects += res.rejects
        if check is not None:
            check(res, rows + rejects)
        if not res.rows and not res.rejects:
            break
    return rows, rejects


def test_cursor_never_moves_past_a_box_truncated_at_max_depth(api, layout):
    api.honour_search = True
    second = 1_600_000_000_000
    # the west box holds 6 images in one second: more than a page (4), and neither a
    # shorter time window nor a split (max depth 0) can list them all
    west = [record(str(800 + i), api.image(f"w{i}.jpg", 100 + i), lon=-1.15, lat=_lat(i),
                   captured_at=second + 100 * i) for i in range(6)]
    east_before = [record("901", api.image("e1.jpg", 201), lon=-0.95, lat=_lat(1), captured_at=second - 5_000)]
    east_after = [record("902", api.image("e2.jpg", 202), lon=-0.95, lat=_lat(2), captured_at=second + 100_000)]
    api.records = west + east_before + east_after
    client = _client(api, search_limit=4, max_split_depth=0, max_bbox_area=TILE.bbox.area / 2 + 1e-9)
    res = _pull(client, layout)
    assert client.stats["truncated_boxes"] >= 1 and client.last_search_horizon == second + 300
    # everything up to the truncated box's newest listed record, nothing after it
    assert [r["image_id"] for r in res.rows] == ["901", "800", "801", "802", "803"]
    assert res.stats["beyond_truncation"] == 1  # 902: listed, withheld
    cursor = max(r["captured_at"] for r in res.rows)
    assert cursor < min(r["captured_at"] for r in west[4:] + east_after)  # unseen images stay after the cursor
    # the next pull from that cursor still walks nothing past the gap
    known = {r["image_id"] for r in res.rows}
    again = pull_tile(client, TILE, layout, known_ids=known, known_sha256={r["sha256"] for r in res.rows},
                      start_captured_at=cursor, max_new=100, source="hostile", download_workers=1)
    assert again.rows == [] and again.rejects == []


def test_time_windows_list_a_dense_box_without_truncation_and_never_pass_an_unseen_image(api, layout):
    """A box over a page (10 images, pages of 4, no split allowed) used to be cut at its
    4th image per pull; time windows list it in full, and each pull's cursor leaves
    no unseen image before it."""
    api.honour_search = True
    west = [record(str(800 + i), api.image(f"w{i}.jpg", 100 + i), lon=-1.15, lat=_lat(i),
                   captured_at=1_600_000_000_000 + 1000 * i) for i in range(10)]
    east = [record(str(900 + i), api.image(f"e{i}.jpg", 200 + i), lon=-0.95, lat=_lat(i),
                    captured_at=1_600_000_004_500 + 1000 * i) for i in range(3)]
    api.records = west + east
    everything = sorted(west + east, key=lambda r: r["captured_at"])

    def check(res, walked):
        seen = {r["image_id"] for r in walked}
        cursor = max(r["captured_at"] for r in walked)
        assert all(str(r["id"]) in seen for r in everything if r["captured_at"] < cursor)

    client = _client(api, search_limit=4, max_split_depth=0, max_bbox_area=TILE.bbox.area / 2 + 1e-9)
    rows, rejects = _pull_until_done(client, layout, max_new=3, check=check)
    assert rejects == [] and client.stats["truncated_boxes"] == 0
    assert [r["image_id"] for r in rows] == [str(r["id"]) for r in everything]


def test_a_search_window_failing_mid_walk_keeps_what_was_walked(api, layout):
    """The next window is asked for mid-walk: if that search fails, the rows and
    rejects walked so far come back on the error (`.partial`) for the caller to store."""
    api.honour_search = True
    api.records = [record(str(800 + i), f"{api.base_url}/img/w{i}.jpg", lon=-1.15, lat=_lat(i),
                          captured_at=1_600_000_000_000 + 1000 * i) for i in range(10)]
    for i in (0, 3, 4, 5):
        api.image(f"w{i}.jpg", 100 + i)  # w1: 404 (a reject)
    good = noise_jpeg(102)

    def break_search_then_serve(h):  # the API goes down while the first window is walked
        api.search_body = b'{"data": ['
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(good)))
        h.end_headers()
        h.wfile.write(good)

    api.files["w2.jpg"] = break_search_then_serve
    client = _client(api, search_limit=4, max_split_depth=0)
    with pytest.raises(MapillaryUnavailableError) as info:
        _pull(client, layout, max_new=3)
    partial = info.value.partial
    assert [r["image_id"] for r in partial.rows] == ["800", "802"]
    assert [(r["image_id"], r["reason"]) for r in partial.rejects] == [("801", "download_failed")]
