"""Issue 22, item 3 (and the lease's owner id): an S3 lease whose renewals fail for a whole TTL is
lost, and the holder's next publish fails instead of writing beside the run that took it over.
Real S3 wiring: moto on loopback, reached by the first holder through a proxy that refuses only
the lease's renewal PUTs (as an expired credential or a bucket policy would)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pyarrow as pa
import pytest

from geo_assets.store import parquet as store
from geo_assets.store.locks import partition_lock
from geo_assets.store.backends import LockTimeout, storage_root
from geo_assets.store.backends.s3 import LeaseLost, S3Store
from geo_assets_tests.services import FaultyS3Proxy, moto_server, s3_env, s3_root  # noqa: F401 - fixtures

TTL_S = 2.0


@pytest.fixture
def proxied(s3_root, monkeypatch):
    """(storage root, the moto endpoint, the proxy) with this process's S3 client behind the proxy."""
    moto = os.environ["AWS_ENDPOINT_URL"]
    with FaultyS3Proxy(moto) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        monkeypatch.setenv("GEO_ASSETS_LEASE_TTL_S", str(TTL_S))
        yield s3_root + "/storage", moto, proxy


def test_a_lease_whose_renewals_fail_for_a_ttl_is_lost_and_nothing_is_published(proxied):
    root_uri, moto, proxy = proxied
    root = storage_root(root_uri)
    other = S3Store(root_uri, endpoint_url=moto)  # a second machine, straight to S3
    table = root / "tables" / "raw_images" / "tile=t1" / "data.parquet"
    taken_over = threading.Event()
    errors: list[BaseException] = []
    with pytest.raises(LeaseLost, match="renewals failed"):
        with partition_lock(root, "raw_images", "t1", timeout_s=10):
            proxy.fail_leases.set()  # from now on every renewal is refused

            def second_holder():
                try:
                    with other.lock("raw_images/t1", timeout_s=20, ttl_s=30, poll_s=0.1):
                        taken_over.set()
                        time.sleep(1.0)  # holds it while the first one tries to publish
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            worker = threading.Thread(target=second_holder)
            worker.start()
            assert taken_over.wait(20), errors  # the lease expired: another run holds it now
            store.write_table(table, pa.table({"image_id": ["from-the-first-holder"]}))  # must refuse
    worker.join(30)
    assert not errors, errors
    assert proxy.refused, "the proxy never refused a renewal: the test did not exercise the failure"
    assert not table.exists(), "the first holder published after its lease was taken over"


def test_model_artifacts_are_not_written_by_a_lost_lease(proxied):
    root_uri, moto, proxy = proxied
    model_json = storage_root(root_uri.replace("/storage", "/models")) / "unblurred" / "0.5" / "model.json"
    with pytest.raises(LeaseLost, match="renewals failed"):
        with partition_lock(storage_root(root_uri), "geolocator_model", "unblurred_0.5", timeout_s=10):
            store.atomic_write_bytes(model_json, b"{}")  # while the lease is good: published
            proxy.fail_leases.set()
            time.sleep(TTL_S + 0.5)  # a whole TTL of failed renewals; nobody else even took it
            store.atomic_write_bytes(model_json, b'{"second": true}')  # model artifacts publish this way
    assert model_json.read_bytes() == b"{}"


def test_a_stored_infinite_or_huge_ttl_is_not_honoured_forever(s3_root):
    st = S3Store(s3_root)
    key = f"{st.prefix}/.leases/locks/raw_images/t2.lease"
    for ttl in ("inf", "nan", "-1", "1e300"):
        st.fs.call_s3("put_object", Bucket=st.bucket, Key=key, Body=b"{}", Metadata={"ttl-s": ttl})
        time.sleep(2.2)  # older than our TTL plus S3's one-second resolution
        with st.lock("raw_images/t2", timeout_s=5, ttl_s=1.0, poll_s=0.1):
            pass


def test_the_ttl_setting_must_be_finite_and_positive(monkeypatch, tmp_path):
    from geo_assets.store.locks import lease_ttl_s

    for bad in ("inf", "nan", "0", "-5", "soon"):
        monkeypatch.setenv("GEO_ASSETS_LEASE_TTL_S", bad)
        with pytest.raises(ValueError, match="GEO_ASSETS_LEASE_TTL_S"):
            lease_ttl_s()


def test_the_lease_body_names_no_user_host_or_pid(s3_root):
    import getpass

    st = S3Store(s3_root)
    with st.lock("raw_images/t3", timeout_s=5, ttl_s=30) as lease:
        body = st.fs.cat_file(f"{st.bucket}/{lease.s3_key}").decode()
        owner = json.loads(body)["owner"]
    for private in (getpass.getuser(), socket.gethostname(), str(os.getpid())):
        assert private not in body, private
    assert len(owner) >= 16 and owner.isalnum()


def test_a_healthy_heartbeat_still_keeps_the_lease(s3_root):
    st = S3Store(s3_root)
    # A heartbeat that stops after one silent TTL must still keep a healthy lease: 3 s leaves room
    # for slow answers on a loaded machine, and the hold lasts well past it.
    with st.lock("raw_images/t4", ttl_s=3.0, timeout_s=5) as lease:
        time.sleep(7.0)  # more than twice the TTL
        with pytest.raises(LockTimeout):
            with st.lock("raw_images/t4", ttl_s=3.0, timeout_s=0.5, poll_s=0.1):
                pass
        lease.check()


def test_leases_released_out_of_order_leave_none_behind(s3_root):
    """The held-lease list is kept by identity: a lease released before one taken after it is not
    brought back when the later one is released (a lost one would then refuse every later write)."""
    from geo_assets.store.backends.s3 import _HELD_LEASES

    st = S3Store(s3_root)
    first = st.lock("a/1", timeout_s=5, ttl_s=30)
    first.__enter__()
    with st.lock("a/2", timeout_s=5, ttl_s=30):
        first.__exit__(None, None, None)
        assert len(_HELD_LEASES.get()) == 1
    assert _HELD_LEASES.get() == ()
