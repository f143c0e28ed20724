import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geo_assets.geo.bbox import BBox
from geo_assets.geo.geocells import GeocellGrid
from geo_assets.geo.haversine import EARTH_RADIUS_KM
from geo_assets.model.artifacts import ModelArtifactError, load_model, read_meta, save_model
from geo_assets.model.geolocator import GeolocatorMLP, predict_coords
from geo_assets.model.losses import geolocation_loss
from geo_assets.model.metrics import evaluate_predictions, region_centre_baseline
from geo_assets.model.predict import predict_features
from geo_assets.model.privacy_score import privacy_score
from geo_assets.model.splits import SplitConfig, assign_splits
from geo_assets.model.train import TrainConfig, TrainResult, train_geolocator

ROOT = Path(__file__).resolve().parents[1]
BOX = BBox(-2.0, 51.0, 0.0, 53.0)
KM_PER_DEG = EARTH_RADIUS_KM * math.pi / 180


def _cfg(**kw) -> TrainConfig:
    # one CPU thread: OpenMP barriers make two threads slower on a busy 2-core machine
    return TrainConfig(cpu_threads=1, **kw)


# --- the network ---------------------------------------------------------------


def test_forward_shapes_and_bounded_offsets():
    torch.manual_seed(0)
    model = GeolocatorMLP(48, 400, 0.1)
    logits, offset = model(torch.randn(7, 48))
    assert logits.shape == (7, 400) and offset.shape == (7, 2)
    huge_logits, huge = model(torch.randn(64, 48) * 1e4)  # saturate the sigmoid both ways
    assert torch.all(huge.abs() <= 0.05 + 1e-7)
    assert huge.abs().max() > 0.04
    assert [m.out_features for m in model.features if isinstance(m, torch.nn.Linear)] == [1024, 512, 256]
    assert sum(isinstance(m, torch.nn.GELU) for m in model.features) == 3
    assert model.config() == {"in_dim": 48, "n_cells": 400, "geocell_size": 0.1, "hidden": [1024, 512, 256]}


def test_predict_coords_is_argmax_centre_plus_offset():
    grid = GeocellGrid(BOX, 0.5)
    centres = torch.tensor(grid.centres_table(), dtype=torch.float32)
    logits = torch.full((2, grid.n_cells), -5.0)
    logits[0, 5] = 3.0
    logits[1, 15] = 1.0
    offset = torch.tensor([[0.1, -0.2], [0.0, 0.0]])
    lat, lon = predict_coords(logits, offset, centres)
    c5, c15 = grid.centre_of(5), grid.centre_of(15)
    assert lat.tolist() == pytest.approx([c5[0] + 0.1, c15[0]])
    assert lon.tolist() == pytest.approx([c5[1] - 0.2, c15[1]])


def test_loss_on_a_hand_example():
    grid = GeocellGrid(BOX, 0.5)
    centres = torch.tensor(grid.centres_table(), dtype=torch.float32)
    logits = torch.zeros(2, grid.n_cells)
    logits[0, 0] = 2.0  # predicts cell 0 ...
    logits[1, 4] = 2.0  # ... and cell 4 (one row north of cell 0)
    logits.requires_grad_(True)
    offset = torch.zeros(2, 2, requires_grad=True)
    c0 = grid.centre_of(0)
    truth = torch.tensor([c0, c0], dtype=torch.float32)  # both truly at cell 0's centre
    true_cell = torch.tensor([0, 0])
    total, ce, hav = geolocation_loss(logits, offset, true_cell, truth, centres, haversine_weight=0.6)
    lse = math.log(math.exp(2.0) + (grid.n_cells - 1))
    expected_ce = ((lse - 2.0) + (lse - 0.0)) / 2
    assert ce.item() == pytest.approx(expected_ce, rel=1e-5)
    # row 0 is exact (~0 km), row 1 is half a degree north: mean = 0.25 deg
    assert hav.item() == pytest.approx(0.5 * KM_PER_DEG / 2, rel=1e-3)
    assert total.item() == pytest.approx(expected_ce + 0.6 * hav.item(), rel=1e-6)
    total.backward()
    # the arg-max has no gradient: logits learn from the cross entropy only ...
    ce_grad = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, true_cell), logits)[0]
    assert torch.allclose(logits.grad, ce_grad, atol=1e-7)
    # ... and the haversine term reaches the network through the offset: row 1 is pushed south
    assert offset.grad[1, 0] > 0 and torch.all(torch.isfinite(offset.grad))


