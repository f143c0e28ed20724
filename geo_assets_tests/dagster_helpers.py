"""Helpers for tests that materialize the real graph: thin aliases of geo_assets.run.execution,
the same functions the main job and the benchmark call."""

import dagster as dg

from geo_assets.run import execution


def materialize_tile(instance, resources, tile: str, images_per_tile: int, selection=None, check_sample: int = 1,
                     easyocr_test_images: int = 1, **kwargs):
    return execution.materialize_tile(instance, resources, tile, selection=selection, images_per_tile=images_per_tile,
                                      check_sample=check_sample, easyocr_test_images=easyocr_test_images, **kwargs)


def materialize_model(instance, resources, key, max_epochs: int = 8, train_config: dict | None = None, **kwargs):
    return execution.materialize_model(instance, resources, key, train_config={"max_epochs": max_epochs, **(train_config or {})},
                                       **kwargs)


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
