"""Sensors: configured geocell sizes -> model partitions and their training runs, and
Dagster's automation-condition sensor.

The geocell sensor is the one mechanism that adds a geocell size: it diffs the
configured list (storage/geocells.txt) against the dynamic partitions, adds or
removes partitions, and requests one training run per new (blur, geocell). The
CLI's `geocell add` and the main job evaluate this same sensor (`execution.sync_geocells`)
rather than adding partitions themselves; model automation does not train missing
partitions, so a size is never trained twice.
"""

import os

import dagster as dg

from geo_assets.defs.asset_names import MODEL_ASSET_NAMES
from geo_assets.defs.jobs import train_job
from geo_assets.defs.partitions import (GEOCELL_PARTITIONS_NAME, check_geocell_partition_key, geocell_partitions,
                                       model_partition_key)
from geo_assets.defs.resources import StorageResource
from geo_assets.config.geocell_sizes import read_geocells
from geo_assets.config.settings import BLUR_VARIANTS
from geo_assets.store.backends import storage_root

AUTOMATION_ENV = "GEO_ASSETS_AUTOMATION"
MODEL_ASSET_KEYS = [dg.AssetKey(name) for name in MODEL_ASSET_NAMES]


def geocell_requests(configured: list[str], existing: list[str]) -> tuple[list[str], list[str], list[dg.RunRequest]]:
    """Which sizes to add and remove, and the runs that train exactly the new partitions."""
    added = [g for g in configured if g not in existing]
    removed = [g for g in existing if g not in configured]
    runs = [
        dg.RunRequest(
            run_key=f"geocell-add:{g}:{blur}",
            partition_key=model_partition_key(blur, g),
            asset_selection=MODEL_ASSET_KEYS,
            tags={"geo_assets/geocell_added": g},
        )
        for g in added
        for blur in BLUR_VARIANTS
    ]
    return added, removed, runs


def refused_geocell_keys(keys: list[str]) -> list[str]:
    """The keys in `keys` that are not geocell sizes (check_geocell_partition_key)."""
    refused = []
    for key in keys:
        try:
            check_geocell_partition_key(key)
        except ValueError:
            refused.append(key)
    return refused


def evaluate_geocell_sizes(context: dg.SensorEvaluationContext, storage: StorageResource):
    """The geocell sensor's tick: partition adds/removes and the runs for new sizes."""
    try:
        configured = read_geocells(storage_root(storage.storage_dir))
    except ValueError as exc:  # a garbled line or a size past the cell cap: add nothing, say why
        context.log.error(f"geocell sizes refused: {exc}")
        return dg.SkipReason(f"geocell sizes refused, nothing added: {exc}")
    existing = context.instance.get_dynamic_partitions(GEOCELL_PARTITIONS_NAME)
    # A key added by other means (the UI, the API) that is not a size never gets a run or a
    # path: it is removed like any size missing from the file, and said so.
    for key in refused_geocell_keys(existing):
        context.log.warning(f"geocell partition {key[:60]!r} refused: not a geocell size; removed")
    added, removed, runs = geocell_requests(configured, existing)
    if not added and not removed:
        return dg.SkipReason(f"geocell sizes unchanged: {', '.join(configured)}")
    requests = []
    if added:
        requests.append(geocell_partitions.build_add_request(added))
    if removed:
        requests.append(geocell_partitions.build_delete_request(removed))
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=requests)


def automation_status() -> dg.DefaultSensorStatus:
    """RUNNING, unless GEO_ASSETS_AUTOMATION=off (the main job's own daemon: its backfill
    owns every run, so nothing else may launch one)."""
    off = os.environ.get(AUTOMATION_ENV, "").strip().lower() == "off"
    return dg.DefaultSensorStatus.STOPPED if off else dg.DefaultSensorStatus.RUNNING


def build_sensors() -> list[dg.SensorDefinition]:
    status = automation_status()

    @dg.sensor(job=train_job, minimum_interval_seconds=30, default_status=status)
    def geocell_sizes_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
        """Reads the configured geocell sizes (storage/geocells.txt); a new size becomes a
        dynamic partition plus two runs (blurred, unblurred); a removed size is dropped."""
        return evaluate_geocell_sizes(context, storage)

    automation_sensor = dg.AutomationConditionSensorDefinition(
        "default_automation_condition_sensor",
        target=dg.AssetSelection.all(),
        default_status=status,
        minimum_interval_seconds=30,
    )
    return [geocell_sizes_sensor, automation_sensor]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(sensors=build_sensors())