# --- the split ---------------------------------------------------------------------


def validation_mask(ids):
    """The seed's random per-image 80/20 (the tests' synthetic rows have no sequences)."""
    return assign_splits(ids, [""] * len(ids), np.zeros(len(ids)), np.zeros(len(ids)),
                         SplitConfig(protocol="seed_random")) == "validation"


# --- training ------------------------------------------------------------------------


def _clustered(n=480, dim=32, k=8, seed=0):
    """Features that carry their location: k places, each with its own feature prototype."""
    rng = np.random.default_rng(seed)
    c_lat = rng.uniform(51.2, 52.8, k)
    c_lon = rng.uniform(-1.8, -0.2, k)
    proto = rng.normal(size=(k, dim)).astype(np.float32) * 2
    label = rng.integers(0, k, n)
    lat = c_lat[label] + rng.normal(0, 0.01, n)
    lon = c_lon[label] + rng.normal(0, 0.01, n)
    x = proto[label] + rng.normal(size=(n, dim)).astype(np.float32) * 0.5
    ids = [f"img{i:05d}" for i in range(n)]
    return x, lat, lon, validation_mask(ids)


@pytest.fixture(scope="module")
def trained():
    x, lat, lon, is_val = _clustered()
    grid = GeocellGrid(BOX, 0.1)
    seen = []
    result = train_geolocator(x, lat, lon, is_val, grid, _cfg(max_epochs=12, seed=0),
                              progress=lambda epoch, m: seen.append((epoch, m)))
    return result, grid, (x, lat, lon, is_val), seen


def test_training_beats_the_region_centre_baseline(trained):
    result, grid, (x, lat, lon, is_val), seen = trained
    assert isinstance(result, TrainResult)
    v = result.val_predictions
    assert len(v.lat) == is_val.sum() and np.array_equal(v.index, np.flatnonzero(is_val))
    metrics = evaluate_predictions(v.lat, v.lon, v.true_lat, v.true_lon, v.cell, v.true_cell, v.topk)
    baseline = region_centre_baseline(lat[~is_val], lon[~is_val], v.true_lat, v.true_lon)
    assert metrics["median_km"] < baseline["median_km"] / 4
    assert metrics["geocell_accuracy"] > 0.3
    assert metrics["top5_accuracy"] >= metrics["geocell_accuracy"]
    assert v.topk.shape == (len(v.lat), 5)
    assert np.all((v.confidence > 0) & (v.confidence <= 1))


def test_training_history_progress_and_best_weights(trained):
    result, grid, (x, lat, lon, is_val), seen = trained
    h = result.history
    assert [row["epoch"] for row in h] == list(range(len(h)))
    assert [e for e, _ in seen] == list(range(len(h)))
    assert h[result.best_epoch]["val_mean_km"] == min(row["val_mean_km"] for row in h)
    assert sum(row["best"] for row in h) == 1 and h[result.best_epoch]["best"]
    for key in ("lr", "train_loss", "train_ce", "train_hav_km", "val_mean_km", "val_median_km",
                "val_geocell_accuracy", "val_ce", "seconds"):
        assert key in h[0]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    model = result.model
    assert not model.training and next(model.parameters()).device.type == "cpu"
    # the returned weights are the best epoch's: its validation mean km is reproduced
    v = result.val_predictions
    m = evaluate_predictions(v.lat, v.lon, v.true_lat, v.true_lon, v.cell, v.true_cell)
    assert m["mean_km"] == pytest.approx(h[result.best_epoch]["val_mean_km"], rel=1e-4)
    assert m["median_km"] == pytest.approx(h[result.best_epoch]["val_median_km"], rel=1e-4)
    assert m["geocell_accuracy"] == pytest.approx(h[result.best_epoch]["val_geocell_accuracy"])
    json.dumps(h)  # plain floats, ready for model.json / Dagster metadata


