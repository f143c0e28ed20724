"""Partitions: tiles for the per-image stages, (blur x geocell) for the models.

Tile keys depend on the region and tile size, so they are built from the settings
when definitions are built (`tile_partitions_for`), never at import time.
"""

from __future__ import annotations

import dagster as dg

from geo_assets.geo.tiles import tiles_for_region
from geo_assets.settings import BLUR_VARIANTS, GeoSettings

blur_partitions = dg.StaticPartitionsDefinition(list(BLUR_VARIANTS))
GEOCELL_PARTITIONS_NAME = "geocell"
geocell_partitions = dg.DynamicPartitionsDefinition(name=GEOCELL_PARTITIONS_NAME)

model_partitions = dg.MultiPartitionsDefinition({"blur": blur_partitions, "geocell": geocell_partitions})


def tile_partitions_for(settings: GeoSettings | None = None) -> dg.StaticPartitionsDefinition:
    """One partition per tile of the configured region (GEO_ASSETS_REGION, GEO_ASSETS_TILE_SIZE)."""
    settings = settings or GeoSettings.from_env()
    return dg.StaticPartitionsDefinition([t.key for t in tiles_for_region(settings.region, settings.tile_size)])


def tile_keys(settings: GeoSettings | None = None) -> list[str]:
    return tile_partitions_for(settings).get_partition_keys()


def model_partition_key(blur: str, geocell: str) -> dg.MultiPartitionKey:
    """Build keys by name: Dagster sorts dimensions, so strings like 'blurred|0.05' are fragile."""
    return dg.MultiPartitionKey({"blur": blur, "geocell": geocell})


def split_model_partition_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        dims = model_partitions.get_partition_key_from_str(key).keys_by_dimension
    return dims["blur"], dims["geocell"]
