"""The privacy report: what blurring text and coarser geocells buy, with honest uncertainty.

Sections (every number from held-out test images, with a 95% bootstrap interval
that resamples whole sequences):

1. the seed's Figure 18 for every trained model, plus top-5/10 and GeoScore, and
   the region-centre baseline;
2. the same models under the seed's random 80/20 per-image protocol (its
   validation split), side by side: how much a leaky split flatters the numbers;
3. the text-reliant subset (images whose unblurred OCR names a place);
4. blurred minus unblurred, per geocell size, as paired intervals on the same
   test images, with a sentence saying which differences are significant;
5. the gazetteer attacker (OCR -> gazetteer -> location, no training) on
   unblurred vs blurred test images, per OCR engine;
6. honest confidence: each model's temperature, the expected calibration error
   on test before and after it, and the share of test images its
   out-of-distribution score flags;
7. the seed's own Figure 18 for reference.

The header states the synthetic world's text assumption (the place-text share), and a
section after 4 shows the blur effect at other shares (`geo-assets sensitivity`) and where
the world sits against the seed's real-data Figure 18 (`model/text_assumption.py`).
"""

from __future__ import annotations

import json
import io
from pathlib import Path

import numpy as np

from geo_assets.geo.labels import is_city_key, label_sort_key
from geo_assets.model.text_assumption import assumption_header, seed_comparison, sensitivity_lines
from geo_assets.model.uncertainty import bootstrap_metrics, describe_difference, json_safe, paired_difference
from geo_assets.store.parquet import atomic_write_bytes
from geo_assets.store.backends import as_path

FIG18_COLUMNS = [
    ("median_km", "Median km", "{:.1f}"),
    ("geocell_accuracy_pct", "Geocell acc. %", "{:.1f}"),
    ("within_100km_pct", "<=100 km %", "{:.1f}"),
    ("within_10km_pct", "<=10 km %", "{:.1f}"),
    ("within_1km_pct", "<=1 km %", "{:.1f}"),
    ("within_100m_pct", "<=100 m %", "{:.1f}"),
]
# Only for city label schemes (city50: one class per city), where it equals the class accuracy.
CITY_COLUMN = ("city_accuracy_pct", "City acc. %", "{:.1f}")
EXTRA_COLUMNS = [("top5_accuracy_pct", "Top-5 %", "{:.1f}"), ("top10_accuracy_pct", "Top-10 %", "{:.1f}"),
                 ("geoscore", "GeoScore", "{:.0f}")]
PAIRED_METRICS = [("within_1km_pct", "within 1 km", "%"), ("within_10km_pct", "within 10 km", "%"),
                  ("median_km", "the median error", "km"), ("geocell_accuracy_pct", "geocell accuracy", "%")]
ATTACK_COLUMNS = [("within_1km_pct", "<=1 km %"), ("within_10km_pct", "<=10 km %"), ("within_25km_pct", "<=25 km %"),
                  ("within_100km_pct", "<=100 km %")]

# The seed's own numbers (40k Mapillary images, its validation split), for side-by-side reading.
SEED_FIGURE_18 = {
    ("unblurred", "0.05"): [39.241, 36.7, 57.7, 41.9, 31.3, 23.0],
    ("blurred", "0.05"): [41.896, 35.6, 58.3, 41.6, 30.7, 22.1],
    ("unblurred", "0.1"): [35.582, 38.9, 58.8, 42.1, 29.6, 17.1],
    ("blurred", "0.1"): [37.770, 38.1, 58.9, 41.3, 28.9, 13.1],
}