def test_training_is_reproducible_and_leaves_global_rng_alone():
    x, lat, lon, is_val = _clustered(n=200, seed=3)
    grid = GeocellGrid(BOX, 0.25)
    torch.manual_seed(123)
    expected = torch.rand(2)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    a = train_geolocator(x, lat, lon, is_val, grid, _cfg(max_epochs=2, seed=5))
    assert torch.equal(torch.rand(2), expected)
    assert torch.get_num_threads() == threads
    b = train_geolocator(x, lat, lon, is_val, grid, _cfg(max_epochs=2, seed=5))
    assert [r["val_mean_km"] for r in a.history] == [r["val_mean_km"] for r in b.history]
    assert np.array_equal(a.val_predictions.lat, b.val_predictions.lat)


def test_early_stopping_and_plateau_schedule():
    x, lat, lon, is_val = _clustered(n=160, seed=4)
    grid = GeocellGrid(BOX, 0.25)
    # lr 0: validation never improves after epoch 0
    result = train_geolocator(x, lat, lon, is_val, grid, _cfg(lr=0.0, max_epochs=50, patience=3,
                                                                      plateau_patience=1))
    assert len(result.history) == 4 and result.best_epoch == 0


def test_training_input_errors_and_no_validation_rows():
    x, lat, lon, is_val = _clustered(n=64, seed=5)
    grid = GeocellGrid(BOX, 0.25)
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_geolocator(bad, lat, lon, is_val, grid, _cfg(max_epochs=1))
    far = lat.copy()
    far[0] = 60.0
    with pytest.raises(ValueError, match="outside the geocell grid"):
        train_geolocator(x, far, lon, is_val, grid, _cfg(max_epochs=1))
    with pytest.raises(ValueError, match="no training rows"):
        train_geolocator(x, lat, lon, np.ones(64, bool), grid, _cfg(max_epochs=1))
    with pytest.raises(ValueError, match="rows"):
        train_geolocator(x[:10], lat, lon, is_val, grid, _cfg(max_epochs=1))
    result = train_geolocator(x, lat, lon, np.zeros(64, bool), grid, _cfg(max_epochs=1))
    assert result.notes and "no validation rows" in result.notes[0]


# --- artifacts and prediction ----------------------------------------------------------


def _meta(grid):
    return {"blur": "unblurred", "geocell": "0.1", "feature": "fused", "encoder_key": "text:x|image:y|xattn",
            "fusion_id": "xattn-v1-test", "training_data_version": "abc123",
            "metrics": {"median_km": np.float64(1.5), "top5_accuracy": float("nan")}, "history": [{"epoch": 0}],
            "n_train": np.int64(10),
            "grid": {"bounds": [grid.bounds.min_lon, grid.bounds.min_lat, grid.bounds.max_lon, grid.bounds.max_lat],
                     "size": grid.size, "n_cells": grid.n_cells}}


def test_artifacts_round_trip_gives_identical_predictions(trained, tmp_path):
    result, grid, (x, *_), _ = trained
    folder = save_model(tmp_path / "models" / "unblurred" / "0.1", result.model, _meta(grid))
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.pt"]
    loaded = load_model(folder, device="cpu")
    assert not loaded.model.training
    assert loaded.grid == grid
    assert loaded.meta["blur"] == "unblurred" and loaded.meta["training_data_version"] == "abc123"
    assert loaded.meta["metrics"] == {"median_km": 1.5, "top5_accuracy": None}  # strict JSON: NaN -> null
    assert loaded.meta["architecture"]["in_dim"] == x.shape[1]
    before = predict_features(type(loaded)(result.model, loaded.meta, grid), x[:20])
    after = predict_features(loaded, x[:20])
    assert before == after
    assert set(after[0]) == {"lat", "lon", "cell", "confidence", "source", "privacy_score", "city_confidence",
                             "district_confidence", "confidence_uncalibrated", "temperature"}
    assert after[0]["temperature"] == 1.0  # saved without a calibration: the model's own probabilities
    for row in after:
        assert 0 <= row["district_confidence"] <= row["city_confidence"] <= 1 + 1e-9
        assert grid.cell_of(np.clip(row["lat"], 51, 53), np.clip(row["lon"], -2, 0)) == row["cell"]
    # a GeocellGrid works as well, and a mismatched grid is refused
    save_model(tmp_path / "g", result.model, {"feature": "concat"}, grid=grid)
    assert load_model(tmp_path / "g").meta["feature"] == "concat"
    with pytest.raises(ValueError, match="does not match"):
        save_model(tmp_path / "bad", result.model, {}, grid=GeocellGrid(BOX, 0.5))
    with pytest.raises(ValueError, match="grid"):
        save_model(tmp_path / "bad", result.model, {})


