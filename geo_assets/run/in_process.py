"""`geo-assets run --in-process`: the main job's steps (every tile, then every model
partition, then the report) as Dagster runs executed one after another in this process,
so models load once. Each is recorded in the instance (the UI shows them and their event
logs). The default `geo-assets run` is the backfill in `run/backfill.py` instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import dagster as dg

from geo_assets.run import execution
from geo_assets.defs.partitions import tile_keys
from geo_assets.run.progress import ProgressBar
from geo_assets.run.stats import materialization_counts, stage_table, stage_totals, step_seconds


@dataclass
class StepTiming:
    name: str
    seconds: float
    ok: bool
    steps: dict = field(default_factory=dict)  # asset -> step seconds, from the event log
    counts: dict = field(default_factory=dict)  # asset -> computed/reused counts
    run_id: str = ""


@dataclass
class PipelineReport:
    steps: list[StepTiming] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [s.name for s in self.steps if not s.ok]

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def record(self, name: str, instance: dg.DagsterInstance, result, seconds: float) -> StepTiming:
        step = StepTiming(name, seconds, result.success, step_seconds(instance, result.run_id),
                          materialization_counts(result), result.run_id)
        self.steps.append(step)
        return step

    def stage_table(self) -> str:
        """Seconds per asset over all runs, and per item each asset computed."""
        return stage_table(stage_totals([(s.steps, s.counts) for s in self.steps]))


def _timed(fn, *args, **kwargs):
    import time

    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def run_in_process(
    instance: dg.DagsterInstance,
    *,
    tiles: list[str] | None = None,
    images_per_tile: int | None = None,
    resources: dict | None = None,
    train_overrides: dict | None = None,
    skip_models: bool = False,
    echo: Callable[[str], None] = print,
    stream=None,
) -> PipelineReport:
    """Tiles, then the geocell sizes synced through the geocell sensor, then every model
    partition of the configured sizes, then the report."""
    from geo_assets.defs.resources import build_resources

    resources = resources or build_resources()
    tiles = tiles or tile_keys()
    report = PipelineReport()
    bar = ProgressBar("tiles", len(tiles), stream=stream)
    for tile in tiles:
        result, took = _timed(execution.materialize_tile, instance, resources, tile, images_per_tile=images_per_tile)
        step = report.record(f"tile {tile}", instance, result, took)
        new = int(step.counts.get("raw_images", {}).get("new_images", 0) or 0)
        bar.update(1, new, note="" if step.ok else f"tile {tile} FAILED (run {step.run_id[:8]})")
    bar.close()
    if skip_models:
        return report

    execution.sync_geocells(instance, resources)  # the geocell sensor adds the partitions
    geocells = execution.existing_geocells(instance)
    keys = execution.model_partition_keys(geocells)
    bar = ProgressBar("models", len(keys) + 1, stream=stream, unit="model")
    for key in keys:
        result, took = _timed(execution.materialize_model, instance, resources, key, train_config=train_overrides)
        step = report.record(f"model {key}", instance, result, took)
        bar.update(1, 1, note="" if step.ok else f"model {key} FAILED (run {step.run_id[:8]})")
    result, took = _timed(execution.materialize_report, instance, resources)
    step = report.record("privacy_report", instance, result, took)
    bar.update(1, 0, note="" if step.ok else f"privacy_report FAILED (run {step.run_id[:8]})")
    bar.close()
    return report
