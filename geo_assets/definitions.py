"""The code location: everything under `geo_assets/defs/`, found by Dagster's defs-folder loader.

Settings (region, tile size, storage) are read when these definitions are built,
so a process can change the environment and build again; nothing reads it at import.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from geo_assets.defs.asset_names import (MODEL_ASSET_NAMES, OPT_IN_ASSET_NAMES, REPORT_ASSET_NAMES,  # noqa: F401
                                         TILE_ASSET_NAMES)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
