"""The scaled set-up against real services: Dagster's instance on a real PostgreSQL (configured by
deploy/dagster.yaml), and the storage interface on a real S3-compatible server (moto), read by DuckDB."""


import io
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from geo_assets.store.schemas import RAW_IMAGES_SCHEMA
from geo_assets.store.backends import storage_root
from geo_assets.store.backends.s3 import ObjectPath
from geo_assets.store.catalog import query_connection
from geo_assets.store.layout import StorageLayout
from geo_assets.store.parquet import atomic_write_bytes, read_table, write_table
from geo_assets_tests.services import (  # noqa: F401 - fixtures
    moto_server, postgres_db, postgres_server, s3_env, s3_root,
)

DEPLOY_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"


@pytest.fixture
def pg_instance_home(postgres_db, tmp_path, monkeypatch):
    """A DAGSTER_HOME holding deploy/dagster.yaml unchanged, its DAGSTER_PG_* variables pointing at
    a fresh database on the test server."""
    server, db = postgres_db
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DEPLOY_YAML, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_HOST", server.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(server.port))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", server.user)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", server.password)
    monkeypatch.setenv("DAGSTER_PG_DB", db)
    return home, server, db


def test_dagster_instance_on_postgres_materializes_a_partition(pg_instance_home):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    home, server, db = pg_instance_home
    tiles = dg.StaticPartitionsDefinition(["tile-a", "tile-b"])

    @dg.asset(partitions_def=tiles, pool="gpu")  # a pool slot is claimed in Postgres too
    def tiny_tile(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"tile_chars": len(context.partition_key)})

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        result = dg.materialize([tiny_tile], instance=instance, partition_key="tile-b")
        assert result.success
        run_id = result.run_id
    finally:
        instance.dispose()

    # A second instance from the same config (another machine, in effect) sees the run and the event.
    other = dg.DagsterInstance.from_config(str(home))
    try:
        event = other.get_latest_materialization_event(dg.AssetKey("tiny_tile"))
        assert event is not None and event.run_id == run_id
        materialization = event.asset_materialization
        assert materialization.partition == "tile-b"
        assert materialization.metadata["tile_chars"].value == len("tile-b")
        assert other.get_run_by_id(run_id).tags["dagster/partition"] == "tile-b"
        assert other.get_materialized_partitions(dg.AssetKey("tiny_tile")) == {"tile-b"}
    finally:
        other.dispose()

    # And the rows are in that PostgreSQL database, not in a file under DAGSTER_HOME.
    con = server.connect(db)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT partition FROM event_logs WHERE run_id = %s AND "
                        "dagster_event_type = 'ASSET_MATERIALIZATION'", (run_id,))
            assert cur.fetchall() == [("tile-b",)]
            cur.execute("SELECT value FROM run_tags WHERE run_id = %s AND key = 'dagster/partition'", (run_id,))
            assert cur.fetchall() == [("tile-b",)]
    finally:
        con.close()
    assert not list(home.glob("**/*.db"))  # no SQLite fallback


def test_parquet_and_image_round_trip_through_s3_and_duckdb(s3_root):
    root = storage_root(s3_root)
    assert isinstance(root, ObjectPath)
    layout = StorageLayout(root, storage_root(s3_root + "/models"))
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, size=(36, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")  # lossless, so the pixels must come back exactly
    image_key = "images/raw/tile-a/img-1.png"
    atomic_write_bytes(root / image_key, buf.getvalue())

    rows = pa.table({
        "image_id": ["img-1", "img-2"], "lat": [52.5, 51.9], "lon": [-1.9, -0.1],
        "captured_at": [1, 2], "source": ["synthetic", "synthetic"], "sha256": ["a" * 64, "b" * 64],
        "path": [image_key, "images/raw/tile-b/img-2.png"], "width": [64, 64], "height": [36, 36],
        "sequence_id": ["s1", "s2"],
    }, schema=RAW_IMAGES_SCHEMA)
    write_table(layout.table_path("raw_images", "tile-a"), rows.slice(0, 1))
    write_table(layout.table_path("raw_images", "tile-b"), rows.slice(1, 1))
    assert read_table(layout.table_path("raw_images", "tile-a"), RAW_IMAGES_SCHEMA).equals(rows.slice(0, 1))

    with query_connection(layout) as con:
        found = con.execute("SELECT path, tile FROM raw_images WHERE lat > 52 ORDER BY image_id").fetchall()
    assert found == [(image_key, "tile-a")]
    back = np.asarray(Image.open(io.BytesIO((root / found[0][0]).read_bytes())))
    assert np.array_equal(back, pixels)
    # The objects really are in the bucket, where another machine's client would find them.
    assert sorted(root.fs.find(f"{root.bucket}/geo_assets")) == [
        f"{root.bucket}/geo_assets/{image_key}",
        f"{root.bucket}/geo_assets/tables/raw_images/tile=tile-a/data.parquet",
        f"{root.bucket}/geo_assets/tables/raw_images/tile=tile-b/data.parquet",
    ]
