"""Evaluate a trained model on its held-out split, with 95% bootstrap intervals.

Every reported number comes from the evaluation split of the model's protocol:
test for the grouped protocols, validation for the seed's random 80/20 (which
has no test set, as in the seed). Intervals resample whole sequences (images of
one drive are correlated), so they are honest about how few independent places
the test set holds.

Beside the distances: the expected calibration error of the top-1 confidence
before and after the model's temperature, and the share of evaluation images the
out-of-distribution score flags (about 1% by construction when test looks like
validation).
"""

from __future__ import annotations

import numpy as np

from geo_assets.geo.geocells import GeocellGrid
from geo_assets.geo.haversine import haversine_km
from geo_assets.geo.labels import CityLabels
from geo_assets.model.calibration import ECE_BINS, expected_calibration_error
from geo_assets.model.dataset import GeoDataset
from geo_assets.model.geolocator import GeolocatorMLP, class_centres, class_grid_cells
from geo_assets.model.fit import ood_vectors
from geo_assets.model.metrics import per_image_outcomes, region_centre_baseline
from geo_assets.model.ood import flagged, ood_scores
from geo_assets.model.refine import Gallery, model_outputs, refine, snap_distance_km
from geo_assets.model.spec import ModelSpec
from geo_assets.model.uncertainty import bootstrap_metrics, json_safe

N_BOOT = 1000


def predict_rows(model: GeolocatorMLP, gallery: Gallery | None, spec: ModelSpec, ds: GeoDataset,
                 grid: GeocellGrid, temperature: float = 1.0) -> dict:
    """Final predictions for every row of `ds`: lat, lon, source, grid cell, top-10 grid cells,
    confidence (after `temperature`) and confidence_raw (the model's own)."""
    gaz = ds.gaz if spec.gazetteer_prior else None
    out = model_outputs(model, ds.features(spec.feature), gaz, grid, k=10, temperature=temperature)
    cells = class_grid_cells(model)
    lat, lon, source = refine(out, gallery if spec.retrieval else None, gaz, class_centres(model, grid).cpu().numpy(),
                              snap_distance_km(grid.size))
    return {"lat": lat, "lon": lon, "source": source, "cell": cells[out["cls"]] if len(ds) else np.zeros(0, np.int64),
            "topk": cells[out["topk"]] if len(ds) else np.zeros((0, 10), np.int64),
            "confidence": out["confidence_cal"], "confidence_raw": out["confidence"], "topk_p": out["topk_p_cal"]}


def outcomes_for(pred: dict, ds: GeoDataset, grid: GeocellGrid) -> dict:
    d = np.atleast_1d(haversine_km(pred["lat"], pred["lon"], ds.lat, ds.lon))
    true_cell = np.asarray(grid.cell_of(ds.lat, ds.lon)).reshape(-1) if len(ds) else np.zeros(0, np.int64)
    return per_image_outcomes(d, pred["cell"], true_cell, pred["topk"])


def calibration_summary(confidence_raw, confidence, cell_hit, temperature: float, n_bins: int = ECE_BINS) -> dict:
    """ECE (in %) of the top-1 confidence against geocell accuracy, before and after the temperature."""
    hit = np.asarray(cell_hit, dtype=bool)
    return {"temperature": float(temperature), "bins": n_bins, "n": int(hit.size),
            "geocell_accuracy_pct": 100.0 * float(hit.mean()) if hit.size else None,
            "mean_confidence_before_pct": 100.0 * float(np.mean(confidence_raw)) if hit.size else None,
            "mean_confidence_after_pct": 100.0 * float(np.mean(confidence)) if hit.size else None,
            "ece_before_pct": 100.0 * expected_calibration_error(confidence_raw, hit, n_bins),
            "ece_after_pct": 100.0 * expected_calibration_error(confidence, hit, n_bins)}


def ood_summary(model: GeolocatorMLP, spec: ModelSpec, test: GeoDataset, gallery: Gallery | None, ood: dict | None) -> tuple[dict, np.ndarray, np.ndarray]:
    """(summary, score per row, flag per row) of the out-of-distribution score on `test`, in the
    model's space, plus the share each other space's threshold would flag."""
    n = len(test)
    if not ood or gallery is None or ood.get("threshold") is None or n == 0:
        return {"n": n, "flagged_pct": None, "note": "no out-of-distribution threshold"}, np.full(n, np.nan), np.zeros(n, bool)
    out = {"space": ood["space"], "k": ood["k"], "percentile": ood["percentile"], "threshold": ood["threshold"], "n": n}
    chosen = None
    for name, fitted in ood.get("spaces", {}).items():
        scores = ood_scores(gallery.vectors(name), ood_vectors(model, spec, test, name), ood["k"])
        flags = flagged(scores, fitted["threshold"])
        out.setdefault("spaces", {})[name] = {"threshold": fitted["threshold"], "flagged_pct": 100.0 * float(flags.mean()),
                                             "median_score": float(np.median(scores))}
        if name == ood["space"]:
            chosen = scores, flags
    out["flagged_pct"] = out["spaces"][ood["space"]]["flagged_pct"]
    return out, chosen[0], chosen[1]


