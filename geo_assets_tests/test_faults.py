"""Faults survived by real runs: a flaky API, two runs on one tile at once, a run
killed mid-pull then rerun, and storage that cannot be written."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import pytest

from geo_assets.defs.partitions import tile_keys
from geo_assets.defs.resources import ImageSourceResource, StorageResource
from geo_assets.store.schemas import RAW_IMAGES_SCHEMA, RAW_REJECTS_SCHEMA
from geo_assets.store.parquet import read_table
from geo_assets_tests.dagster_helpers import materialize_tile, metadata

TILES = tile_keys()
pytestmark = pytest.mark.faults


def _assert_clean(layout, tile):
    table = read_table(layout.table_path("raw_images", tile), RAW_IMAGES_SCHEMA)
    ids, shas = table["image_id"].to_pylist(), table["sha256"].to_pylist()
    assert len(ids) == len(set(ids)) and len(shas) == len(set(shas))
    for rel in table["path"].to_pylist():
        assert (layout.root / rel).is_file()
    return table


def test_flaky_api_pull_survives_and_records_rejects(dagster_resources):
    resources = {**dagster_resources, "image_source": ImageSourceResource(fault_profile="flaky", timeout_s=1.0, backoff_s=0.01)}
    layout = resources["storage"].layout()
    tile = TILES[0]
    with dg.instance_for_test() as instance:
        result = materialize_tile(instance, resources, tile, images_per_tile=20, selection=["raw_images"])
        assert result.success
        meta = metadata(result, "raw_images")
        assert meta["api_retries"] >= 5  # 2x429, 2x500, 1 timeout, 1 malformed JSON
        table = _assert_clean(layout, tile)
        rejects = read_table(layout.table_path("raw_rejects", tile), RAW_REJECTS_SCHEMA)
        reasons = set(rejects["reason"].to_pylist())
        assert {"undecodable", "missing_coordinates"} <= reasons, reasons
        assert not set(rejects["image_id"].to_pylist()) & set(table["image_id"].to_pylist())
        again = materialize_tile(instance, resources, tile, images_per_tile=20, selection=["raw_images"])
        _assert_clean(layout, tile)
        assert metadata(again, "raw_images")["total_images"] >= meta["total_images"]


def _pull_script(storage, models, tile, images_per_tile, out_json):
    return textwrap.dedent(f"""
        import json
        import dagster as dg
        from geo_assets.run.execution import all_assets
        from geo_assets.defs.resources import build_resources
        from geo_assets.config.settings import GeoSettings
        resources = build_resources(GeoSettings.from_env().with_storage({str(storage)!r}, {str(models)!r}))
        r = dg.materialize(all_assets(), selection=["raw_images"], partition_key={tile!r}, resources=resources,
                           run_config={{"ops": {{"raw_images": {{"config": {{"images_per_tile": {images_per_tile}}}}}}}}})
        m = r.asset_materializations_for_node("raw_images")[0].metadata
        json.dump({{"success": r.success, "new_images": m["new_images"].value}}, open({str(out_json)!r}, "w"))
    """)


def test_two_runs_on_the_same_tile_at_once(tmp_path):
    """Two processes (two Dagster runs) pull the same tile: the partition lock makes the
    second wait, and it then finds nothing new. No duplicates, nothing lost."""
    import json

    storage, tile = tmp_path / "storage", TILES[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", _pull_script(storage, tmp_path / "m", tile, 6, tmp_path / f"r{i}.json")],
                         env=os.environ.copy())
        for i in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    results = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)]
    assert all(r["success"] for r in results)
    layout = StorageResource(storage_dir=str(storage), models_dir=str(tmp_path / "m")).layout()
    table = _assert_clean(layout, tile)
    assert sorted(r["new_images"] for r in results) == [0, table.num_rows]


def test_unwritable_storage_fails_with_clear_error(dagster_resources, tmp_path):
    blocker = tmp_path / "storage-is-a-file"
    blocker.write_text("")
    resources = {**dagster_resources, "storage": StorageResource(storage_dir=str(blocker), models_dir=str(tmp_path / "m"))}
    with dg.instance_for_test() as instance:
        result = materialize_tile(instance, resources, TILES[0], images_per_tile=3, selection=["raw_images"], raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    text = str(failure.step_failure_data.error)
    assert "cannot create folder" in text and "storage-is-a-file" in text


@pytest.mark.slow
def test_run_killed_mid_pull_then_rerun_is_clean(tmp_path):
    storage = tmp_path / "storage"
    script = textwrap.dedent(f"""
        import dagster as dg
        from geo_assets.run.execution import all_assets
        from geo_assets.defs.resources import build_resources
        from geo_assets.config.settings import GeoSettings
        resources = build_resources(GeoSettings.from_env().with_storage({str(storage)!r}, {str(tmp_path / 'm')!r}))
        dg.materialize(all_assets(), selection=["raw_images"], partition_key={TILES[3]!r}, resources=resources,
                       run_config={{"ops": {{"raw_images": {{"config": {{"images_per_tile": 400}}}}}}}})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy(), start_new_session=True)
    image_dir = storage / "images" / "raw" / TILES[3]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if image_dir.exists() and len(list(image_dir.glob("*.jpg"))) >= 5:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the pull finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (storage / "tables" / "raw_images" / f"tile={TILES[3]}" / "data.parquet").exists()

    from geo_assets_tests.dagster_helpers import materialize_tile as mt
    from geo_assets.defs.resources import build_resources
    from geo_assets.config.settings import GeoSettings

    resources = build_resources(GeoSettings.from_env().with_storage(storage, tmp_path / "m"))
    with dg.instance_for_test() as instance:
        result = mt(instance, resources, TILES[3], images_per_tile=12, selection=["raw_images"])
    assert result.success
    layout = resources["storage"].layout()
    table = _assert_clean(layout, TILES[3])
    assert table.num_rows == metadata(result, "raw_images")["total_images"]
    assert not list(image_dir.glob(".*.tmp"))
