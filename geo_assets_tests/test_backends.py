"""The backend interface (store/backends/): one test body against a local folder and against a
real S3-compatible server (moto on loopback)."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from geo_assets.store.backends import LockTimeout, as_path, backend_for, storage_root
from geo_assets.store.backends.s3 import LeaseLost, ObjectPath, S3Store
from geo_assets.store.locks import partition_lock
from geo_assets.store.names import UnsafePathError
from geo_assets_tests.services import moto_server, s3_env, s3_root  # noqa: F401 - fixtures


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return storage_root(tmp_path / "storage")
    return storage_root(request.getfixturevalue("s3_root"))


def _names(root, paths) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]


def test_bytes_exists_list_delete(root):
    b = backend_for(root)
    a = root / "images/raw/t1/a.jpg"
    assert not b.exists(a)
    with pytest.raises(FileNotFoundError):
        b.read_bytes(a)
    b.write_bytes(a, b"\xff\xd8first")
    b.write_bytes(a, b"\xff\xd8second")  # overwrite publishes the new bytes
    b.write_bytes(root / "images/raw/t2/b.jpg", b"b")
    b.write_bytes(root / "tables/x/tile=t1/data.parquet", b"p")
    assert b.read_bytes(a) == b"\xff\xd8second"
    with b.open_read(a) as fh:
        assert fh.read(2) == b"\xff\xd8"
    assert b.exists(a) and not b.exists(root / "images")  # a folder (prefix) is not a file
    assert _names(root, b.list(root / "images")) == ["images/raw/t1/a.jpg", "images/raw/t2/b.jpg"]
    assert _names(root, b.list(root, suffix=".parquet")) == ["tables/x/tile=t1/data.parquet"]
    assert b.list(root / "nothing/here") == []
    b.delete(a)
    b.delete(a)  # missing_ok by default
    with pytest.raises(FileNotFoundError):
        b.delete(a, missing_ok=False)
    assert _names(root, b.list(root / "images")) == ["images/raw/t2/b.jpg"]


def test_unsafe_names_refused_before_anything_is_written(root):
    b = backend_for(root)
    for name in ("../escape", "a/../../x", ".hidden", "a\\b"):
        with pytest.raises(UnsafePathError):
            with b.lock(root, name, timeout_s=1, ttl_s=30):
                pass
    with pytest.raises(UnsafePathError):
        partition_lock(root, "raw_images", "../t1")
    if isinstance(root, ObjectPath):  # a key never climbs out of its prefix or hides
        for part in ("..", ".hidden", "a/../b"):
            with pytest.raises(UnsafePathError):
                root / part
    else:  # a local path is confined by where it resolves
        with pytest.raises(UnsafePathError):
            b.confine(root / ".." / "x", root)
    assert b.list(root) == []


def test_readers_never_see_half_an_object(root):
    """A reader polling while a writer republishes a 2 MB object sees only whole versions."""
    b = backend_for(root)
    versions = [bytes([v]) * (2 << 20) for v in range(1, 5)]
    path = root / "tables/big/tile=t1/data.parquet"
    b.write_bytes(path, versions[0])
    seen, errors, done = set(), [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                data = b.read_bytes(path)
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                errors.append(exc)
                return
            seen.add((len(data), data[0], data[-1], data.count(data[0]) == len(data)))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for v in versions[1:] * 2:
            b.write_bytes(path, v)
    finally:
        done.set()
        t.join()
    assert not errors
    assert seen and all(size == 2 << 20 and whole for size, _first, _last, whole in seen)
    assert b.read_bytes(path) == versions[-1]
    assert b.list(root / "tables/big") == [path]  # no temp files left behind or listed


def _hold_intervals(root_text: str, holders: int, hold_s: float) -> list[tuple[float, float]]:
    """`holders` threads each take the same partition lock once; each one's (entered, left) times."""
    root = as_path(root_text)
    intervals: list[tuple[float, float]] = []

    def worker():
        with partition_lock(root, "raw_images", "t1", timeout_s=60):
            entered = time.time()
            time.sleep(hold_s)
            intervals.append((entered, time.time()))

    threads = [threading.Thread(target=worker) for _ in range(holders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return intervals


def _overlaps(intervals: list[tuple[float, float]]) -> list:
    ordered = sorted(intervals)
    return [(a, b) for a, b in zip(ordered, ordered[1:]) if b[0] < a[1]]


def test_partition_lock_excludes_threads_and_processes(root):
    """Holders in two processes, three threads each: no two hold intervals overlap, and the
    probe shows the measure can see an overlap (two different partitions do overlap)."""
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_hold_intervals, [(str(root), 3, 0.3), (str(root), 3, 0.3)])
    intervals = [iv for result in results for iv in result]
    assert len(intervals) == 6
    assert _overlaps(intervals) == []
    # The same measure on two partitions held at once does find the overlap.
    with partition_lock(root, "raw_images", "t1", timeout_s=5):
        start = time.time()
        with partition_lock(root, "raw_images", "t2", timeout_s=5):
            other = (time.time(), time.time() + 0.1)
        mine = (start, time.time() + 0.2)
    assert _overlaps([mine, other]) != []


def test_one_lock_per_name_whoever_takes_it(root):
    """partition_lock and the backend's lock are the same lock: one excludes the other, a
    different name is free, and no lock shows up as data."""
    b = backend_for(root)
    order = []
    entered, release = threading.Event(), threading.Event()

    def holder():
        with partition_lock(root, "raw_images", "t1", timeout_s=10):
            entered.set()
            order.append("a-in")
            release.wait(20)
            order.append("a-out")

    t = threading.Thread(target=holder)
    t.start()
    assert entered.wait(10)
    with pytest.raises(LockTimeout):
        with b.lock(root, "raw_images/t1", timeout_s=0.2, ttl_s=30, poll_s=0.05):
            pass
    with b.lock(root, "raw_images/t2", timeout_s=1, ttl_s=30):  # another partition is free
        order.append("t2")
    release.set()
    with b.lock(root, "raw_images/t1", timeout_s=10, ttl_s=30, poll_s=0.05):
        order.append("b-in")
    t.join()
    assert order == ["a-in", "t2", "a-out", "b-in"]
    # Locks live apart from data: in locks/ on a local folder, in hidden leases on S3.
    assert all(p.relative_to(root).parts[0] == "locks" for p in b.list(root))
    if not isinstance(root, ObjectPath):  # the one lock folder
        assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.lock")) == [
            "locks/raw_images/t1.lock", "locks/raw_images/t2.lock"]


