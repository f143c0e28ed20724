"""Partitions: tiles for the per-image stages, (blur x geocell) for the models.

Tile keys depend on the region and tile size, so they are built from the settings
when definitions are built (`tile_partitions_for`), never at import time.
"""

from __future__ import annotations

import dagster as dg

from geo_assets.geo.labels import label_key
from geo_assets.geo.tiles import Tile, tiles_for_region
from geo_assets.config.settings import BLUR_VARIANTS, GeoSettings
from geo_assets.store.layout import safe_component

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


def check_geocell_partition_key(key: str) -> str:
    """`key` when it is a label scheme in its canonical form (a size such as '0.05', or a
    city scheme such as 'city50'); else ValueError. Dagster lets a dynamic key be almost
    anything ('../../x'): this one check keeps such a key from ever reaching a path or a lock."""
    text = str(key)
    try:
        ok = label_key(text) == text
    except (ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"geocell partition key {text[:60]!r} is not a geocell size or city label scheme "
                         "(written as `geo-assets geocell add` writes it, e.g. 0.05 or city50)")
    return text


def check_tile_partition_key(key: str) -> str:
    """`key` when it is one plain path component naming a tile ('51.90_-0.40_53.90_1.60'); else ValueError."""
    text = safe_component(key, "tile partition key")
    Tile.from_key(text)
    return text


def split_model_partition_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(blur, geocell) of a model partition key, each checked (ValueError) before any use."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
    else:
        dims = model_partitions.get_partition_key_from_str(key).keys_by_dimension
    if dims["blur"] not in BLUR_VARIANTS:
        raise ValueError(f"blur partition key {str(dims['blur'])[:60]!r} is not one of {', '.join(BLUR_VARIANTS)}")
    return dims["blur"], check_geocell_partition_key(dims["geocell"])


def model_partition_of(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """The run's checked (blur, geocell), or a dg.Failure saying which key was refused."""
    try:
        return split_model_partition_key(context.partition_key)
    except ValueError as exc:
        raise dg.Failure(f"refused: {exc}") from None


def tile_partition_of(context: dg.AssetExecutionContext) -> str:
    """The run's checked tile key, or a dg.Failure saying which key was refused."""
    try:
        return check_tile_partition_key(context.partition_key)
    except ValueError as exc:
        raise dg.Failure(f"refused: {exc}") from None
