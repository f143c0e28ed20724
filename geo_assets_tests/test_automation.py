"""Declarative automation on a real instance: what Dagster requests after a pull with new
images, after a pull with nothing new, and after a geocell size is added (the geocell
sensor trains it; automation requests no second training)."""

import dagster as dg
import pytest

from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key, tile_keys
from geo_assets.defs.sensors import geocell_requests
from geo_assets.run.execution import load_definitions
from geo_assets.config.geocell_sizes import write_geocells
from geo_assets_tests.dagster_helpers import materialize_tile, metadata

TILES = tile_keys()
defs = load_definitions()
geocell_sizes_sensor = defs.resolve_sensor_def("geocell_sizes_sensor")
TILE_STAGES = ["ocr_text", "blurred_images", "captions", "embeddings", "gazetteer_attack"]


def requested(result) -> dict[str, set]:
    out = {}
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        parts = result.get_requested_partitions(key)
        if parts:
            out[key.to_user_string()] = {str(p) for p in parts}
    return out


@pytest.mark.slow
def test_only_changed_tiles_and_new_geocells_are_requested(dagster_resources):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.05", "0.1"])
        for tile in TILES:
            assert materialize_tile(instance, dagster_resources, tile, images_per_tile=4).success
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        # Initial tick: every tile is fresh; missing model partitions are the geocell
        # sensor's to train (or the main job's), never automation's.
        print("initial tick ->", requested(first))
        assert not any(k in requested(first) for k in TILE_STAGES + ["raw_images", "geolocator_model"])

        # Scenario 1: a pull with new images on one tile.
        pulled = materialize_tile(instance, dagster_resources, TILES[0], images_per_tile=6, selection=["raw_images"])
        assert metadata(pulled, "raw_images")["new_images"] >= 1
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        got = requested(second)
        print("after a pull with new images on", TILES[0], "->", got)
        assert got == {stage: {TILES[0]} for stage in TILE_STAGES}

        # Scenario 2: a pull that finds nothing new changes no data version: nothing runs.
        materialize_tile(instance, dagster_resources, TILES[0], images_per_tile=6)  # the requested rerun, done
        third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
        noop = materialize_tile(instance, dagster_resources, TILES[1], images_per_tile=4, selection=["raw_images"])
        assert metadata(noop, "raw_images")["new_images"] == 0
        fourth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=third.cursor)
        print("after a pull with nothing new ->", requested(fourth))
        assert not any(k in requested(fourth) for k in TILE_STAGES)

        # Scenario 3: a new geocell size. The geocell sensor is the one mechanism: it adds the
        # partition and requests exactly its two training runs; automation requests no model run.
        storage = dagster_resources["storage"]
        write_geocells(storage.storage_dir, ["0.05", "0.1", "0.2"])
        tick = geocell_sizes_sensor(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
        new_keys = {str(model_partition_key(b, "0.2")) for b in ("blurred", "unblurred")}
        assert {str(r.partition_key) for r in tick.run_requests} == new_keys
        assert [list(r.partition_keys) for r in tick.dynamic_partitions_requests] == [["0.2"]]
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.2"])  # as the daemon applies it
        fifth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=fourth.cursor)
        got = requested(fifth)
        print("after adding geocell 0.2 ->", got)
        assert "geolocator_model" not in got and "model_evaluation" not in got
        assert not any(k in got for k in TILE_STAGES + ["raw_images", "privacy_report"])


def test_geocell_requests_diff_is_exact():
    added, removed, runs = geocell_requests(["0.05", "0.2"], ["0.05", "0.1"])
    assert added == ["0.2"] and removed == ["0.1"]
    assert sorted(str(r.partition_key) for r in runs) == sorted(
        str(model_partition_key(b, "0.2")) for b in ("blurred", "unblurred")
    )
    assert all({k.to_user_string() for k in r.asset_selection} == {"geolocator_model", "model_evaluation"} for r in runs)
    assert geocell_requests(["0.1"], ["0.1"]) == ([], [], [])
