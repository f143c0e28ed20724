"""The code location: every asset, check, job, schedule, sensor and resource."""

from __future__ import annotations

import dagster as dg

from geo_assets.defs.assets.attack import gazetteer_attack
from geo_assets.defs.assets.embeddings import embeddings
from geo_assets.defs.assets.ingest import raw_images
from geo_assets.defs.assets.models import geolocator_model, model_evaluation
from geo_assets.defs.assets.preprocess import blurred_images, captions, ocr_text
from geo_assets.defs.assets.reports import privacy_report
from geo_assets.defs.schedules import automation_sensor, daily_pull, geocell_sizes_sensor, pull_job, train_job
from geo_assets.defs.resources import default_resources

TILE_ASSETS = [raw_images, ocr_text, blurred_images, captions, embeddings, gazetteer_attack]
MODEL_ASSETS = [geolocator_model, model_evaluation]
ALL_ASSETS = [*TILE_ASSETS, *MODEL_ASSETS, privacy_report]

defs = dg.Definitions(
    assets=ALL_ASSETS,
    jobs=[pull_job, train_job],
    schedules=[daily_pull],
    sensors=[geocell_sizes_sensor, automation_sensor],
    resources=default_resources(),
)
