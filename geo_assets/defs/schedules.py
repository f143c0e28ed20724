"""Schedules and sensors: daily incremental pulls, and geocell sizes -> model partitions."""

from pathlib import Path

import dagster as dg

from geo_assets.defs.partitions import (
    GEOCELL_PARTITIONS_NAME, geocell_partitions, model_partition_key, tile_partitions,
)
from geo_assets.defs.resources import StorageResource
from geo_assets.geocell_config import read_geocells
from geo_assets.settings import BLUR_VARIANTS

pull_job = dg.define_asset_job(
    "pull_new_images", selection=dg.AssetSelection.assets("raw_images"), partitions_def=tile_partitions,
    description="Pull images not yet stored, for one tile per run.",
)

train_job = dg.define_asset_job(
    "train_and_evaluate", selection=dg.AssetSelection.assets("geolocator_model", "model_evaluation"),
    description="Train and evaluate one (blur, geocell) model partition.",
)


@dg.schedule(job=pull_job, cron_schedule="0 2 * * *", default_status=dg.DefaultScheduleStatus.RUNNING)
def daily_pull(context: dg.ScheduleEvaluationContext):
    """Every day, one run per tile; each appends only new images. Downstream stages
    react through automation conditions only where a tile's data version changed."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d") if context.scheduled_execution_time else "manual"
    for key in tile_partitions.get_partition_keys():
        yield dg.RunRequest(run_key=f"{day}:{key}", partition_key=key)


def geocell_requests(configured: list[str], existing: list[str]) -> tuple[list[str], list[str], list[dg.RunRequest]]:
    """Which sizes to add and remove, and the runs that train exactly the new partitions."""
    added = [g for g in configured if g not in existing]
    removed = [g for g in existing if g not in configured]
    runs = [
        dg.RunRequest(
            run_key=f"geocell-add:{g}:{blur}",
            partition_key=model_partition_key(blur, g),
            asset_selection=[dg.AssetKey("geolocator_model"), dg.AssetKey("model_evaluation")],
        )
        for g in added
        for blur in BLUR_VARIANTS
    ]
    return added, removed, runs


@dg.sensor(job=train_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def geocell_sizes_sensor(context: dg.SensorEvaluationContext, storage: StorageResource):
    """Reads the configured geocell sizes (storage/geocells.txt); a new size becomes a
    dynamic partition plus two runs (blurred, unblurred); a removed size is dropped."""
    try:
        configured = read_geocells(Path(storage.storage_dir))
    except ValueError as exc:  # a garbled line or a size past the cell cap: add nothing, say why
        context.log.error(f"geocell sizes refused: {exc}")
        return dg.SkipReason(f"geocell sizes refused, nothing added: {exc}")
    existing = context.instance.get_dynamic_partitions(GEOCELL_PARTITIONS_NAME)
    added, removed, runs = geocell_requests(configured, existing)
    if not added and not removed:
        return dg.SkipReason(f"geocell sizes unchanged: {', '.join(configured)}")
    requests = []
    if added:
        requests.append(geocell_partitions.build_add_request(added))
    if removed:
        requests.append(geocell_partitions.build_delete_request(removed))
    return dg.SensorResult(run_requests=runs, dynamic_partitions_requests=requests)


automation_sensor = dg.AutomationConditionSensorDefinition(
    "default_automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
