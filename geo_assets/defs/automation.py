"""Declarative automation: what reruns when, without a hand-written schedule per asset.

Tile stages rerun only when an upstream partition's *data version* changed (a
pull that found nothing new re-materializes raw_images with the same version,
so nothing downstream runs). Models are costly: they retrain after a code change
and at most once a day when any tile's embeddings changed. A new geocell size is
trained by the geocell sensor's runs (defs/sensors.py), not here, so it is
trained once.
"""

from __future__ import annotations

import dagster as dg

_AC = dg.AutomationCondition

# Upstream data changed since the last tick, ignoring updates made by a run that
# already included this asset (otherwise a chain would run twice).
_DEPS_DATA_CHANGED = _AC.any_deps_match(
    (_AC.data_version_changed() & ~_AC.executed_with_root_target()) | _AC.will_be_requested()
).with_label("any_deps_data_changed")

TILE_AUTOMATION = (
    (_AC.newly_missing() | _DEPS_DATA_CHANGED).since_last_handled()
    & ~_AC.any_deps_missing()
    & ~_AC.any_deps_in_progress()
    & ~_AC.in_progress()
).with_label("rerun_when_inputs_changed")

RETRAIN_CRON = "0 4 * * *"

MODEL_AUTOMATION = (
    (
        # code_version_changed() is also true for never-materialized partitions: guard it.
        (_AC.code_version_changed() & ~_AC.missing())
        | (
            _AC.cron_tick_passed(RETRAIN_CRON).since_last_handled()
            & _AC.any_deps_match(_AC.data_version_changed()).since(_AC.newly_requested() | _AC.newly_updated())
        )
    )
    & ~_AC.any_deps_in_progress()
    & ~_AC.in_progress()
).with_label("train_when_new_or_daily_if_inputs_changed")

# Evaluation follows its model partition (not the tiles it reads: new images reach the
# evaluation through a retrain); the report follows any evaluation.
EVALUATION_AUTOMATION = _AC.eager().ignore(dg.AssetSelection.assets("embeddings", "captions", "gazetteer_attack"))
# The sensitivity table is opt-in (geo-assets sensitivity refreshes the report itself): its
# absence must not hold the report back. raw_images is read only for its source (the text
# assumption in the header): a daily pull alone is no reason to rebuild the report.
REPORT_AUTOMATION = _AC.eager().ignore(dg.AssetSelection.assets("text_assumption_sensitivity", "raw_images"))
