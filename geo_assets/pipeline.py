"""The main job: every asset of the graph, tile by tile, then every model partition,
then the report. Each step is a real Dagster run recorded in the instance (so
`dagster dev` shows them), executed in this process so models load once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import dagster as dg

from geo_assets.definitions import ALL_ASSETS, MODEL_ASSETS, TILE_ASSETS
from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key, tile_partitions
from geo_assets.defs.resources import default_resources
from geo_assets.run_stats import materialization_counts, stage_table, stage_totals, step_seconds
from geo_assets.settings import BLUR_VARIANTS


@dataclass
class StepTiming:
    name: str
    seconds: float
    ok: bool
    steps: dict = field(default_factory=dict)  # asset -> step seconds, from the event log
    counts: dict = field(default_factory=dict)  # asset -> computed/reused counts


@dataclass
class PipelineReport:
    steps: list[StepTiming] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [s.name for s in self.steps if not s.ok]

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def stage_table(self) -> str:
        """Seconds per asset over all runs, and per item each asset computed."""
        return stage_table(stage_totals([(s.steps, s.counts) for s in self.steps]))


def _materialize(name: str, selection, instance, resources, report: PipelineReport, echo, run_config=None, **kwargs) -> bool:
    started = time.perf_counter()
    result = dg.materialize(
        ALL_ASSETS, selection=selection, instance=instance, resources=resources, raise_on_error=False,
        run_config=run_config, tags={"geo_assets/step": name}, **kwargs,
    )
    took = time.perf_counter() - started
    report.steps.append(StepTiming(name, took, result.success, step_seconds(instance, result.run_id),
                                   materialization_counts(result)))
    echo(f"  {name}: {'ok' if result.success else 'FAILED'} in {took:.1f}s")
    return result.success


def ensure_geocell_partitions(instance: dg.DagsterInstance, geocells: list[str]) -> None:
    existing = set(instance.get_dynamic_partitions(GEOCELL_PARTITIONS_NAME))
    new = [g for g in geocells if g not in existing]
    if new:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, new)


def run_pipeline(
    instance: dg.DagsterInstance,
    *,
    tiles: list[str] | None = None,
    geocells: list[str],
    images_per_tile: int | None = None,
    resources: dict | None = None,
    train_overrides: dict | None = None,
    skip_models: bool = False,
    echo: Callable[[str], None] = print,
) -> PipelineReport:
    resources = resources or default_resources()
    tiles = tiles or tile_partitions.get_partition_keys()
    report = PipelineReport()
    tile_config = None
    if images_per_tile is not None:
        tile_config = {"ops": {"raw_images": {"config": {"images_per_tile": images_per_tile}}}}
    echo(f"tiles: {len(tiles)}; geocells: {', '.join(geocells)}")
    for n, tile in enumerate(tiles, start=1):
        echo(f"[{n}/{len(tiles)}] tile {tile}")
        _materialize(f"tile {tile}", TILE_ASSETS, instance, resources, report, echo, run_config=tile_config, partition_key=tile)
    if skip_models:
        return report
    ensure_geocell_partitions(instance, geocells)
    model_config = {"ops": {"geolocator_model": {"config": train_overrides}}} if train_overrides else None
    for geocell in geocells:
        for blur in BLUR_VARIANTS:
            key = model_partition_key(blur, geocell)
            echo(f"model {blur} {geocell}")
            _materialize(f"model {blur}|{geocell}", MODEL_ASSETS, instance, resources, report, echo,
                         run_config=model_config, partition_key=key)
    echo("privacy report")
    _materialize("privacy_report", [a for a in ALL_ASSETS if a.key == dg.AssetKey("privacy_report")], instance, resources, report, echo)
    return report