def test_loading_needs_no_training_code(trained, tmp_path):
    result, grid, (x, *_), _ = trained
    save_model(tmp_path / "m", result.model, _meta(grid))
    code = ("import sys; from geo_assets.model.artifacts import load_model; "
            f"m = load_model({str(tmp_path / 'm')!r}, device='cpu'); "
            "assert 'geo_assets.model.train' not in sys.modules and 'geo_assets.model.losses' not in sys.modules; "
            "print(m.model.n_cells)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(grid.n_cells)


def test_missing_or_corrupted_artifacts_fail_clearly(trained, tmp_path):
    result, grid, *_ = trained
    with pytest.raises(ModelArtifactError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelArtifactError, match="model.json is missing"):
        load_model(tmp_path / "empty")

    folder = save_model(tmp_path / "m", result.model, _meta(grid))
    weights = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ModelArtifactError, match="checksum"):
        load_model(folder)
    (folder / "model.pt").unlink()
    with pytest.raises(ModelArtifactError, match="model.pt is missing"):
        load_model(folder)

    folder = save_model(tmp_path / "m2", result.model, _meta(grid))
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ModelArtifactError, match="corrupted"):
        load_model(folder)
    (folder / "model.json").write_text(json.dumps({"blur": "x"}))
    with pytest.raises(ModelArtifactError, match="not written by save_model"):
        read_meta(folder)

    # weights of another architecture, with a matching checksum: still refused
    folder = save_model(tmp_path / "m3", result.model, _meta(grid))
    doc = json.loads((folder / "model.json").read_text())
    doc["architecture"]["in_dim"] = 7
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelArtifactError, match="cannot be loaded"):
        load_model(folder)


def test_privacy_score_is_seed_002_at_fixed_radii():
    # three class centres: at the prediction, 20 km north, 200 km north
    centres = np.array([[52.0, -1.0], [52.0 + 20 / KM_PER_DEG, -1.0], [52.0 + 200 / KM_PER_DEG, -1.0]])
    s = privacy_score(np.array([0.7, 0.2, 0.1]), centres, 52.0, -1.0)
    assert s["district_confidence"] == pytest.approx(0.7) and s["city_confidence"] == pytest.approx(0.9)
    assert s["privacy_score"] == pytest.approx(0.3)  # 1 - district confidence
    # city confidence under the cutoff: the image gives away nothing, score 1
    low = privacy_score(np.array([0.1, 0.05, 0.85]), centres, 52.0, -1.0)
    assert low["city_confidence"] == pytest.approx(0.15) and low["privacy_score"] == 1.0
    # the same belief spread over 4x the cells (a finer grid) gives the same score
    fine = np.repeat(centres, 4, axis=0) + np.tile([[0.01, 0.0], [-0.01, 0.0], [0.0, 0.01], [0.0, -0.01]], (3, 1))
    s4 = privacy_score(np.repeat([0.7, 0.2, 0.1], 4) / 4, fine, 52.0, -1.0)
    assert s4["privacy_score"] == pytest.approx(s["privacy_score"])
    with pytest.raises(ValueError):
        privacy_score(np.array([]), np.zeros((0, 2)), 52.0, -1.0)


def test_predict_features_checks_dims(trained, tmp_path):
    result, grid, (x, *_), _ = trained
    loaded = load_model(save_model(tmp_path / "m", result.model, _meta(grid)), device="cpu")
    with pytest.raises(ValueError, match=r"\(N, 32\)"):
        predict_features(loaded, np.zeros((2, 31), np.float32))
    assert len(predict_features(loaded, x[0])) == 1