def test_s3_lease_expiry_takeover_and_loss(s3_root):
    """A holder that stops renewing loses its lease after the TTL; the next one takes it over, and the
    old holder learns it lost the lease instead of deleting the new holder's."""
    store = S3Store(s3_root)
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
    store = S3Store(s3_root)
    # The heartbeat gives a lease up after a whole TTL without an accepted renewal: 3 s (not 1)
    # keeps slow answers on a loaded machine (moto shares this process) from counting as that.
    with store.lock("tile=t9", ttl_s=3.0, timeout_s=5) as lease:
        time.sleep(7.0)  # more than twice the TTL: only renewals keep it
        with pytest.raises(LockTimeout):
            with store.lock("tile=t9", ttl_s=3.0, timeout_s=0.5, poll_s=0.1):
                pass
        lease.check()


def test_uris_pick_a_backend_or_are_refused():
    assert isinstance(storage_root("s3://bucket/a/b"), ObjectPath)
    assert str(storage_root("s3://bucket/a/b") / "c") == "s3://bucket/a/b/c"
    assert storage_root("file:///tmp/x") == as_path("/tmp/x").resolve()
    with pytest.raises(ValueError, match="unsupported"):
        storage_root("gs://bucket/x")
    with pytest.raises(ValueError, match="bucket"):
        storage_root("s3://")
    with pytest.raises(UnsafePathError):
        storage_root("s3://bucket/../x")
    with pytest.raises(TypeError, match="not a storage path"):
        backend_for("s3://bucket/x")  # text must go through storage_root / as_path first
