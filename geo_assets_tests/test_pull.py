"""pull_tile() into a tmp storage layout against a real local server."""

from __future__ import annotations

import hashlib
import time

import pyarrow as pa
import pytest

from geo_assets.geo.bbox import UK_REGION, BBox
from geo_assets.geo.tiles import Tile, tiles_for_region
from geo_assets.ingest.pull import PullResult, pull_tile
from geo_assets.store.schemas import RAW_IMAGES_SCHEMA, RAW_REJECTS_SCHEMA
from geo_assets.mapillary.client import MapillaryClient
from geo_assets.mapillary.errors import MapillaryUnavailableError
from geo_assets.store.layout import StorageLayout
from geo_assets.synthetic.server import FaultConfig, LocalMapillaryServer
from geo_assets.synthetic.world import SyntheticWorld

TOKEN = "pull-test-token"
SMALL = Tile(BBox(-1.20, 53.90, -0.90, 54.10))  # York: ~40 images
ROW_KEYS = {"image_id", "lat", "lon", "captured_at", "source", "sha256", "path", "width", "height", "sequence_id"}
REJECT_KEYS = {"image_id", "reason", "detail", "captured_at"}


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=0)


@pytest.fixture(scope="module")
def server(world):
    with LocalMapillaryServer(world, token=TOKEN) as srv:
        yield srv


@pytest.fixture
def client(server):
    server.faults = None
    yield MapillaryClient(server.base_url, token=TOKEN, backoff=0.001, timeout=5.0)
    server.faults = None


@pytest.fixture
def layout(tmp_path) -> StorageLayout:
    return StorageLayout(tmp_path / "storage", tmp_path / "models")


def _pull(client, layout, tile=SMALL, known_ids=(), known_sha256=(), cursor=None, max_new=1000, workers=4) -> PullResult:
    return pull_tile(client, tile, layout, known_ids=set(known_ids), known_sha256=set(known_sha256),
                     start_captured_at=cursor, max_new=max_new, source="synthetic:0", download_workers=workers)


