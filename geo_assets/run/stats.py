"""Where a set of runs spent its time, per asset, from the Dagster event log: what the
main job prints at the end and what the benchmark records for each run."""

from __future__ import annotations

from collections import defaultdict

import dagster as dg

# (computed now, reused) counts in a tile asset's metadata: every incremental asset reports
# the same pair (geo_assets.tables.incremental.counts_of); raw_images counts pulls instead.
COUNT_KEYS = ("rows_computed", "rows_reused")
PULL_KEYS = {"raw_images": ("new_images", "total_images")}


def _count_keys(asset: str, metadata) -> tuple[str, str] | None:
    if asset in PULL_KEYS:
        return PULL_KEYS[asset]
    return COUNT_KEYS if COUNT_KEYS[0] in metadata else None


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds from STEP_START to STEP_SUCCESS/FAILURE of every step of one run."""
    starts, out = {}, {}
    for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS,
                                                    dg.DagsterEventType.STEP_FAILURE}):
        kind = entry.dagster_event.event_type_value if entry.dagster_event else ""
        if kind == dg.DagsterEventType.STEP_START.value:
            starts[entry.step_key] = entry.timestamp
        elif entry.step_key in starts:
            out[entry.step_key] = round(entry.timestamp - starts[entry.step_key], 3)
    return out


def materialization_counts(result) -> dict[str, dict]:
    """The computed/reused counts of every tile asset materialized in one run's result."""
    out = {}
    for mat in result.get_asset_materialization_events():
        asset = mat.asset_key.to_user_string()
        meta = mat.materialization.metadata
        keys = _count_keys(asset, meta)
        if keys:
            out[asset] = {k: meta[k].value for k in keys if k in meta}
    return out


def counts_from_log(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """The same counts as `materialization_counts`, read from a finished run's event log
    (runs launched by the daemon, in other processes)."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.asset_materialization
        keys = _count_keys(mat.asset_key.to_user_string(), mat.metadata) if mat is not None else None
        if keys:
            out[mat.asset_key.to_user_string()] = {k: mat.metadata[k].value for k in keys if k in mat.metadata}
    return out


def stage_totals(per_run: list[tuple[dict[str, float], dict[str, dict]]]) -> dict[str, dict]:
    """Sum step seconds and the 'computed now' count per asset over runs given as
    (step_seconds, materialization_counts) pairs."""
    totals: dict[str, dict] = defaultdict(lambda: {"seconds": 0.0, "computed": 0, "runs": 0})
    for steps, counts in per_run:
        for asset, seconds in steps.items():
            t = totals[asset]
            t["seconds"] += seconds
            t["runs"] += 1
            computed = PULL_KEYS.get(asset, COUNT_KEYS)[0]
            t["computed"] += int(counts.get(asset, {}).get(computed, 0) or 0)
    return dict(totals)


def stage_table(totals: dict[str, dict]) -> str:
    """Markdown table: asset, runs, seconds, items computed, seconds per computed item."""
    lines = ["| asset | runs | seconds | computed | s per computed item |", "|---|---:|---:|---:|---:|"]
    for asset, t in totals.items():
        per = f"{t['seconds'] / t['computed']:.3f}" if t["computed"] else "-"
        lines.append(f"| {asset} | {t['runs']} | {t['seconds']:.1f} | {t['computed'] or '-'} | {per} |")
    return "\n".join(lines)
