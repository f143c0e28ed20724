"""The asset names the jobs, the sensors and the run commands select: one list each.

Kept apart from `geo_assets/definitions.py` (which re-exports them) so the modules the
defs-folder loader imports can use them without importing the code location itself.
"""

TILE_ASSET_NAMES = ("raw_images", "ocr_text", "blurred_images", "captions", "embeddings", "gazetteer_attack")
MODEL_ASSET_NAMES = ("geolocator_model", "model_evaluation")
REPORT_ASSET_NAMES = ("privacy_report",)
# Not in the main job: built on request (`geo-assets sensitivity`), read by the report when present.
OPT_IN_ASSET_NAMES = ("text_assumption_sensitivity",)