def _check_rows(result: PullResult, layout: StorageLayout, tile: Tile) -> None:
    for row in result.rows:
        assert set(row) == ROW_KEYS
        assert isinstance(row["image_id"], str) and isinstance(row["captured_at"], int)
        assert isinstance(row["lat"], float) and isinstance(row["width"], int)
        assert tile.bbox.contains(row["lat"], row["lon"])
        data = (layout.root / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert row["path"] == f"images/raw/{tile.key}/{row['image_id']}.jpg"
    for rej in result.rejects:
        assert set(rej) == REJECT_KEYS
    assert [r["captured_at"] for r in result.rows] == sorted(r["captured_at"] for r in result.rows)
    pa.Table.from_pylist(result.rows, schema=RAW_IMAGES_SCHEMA)
    pa.Table.from_pylist(result.rejects, schema=RAW_REJECTS_SCHEMA)


def test_pull_90_images_of_a_tile(client, layout, world, server):
    tile = next(t for t in tiles_for_region(UK_REGION, 2.0) if t.key == "51.90_-2.40_53.90_-0.40")
    started = time.perf_counter()
    result = _pull(client, layout, tile=tile, max_new=90)
    seconds = time.perf_counter() - started
    assert len(result.rows) == 90 and result.rejects == []
    _check_rows(result, layout, tile)
    inside = [m for m in world.search(tile.bbox) if tile.bbox.contains(m.lat, m.lon)]
    assert [r["image_id"] for r in result.rows] == [m.id for m in inside[:90]]
    assert result.stats["accepted"] == 90 and result.stats["requests"] == 91
    print(f"pull throughput: {90 / seconds:.1f} images/s ({seconds:.2f} s for 90)")


def test_bounded_search_pulls_the_same_first_images_with_far_fewer_requests(layout, world, server):
    """Issue 13: a pull that wants a few images of a tile with many pages lists a
    captured_at window or two, not the whole tile, and walks the same images."""
    tile = next(t for t in tiles_for_region(UK_REGION, 2.0) if t.key == "51.90_-2.40_53.90_-0.40")
    inside = [m.id for m in world.search(tile.bbox) if tile.bbox.contains(m.lat, m.lon)]
    assert len(inside) > 1000  # 11+ pages of 100
    lister = MapillaryClient(server.base_url, token=TOKEN, backoff=0.001, timeout=5.0, search_limit=100)
    n0 = len(server.request_log)
    lister.search_images(tile.bbox, fields=("id",))
    whole_tile = len(server.request_log) - n0  # what a pull cost before: the tile listed in full

    client = MapillaryClient(server.base_url, token=TOKEN, backoff=0.001, timeout=5.0, search_limit=100)
    rows: list[dict] = []
    for _ in range(2):
        n0 = len(server.request_log)
        res = _pull(client, layout, tile=tile, known_ids={r["image_id"] for r in rows},
                    known_sha256={r["sha256"] for r in rows},
                    cursor=max(r["captured_at"] for r in rows) if rows else None, max_new=30)
        searches = sum(1 for r in list(server.request_log)[n0:] if r.path.startswith("/images"))
        assert len(res.rows) == 30 and res.rejects == []
        assert searches <= 3 and searches * 5 < whole_tile, (searches, whole_tile)
        assert res.stats["searched"] < len(inside) / 5
        rows += res.rows
    assert [r["image_id"] for r in rows] == inside[:60]


def test_second_pull_with_stored_ids_and_cursor_adds_nothing(client, layout, world):
    first = _pull(client, layout)
    n = len([m for m in world.search(SMALL.bbox) if SMALL.bbox.contains(m.lat, m.lon)])
    assert len(first.rows) == n > 10
    _check_rows(first, layout, SMALL)
    known = {r["image_id"] for r in first.rows} | {r["image_id"] for r in first.rejects}
    cursor = max(r["captured_at"] for r in first.rows)
    again = _pull(client, layout, known_ids=known, known_sha256={r["sha256"] for r in first.rows}, cursor=cursor)
    assert again.rows == [] and again.rejects == []
    assert again.stats["known_skipped"] >= 1  # the record at the cursor came back, skipped by id


def test_incremental_pulls_add_up_to_one_full_pull(client, layout, world):
    rows, rejects = [], []
    for _ in range(20):
        known = {r["image_id"] for r in rows + rejects}
        values = [r["captured_at"] for r in rows + rejects if r["captured_at"] is not None]
        res = _pull(client, layout, known_ids=known, known_sha256={r["sha256"] for r in rows},
                    cursor=max(values) if values else None, max_new=7)
        assert len(res.rows) <= 7
        rows += res.rows
        rejects += res.rejects
        if not res.rows and not res.rejects:
            break
    expected = [m.id for m in world.search(SMALL.bbox) if SMALL.bbox.contains(m.lat, m.lon)]
    assert [r["image_id"] for r in rows] == expected


def test_truncated_image_is_undecodable_and_missing_geometry_rejected(client, layout, server, world):
    inside = [m for m in world.search(SMALL.bbox) if SMALL.bbox.contains(m.lat, m.lon)]
    victim = inside[2].id
    server.faults = FaultConfig(truncated_image_ids={victim}, missing_geometry_every_n=4)
    result = _pull(client, layout, max_new=15)
    _check_rows(result, layout, SMALL)
    reasons = {r["image_id"]: r["reason"] for r in result.rejects}
    no_geometry = {m.id for m in inside if m.index % 4 == 0}
    if victim not in no_geometry:
        assert reasons[victim] == "undecodable"
    assert no_geometry and {i for i, r in reasons.items() if r == "missing_coordinates"} == {
        i for i in no_geometry if i in reasons}
    assert len(result.rows) == 15  # rejects do not count toward max_new
    assert all(r["captured_at"] is not None for r in result.rejects)
    assert not (layout.raw_image_path(SMALL.key, victim)).exists()


def test_download_failures_are_rejects_not_crashes(client, layout, server, world):
    server.faults = FaultConfig(forbidden_images_first_n=1)  # expired URL: refreshed once, then fine
    # one download at a time so the faults hit one image (deterministic)
    ok = _pull(client, layout, max_new=3, workers=1)
    assert len(ok.rows) == 3 and ok.rejects == []
    server.faults = FaultConfig(forbidden_images_first_n=2)  # refreshed URL expired too
    bad = _pull(client, layout, max_new=3, workers=1)
    assert [r["reason"] for r in bad.rejects] == ["download_failed"]
    assert "403" in bad.rejects[0]["detail"] and len(bad.rows) == 3


def test_duplicate_sha256_is_rejected(client, layout, world):
    inside = [m for m in world.search(SMALL.bbox) if SMALL.bbox.contains(m.lat, m.lon)]
    sha = hashlib.sha256(world.render(inside[0].id).jpeg).hexdigest()
    result = _pull(client, layout, known_sha256={sha}, max_new=3)
    assert result.rejects[0]["image_id"] == inside[0].id and result.rejects[0]["reason"] == "duplicate_sha256"
    assert len(result.rows) == 3


def test_search_outage_raises(client, layout, server):
    server.faults = FaultConfig(server_error_first_n=50)
    c = MapillaryClient(server.base_url, token=TOKEN, backoff=0.001, max_retries=2)
    with pytest.raises(MapillaryUnavailableError):
        _pull(c, layout)


def test_download_outage_raises_instead_of_rejecting_everything(layout, server):
    server.faults = FaultConfig(server_error_first_n=50, faults_on_images=True, faults_on_api=False)
    c = MapillaryClient(server.base_url, token=TOKEN, backoff=0.001, max_retries=1)
    with pytest.raises(MapillaryUnavailableError, match="download"):
        _pull(c, layout, max_new=10)
    # a single failing download is only a reject
    server.faults = FaultConfig(server_error_first_n=2, faults_on_images=True, faults_on_api=False)
    res = _pull(c, layout, max_new=3, workers=1)
    assert [r["reason"] for r in res.rejects] == ["download_failed"] and len(res.rows) == 3


def test_zero_max_new_does_nothing(client, layout, server):
    before = server.request_count
    res = _pull(client, layout, max_new=0)
    assert res.rows == [] and res.rejects == [] and server.request_count == before


def test_ids_repeated_from_another_tile_do_not_pollute_rejects(client, layout, server, world):
    other = Tile(BBox(-1.60, 53.70, -1.40, 53.90))  # Leeds, next to SMALL
    server.faults = FaultConfig(duplicate_ids=True, duplicate_count=5)
    a = _pull(client, layout, tile=other)
    b = _pull(client, layout)
    a_ids = {r["image_id"] for r in a.rows}
    assert a_ids and not a_ids & ({r["image_id"] for r in b.rows} | {r["image_id"] for r in b.rejects})
    assert b.stats["outside_tile"] >= 1 and b.rejects == []
    _check_rows(b, layout, SMALL)
