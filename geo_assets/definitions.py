"""The code location: everything under `geo_assets/defs/`, found by Dagster's defs-folder loader.

Settings (region, tile size, storage) are read when these definitions are built,
so a process can change the environment and build again; nothing reads it at import.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

TILE_ASSET_NAMES = ("raw_images", "ocr_text", "blurred_images", "captions", "embeddings", "gazetteer_attack")
MODEL_ASSET_NAMES = ("geolocator_model", "model_evaluation")
REPORT_ASSET_NAMES = ("privacy_report",)
# Not in the main job: built on request (`geo-assets sensitivity`), read by the report when present.
OPT_IN_ASSET_NAMES = ("text_assumption_sensitivity",)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
