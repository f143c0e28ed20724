"""Honest confidence: temperature scaling and the calibration error (pure maths), the
out-of-distribution score and its threshold, and both through a real trained model:
fitted on validation, stored with the model, applied in evaluation and prediction."""

import json
import math

import numpy as np
import pytest

from geo_assets.embed.neighbours import knn_cosine_distance
from geo_assets.geo.bbox import BBox
from geo_assets.geo.geocells import GeocellGrid
from geo_assets.model.calibration import (expected_calibration_error, fit_temperature, fit_temperature_top1, nll,
                                          softmax, top1_nll)
from geo_assets.model.dataset import GeoDataset
from geo_assets.model.ood import fit_threshold, flagged, warning_text
from geo_assets.model.privacy_score import not_meaningful

# --- temperature scaling -------------------------------------------------------------


def _sampled(t_true: float, n: int = 4000, c: int = 12, seed: int = 0):
    """Logits and labels drawn from softmax(logits / t_true): t_true is the right temperature."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=4.0, size=(n, c))
    p = softmax(z, t_true)
    labels = np.array([rng.choice(c, p=row) for row in p])
    return z, labels


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_with(t_true):
    z, y = _sampled(t_true)
    t = fit_temperature(z, y)
    assert abs(math.log(t / t_true)) < 0.1, (t, t_true)
    best = nll(z, y, t)
    assert best <= nll(z, y, 1.0) + 1e-12 and best <= nll(z, y, t * 1.2) and best <= nll(z, y, t / 1.2)


def test_temperature_on_an_overconfident_model_is_above_one_and_lowers_the_calibration_error():
    z, y = _sampled(3.0, seed=1)
    t = fit_temperature(z, y)
    conf_raw, conf_cal = softmax(z).max(axis=1), softmax(z, t).max(axis=1)
    hit = softmax(z).argmax(axis=1) == y
    assert t > 2 and np.array_equal(softmax(z, t).argmax(axis=1), softmax(z).argmax(axis=1))  # same guesses
    assert expected_calibration_error(conf_cal, hit) < expected_calibration_error(conf_raw, hit) / 3


@pytest.mark.parametrize("t_true", [0.7, 3.0])
def test_top1_temperature_recovers_the_temperature_the_hits_were_drawn_with(t_true):
    rng = np.random.default_rng(2)
    z = rng.normal(scale=3.0, size=(6000, 8))
    hit = rng.random(6000) < softmax(z, t_true).max(axis=1)  # right as often as softmax(z / t_true) says
    t = fit_temperature_top1(z, hit)
    assert abs(math.log(t / t_true)) < 0.15, (t, t_true)
    assert top1_nll(z, hit, t) <= min(top1_nll(z, hit, 1.0), top1_nll(z, hit, t * 1.3), top1_nll(z, hit, t / 1.3))
    # never right (e.g. every true cell is no class): the fit flattens the probabilities
    assert fit_temperature_top1(z, np.zeros(6000, bool)) > 10
    assert fit_temperature_top1(np.zeros((0, 3)), []) == 1.0
    with pytest.raises(ValueError, match="hit flag"):
        top1_nll(z, hit[:5])


def test_nll_and_temperature_input_errors():
    assert nll(np.zeros((2, 3)), [0, 1]) == pytest.approx(math.log(3))
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(np.zeros((2, 3)), [0, -1])
    with pytest.raises(ValueError, match="one label per row"):
        fit_temperature(np.zeros((2, 3)), [0])
    with pytest.raises(ValueError, match="finite"):
        nll(np.array([[np.nan, 0.0]]), [0])
    with pytest.raises(ValueError, match="temperature"):
        nll(np.zeros((1, 2)), [0], temperature=0)
    assert fit_temperature(np.zeros((0, 3)), []) == 1.0


# --- expected calibration error ------------------------------------------------------


def test_ece_by_hand():
    # bins of width 1/15: 0.9 -> (13/15, 14/15], 0.6 -> (8/15, 9/15]
    # bin of 0.9: accuracy 0.5, gap 0.4, weight 1/2; bin of 0.6: accuracy 1, gap 0.4, weight 1/2
    assert expected_calibration_error([0.9, 0.9, 0.6, 0.6], [True, False, True, True]) == pytest.approx(0.4)
    # one bin: mean confidence 0.75 against accuracy 0.5
    assert expected_calibration_error([0.7, 0.8], [True, False], n_bins=1) == pytest.approx(0.25)
    # right as often as it says, in every bin
    conf = np.repeat([0.2, 0.5, 1.0], 10)
    hit = np.concatenate([np.arange(10) < 2, np.arange(10) < 5, np.ones(10, bool)])
    assert expected_calibration_error(conf, hit) == pytest.approx(0.0)
    assert expected_calibration_error([0.0], [False]) == 0.0  # a zero confidence falls in the first bin
    assert math.isnan(expected_calibration_error([], []))


def test_ece_input_errors():
    with pytest.raises(ValueError, match="rows"):
        expected_calibration_error([0.5], [True, False])
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error([1.5], [True])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [True], n_bins=0)


# --- out-of-distribution score -------------------------------------------------------


def test_knn_cosine_distance_by_hand():
    ref = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    # query (1, 0): similarities 1, 0, 0.7071 -> the two nearest average 0.8536
    d = knn_cosine_distance(ref, np.array([[3.0, 0.0], [-1.0, 0.0]]), k=2)
    assert d[0] == pytest.approx(1 - (1 + 2**-0.5) / 2)
    assert d[1] == pytest.approx(1 - (0 - 2**-0.5) / 2)  # opposite: nearest two are (0, 2) and (1, 1)
    assert knn_cosine_distance(ref, [1.0, 0.0], k=10)[0] == pytest.approx(1 - (1 + 0 + 2**-0.5) / 3)  # k capped
    with pytest.raises(ValueError, match="dims"):
        knn_cosine_distance(ref, np.zeros((1, 3)))
    with pytest.raises(ValueError, match="empty"):
        knn_cosine_distance(np.zeros((0, 2)), np.zeros((1, 2)))


def test_threshold_flags_the_share_above_the_validation_percentile():
    val = np.linspace(0, 1, 201)
    t = fit_threshold(val, 99.0)
    assert t == pytest.approx(0.99)
    assert flagged(val, t).mean() == pytest.approx(2 / 201)
    assert fit_threshold([], 99.0) is None and not flagged([5.0], None).any()
    with pytest.raises(ValueError, match="percentile"):
        fit_threshold(val, 0)
    assert "not meaningful" in warning_text(0.4, 0.2)
    score = not_meaningful("unlike the training images")
    assert score["privacy_score"] is None and score["privacy_score_note"].startswith("not meaningful")


# --- through a trained model -----------------------------------------------------------

BOX = BBox(-2.0, 51.0, 0.0, 53.0)


def _dataset(n: int = 240, seed: int = 0) -> GeoDataset:
    """Images at six places; every vector block carries its place plus noise, and every image
    vector shares one 'style' direction (the synthetic world's look)."""
    rng = np.random.default_rng(seed)
    places = rng.uniform([51.2, -1.8], [52.8, -0.2], size=(6, 2))
    place = rng.integers(0, 6, n)
    dirs = {k: rng.normal(size=(6, d)) for k, d in (("text", 24), ("image", 32), ("ocr", 24))}
    style = rng.normal(size=32) * 3

    def block(k):
        return (dirs[k][place] + 0.3 * rng.normal(size=(n, dirs[k].shape[1]))).astype(np.float32)

    image = block("image") + style
    lat = places[place, 0] + rng.normal(scale=0.01, size=n)
    lon = places[place, 1] + rng.normal(scale=0.01, size=n)
    seqs = [f"s{i // 4}" for i in range(n)]  # sequences of four
    return GeoDataset(image_ids=[f"{i:05d}" for i in range(n)], sequence_ids=seqs, lat=lat, lon=lon,
                      text_emb=block("text"), image_emb=image.astype(np.float32), fused=block("text"),
                      ocr_emb=block("ocr"), gaz_lat=np.full(n, np.nan), gaz_lon=np.full(n, np.nan),
                      text_reliant=np.zeros(n, bool), row_keys=[str(i) for i in range(n)], encoder_key="test")


def test_trained_model_stores_temperature_and_threshold_and_flags_an_unlike_image(tmp_path):
    from geo_assets.defs.assets.models import GALLERY_FILE, _save, evaluate_model_dir
    from geo_assets.model.artifacts import load_model
    from geo_assets.model.fit import fit_model
    from geo_assets.model.predict import predict_features
    from geo_assets.model.refine import Gallery
    from geo_assets.model.spec import spec_for
    from geo_assets.model.splits import SplitConfig

    ds, grid, spec = _dataset(), GeocellGrid(BOX, 0.1), spec_for("default")
    split = SplitConfig(validation_fraction=0.2, test_fraction=0.2)
    fit = fit_model(ds, grid, spec, split, max_epochs=5, cpu_threads=1)
    assert fit.calibration["fitted_on"] == "validation" and fit.calibration["n"] > 0
    assert fit.calibration["val_top1_nll_after"] <= fit.calibration["val_top1_nll_before"] + 1e-9  # fitted, never worse
    assert fit.ood["space"] == "image" and fit.ood["threshold"] > 0
    folder = tmp_path / "unblurred" / "0.1"
    _save(folder, fit, spec, {"blur": "unblurred", "geocell": "0.1", "feature": spec.feature}, grid)

    # Stored with the model, applied in evaluation: ECE before and after, the share flagged.
    loaded, gallery = load_model(folder, device="cpu"), Gallery.load(folder / GALLERY_FILE)
    assert loaded.meta["calibration"]["temperature"] == pytest.approx(fit.calibration["temperature"])
    assert loaded.meta["ood"]["threshold"] == pytest.approx(fit.ood["threshold"])
    report = evaluate_model_dir(ds, folder)
    json.dumps(report, allow_nan=False)
    cal = report["calibration"]
    assert cal["temperature"] == pytest.approx(fit.calibration["temperature"]) and cal["n"] == report["n"] > 0
    assert 0 <= cal["ece_before_pct"] <= 100 and 0 <= cal["ece_after_pct"] <= 100
    assert report["ood"]["flagged_pct"] <= 20  # test images are like training ones (1% by construction on validation)

    # Prediction: a test image is not flagged and gets a score; an image vector unlike every
    # training one (no 'style', another direction) is flagged and gets no score.
    test = np.flatnonzero(fit.splits == "test")
    x = ds.features(spec.feature)
    like = predict_features(loaded, x[test[:5]], ds.gaz[test[:5]], gallery, image_features=ds.image_emb[test[:5]])
    assert sum(p["unlike_training"] for p in like) == 0
    assert all(0 <= p["privacy_score"] <= 1 and p["confidence"] > 0 for p in like)
    other = np.random.default_rng(9).normal(size=(1, ds.image_emb.shape[1])).astype(np.float32)
    unlike = predict_features(loaded, x[test[:1]], ds.gaz[test[:1]], gallery, image_features=other)[0]
    assert unlike["unlike_training"] and unlike["ood_score"] > unlike["ood_threshold"]
    assert unlike["privacy_score"] is None and "not meaningful" in unlike["privacy_score_note"]
    # the temperature changes the confidence, never the guess
    raw = predict_features(type(loaded)(loaded.model, {**loaded.meta, "calibration": None}, loaded.grid),
                           x[test[:5]], ds.gaz[test[:5]], gallery)
    assert [(p["lat"], p["lon"], p["cell"]) for p in raw] == [(p["lat"], p["lon"], p["cell"]) for p in like]
    assert [p["confidence"] for p in raw] == pytest.approx([p["confidence_uncalibrated"] for p in like])


