"""The code location as Dagster loads it (defs folder), its schedule and sensors through
Dagster's own contexts, settings read at build time, and the main job's progress line."""

import datetime as dt
import io

import dagster as dg
import pytest

from geo_assets.definitions import MODEL_ASSET_NAMES, OPT_IN_ASSET_NAMES, REPORT_ASSET_NAMES, TILE_ASSET_NAMES, defs
from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key, tile_keys, tile_partitions_for
from geo_assets.defs.resources import StorageResource, build_resources
from geo_assets.config.geocell_sizes import write_geocells
from geo_assets.run.progress import ProgressBar, format_duration, progress_line
from geo_assets.config.settings import GeoSettings

TABLE_ASSETS = {"raw_images", "ocr_text", "blurred_images", "captions", "gazetteer_attack"}


@pytest.fixture(scope="module")
def loaded() -> dg.Definitions:
    return defs()


def test_defs_folder_holds_every_asset_job_schedule_sensor_and_resource(loaded):
    graph = loaded.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(TILE_ASSET_NAMES) | set(MODEL_ASSET_NAMES) | set(REPORT_ASSET_NAMES) | set(OPT_IN_ASSET_NAMES)
    assert {j.name for j in loaded.jobs} == {"pull_new_images", "train_and_evaluate"}
    assert {s.name for s in loaded.schedules} == {"daily_pull"}
    assert {s.name for s in loaded.sensors} == {"geocell_sizes_sensor", "default_automation_condition_sensor"}
    assert set(loaded.resources) == {"storage", "image_source", "ocr", "captioner", "encoders"}
    loaded.resolve_all_job_defs()  # every job resolves against the assets (raises otherwise)


def test_the_train_job_and_the_geocell_sensor_select_the_model_assets_of_one_list(loaded):
    from geo_assets.defs.sensors import MODEL_ASSET_KEYS, geocell_requests

    job = loaded.resolve_job_def("train_and_evaluate")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == set(MODEL_ASSET_NAMES)
    assert [k.to_user_string() for k in MODEL_ASSET_KEYS] == list(MODEL_ASSET_NAMES)
    _, _, runs = geocell_requests(["0.2"], [])
    assert runs and all([k.to_user_string() for k in r.asset_selection] == list(MODEL_ASSET_NAMES) for r in runs)


def test_every_asset_has_description_owner_group_and_tables_their_columns(loaded):
    for spec in loaded.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 40, name
        assert spec.owners == ["team:geo-assets"], name
        assert spec.group_name, name
        if name in TABLE_ASSETS:
            schema = spec.metadata.get("dagster/column_schema")
            assert schema is not None and len(schema.columns) >= 4, name


def test_a_bad_embedding_blocks_the_models_downstream(loaded):
    # Which tables each asset reads, against its parents: test_declared_reads.py.
    specs = {s.name: s for s in loaded.resolve_assets_def("embeddings").check_specs}
    assert specs["embeddings_finite_and_sized"].blocking


def test_settings_are_read_when_definitions_are_built(monkeypatch):
    before = tile_keys()
    monkeypatch.setenv("GEO_ASSETS_REGION", "-1.0,52.0,0.0,53.0")
    monkeypatch.setenv("GEO_ASSETS_TILE_SIZE", "0.5")
    rebuilt = defs()  # same process, no re-import
    tiles = rebuilt.resolve_assets_def("raw_images").partitions_def.get_partition_keys()
    assert len(tiles) == 4 and tiles != before
    assert set(tiles) == set(tile_keys())


def test_default_storage_and_models_are_the_repository_folders(monkeypatch):
    from geo_assets.config.settings import PROJECT_ROOT

    assert (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "storage" / "dagster.yaml").is_file()
    monkeypatch.delenv("GEO_ASSETS_STORAGE")
    monkeypatch.delenv("GEO_ASSETS_MODELS")
    settings = GeoSettings.from_env()
    assert (settings.storage_dir, settings.models_dir) == (PROJECT_ROOT / "storage", PROJECT_ROOT / "models")


