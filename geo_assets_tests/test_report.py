import json

import pytest

from geo_assets.model.report import build_privacy_report, collect_evaluations, plot_within_distance


def _evaluation(blur, geocell, median, within_1km, reliant_1km):
    metrics = {"median_km": median, "mean_km": median * 1.5, "geocell_accuracy_pct": 30.0, "top5_accuracy_pct": 50.0,
               "within_100km_pct": 60.0, "within_10km_pct": 40.0, "within_1km_pct": within_1km,
               "within_100m_pct": within_1km / 2, "n": 100}
    return {"blur": blur, "geocell": geocell, "metrics": metrics,
            "baseline": {"median_km": 120.0, "within_1km_pct": 0.0},
            "text_reliant": {"metrics": {**metrics, "within_1km_pct": reliant_1km, "n": 20}},
            "distances_km": [0.05, 0.5, 5.0, 50.0, 500.0]}


def test_report_orders_models_and_computes_deltas_against_baseline(tmp_path):
    evaluations = [
        _evaluation("blurred", "0.1", 40.0, 20.0, 5.0),
        _evaluation("unblurred", "0.05", 39.0, 31.0, 60.0),
        _evaluation("blurred", "0.05", 41.0, 30.0, 10.0),
    ]
    for e in evaluations:
        folder = tmp_path / e["blur"] / e["geocell"]
        folder.mkdir(parents=True)
        (folder / "evaluation.json").write_text(json.dumps(e))
    found = collect_evaluations(tmp_path)
    assert [(e["blur"], e["geocell"]) for e in found] == [("unblurred", "0.05"), ("blurred", "0.05"), ("blurred", "0.1")]
    report = build_privacy_report(found)
    assert report["json"]["baseline_model"] == "Unblurred 0.05"
    deltas = report["json"]["deltas_vs_baseline"]
    assert deltas["Blurred 0.05"]["within_1km_pct"] == pytest.approx(-1.0)
    assert deltas["Blurred 0.1"]["median_km"] == pytest.approx(1.0)
    md = report["markdown"]
    assert "| Unblurred 0.05 | 39.0 |" in md and "Text-reliant subset" in md
    png = plot_within_distance(found, tmp_path / "plot.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_corrupt_evaluation_file_is_named(tmp_path):
    folder = tmp_path / "blurred" / "0.1"
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt evaluation file"):
        collect_evaluations(tmp_path)
