"""Where a set of runs spent its time, per asset, from the Dagster event log: what the
main job prints at the end and what the benchmark records for each run."""

from __future__ import annotations

from collections import defaultdict

import dagster as dg

from geo_assets.defs.metadata import PEAK_RSS_KEY

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


def _counts_of(asset: str, metadata) -> dict | None:
    """The computed/reused counts of one materialization, and the run process's peak memory
    at that point when recorded (None when neither is there)."""
    keys = _count_keys(asset, metadata)
    out = {k: metadata[k].value for k in keys if k in metadata} if keys else {}
    if PEAK_RSS_KEY in metadata:
        out["peak_mib"] = metadata[PEAK_RSS_KEY].value
    return out if keys or out else None


def materialization_counts(result) -> dict[str, dict]:
    """The computed/reused counts (and peak memory) of every asset materialized in one run's result."""
    out = {}
    for mat in result.get_asset_materialization_events():
        asset = mat.asset_key.to_user_string()
        counts = _counts_of(asset, mat.materialization.metadata)
        if counts is not None:
            out[asset] = counts
    return out


def counts_from_log(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """The same counts as `materialization_counts`, read from a finished run's event log
    (runs launched by the daemon, in other processes)."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.asset_materialization
        counts = _counts_of(mat.asset_key.to_user_string(), mat.metadata) if mat is not None else None
        if counts is not None:
            out[mat.asset_key.to_user_string()] = counts
    return out


def run_peak_mib(counts: dict[str, dict]) -> float | None:
    """The largest peak memory a run's materializations recorded (None: none recorded)."""
    peaks = [c["peak_mib"] for c in counts.values() if c.get("peak_mib") is not None]
    return max(peaks) if peaks else None


def stage_totals(per_run: list[tuple[dict[str, float], dict[str, dict]]]) -> dict[str, dict]:
    """Sum step seconds and the 'computed now' count per asset over runs given as
    (step_seconds, materialization_counts) pairs; keep the largest peak memory seen."""
    totals: dict[str, dict] = defaultdict(lambda: {"seconds": 0.0, "computed": 0, "runs": 0, "peak_mib": None})
    for steps, counts in per_run:
        for asset, seconds in steps.items():
            t = totals[asset]
            t["seconds"] += seconds
            t["runs"] += 1
            computed = PULL_KEYS.get(asset, COUNT_KEYS)[0]
            t["computed"] += int(counts.get(asset, {}).get(computed, 0) or 0)
            peak = counts.get(asset, {}).get("peak_mib")
            if peak is not None:
                t["peak_mib"] = max(peak, t["peak_mib"] or 0.0)
    return dict(totals)


def stage_table(totals: dict[str, dict]) -> str:
    """Markdown table: asset, runs, seconds, items computed, seconds per computed item, and the
    largest peak resident memory of a run process at that asset."""
    lines = ["| asset | runs | seconds | computed | s per computed item | peak MiB of a run |",
             "|---|---:|---:|---:|---:|---:|"]
    for asset, t in totals.items():
        per = f"{t['seconds'] / t['computed']:.3f}" if t["computed"] else "-"
        peak = f"{t['peak_mib']:.0f}" if t.get("peak_mib") is not None else "-"
        lines.append(f"| {asset} | {t['runs']} | {t['seconds']:.1f} | {t['computed'] or '-'} | {per} | {peak} |")
    return "\n".join(lines)
