"""The privacy report: Figure 18 of the seed for every trained model, deltas against
the baseline (unblurred, smallest geocell), the text-reliant subset, and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

FIG18_COLUMNS = [
    ("median_km", "Median distance (km)", "{:.1f}"),
    ("geocell_accuracy_pct", "Geocell accuracy (%)", "{:.1f}"),
    ("within_100km_pct", "Within 100 km (%)", "{:.1f}"),
    ("within_10km_pct", "Within 10 km (%)", "{:.1f}"),
    ("within_1km_pct", "Within 1 km (%)", "{:.1f}"),
    ("within_100m_pct", "Within 100 m (%)", "{:.1f}"),
]
EXTRA_COLUMNS = [("top5_accuracy_pct", "Top-5 (%)", "{:.1f}"), ("mean_km", "Mean km", "{:.1f}"), ("n", "n (val)", "{:d}")]

# The seed's own numbers (40k Mapillary images), for side-by-side reading.
SEED_FIGURE_18 = {
    ("unblurred", "0.05"): [39.241, 36.7, 57.7, 41.9, 31.3, 23.0],
    ("blurred", "0.05"): [41.896, 35.6, 58.3, 41.6, 30.7, 22.1],
    ("unblurred", "0.1"): [35.582, 38.9, 58.8, 42.1, 29.6, 17.1],
    ("blurred", "0.1"): [37.770, 38.1, 58.9, 41.3, 28.9, 13.1],
}


def collect_evaluations(models_root: Path) -> list[dict]:
    """Every models/<blur>/<geocell>/evaluation.json, ordered by geocell then blur."""
    found = []
    for path in sorted(Path(models_root).glob("*/*/evaluation.json")):
        try:
            found.append(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"corrupt evaluation file {path}: {exc}") from exc
    return sorted(found, key=lambda e: (float(e["geocell"]), e["blur"] != "unblurred"))


def _label(e: dict) -> str:
    return f"{e['blur'].capitalize()} {e['geocell']}"


def _fmt(fmt: str, value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return fmt.format(int(value) if fmt == "{:d}" else value)


def _table(evaluations: list[dict], key: str) -> list[str]:
    cols = FIG18_COLUMNS + EXTRA_COLUMNS
    lines = ["| Model | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for e in evaluations:
        m = e[key]["metrics"] if key != "metrics" else e["metrics"]
        lines.append(f"| {_label(e)} | " + " | ".join(_fmt(f, m.get(k)) for k, _, f in cols) + " |")
    return lines


def build_privacy_report(evaluations: list[dict]) -> dict:
    base = next((e for e in evaluations if e["blur"] == "unblurred"), evaluations[0])
    smallest = min(float(e["geocell"]) for e in evaluations)
    base = next((e for e in evaluations if e["blur"] == "unblurred" and float(e["geocell"]) == smallest), base)
    lines = ["## Figure 18 (validation split)", ""] + _table(evaluations, "metrics")
    lines += ["", f"## Change versus the baseline ({_label(base)}), percentage points / km", "",
              "| Model | " + " | ".join(c[1] for c in FIG18_COLUMNS) + " |", "|---" * (len(FIG18_COLUMNS) + 1) + "|"]
    deltas = {}
    for e in evaluations:
        d = {k: e["metrics"][k] - base["metrics"][k] for k, _, _ in FIG18_COLUMNS}
        deltas[_label(e)] = d
        lines.append(f"| {_label(e)} | " + " | ".join(f"{d[k]:+.1f}" for k, _, _ in FIG18_COLUMNS) + " |")
    lines += ["", "## Text-reliant subset (unblurred OCR found place text)", ""] + _table(evaluations, "text_reliant")
    lines += ["", "## Region-centre baseline (always predict the training mean)", "",
              f"median {base['baseline']['median_km']:.1f} km, within 1 km {base['baseline'].get('within_1km_pct', 0):.1f}%"]
    lines += ["", "## The seed's Figure 18 (40k real Mapillary images), for reference", "",
              "| Model | " + " | ".join(c[1] for c in FIG18_COLUMNS) + " |", "|---" * (len(FIG18_COLUMNS) + 1) + "|"]
    for (blur, cell), values in SEED_FIGURE_18.items():
        lines.append(f"| {blur.capitalize()} {cell} | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    summary = {
        "models": [{"model": _label(e), "metrics": e["metrics"], "text_reliant": e["text_reliant"]["metrics"]} for e in evaluations],
        "baseline_model": _label(base),
        "deltas_vs_baseline": deltas,
        "region_centre_baseline": base["baseline"],
    }
    return {"markdown": "\n".join(lines) + "\n", "json": summary}


def plot_within_distance(evaluations: list[dict], out_path: Path) -> Path:
    """% of validation images within d km, for every model, on a log distance axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = np.logspace(-2, np.log10(2500), 200)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for e in evaluations:
        d = np.asarray(e["distances_km"], dtype=float)
        if d.size:
            ax.plot(thresholds, [(d <= t).mean() * 100 for t in thresholds], label=_label(e))
    ax.set_xscale("log")
    ax.set_xlabel("distance from the true location (km)")
    ax.set_ylabel("% of validation images within distance")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out_path)
    return out_path
