"""Issue 22, item 2: a partition key never becomes a path. Dagster accepts a dynamic geocell key
such as '../../../../../victim/pwned'; a real materialization of that partition must fail with a
message naming the key, before any lock or file is made; the geocell sensor and the CLI refuse it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key
from geo_assets.run.execution import materialize
from geo_assets.store.layout import UnsafePathError
from geo_assets.store.locks import partition_lock

REPO = Path(__file__).resolve().parent.parent
HOSTILE = "../../../../../victim/pwned"


def _files_outside(tmp_path: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if p.is_file() and not str(p).startswith(str(tmp_path / "storage"))
            and not str(p).startswith(str(tmp_path / "models"))]


def _step_failure(result) -> str:
    texts = []
    for e in result.all_events:
        if e.event_type_value == "STEP_FAILURE":
            error = e.event_specific_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause
    return "\n".join(texts)


@pytest.mark.parametrize("asset", ["geolocator_model", "model_evaluation"])
def test_a_hostile_geocell_partition_fails_before_any_lock_or_path(tmp_path, dagster_resources, asset):
    layout = dagster_resources["storage"].layout()
    layout.root.mkdir(parents=True)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, [HOSTILE])  # Dagster takes it
        result = materialize([asset], instance=instance, resources=dagster_resources,
                             partition_key=model_partition_key("unblurred", HOSTILE))
    assert not result.success
    assert not (tmp_path / "victim").exists() and _files_outside(tmp_path) == []
    assert not list(layout.root.rglob("*.lock")), "a lock was taken for a key that was never checked"
    message = _step_failure(result)
    assert "geocell partition key" in message and "not a geocell size" in message, message


def test_partition_lock_refuses_names_that_are_not_one_component(tmp_path):
    for asset, partition in [("geolocator_model", "unblurred_../../../x"), ("../x", "a"), ("raw_images", ".hidden"),
                             ("raw_images", "a/b")]:
        with pytest.raises(UnsafePathError):
            with partition_lock(tmp_path / "storage", asset, partition, timeout_s=1):
                pass
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    with partition_lock(tmp_path / "storage", "raw_images", "49.90_-2.40_51.90_-0.40", timeout_s=1):
        pass


def test_the_geocell_sensor_removes_a_hostile_key_and_says_so(tmp_path, capfd):
    from geo_assets.defs.resources import StorageResource
    from geo_assets.run.execution import load_definitions

    sensor = load_definitions().resolve_sensor_def("geocell_sizes_sensor")
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "geocells.txt").write_text("0.5\n")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.5", HOSTILE])
        ctx = dg.build_sensor_context(instance=instance, resources={
            "storage": StorageResource(storage_dir=str(storage), models_dir=str(tmp_path / "models"))})
        result = sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests  # nothing trained for it
    (delete,) = result.dynamic_partitions_requests
    assert isinstance(delete, dg.DeleteDynamicPartitionsRequest) and list(delete.partition_keys) == [HOSTILE]
    said = capfd.readouterr().err  # the sensor's log: Dagster's console logger, and the tick's log in the UI
    assert f"geocell partition {HOSTILE!r} refused: not a geocell size; removed" in said, said


def test_the_cli_refuses_a_hostile_key_in_the_instance(tmp_path):
    env = {**os.environ, "GEO_ASSETS_STORAGE": str(tmp_path / "storage"), "GEO_ASSETS_MODELS": str(tmp_path / "models"),
           "DAGSTER_HOME": str(tmp_path / "storage")}
    (tmp_path / "storage").mkdir()
    with dg.DagsterInstance.from_config(str(tmp_path / "storage")) as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.5", HOSTILE])
    listed = subprocess.run([sys.executable, "-m", "geo_assets.cli", "geocell", "list"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "refused" in listed.stdout and "not a geocell size" in listed.stdout, listed.stdout
    removed = subprocess.run([sys.executable, "-m", "geo_assets.cli", "geocell", "remove", HOSTILE], cwd=REPO,
                             env=env, capture_output=True, text=True, timeout=120)
    assert removed.returncode == 2 and "Traceback" not in removed.stderr
    assert len(removed.stderr.strip().splitlines()) == 1 and "geocell size" in removed.stderr
    assert _files_outside(tmp_path) == []


# -- low: a geocell size too small to count (1e-320) ----------------------------------


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GEO_ASSETS_STORAGE": str(tmp_path / "storage"), "GEO_ASSETS_MODELS": str(tmp_path / "models"),
           "DAGSTER_HOME": str(tmp_path / "storage")}
    return subprocess.run([sys.executable, "-m", "geo_assets.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("size", ["1e-320", "5e-324"])
def test_a_denormal_geocell_size_is_one_clear_line_everywhere(tmp_path, size):
    from geo_assets.defs.resources import StorageResource
    from geo_assets.run.execution import load_definitions
    from geo_assets.config.geocell_sizes import read_geocells

    added = _cli(tmp_path, "geocell", "add", size, "--no-run")
    assert added.returncode == 2 and "Traceback" not in added.stderr, added.stderr
    assert len(added.stderr.strip().splitlines()) == 1 and "too small" in added.stderr and "cap" in added.stderr
    storage = tmp_path / "storage"
    storage.mkdir(exist_ok=True)
    (storage / "geocells.txt").write_text(f"0.5\n{size}\n")
    with pytest.raises(ValueError, match="geocells.txt:2.*too small"):
        read_geocells(storage)
    listed = _cli(tmp_path, "geocell", "list")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert "refused" in listed.stdout and "too small" in listed.stdout
    sensor = load_definitions().resolve_sensor_def("geocell_sizes_sensor")
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={
            "storage": StorageResource(storage_dir=str(storage), models_dir=str(tmp_path / "models"))})
        result = sensor(ctx)
    assert isinstance(result, dg.SkipReason) and "too small" in result.skip_message