def collect_evaluations(paths: list[Path]) -> list[dict]:
    """The given evaluation.json files (absent ones skipped), ordered by geocell then blur."""
    found = []
    for path in sorted(as_path(p) for p in paths):
        if not path.exists():
            continue
        try:
            found.append(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise ValueError(f"corrupt evaluation file {path}: {exc}") from exc
    return sorted(found, key=lambda e: (label_sort_key(e["geocell"]), e["blur"] != "unblurred"))


def _label(e: dict) -> str:
    return f"{e['blur'].capitalize()} {e['geocell']}"


def _ci(m: dict | None, fmt: str) -> str:
    """'12.3 [10.1, 14.0]' from {'value', 'low', 'high'}; '-' when missing."""
    if not m or m.get("value") is None:
        return "-"
    v, lo, hi = m["value"], m.get("low"), m.get("high")
    if lo is None or hi is None:
        return fmt.format(v)
    return f"{fmt.format(v)} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _metrics_table(rows: list[tuple[str, dict, int]], columns) -> list[str]:
    lines = ["| Model | " + " | ".join(c[1] for c in columns) + " | n |", "|---" * (len(columns) + 2) + "|"]
    for label, metrics, n in rows:
        lines.append(f"| {label} | " + " | ".join(_ci(metrics.get(k), f) for k, _, f in columns) + f" | {n} |")
    return lines


def _outcomes(rows: dict, idx=None) -> dict:
    keys = ("km", "cell_hit", "top5_hit", "top10_hit")
    out = {}
    for k in keys:
        if k in rows:
            a = np.asarray(rows[k], dtype=np.float64 if k == "km" else bool)
            out[k] = a if idx is None else a[idx]
    return out


def paired_blur_effects(unblurred_rows: dict, blurred_rows: dict, n_boot: int = 1000) -> dict:
    """Blurred minus unblurred on the test images both models saw: whole set and text-reliant subset."""
    a_ids = {i: k for k, i in enumerate(unblurred_rows["image_id"])}
    pairs = [(a_ids[i], k) for k, i in enumerate(blurred_rows["image_id"]) if i in a_ids]
    if not pairs:
        return {}
    ia, ib = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    groups = [unblurred_rows["sequence_id"][i] or unblurred_rows["image_id"][i] for i in ia]
    reliant = np.asarray(unblurred_rows["text_reliant"], dtype=bool)[ia]
    out = {"n": len(pairs), "n_text_reliant": int(reliant.sum())}
    out["all"] = paired_difference(_outcomes(unblurred_rows, ia), _outcomes(blurred_rows, ib), groups=groups, n_boot=n_boot)
    if reliant.any():
        g2 = [g for g, r in zip(groups, reliant) if r]
        out["text_reliant"] = paired_difference(_outcomes(unblurred_rows, ia[reliant]), _outcomes(blurred_rows, ib[reliant]),
                                                groups=g2, n_boot=n_boot)
    return out


def attack_results(attack_rows: list[dict], split: str = "test", n_boot: int = 1000) -> dict:
    """The attacker per (engine, variant) on `split` images: coverage and within-distance shares
    (abstaining counts as a miss), whole set and text-reliant subset, plus the paired
    blurred-minus-unblurred difference per engine."""
    rows = [r for r in attack_rows if r.get("split") == split]
    out: dict = {}
    per_image: dict = {}  # engine -> variant -> image id -> (km, sequence): for the paired difference
    by_key: dict = {}
    for r in rows:
        by_key.setdefault((r["engine"], r["variant"]), []).append(r)
    for (engine, variant), rs in sorted(by_key.items()):
        rs = sorted(rs, key=lambda r: r["image_id"])
        km = np.array([np.inf if r["error_km"] is None else float(r["error_km"]) for r in rs])
        groups = [r.get("sequence_id") or r["image_id"] for r in rs]
        reliant = np.array([bool(r.get("text_reliant")) for r in rs])
        entry = {"n": len(rs), "coverage_pct": 100.0 * float(np.mean(np.isfinite(km))) if len(rs) else None,
                 "all": bootstrap_metrics({"km": km}, groups=groups, n_boot=n_boot),
                 "n_text_reliant": int(reliant.sum())}
        if reliant.any():
            entry["text_reliant"] = bootstrap_metrics({"km": km[reliant]}, groups=[g for g, s in zip(groups, reliant) if s],
                                                      n_boot=n_boot)
        out.setdefault(engine, {})[variant] = entry
        per_image.setdefault(engine, {})[variant] = {r["image_id"]: (km[k], groups[k]) for k, r in enumerate(rs)}
    for engine, per in out.items():
        rows_by = per_image[engine]
        if {"unblurred", "blurred"} <= set(rows_by):
            common = sorted(set(rows_by["unblurred"]) & set(rows_by["blurred"]))
            if common:
                a = np.array([rows_by["unblurred"][i][0] for i in common])
                b = np.array([rows_by["blurred"][i][0] for i in common])
                g = [rows_by["unblurred"][i][1] for i in common]
                per["paired"] = paired_difference({"km": a}, {"km": b}, groups=g, n_boot=n_boot)
                per["paired"]["n"] = len(common)
    return out


def false_guess_lines(measured: dict | None) -> list[str]:
    """The attacker's measured false-guess rate on real photos outside the UK
    (``geo_assets/data/attacker_false_guesses.json``, written by ``python -m
    geo_assets.attack.false_guesses``), or a line saying it was not measured."""
    if not measured or not measured.get("false_guesses"):
        return ["- False guesses on real photos: not measured (no `geo_assets/data/attacker_false_guesses.json`; "
                "run `python -m geo_assets.attack.false_guesses --out geo_assets/data/attacker_false_guesses.json`)."]
    sets = measured.get("sets", {})
    cells = []
    for reader, per in measured["false_guesses"].items():
        after, before = per.get("after", {}).get("all"), per.get("before", {}).get("all")
        if after:
            was = f"; {before['guessed_pct']:.1f}% with the previous attacker" if before else ""
            cells.append(f"{reader} {after['guessed']}/{after['images']} ({after['guessed_pct']:.1f}%{was})")
    lines = [f"- False guesses on real photos outside the UK ({', '.join(f'{k} {v}' for k, v in sets.items())} images; "
             "none is in the UK, so every place named there is wrong): the attacker named a place for "
             + ", ".join(cells) + f". Measured {measured.get('date', '?')} with `{measured.get('command', '?')}`."]
    from geo_assets.attack.gazetteer import ATTACKER_VERSION

    if measured.get("attacker_version") != ATTACKER_VERSION:
        lines.append(f"- That measurement is of attacker {measured.get('attacker_version', 'unknown')}, not of today's "
                     f"{ATTACKER_VERSION}: measure again before relying on it.")
    syn = measured.get("synthetic", {})
    recalls = [f"{reader} {syn[reader]['after']['within_10km_pct']:.1f}% of {syn[reader]['after']['images']}"
               for reader in ("ground truth", "rapidocr") if syn.get(reader, {}).get("after")]
    if recalls:
        lines.append("- In the same measurement, on the synthetic world's text-reliant test images it was within 10 km for "
                     + ", ".join(recalls) + " (the table above is this run's own test split).")
    return lines


def _pct(v, fmt: str = "{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def confidence_section(evaluations: list[dict]) -> list[str]:
    """Calibration and the out-of-distribution flag per model (absent for models evaluated before
    either existed)."""
    rows = [e for e in evaluations if e.get("calibration")]
    if not rows:
        return []
    lines = ["## Honest confidence: calibration and photos unlike the training set", "",
             "Top-1 confidence against geocell accuracy on the test images: the expected calibration error "
             "(ECE, 15 equal-width bins; 0 = the confidence says how often the model is right) with the model's "
             "own probabilities and after dividing its logits by the temperature fitted on validation (the "
             "predicted places do not change). The out-of-distribution score is the mean cosine distance to the "
             "k nearest training images; above the threshold (a validation percentile) `geo-assets predict` "
             "says the guess and privacy score are not meaningful and gives no score.", "",
             "| Model | Temperature | Geocell acc. % | Mean conf. % before | Mean conf. % after | ECE % before | "
             "ECE % after | OOD space (k) | Threshold | Test flagged % | n |", "|---" * 11 + "|"]
    for e in rows:
        c, o = e["calibration"], e.get("ood") or {}
        space = f"{o['space']} ({o['k']})" if o.get("space") else "-"
        lines.append(f"| {_label(e)} | {c['temperature']:.2f} | {_pct(c.get('geocell_accuracy_pct'))} | "
                     f"{_pct(c.get('mean_confidence_before_pct'))} | {_pct(c.get('mean_confidence_after_pct'))} | "
                     f"{_pct(c.get('ece_before_pct'))} | {_pct(c.get('ece_after_pct'))} | {space} | "
                     f"{_pct(o.get('threshold'), '{:.3f}')} | {_pct(o.get('flagged_pct'))} | {c.get('n', '-')} |")
    return lines + [""]


def main_model_name(e: dict) -> str:
    """The preset the partition's main model is (its spec compared with model/spec.py's), else 'main'."""
    from geo_assets.model.spec import PRESETS

    spec = e.get("spec") or {}
    for name, preset in PRESETS.items():
        if preset.to_dict() == spec:
            return name
    return "main"


def load_family_predictions(evaluations: list[dict]) -> dict:
    """{(blur, geocell, family): predictions rows} from each family folder under the model's."""
    from geo_assets.store.parquet import read_table

    out = {}
    for e in evaluations:
        for name in e.get("families", {}):
            path = as_path(e["model_dir"]) / name / "predictions.parquet"
            if path.exists():
                out[(e["blur"], e["geocell"], name)] = read_table(path).to_pydict()
    return out


def families_section(evaluations: list[dict], predictions: dict, family_predictions: dict,
                     n_boot: int = 1000) -> tuple[list[str], dict]:
    """Each model family against the partition's main model on the same test images (paired),
    and each family's own blurred-minus-unblurred effect."""
    summary: dict = {"against_main": {}, "blur_effects": {}}
    lines = ["## Model families on the same test split", "",
             "Each family was trained beside the main model on the same data and split (`families` in the "
             "training config, or GEO_ASSETS_FAMILIES). Differences are family minus main model, paired on the "
             "same test images, resampling whole sequences; a family beats the main model when its median "
             "error is lower and the 95% interval of the difference excludes zero.", "",
             "| Partition | Family | Main model | Median km | Difference: median km [95% CI] | "
             "Difference: <=10 km points [95% CI] | Beats the main model |", "|---|---|---|---|---|---|---|"]
    sentences = []
    for e in evaluations:
        main = main_model_name(e)
        for name, f in e.get("families", {}).items():
            a, b = predictions.get((e["blur"], e["geocell"])), family_predictions.get((e["blur"], e["geocell"], name))
            if a is None or b is None:
                continue
            paired = paired_blur_effects(a, b, n_boot=n_boot).get("all", {})
            summary["against_main"][f"{e['blur']} {e['geocell']} {name}"] = {"main": main, **paired}
            d_med, d_10 = paired.get("median_km"), paired.get("within_10km_pct")
            beats = bool(d_med and d_med.get("diff") is not None and d_med["diff"] < 0 and d_med["significant"])
            lines.append(f"| {_label(e)} | {name} | {main} | {_ci(f['metrics'].get('median_km'), '{:.1f}')} | "
                         f"{_diff(d_med)} | {_diff(d_10)} | {'yes' if beats else 'no'} |")
            if d_med and d_med.get("diff") is not None:
                sentences.append(describe_difference(f"{_label(e)}: the {name} model instead of {main}",
                                                     "the median error", d_med, "km"))
    lines += [""] + [f"- {s}" for s in sentences] + [""]
    lines += ["Blurred minus unblurred for each family (the main model's is above):", "",
              "| Family | Geocell | n | <=10 km points [95% CI] | Median km [95% CI] | Significant (<=10 km) |",
              "|---|---|---|---|---|---|"]
    names = sorted({name for e in evaluations for name in e.get("families", {})})
    for name in names:
        for geocell in sorted({e["geocell"] for e in evaluations}, key=label_sort_key):
            a, b = family_predictions.get(("unblurred", geocell, name)), family_predictions.get(("blurred", geocell, name))
            if a is None or b is None:
                continue
            effects = paired_blur_effects(a, b, n_boot=n_boot)
            if not effects:
                continue
            summary["blur_effects"][f"{name} {geocell}"] = effects
            d10 = effects["all"].get("within_10km_pct")
            lines.append(f"| {name} | {geocell} | {effects['n']} | {_diff(d10)} | {_diff(effects['all'].get('median_km'))} | "
                         f"{'yes' if d10 and d10.get('significant') else 'no'} |")
    return lines + [""], summary


def _diff(d: dict | None) -> str:
    if not d or d.get("diff") is None or (isinstance(d["diff"], float) and np.isnan(d["diff"])):
        return "-"
    if d.get("low") is None or np.isnan(d["low"]):
        return f"{d['diff']:+.1f}"
    return f"{d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"


def build_privacy_report(evaluations: list[dict], predictions: dict | None = None, attack_rows: list[dict] | None = None,
                         n_boot: int = 1000, sources: list[str] | None = None, sensitivity: dict | None = None,
                         false_guesses: dict | None = None, family_predictions: dict | None = None) -> dict:
    """Markdown and JSON. `predictions`: {(blur, geocell): rows dict} from predictions.parquet;
    `attack_rows`: the gazetteer_attack table as dicts; `sources`: the distinct `source` values of
    raw_images (the text assumption in the header); `sensitivity`: the stored result of
    `geo-assets sensitivity` (None: the report says how to compute it); `false_guesses`: the
    attacker's measured false-guess rate on real photos (``attack.false_guesses.load_measurement``);
    `family_predictions`: {(blur, geocell, family): rows dict} of the model families trained beside
    the main model (None: read from each evaluation's model_dir/<family>/predictions.parquet)."""
    predictions = predictions or {}
    lines: list[str] = []
    summary: dict = {"models": [], "paired_blur_effects": {}, "attacker": {},
                     "text_assumption": {"sources": sorted(set(sources or [])), "sensitivity": sensitivity}}
    if evaluations:
        e0 = evaluations[0]
        lines += ["# Privacy report", "",
                  f"Every number below is on held-out **{e0.get('evaluation_split', 'test')}** images "
                  f"(split protocol `{e0.get('protocol', '?')}`: no sequence spans two splits), {e0.get('n', '?')} images "
                  f"in {e0.get('n_sequences', '?')} sequences, with a 95% bootstrap interval [low, high] that resamples "
                  "whole sequences.", ""]
        lines += assumption_header(sources)
    cols = FIG18_COLUMNS + EXTRA_COLUMNS
    if any("city_accuracy_pct" in e["metrics"] for e in evaluations):  # a city label scheme among the models
        cols = FIG18_COLUMNS[:2] + [CITY_COLUMN] + FIG18_COLUMNS[2:] + EXTRA_COLUMNS
    lines += ["## Figure 18 on the test split", ""]
    rows = [(_label(e), e["metrics"], e["n"]) for e in evaluations]
    rows += [(f"{_label(e)}, {name}", f["metrics"], f["n"]) for e in evaluations for name, f in e.get("families", {}).items()]
    rows += [(f"Region centre (baseline, {e['blur']} {e['geocell']} test rows)", e["baseline"], e["n"])
             for e in evaluations[:1]]
    lines += _metrics_table(rows, cols)

    lines += ["", "## Split protocols side by side", "",
              "The same model and data trained under the seed's random 80/20 per-image split and scored on its "
              "validation split (as the seed did) versus the grouped split scored on test. Neighbouring images of "
              "one sequence on both sides of a random split flatter the first column.", "",
              "| Model | Seed protocol: median km | Grouped test: median km | Seed protocol: <=1 km % | "
              "Grouped test: <=1 km % | Seed protocol: <=10 km % | Grouped test: <=10 km % |",
              "|---|---|---|---|---|---|---|"]
    for e in evaluations:
        s = e.get("seed_protocol", {}).get("metrics", {})
        m = e["metrics"]
        lines.append(f"| {_label(e)} | {_ci(s.get('median_km'), '{:.1f}')} | {_ci(m.get('median_km'), '{:.1f}')} | "
                     f"{_ci(s.get('within_1km_pct'), '{:.1f}')} | {_ci(m.get('within_1km_pct'), '{:.1f}')} | "
                     f"{_ci(s.get('within_10km_pct'), '{:.1f}')} | {_ci(m.get('within_10km_pct'), '{:.1f}')} |")

    lines += ["", "## Text-reliant subset (the unblurred OCR text names a place)", ""]
    lines += _metrics_table([(_label(e), e["text_reliant"]["metrics"], e["text_reliant"]["n"]) for e in evaluations], cols)

    lines += ["", "## What blurring buys: blurred minus unblurred, paired on the same test images", ""]
    geocells = sorted({e["geocell"] for e in evaluations}, key=label_sort_key)
    for geocell in geocells:
        a, b = predictions.get(("unblurred", geocell)), predictions.get(("blurred", geocell))
        if a is None or b is None:
            continue
        effects = paired_blur_effects(a, b, n_boot=n_boot)
        if not effects:
            continue
        summary["paired_blur_effects"][geocell] = effects
        scheme = f"Cities {geocell}" if is_city_key(geocell) else f"Geocell {geocell}"
        lines += [f"### {scheme} ({effects['n']} test images, {effects['n_text_reliant']} text-reliant)", "",
                  "| Subset | Metric | Unblurred | Blurred | Difference [95% CI] | Significant |", "|---|---|---|---|---|---|"]
        sentences = []
        for subset in ("all", "text_reliant"):
            if subset not in effects:
                continue
            for key, words, unit in PAIRED_METRICS:
                d = effects[subset].get(key)
                if not d or d.get("diff") is None:
                    continue
                lines.append(f"| {subset.replace('_', '-')} | {words} | {d['a']:.1f} | {d['b']:.1f} | "
                             f"{d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] | {'yes' if d['significant'] else 'no'} |")
                if key in ("within_1km_pct", "within_10km_pct"):
                    who = "On all test images" if subset == "all" else "On the text-reliant images"
                    sentences.append(describe_difference(f"{who}, blurring", words, d, unit))
        lines += [""] + [f"- {s}" for s in sentences] + [""]

    lines += sensitivity_lines(sensitivity)
    lines += seed_comparison(SEED_FIGURE_18, summary["paired_blur_effects"], sensitivity)

    if attack_rows:
        attack = attack_results(attack_rows, n_boot=n_boot)
        summary["attacker"] = attack
        lines += ["## The gazetteer attacker (OCR -> place names and printed coordinates -> location; no training)", "",
                  "Abstaining counts as a miss. Coverage: share of images where it named a location.", "",
                  "| Engine | Images | Subset | n | Coverage % | " + " | ".join(c[1] for c in ATTACK_COLUMNS) + " |",
                  "|---" * (5 + len(ATTACK_COLUMNS)) + "|"]
        for engine, per in attack.items():
            for variant in ("unblurred", "blurred"):
                entry = per.get(variant)
                if not entry:
                    continue
                cov = entry["coverage_pct"]
                lines.append(f"| {engine} | {variant} | all | {entry['n']} | {cov:.1f} | "
                             + " | ".join(_ci(entry["all"].get(k), "{:.1f}") for k, _ in ATTACK_COLUMNS) + " |")
                if "text_reliant" in entry:
                    lines.append(f"| {engine} | {variant} | text-reliant | {entry['n_text_reliant']} | - | "
                                 + " | ".join(_ci(entry["text_reliant"].get(k), "{:.1f}") for k, _ in ATTACK_COLUMNS) + " |")
        lines.append("")
        lines += false_guess_lines(false_guesses)
        summary["attacker_false_guesses"] = false_guesses
        for engine, per in attack.items():
            d = per.get("paired", {}).get("within_10km_pct")
            if d and d.get("diff") is not None:
                lines.append("- " + describe_difference(f"For the attacker reading with {engine}, blurring",
                                                        "within 10 km", d, "%"))
        lines.append("")

    if any(e.get("families") for e in evaluations):
        if family_predictions is None:
            family_predictions = load_family_predictions(evaluations)
        family_lines, summary["families"] = families_section(evaluations, predictions, family_predictions, n_boot)
        lines += family_lines

    lines += confidence_section(evaluations)

    lines += ["## The seed's Figure 18 (40k real Mapillary images, its validation split), for reference", "",
              "| Model | " + " | ".join(c[1] for c in FIG18_COLUMNS) + " |", "|---" * (len(FIG18_COLUMNS) + 1) + "|"]
    for (blur, cell), values in SEED_FIGURE_18.items():
        lines.append(f"| {blur.capitalize()} {cell} | " + " | ".join(f"{v:.1f}" for v in values) + " |")

    for e in evaluations:
        summary["models"].append({"model": _label(e), "metrics": e["metrics"], "baseline": e["baseline"],
                                  "text_reliant": e["text_reliant"], "seed_protocol": e.get("seed_protocol", {}).get("metrics"),
                                  "spec": e.get("spec"), "n": e.get("n"), "calibration": e.get("calibration"),
                                  "ood": e.get("ood")})
        for name, f in e.get("families", {}).items():
            summary["models"].append({"model": f"{_label(e)}, {name}", "family": name, "metrics": f["metrics"],
                                      "text_reliant": f["text_reliant"], "spec": f.get("spec"), "n": f.get("n"),
                                      "calibration": f.get("calibration"), "ood": f.get("ood")})
    return {"markdown": "\n".join(lines) + "\n", "json": json_safe(summary)}


def plot_within_distance(predictions: dict, out_path: Path) -> Path:
    """% of test images within d km, for every model, on a log distance axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = np.logspace(-2, np.log10(2500), 200)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for (blur, geocell), rows in sorted(predictions.items(), key=lambda kv: (label_sort_key(kv[0][1]), kv[0][0] != "unblurred")):
        d = np.asarray(rows["km"], dtype=float)
        if d.size:
            ax.plot(thresholds, [(d <= t).mean() * 100 for t in thresholds], label=f"{blur.capitalize()} {geocell}")
    ax.set_xscale("log")
    ax.set_xlabel("distance from the true location (km)")
    ax.set_ylabel("% of test images within distance")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_path = as_path(out_path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out_path, buf.getvalue())  # local rename or one S3 PUT
    return out_path


def no_test_warning(evaluations: list[dict]) -> str | None:
    """A paragraph for the report's top when no model has a held-out image (a tiny data set,
    e.g. a folder of one drive: one sequence, all in one split), so empty tables read as
    'nothing to measure' rather than as a result."""
    if not evaluations or any(int(e.get("n") or 0) > 0 for e in evaluations):
        return None
    e0 = evaluations[0]
    return (f"**No test images.** The split by {e0.get('protocol', 'sequence')} left no image held out "
            f"({e0.get('n_train', 0)} training images): the grouped-split tables below are empty, and the seed-protocol "
            "column scores images whose sequence neighbours were in training. Add images from many more sequences "
            "(dozens) for numbers that mean something.")
