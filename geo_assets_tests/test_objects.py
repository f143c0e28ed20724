"""The storage interface (store/objects.py): one test body against a local folder and against a real
S3-compatible server (moto on loopback)."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pytest

from geo_assets.store.schemas import RAW_IMAGES_SCHEMA
from geo_assets.store.layout import UnsafePathError
from geo_assets.store.objects import LeaseLost, LockTimeout, ObjectStore, S3ObjectStore
from geo_assets_tests.services import moto_server, s3_env, s3_root  # noqa: F401 - fixtures


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return ObjectStore.from_uri(tmp_path / "storage")
    return ObjectStore.from_uri(request.getfixturevalue("s3_root"))


def _raw_rows(tile: str, n: int) -> pa.Table:
    return pa.table({
        "image_id": [f"{tile}-{i}" for i in range(n)],
        "lat": [52.0 + i / 100 for i in range(n)],
        "lon": [-1.0 - i / 100 for i in range(n)],
        "captured_at": [1_700_000_000_000 + i for i in range(n)],
        "source": ["synthetic"] * n,
        "sha256": [f"{i:064x}" for i in range(n)],
        "path": [f"images/raw/{tile}/{tile}-{i}.jpg" for i in range(n)],
        "width": [640] * n,
        "height": [360] * n,
        "sequence_id": [f"seq{i % 3}" for i in range(n)],
    }, schema=RAW_IMAGES_SCHEMA)


def test_bytes_exists_list_delete(store):
    assert not store.exists("images/raw/t1/a.jpg")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("images/raw/t1/a.jpg")
    store.write_bytes("images/raw/t1/a.jpg", b"\xff\xd8first")
    store.write_bytes("images/raw/t1/a.jpg", b"\xff\xd8second")  # overwrite publishes the new bytes
    store.write_bytes("images/raw/t2/b.jpg", b"b")
    store.write_bytes("tables/x/tile=t1/data.parquet", b"p")
    assert store.read_bytes("images/raw/t1/a.jpg") == b"\xff\xd8second"
    assert store.exists("images/raw/t1/a.jpg")
    assert store.list("images") == ["images/raw/t1/a.jpg", "images/raw/t2/b.jpg"]
    assert store.list("", suffix=".parquet") == ["tables/x/tile=t1/data.parquet"]
    assert store.list("nothing/here") == []
    store.delete("images/raw/t1/a.jpg")
    store.delete("images/raw/t1/a.jpg")  # missing_ok by default
    with pytest.raises(FileNotFoundError):
        store.delete("images/raw/t1/a.jpg", missing_ok=False)
    assert store.list("images") == ["images/raw/t2/b.jpg"]
    assert not store.exists("images/raw/t1/a.jpg")


@pytest.mark.parametrize("key", ["../escape.jpg", "images/../../x", "/abs/x", "images//x", ".hidden/x", "a/b\\c"])
def test_unsafe_keys_refused(store, key):
    with pytest.raises(UnsafePathError):
        store.write_bytes(key, b"x")
    assert store.list("") == []


def test_parquet_round_trip_with_project_schema(store):
    table = _raw_rows("t1", 5)
    store.write_table("tables/raw_images/tile=t1/data.parquet", table)
    back = store.read_table("tables/raw_images/tile=t1/data.parquet", RAW_IMAGES_SCHEMA)
    assert back.schema == RAW_IMAGES_SCHEMA
    assert back.equals(table)
    # Same contract as store/parquet.read_table: missing reads as empty, missing columns are an error.
    empty = store.read_table("tables/raw_images/tile=none/data.parquet", RAW_IMAGES_SCHEMA)
    assert empty.num_rows == 0 and empty.schema == RAW_IMAGES_SCHEMA
    store.write_table("tables/raw_images/tile=bad/data.parquet", table.drop(["sha256"]))
    with pytest.raises(ValueError, match="sha256"):
        store.read_table("tables/raw_images/tile=bad/data.parquet", RAW_IMAGES_SCHEMA)


def test_readers_never_see_half_an_object(store):
    """A reader polling while a writer republishes a 2 MB object sees only whole versions."""
    versions = [bytes([v]) * (2 << 20) for v in range(1, 5)]
    key = "tables/big/tile=t1/data.parquet"
    store.write_bytes(key, versions[0])
    seen, errors, done = set(), [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                data = store.read_bytes(key)
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                errors.append(exc)
                return
            seen.add((len(data), data[0], data[-1], data.count(data[0]) == len(data)))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for v in versions[1:] * 2:
            store.write_bytes(key, v)
    finally:
        done.set()
        t.join()
    assert not errors
    assert seen and all(size == 2 << 20 and whole for size, _first, _last, whole in seen)
    assert store.read_bytes(key) == versions[-1]
    assert store.list("tables/big") == [key]  # no temp files left behind or listed


def test_duckdb_views_and_arrow_dataset(store):
    store.write_table("tables/raw_images/tile=t1/data.parquet", _raw_rows("t1", 3))
    store.write_table("tables/raw_images/tile=t2/data.parquet", _raw_rows("t2", 4))
    con = store.duckdb_connect()
    try:
        assert store.create_view(con, "raw_images", "tables/raw_images")
        assert not store.create_view(con, "captions", "tables/captions")  # no files yet: no view
        rows = con.execute("SELECT tile, count(*), min(width) FROM raw_images GROUP BY tile ORDER BY tile").fetchall()
        assert rows == [("t1", 3, 640), ("t2", 4, 640)]
        # The pyarrow route: a dataset registered in DuckDB by name, Hive columns included.
        con.register("raw_ds", store.arrow_dataset("tables/raw_images"))
        assert con.execute("SELECT count(*), count(DISTINCT tile) FROM raw_ds").fetchone() == (7, 2)
    finally:
        con.close()


def test_lock_is_exclusive(store):
    order = []
    entered = threading.Event()

    def holder():
        with store.lock("raw_images/tile=t1", timeout_s=10, ttl_s=30):
            entered.set()
            order.append("a-in")
            time.sleep(0.6)
            order.append("a-out")

    t = threading.Thread(target=holder)
    t.start()
    assert entered.wait(10)
    with pytest.raises(LockTimeout):
        with store.lock("raw_images/tile=t1", timeout_s=0.2, poll_s=0.05):
            pass
    with store.lock("raw_images/tile=t2", timeout_s=1):  # another partition is free
        order.append("t2")
    with store.lock("raw_images/tile=t1", timeout_s=10, poll_s=0.05):
        order.append("b-in")
    t.join()
    assert order == ["a-in", "t2", "a-out", "b-in"]
    assert store.list("") == []  # locks are not data objects


def test_s3_lease_expiry_takeover_and_loss(s3_root):
    """A holder that stops renewing loses its lease after the TTL; the next one takes it over, and the
    old holder learns it lost the lease instead of deleting the new holder's."""
    store = ObjectStore.from_uri(s3_root)
    assert isinstance(store, S3ObjectStore)
    first = store.lock("models/blurred/0.05", ttl_s=1.0, timeout_s=5, poll_s=0.05)
    lease = first.__enter__()
    lease._stop.set()  # a frozen holder: its heartbeat stops
    lease._thread.join()
    started = time.monotonic()
    with store.lock("models/blurred/0.05", ttl_s=30, timeout_s=10, poll_s=0.1) as second:
        took = time.monotonic() - started
        assert 0.5 < took < 8
        second.check()
        with pytest.raises(LeaseLost):
            first.__exit__(None, None, None)
        # The new holder's lease is still there: the loser did not delete it.
        assert any(k.endswith(".lease") for k in store.fs.find(f"{store.bucket}/"))
    assert not any(k.endswith(".lease") for k in store.fs.find(f"{store.bucket}/"))


def test_s3_lease_heartbeat_keeps_it(s3_root):
    store = ObjectStore.from_uri(s3_root)
    # The heartbeat gives a lease up after a whole TTL without an accepted renewal: 3 s (not 1)
    # keeps slow answers on a loaded machine (moto shares this process) from counting as that.
    with store.lock("tile=t9", ttl_s=3.0, timeout_s=5) as lease:
        time.sleep(7.0)  # more than twice the TTL: only renewals keep it
        with pytest.raises(LockTimeout):
            with store.lock("tile=t9", ttl_s=3.0, timeout_s=0.5, poll_s=0.1):
                pass
        lease.check()


def test_from_uri_refuses_unknown_schemes():
    with pytest.raises(ValueError, match="unsupported"):
        ObjectStore.from_uri("gs://bucket/x")
    with pytest.raises(ValueError, match="bucket"):
        ObjectStore.from_uri("s3://")