def evaluate(model: GeolocatorMLP, gallery: Gallery | None, spec: ModelSpec, ds: GeoDataset, grid: GeocellGrid,
             splits: np.ndarray, evaluation_split: str, n_boot: int = N_BOOT, calibration: dict | None = None,
             ood: dict | None = None) -> dict:
    """Metrics with intervals on `evaluation_split` rows (all and text-reliant), the
    region-centre baseline on the same rows, the calibration error before and after the
    model's temperature, the share flagged out-of-distribution, and the per-image rows for
    paired tests. `gallery` is the retrieval gallery (used for retrieval only when
    spec.retrieval) and the out-of-distribution reference set."""
    ev = np.flatnonzero(splits == evaluation_split)
    tr = np.flatnonzero(splits == "train")
    if tr.size == 0:
        raise ValueError("no training rows: nothing to compare the model with")
    # No evaluation rows (a tiny data set): every metric is NaN with n = 0, not an error.
    test = ds.subset(ev)
    temperature = float((calibration or {}).get("temperature") or 1.0)
    pred = predict_rows(model, gallery, spec, test, grid, temperature)
    outcomes = outcomes_for(pred, test, grid)
    calibrated = calibration_summary(pred["confidence_raw"], pred["confidence"], outcomes["cell_hit"], temperature)
    ood_out, ood_score, ood_flag = ood_summary(model, spec, test, gallery, ood)
    groups = [s or f"img:{i}" for s, i in zip(test.sequence_ids, test.image_ids)]
    metrics = bootstrap_metrics(outcomes, groups=groups, n_boot=n_boot)

    base = region_centre_baseline(ds.lat[tr], ds.lon[tr], test.lat, test.lon)
    base_km = np.atleast_1d(haversine_km(np.full(len(test), base["centre_lat"]), np.full(len(test), base["centre_lon"]),
                                         test.lat, test.lon))
    baseline = bootstrap_metrics(per_image_outcomes(base_km), groups=groups, n_boot=n_boot)
    baseline["centre"] = {"lat": base["centre_lat"], "lon": base["centre_lon"]}

    sub = test.text_reliant
    if sub.any():
        sub_out = {k: v[sub] for k, v in outcomes.items()}
        text_metrics = bootstrap_metrics(sub_out, groups=[g for g, s in zip(groups, sub) if s], n_boot=n_boot)
    else:
        text_metrics = {}
    top10 = outcomes.get("top10_hit")
    if top10 is None:
        # Under 10 classes (a coarse geocell over a small region) there is no top-10 metric,
        # but the per-image row still has a flag: the top 10 then holds every class.
        true_cell = np.asarray(grid.cell_of(test.lat, test.lon)).reshape(-1) if len(test) else np.zeros(0, np.int64)
        topk = np.asarray(pred["topk"]).reshape(len(test), -1)
        top10 = np.any(topk == true_cell[:, None], axis=1)
    rows = {
        "image_id": test.image_ids, "sequence_id": test.sequence_ids, "text_reliant": test.text_reliant.tolist(),
        "true_lat": test.lat.tolist(), "true_lon": test.lon.tolist(), "pred_lat": pred["lat"].tolist(),
        "pred_lon": pred["lon"].tolist(), "km": outcomes["km"].tolist(), "cell_hit": outcomes["cell_hit"].tolist(),
        "top5_hit": outcomes["top5_hit"].tolist(), "top10_hit": top10.tolist(),
        "confidence": np.asarray(pred["confidence"], np.float64).tolist(), "source": [str(s) for s in pred["source"]],
        "confidence_raw": np.asarray(pred["confidence_raw"], np.float64).tolist(),
        "ood_score": np.asarray(ood_score, np.float64).tolist(), "ood_flag": np.asarray(ood_flag, bool).tolist(),
    }
    sources = {s: int(np.count_nonzero(pred["source"] == s)) for s in ("offset", "retrieval", "gazetteer")}
    return with_city_accuracy(json_safe({
        "evaluation_split": evaluation_split, "n": int(ev.size), "n_sequences": len(set(groups)),
        "n_train": int(tr.size), "metrics": metrics, "baseline": baseline,
        "text_reliant": {"n": int(sub.sum()), "metrics": text_metrics},
        "prediction_sources": sources, "calibration": calibrated, "ood": ood_out,
    }), grid) | {"rows": rows}


def with_city_accuracy(report: dict, grid) -> dict:
    """For a city label scheme (geo/labels.py): `city_accuracy_pct` beside the other metrics
    (the top-1 accuracy of the city label: its class is the city) and which cities the
    classes are. Square-cell reports are returned as they are."""
    if not isinstance(grid, CityLabels):
        return report
    for metrics in (report["metrics"], report["text_reliant"]["metrics"]):
        if "geocell_accuracy_pct" in metrics:
            metrics["city_accuracy_pct"] = dict(metrics["geocell_accuracy_pct"])
    report["label_scheme"] = {"scheme": "cities", "key": grid.key, "cities": grid.n_cells,
                              "offset_range_deg": grid.size, "names": grid.names}
    return report
