"""What every per-tile asset shares: the tile partitions, the automation condition,
the owners, its table's column schema, and `dagster/row_count` after each run."""

from __future__ import annotations

import dagster as dg

from geo_assets.defs.automation import TILE_AUTOMATION
from geo_assets.defs.metadata import OWNERS, parquet_rows, table_asset_metadata, with_table_metadata


def tile_asset(tiles: dg.PartitionsDefinition, *, schema=None, automation=TILE_AUTOMATION, **kwargs):
    """`@dg.asset` for one stage of the per-tile graph (`schema`: the pyarrow schema of its table)."""
    metadata = table_asset_metadata(schema) if schema is not None else None
    return dg.asset(partitions_def=tiles, automation_condition=automation, owners=OWNERS, metadata=metadata, **kwargs)


def tile_definitions(build):
    """A module's lazy definitions: its tile assets, built when Dagster loads the code
    location, on the tile partitions of the settings at that time."""
    from geo_assets.defs.partitions import tile_partitions_for

    def load() -> dg.Definitions:
        built = build(tile_partitions_for())
        return dg.Definitions(assets=built if isinstance(built, list) else [built])

    return dg.definitions(load)


def with_row_count(events, storage, table: str, tile: str):
    """The asset's events, its MaterializeResult carrying the rows of `table` for `tile`."""
    yield from with_table_metadata(events, lambda: parquet_rows(storage.layout().tile_table_files(table, tile)))
