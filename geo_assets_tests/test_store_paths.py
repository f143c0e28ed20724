"""The store functions the assets call (parquet, images, locks, catalog, layout, settings) over a
local folder and over a real S3-compatible server (moto on loopback): same calls, same results."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pyarrow as pa
import pytest

from geo_assets.store.catalog import query_connection, refresh_views
from geo_assets.store.images import UnreadableImage, load_bgr
from geo_assets.store.layout import StorageLayout, UnsafePathError
from geo_assets.store.locks import partition_lock
from geo_assets.store.parquet import atomic_write_bytes, read_table, write_table
from geo_assets.store.backends import storage_root
from geo_assets.store.backends.s3 import ObjectPath
from geo_assets.store.schemas import RAW_IMAGES_SCHEMA
from geo_assets_tests.services import moto_server, s3_env, s3_root  # noqa: F401 - fixtures


@pytest.fixture(params=["local", "s3"])
def layout(request, tmp_path):
    if request.param == "local":
        return StorageLayout(tmp_path / "storage", tmp_path / "models")
    root = request.getfixturevalue("s3_root")
    return StorageLayout(storage_root(root + "/storage"), storage_root(root + "/models"))


def _rows(tile: str, n: int) -> pa.Table:
    return pa.table({
        "image_id": [f"{tile}-{i}" for i in range(n)], "lat": [52.0] * n, "lon": [-1.0] * n,
        "captured_at": list(range(n)), "source": ["synthetic"] * n, "sha256": ["0" * 64] * n,
        "path": [f"images/raw/{tile}/{tile}-{i}.jpg" for i in range(n)], "width": [640] * n, "height": [360] * n,
        "sequence_id": [""] * n,
    }, schema=RAW_IMAGES_SCHEMA)


def test_tables_images_and_paths_round_trip(layout):
    path = layout.table_path("raw_images", "a")
    assert not path.exists()
    assert read_table(path, RAW_IMAGES_SCHEMA).num_rows == 0  # missing reads as empty
    write_table(path, _rows("a", 3))
    write_table(layout.table_path("raw_images", "b"), _rows("b", 2))
    assert path.exists() and read_table(path, RAW_IMAGES_SCHEMA).equals(_rows("a", 3))
    assert [p.name for p in layout.tile_table_files("raw_images", "a")] == ["data.parquet"]

    image = np.full((36, 64, 3), 120, np.uint8)
    img_path = layout.raw_image_path("a", "a-0")
    atomic_write_bytes(img_path, cv2.imencode(".jpg", image)[1].tobytes())
    assert load_bgr(layout.root / "images/raw/a/a-0.jpg").shape == (36, 64, 3)
    assert img_path.relative_to(layout.root).as_posix() == "images/raw/a/a-0.jpg"
    with pytest.raises(UnreadableImage):
        load_bgr(layout.raw_image_path("a", "missing"))
    atomic_write_bytes(layout.raw_image_path("a", "bad"), b"not a jpeg")
    with pytest.raises(UnreadableImage):
        load_bgr(layout.raw_image_path("a", "bad"))

    # pathlib globs the asset code and predict.py use
    assert sorted(p.relative_to(layout.root).as_posix() for p in (layout.root / "tables").glob("**/*.parquet")) == [
        "tables/raw_images/tile=a/data.parquet", "tables/raw_images/tile=b/data.parquet"]
    assert [p.name for p in (layout.root / "images").glob("*/*/a-0.jpg")] == ["a-0.jpg"]
    with pytest.raises(UnsafePathError):
        layout.raw_image_path("a", "../escape")
    if isinstance(layout.root, ObjectPath):  # a key never climbs out of its prefix
        with pytest.raises(ValueError):
            layout.root / "images" / ".." / "x"


def test_duckdb_views_over_either_store(layout):
    write_table(layout.table_path("raw_images", "a"), _rows("a", 3))
    write_table(layout.table_path("raw_images", "b"), _rows("b", 2))
    refresh_views(layout, ("raw_images",))
    with query_connection(layout) as con:
        got = con.execute("SELECT tile, count(*) FROM raw_images GROUP BY tile ORDER BY tile").fetchall()
    assert got == [("a", 3), ("b", 2)]
    if isinstance(layout.root, ObjectPath):
        assert not Path("geo.duckdb").exists()  # no catalog file written anywhere for S3


def test_partition_lock_lives_apart_from_data(layout):
    """Where the lock is kept (mutual exclusion itself: test_backends.py)."""
    lease_key = f"{layout.root.bucket}/{layout.root.key}/.leases/locks/raw_images/a.lease" \
        if isinstance(layout.root, ObjectPath) else None
    with partition_lock(layout.root, "raw_images", "a", timeout_s=30):
        if lease_key:
            assert layout.root.fs.exists(lease_key)
    if lease_key:  # the lease is deleted on release and hidden from listings
        assert layout.root.keys() == []
        assert not layout.root.fs.exists(lease_key)
    else:  # the kernel releases the lock; its file stays in the one lock folder
        assert [p.relative_to(layout.root).as_posix() for p in layout.root.rglob("*") if p.is_file()] == [
            "locks/raw_images/a.lock"]


def test_settings_keep_s3_uris(monkeypatch, s3_root):
    from geo_assets.defs.resources import build_resources
    from geo_assets.config.settings import GeoSettings

    monkeypatch.setenv("GEO_ASSETS_STORAGE", s3_root + "/storage")
    monkeypatch.setenv("GEO_ASSETS_MODELS", s3_root + "/models")
    settings = GeoSettings.from_env()
    assert str(settings.storage_dir) == s3_root + "/storage"
    layout = build_resources(settings)["storage"].layout()
    assert isinstance(layout.root, ObjectPath) and str(layout.models_root) == s3_root + "/models"
    assert str(layout.model_dir("blurred", "0.5")) == s3_root + "/models/blurred/0.5"
    assert layout.table_glob("captions") == s3_root + "/storage/tables/captions/**/*.parquet"
    assert ObjectPath.from_uri(s3_root).joinpath("x/y.txt").relative_to(ObjectPath.from_uri(s3_root)) == \
        PurePosixPath("x/y.txt")