def test_model_options_train_save_and_reload(tmp_path):
    """Classes limited to cells with data, label smoothing, the gazetteer prior and the
    token fusion train, beat the baseline, and survive a save/load round trip."""
    x, lat, lon, is_val = _clustered(n=400, dim=48)
    grid = GeocellGrid(BOX, 0.05)
    gaz = np.full((len(x), 2), np.nan)
    gaz[::3] = np.stack([lat[::3], lon[::3]], axis=1)
    cfg = _cfg(max_epochs=8, classes="with_data", smoothing_km=75.0, gazetteer_prior=True, token_fusion=True)
    result = train_geolocator(x, lat, lon, is_val, grid, cfg, gaz=gaz, token_dims=(16, 32))
    model = result.model
    assert model.n_cells < 60 < grid.n_cells  # 8 places -> a few dozen cells, not the 1,600 of the grid
    v = result.val_predictions
    m = evaluate_predictions(v.lat, v.lon, v.true_lat, v.true_lon)
    base = region_centre_baseline(lat[~is_val], lon[~is_val], v.true_lat, v.true_lon)
    assert m["median_km"] < base["median_km"] / 3
    assert torch.nn.functional.softplus(model.prior_weight_raw) > 0
    folder = save_model(tmp_path / "opt", model, {"feature": "concat"}, grid=grid)
    loaded = load_model(folder, device="cpu")
    assert loaded.model.config() == model.config()
    with torch.no_grad():
        a = model(torch.as_tensor(x[:5]), torch.as_tensor(gaz[:5], dtype=torch.float32))[0]
        b = loaded.model(torch.as_tensor(x[:5]), torch.as_tensor(gaz[:5], dtype=torch.float32))[0]
    assert torch.allclose(a, b)
    with pytest.raises(ValueError, match="gaz="):
        train_geolocator(x, lat, lon, is_val, grid, _cfg(max_epochs=1, gazetteer_prior=True))
    with pytest.raises(ValueError, match="classes"):
        TrainConfig(classes="some")


def test_haversine_label_smoothing_targets():
    from geo_assets.model.losses import haversine_smoothed_targets

    centres = torch.tensor([[52.0, -1.0], [52.0 + 50 / KM_PER_DEG, -1.0], [52.0 + 500 / KM_PER_DEG, -1.0]])
    t = haversine_smoothed_targets(torch.tensor([[52.0, -1.0]]), centres, 75.0)
    assert t.sum().item() == pytest.approx(1.0)
    # weights fall as exp(-d / tau): 50 km away keeps exp(-2/3) of the true cell's weight
    assert (t[0, 1] / t[0, 0]).item() == pytest.approx(math.exp(-50 / 75), rel=1e-3)
    assert t[0, 2] < 1e-2


def test_refine_snaps_to_an_agreeing_gazetteer_place_and_retrieves_otherwise():
    from geo_assets.model.refine import Gallery, refine

    centres = np.array([[52.0, -1.0], [51.5, -0.5], [52.5, -1.5]])
    outputs = {"lat": np.array([52.01, 51.49]), "lon": np.array([-1.01, -0.49]), "cls": np.array([0, 1]),
               "topk": np.array([[0, 1], [1, 2]]), "topk_p": np.array([[0.8, 0.2], [0.6, 0.4]]),
               "h": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)}
    gallery = Gallery(h=np.array([[1, 0], [0, 1], [0.6, 0.8], [0, 1]], np.float32),
                      lat=np.array([52.02, 51.51, 51.55, 52.45]), lon=np.array([-1.02, -0.51, -0.45, -1.45]),
                      cls=np.array([0, 1, 1, 2]))
    # row 0: the named place is 3 km from the arg-max class centre -> its coordinates;
    # row 1: the named place is 100+ km away -> no snap; the most similar image of a likely class
    gaz = np.array([[52.02, -0.98], [53.5, -2.0]])
    lat, lon, src = refine(outputs, gallery, gaz, centres, snap_km=10.0)
    assert list(src) == ["gazetteer", "retrieval"]
    assert (lat[0], lon[0]) == (52.02, -0.98)
    assert (lat[1], lon[1]) == (51.51, -0.51)
    # no gallery, no place: the seed's centre + offset
    lat, lon, src = refine(outputs, None, None, centres, snap_km=10.0)
    assert list(src) == ["offset", "offset"] and lat[1] == pytest.approx(51.49)
