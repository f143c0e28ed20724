"""Jobs: the units the schedule and the geocell sensor launch."""

import dagster as dg

from geo_assets.defs.asset_names import MODEL_ASSET_NAMES

pull_job = dg.define_asset_job(
    "pull_new_images", selection=dg.AssetSelection.assets("raw_images"),
    description="Pull images not yet stored, for one tile per run.",
)

train_job = dg.define_asset_job(
    "train_and_evaluate", selection=dg.AssetSelection.assets(*MODEL_ASSET_NAMES),
    description="Train and evaluate one (blur, geocell) model partition.",
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(jobs=[pull_job, train_job])
