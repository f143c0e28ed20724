"""Partitions: tiles for the per-image stages, (blur x geocell) for the models."""

from __future__ import annotations

import dagster as dg

from geo_assets.geo.tiles import tiles_for_region
from geo_assets.settings import BLUR_VARIANTS, GeoSettings

SETTINGS = GeoSettings.from_env()

TILES = tiles_for_region(SETTINGS.region, SETTINGS.tile_size)
tile_partitions = dg.StaticPartitionsDefinition([t.key for t in TILES])

blur_partitions = dg.StaticPartitionsDefinition(list(BLUR_VARIANTS))
GEOCELL_PARTITIONS_NAME = "geocell"
geocell_partitions = dg.DynamicPartitionsDefinition(name=GEOCELL_PARTITIONS_NAME)

model_partitions = dg.MultiPartitionsDefinition({"blur": blur_partitions, "geocell": geocell_partitions})


def model_partition_key(blur: str, geocell: str) -> dg.MultiPartitionKey:
    """Build keys by name: Dagster sorts dimensions, so strings like 'blurred|0.05' are fragile."""
    return dg.MultiPartitionKey({"blur": blur, "geocell": geocell})


def split_model_partition_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        dims = model_partitions.get_partition_key_from_str(key).keys_by_dimension
    return dims["blur"], dims["geocell"]