def test_daily_pull_requests_one_run_per_tile_keyed_by_day(loaded):
    tiles = tile_partitions_for()
    schedule = loaded.resolve_schedule_def("daily_pull")
    assert schedule.cron_schedule == "0 2 * * *" and schedule.job_name == "pull_new_images"
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 12, 1, 2, 0),
                                        repository_def=loaded.get_repository_def())
    requests = list(schedule.evaluate_tick(context).run_requests)
    assert [r.partition_key for r in requests] == tiles.get_partition_keys()
    assert {r.run_key for r in requests} == {f"2026-12-01:{t}" for t in tiles.get_partition_keys()}
    assert len({r.run_key for r in requests}) == len(requests)  # the daemon launches each once


def test_geocell_sensor_adds_removes_and_then_skips(tmp_path, loaded):
    geocell_sizes_sensor = loaded.resolve_sensor_def("geocell_sizes_sensor")
    storage = StorageResource(storage_dir=str(tmp_path / "storage"), models_dir=str(tmp_path / "models"))
    write_geocells(tmp_path / "storage", ["0.1", "0.2"])
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.1", "0.5"])
        context = dg.build_sensor_context(instance=instance, resources={"storage": storage})
        result = geocell_sizes_sensor(context)
        assert isinstance(result, dg.SensorResult)
        assert {str(r.partition_key) for r in result.run_requests} == {
            str(model_partition_key(b, "0.2")) for b in ("blurred", "unblurred")}
        adds = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.AddDynamicPartitionsRequest)]
        deletes = [r for r in result.dynamic_partitions_requests if isinstance(r, dg.DeleteDynamicPartitionsRequest)]
        assert [list(r.partition_keys) for r in adds] == [["0.2"]]
        assert [list(r.partition_keys) for r in deletes] == [["0.5"]]
        # Applied (as the daemon does): the next tick has nothing to do.
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.2"])
        instance.delete_dynamic_partition(GEOCELL_PARTITIONS_NAME, "0.5")
        again = geocell_sizes_sensor(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
        assert isinstance(again, dg.SkipReason) and "unchanged" in again.skip_message


def test_automation_off_loads_schedule_and_sensors_stopped(monkeypatch, loaded):
    assert {s.default_status for s in loaded.sensors} == {dg.DefaultSensorStatus.RUNNING}
    monkeypatch.setenv("GEO_ASSETS_AUTOMATION", "off")  # the main job's own daemon
    quiet = defs()
    assert {s.default_status for s in quiet.sensors} == {dg.DefaultSensorStatus.STOPPED}
    assert quiet.resolve_schedule_def("daily_pull").default_status == dg.DefaultScheduleStatus.STOPPED


def test_mapillary_token_is_an_env_var_never_a_value(monkeypatch):
    monkeypatch.setenv("GEO_ASSETS_SOURCE", "mapillary")
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "MLY|secret-do-not-show")
    resources = build_resources()
    source = resources["image_source"]
    assert source.kind == "mapillary"
    assert "secret-do-not-show" not in repr(source) and "secret-do-not-show" not in str(source.__dict__)
    monkeypatch.setenv("GEO_ASSETS_SOURCE", "ftp")
    with pytest.raises(ValueError, match="GEO_ASSETS_SOURCE"):
        GeoSettings.from_env()


def test_progress_line_shows_done_rate_and_time_left():
    line = progress_line("tiles", 3, 12, 270, 90.0)
    assert "3/12" in line and "3.0 img/s" in line and "elapsed 1m30s" in line and "left ~4m30s" in line
    assert "left ~?" in progress_line("tiles", 0, 12, 0, 0.0)
    assert format_duration(3725) == "1h02m"
    out = io.StringIO()  # not a terminal: one line per update, for CI logs
    bar = ProgressBar("models", 2, stream=out, unit="model")
    bar.update(1, 1)
    bar.update(1, 1, note="model x FAILED")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("models [") and "2/2" in lines[1] and "FAILED" in lines[1]
