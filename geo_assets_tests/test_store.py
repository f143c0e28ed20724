import os
import threading

import pyarrow as pa
import pytest

from geo_assets.store import parquet as store
from geo_assets.store.backends import local as local_backend
from geo_assets.store.catalog import query_connection, refresh_views
from geo_assets.store.layout import StorageLayout

SCHEMA = pa.schema([("image_id", pa.string()), ("lat", pa.float64())])


def test_write_table_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "t" / "data.parquet"
    store.write_table(path, pa.table({"image_id": ["a"], "lat": [1.0]}, schema=SCHEMA))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    # Fails after the new bytes are in the temp file, before the rename publishes them.
    monkeypatch.setattr(local_backend.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        store.write_table(path, pa.table({"image_id": ["b"], "lat": [2.0]}, schema=SCHEMA))
    assert store.read_table(path, SCHEMA)["image_id"].to_pylist() == ["a"]
    assert sorted(os.listdir(path.parent)) == ["data.parquet"]


def test_read_missing_table_gives_empty_of_schema_and_rejects_wrong_schema(tmp_path):
    assert store.read_table(tmp_path / "none.parquet", SCHEMA).num_rows == 0
    with pytest.raises(FileNotFoundError):
        store.read_table(tmp_path / "none.parquet")
    store.write_table(tmp_path / "x.parquet", pa.table({"other": [1]}))
    with pytest.raises(ValueError, match="lacks columns"):
        store.read_table(tmp_path / "x.parquet", SCHEMA)


def test_unwritable_folder_gives_clear_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            pytest.skip("running as a user that can write anywhere")
        with pytest.raises(PermissionError, match="not writable"):
            store.write_table(locked / "data.parquet", pa.table({"a": [1]}))
    finally:
        locked.chmod(0o700)


def test_duckdb_views_see_every_partition_and_concurrent_refreshes_do_not_fail(tmp_path):
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    for tile, n in [("t1", 3), ("t2", 5)]:
        store.write_table(layout.table_path("raw_images", tile),
                          pa.table({"image_id": [f"{tile}-{i}" for i in range(n)], "lat": [float(i) for i in range(n)]}))
    errors = []

    def refresh():
        try:
            refresh_views(layout, ("raw_images",))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    import duckdb

    con = duckdb.connect(str(layout.duckdb_path), read_only=True)
    try:
        rows = con.execute("SELECT tile, count(*) FROM raw_images GROUP BY tile ORDER BY tile").fetchall()
    finally:
        con.close()
    assert rows == [("t1", 3), ("t2", 5)]
    with query_connection(layout) as con:
        assert con.execute("SELECT count(*) FROM raw_images").fetchone()[0] == 8


def test_storage_under_a_file_gives_clear_error(tmp_path):
    blocker = tmp_path / "storage"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot create folder"):
        store.write_table(blocker / "tables" / "data.parquet", pa.table({"a": [1]}))
    with pytest.raises(OSError, match="cannot create folder"):
        store.atomic_write_bytes(blocker / "images" / "x.jpg", b"123")
