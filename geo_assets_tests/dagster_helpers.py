"""Helpers for tests that materialize the real graph."""

import dagster as dg

from geo_assets.definitions import ALL_ASSETS, MODEL_ASSETS, TILE_ASSETS


def tile_run_config(images_per_tile: int, check_sample: int = 1, selection=None, easyocr_test_images: int = 1) -> dict:
    ops = {"raw_images": {"config": {"images_per_tile": images_per_tile}},
           "blurred_images": {"config": {"check_sample": check_sample}},
           "gazetteer_attack": {"config": {"easyocr_max_test_images": easyocr_test_images}}}
    if selection is not None:
        names = {s if isinstance(s, str) else s.key.to_user_string() for s in selection}
        ops = {k: v for k, v in ops.items() if k in names}
    return {"ops": ops}


def materialize_tile(instance, resources, tile: str, images_per_tile: int, selection=None, **kwargs):
    return dg.materialize(
        ALL_ASSETS, selection=selection or TILE_ASSETS, partition_key=tile, instance=instance, resources=resources,
        run_config=tile_run_config(images_per_tile, selection=selection), **kwargs,
    )


def materialize_model(instance, resources, key, max_epochs: int = 8, train_config: dict | None = None, **kwargs):
    config = {"max_epochs": max_epochs, **(train_config or {})}
    return dg.materialize(
        ALL_ASSETS, selection=MODEL_ASSETS, partition_key=key, instance=instance, resources=resources,
        run_config={"ops": {"geolocator_model": {"config": config}}}, **kwargs,
    )


def metadata(result, asset: str) -> dict:
    mats = result.asset_materializations_for_node(asset)
    assert mats, f"no materialization of {asset}"
    return {k: v.value for k, v in mats[-1].metadata.items()}


def checks(result) -> dict:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def data_version(instance, asset: str, partition: str) -> str:
    record = instance.get_latest_data_version_record(dg.AssetKey(asset), partition_key=partition)
    assert record is not None, f"no data version for {asset}[{partition}]"
    return record.asset_materialization.tags["dagster/data_version"]
