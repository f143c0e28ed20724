"""The privacy report from evaluations, per-image predictions and the attacker's guesses."""

import json

import numpy as np
import pytest

from geo_assets.model.report import attack_results, build_privacy_report, collect_evaluations, plot_within_distance
from geo_assets.model.metrics import per_image_outcomes
from geo_assets.model.uncertainty import bootstrap_metrics


def _rows(km, reliant, seed=0):
    n = len(km)
    rng = np.random.default_rng(seed)
    hits = rng.random(n) < 0.3
    return {"image_id": [f"i{k}" for k in range(n)], "sequence_id": [f"s{k // 3}" for k in range(n)],
            "text_reliant": list(reliant), "km": list(km), "cell_hit": list(hits), "top5_hit": list(hits),
            "top10_hit": list(hits)}


def _evaluation(blur, geocell, rows):
    o = {k: np.asarray(v) for k, v in rows.items() if k in ("km", "cell_hit", "top5_hit", "top10_hit")}
    m = bootstrap_metrics(o, groups=rows["sequence_id"], n_boot=200)
    reliant = np.asarray(rows["text_reliant"])
    sub = bootstrap_metrics({k: v[reliant] for k, v in o.items()}, n_boot=200)
    base = bootstrap_metrics(per_image_outcomes(np.full(len(reliant), 300.0)), n_boot=200)
    return {"blur": blur, "geocell": geocell, "metrics": m, "baseline": base, "n": len(reliant), "n_sequences": 40,
            "evaluation_split": "test", "protocol": "sequence",
            "text_reliant": {"n": int(reliant.sum()), "metrics": sub},
            "seed_protocol": {"metrics": bootstrap_metrics({"km": o["km"] / 3}, n_boot=200)}}


def test_report_tables_intervals_paired_effects_and_attacker(tmp_path):
    rng = np.random.default_rng(1)
    n = 120
    reliant = np.arange(n) % 3 == 0
    unblurred_km = np.where(reliant, rng.uniform(0.1, 5, n), rng.uniform(20, 400, n))
    blurred_km = np.where(reliant, rng.uniform(50, 400, n), unblurred_km + rng.normal(0, 5, n))
    preds = {("unblurred", "0.05"): _rows(unblurred_km, reliant), ("blurred", "0.05"): _rows(blurred_km, reliant)}
    evaluations = [_evaluation(b, g, r) for (b, g), r in preds.items()]
    for e in evaluations:
        folder = tmp_path / e["blur"] / e["geocell"]
        folder.mkdir(parents=True)
        (folder / "evaluation.json").write_text(json.dumps(e))
    found = collect_evaluations([tmp_path / b / "0.05" / "evaluation.json" for b in ("blurred", "unblurred", "absent")])
    assert [(e["blur"], e["geocell"]) for e in found] == [("unblurred", "0.05"), ("blurred", "0.05")]

    attack = []
    for k in range(n):
        for variant in ("unblurred", "blurred"):
            located = variant == "unblurred" and reliant[k]
            attack.append({"image_id": f"i{k}", "sequence_id": f"s{k // 3}", "variant": variant, "engine": "rapidocr",
                           "split": "test", "text_reliant": bool(reliant[k]), "error_km": 2.0 if located else None})
    report = build_privacy_report(found, preds, attack, n_boot=300)
    md = report["markdown"]
    assert "| Unblurred 0.05 | " in md and "[" in md  # intervals printed as [low, high]
    assert "Split protocols side by side" in md and "Region centre" in md
    effects = report["json"]["paired_blur_effects"]["0.05"]
    d = effects["text_reliant"]["within_10km_pct"]
    assert d["diff"] < 0 and d["significant"] and d["high"] < 0
    assert "On the text-reliant images, blurring lowers within 10 km" in md and ": significant." in md
    atk = report["json"]["attacker"]["rapidocr"]
    assert atk["unblurred"]["coverage_pct"] == pytest.approx(100 * reliant.mean())
    assert atk["blurred"]["all"]["within_10km_pct"]["value"] == 0.0
    assert atk["paired"]["within_10km_pct"]["significant"]
    assert "gazetteer attacker" in md
    json.dumps(report["json"], allow_nan=False)
    png = plot_within_distance(preds, tmp_path / "plot.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_attack_results_counts_abstentions_as_misses():
    rows = [{"image_id": f"i{k}", "sequence_id": "", "variant": "unblurred", "engine": "easyocr", "split": "test",
             "text_reliant": False, "error_km": 0.5 if k < 5 else None} for k in range(20)]
    rows.append({"image_id": "x", "sequence_id": "", "variant": "unblurred", "engine": "easyocr", "split": "train",
                 "text_reliant": False, "error_km": 0.1})
    out = attack_results(rows, n_boot=100)["easyocr"]["unblurred"]
    assert out["n"] == 20 and out["coverage_pct"] == 25.0
    assert out["all"]["within_1km_pct"]["value"] == 25.0


def test_corrupt_evaluation_file_is_named(tmp_path):
    folder = tmp_path / "blurred" / "0.1"
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt evaluation file"):
        collect_evaluations([folder / "evaluation.json"])
