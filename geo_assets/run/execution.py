"""Running the graph from Python: the one place that materializes a tile, a model
partition or the report, and the one place that applies the geocell sensor.

The main job, `geo-assets geocell add`, the benchmark and the tests all go through
these functions, so they run the same definitions with the same resources and
run config. Runs are recorded in the instance (the UI shows them); their console
logging is quiet by default, since the event log holds every line.
"""

from __future__ import annotations

import functools

import dagster as dg

from geo_assets.definitions import MODEL_ASSET_NAMES, REPORT_ASSET_NAMES, TILE_ASSET_NAMES
from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key
from geo_assets.config.settings import BLUR_VARIANTS, GeoSettings

QUIET_LOGGERS = {"console": {"config": {"log_level": "WARNING"}}}


@functools.lru_cache(maxsize=8)
def _definitions(settings: GeoSettings) -> dg.Definitions:
    from geo_assets.definitions import defs

    return defs()


def load_definitions(settings: GeoSettings | None = None) -> dg.Definitions:
    """The code location's definitions for the current settings (built once per settings)."""
    return _definitions(settings or GeoSettings.from_env())


def all_assets(settings: GeoSettings | None = None) -> list:
    return list(load_definitions(settings).assets or [])


def tile_run_config(images_per_tile: int | None = None, *, check_sample: int | None = None,
                    easyocr_test_images: int | None = None, selection=None) -> dict:
    """Run config for a tile run: the data-set size and the two sampled OCR checks."""
    ops: dict = {}
    if images_per_tile is not None:
        ops["raw_images"] = {"config": {"images_per_tile": images_per_tile}}
    if check_sample is not None:
        ops["blurred_images"] = {"config": {"check_sample": check_sample}}
    if easyocr_test_images is not None:
        ops["gazetteer_attack"] = {"config": {"easyocr_max_test_images": easyocr_test_images}}
    if selection is not None:
        names = {s if isinstance(s, str) else s.key.to_user_string() for s in selection}
        ops = {k: v for k, v in ops.items() if k in names}
    return {"ops": ops}


def _merge(run_config: dict | None, quiet: bool) -> dict:
    config = dict(run_config or {})
    if quiet and "loggers" not in config:
        config["loggers"] = QUIET_LOGGERS
    return config


def materialize(selection, *, instance: dg.DagsterInstance, resources: dict | None = None, partition_key=None,
                run_config: dict | None = None, tags: dict | None = None, quiet: bool = True,
                raise_on_error: bool = False, settings: GeoSettings | None = None):
    """One in-process run of `selection` (asset names or definitions) against the code
    location's definitions; returns Dagster's ExecuteInProcessResult."""
    from geo_assets.defs.resources import build_resources

    names = [s if isinstance(s, str) else s.key.to_user_string() for s in selection]
    return dg.materialize(
        all_assets(settings), selection=names, partition_key=partition_key, instance=instance,
        resources=resources if resources is not None else build_resources(settings), run_config=_merge(run_config, quiet),
        tags=tags, raise_on_error=raise_on_error,
    )


def materialize_tile(instance, resources, tile: str, *, selection=None, images_per_tile: int | None = None,
                     check_sample: int | None = None, easyocr_test_images: int | None = None,
                     run_config: dict | None = None, **kwargs):
    """Every tile asset (or `selection`) for one tile partition."""
    selection = list(selection or TILE_ASSET_NAMES)
    config = run_config if run_config is not None else tile_run_config(
        images_per_tile, check_sample=check_sample, easyocr_test_images=easyocr_test_images, selection=selection)
    return materialize(selection, instance=instance, resources=resources, partition_key=tile, run_config=config, **kwargs)


def materialize_model(instance, resources, key, *, train_config: dict | None = None, **kwargs):
    """Train and evaluate one (blur, geocell) partition; `train_config` is geolocator_model's config."""
    config = {"ops": {"geolocator_model": {"config": dict(train_config)}}} if train_config else None
    return materialize(MODEL_ASSET_NAMES, instance=instance, resources=resources, partition_key=key,
                       run_config=config, **kwargs)


def materialize_report(instance, resources, **kwargs):
    return materialize(REPORT_ASSET_NAMES, instance=instance, resources=resources, **kwargs)


def sync_geocells(instance: dg.DagsterInstance, resources: dict) -> list[dg.RunRequest]:
    """Evaluate the geocell sensor once and apply its partition adds/removes to the
    instance; returns the training runs it requests (new sizes only)."""
    from geo_assets.config.geocell_sizes import read_geocells

    read_geocells(resources["storage"].storage_dir)  # a refused list raises here, with the line that is wrong
    sensor = load_definitions().resolve_sensor_def("geocell_sizes_sensor")
    context = dg.build_sensor_context(instance=instance, resources={"storage": resources["storage"]})
    result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return []
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return list(result.run_requests or [])


def run_requested(instance, resources, requests: list[dg.RunRequest], **kwargs) -> list:
    """Execute the sensor's run requests in this process, tagged with their run keys."""
    results = []
    for request in requests:
        names = [k.to_user_string() for k in request.asset_selection] if request.asset_selection else list(MODEL_ASSET_NAMES)
        tags = {**(request.tags or {}), "dagster/run_key": request.run_key} if request.run_key else dict(request.tags or {})
        results.append(materialize(names, instance=instance, resources=resources, partition_key=request.partition_key,
                                   tags=tags, **kwargs))
    return results


def model_partition_keys(geocells: list[str]) -> list[dg.MultiPartitionKey]:
    return [model_partition_key(blur, g) for g in geocells for blur in BLUR_VARIANTS]


def existing_geocells(instance: dg.DagsterInstance) -> list[str]:
    return list(instance.get_dynamic_partitions(GEOCELL_PARTITIONS_NAME))
