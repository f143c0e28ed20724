"""The model families of issue 24 beside the main model: the hybrid head (seed 004) and the
contrastive image-location model (seed 001 / GeoCLIP). Their maths, that each learns where
the features say where an image is, and a real Dagster run that trains them beside the
default model and reports them side by side."""

import json

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
import torch

from geo_assets.geo.bbox import BBox
from geo_assets.geo.geocells import GeocellGrid
from geo_assets.model.contrastive import (ContrastiveGeolocator, contrastive_loss, fourier_matrix, gallery_locations,
                                          regular_grid, retrieve, rff_features)
from geo_assets.model.dataset import GeoDataset
from geo_assets.model.spec import PRESETS, spec_for
from geo_assets.model.splits import SplitConfig

BOX = BBox(-2.0, 51.0, 0.0, 53.0)
SPLIT = SplitConfig(validation_fraction=0.2, test_fraction=0.2)


def position_coded(n: int = 1000, seed: int = 0, noise: float = 0.3, shift: int = 0):
    """Images in sequences of four spread over BOX; every vector block is a fixed random
    linear map of smooth functions (sines) of the position plus noise: the features
    determine where an image is, but only through a non-linear map. `shift` re-draws the
    noise only (the 'blurred' variant of the same images)."""
    rng = np.random.default_rng(seed)
    nseq = n // 4
    seq_ll = rng.uniform([51.05, -1.95], [52.95, -0.05], size=(nseq, 2))
    seq = np.repeat(np.arange(nseq), 4)[:n]
    lat = seq_ll[seq, 0] + rng.normal(scale=0.002, size=n)
    lon = seq_ll[seq, 1] + rng.normal(scale=0.002, size=n)
    u = np.stack([(lat - 51) / 2, (lon + 2) / 2], 1)
    freqs = rng.normal(size=(2, 16)) * 3
    code = np.concatenate([np.sin(2 * np.pi * u @ freqs), np.cos(2 * np.pi * u @ freqs)], 1)
    maps = {k: rng.normal(size=(code.shape[1], d)) / np.sqrt(code.shape[1]) for k, d in (("text", 24), ("image", 32), ("ocr", 24))}
    noise_rng = np.random.default_rng(seed + 1000 + shift)
    blocks = {k: (code @ w + noise * noise_rng.normal(size=(n, w.shape[1]))).astype(np.float32) for k, w in maps.items()}
    return GeoDataset(image_ids=[f"{i:05d}" for i in range(n)], sequence_ids=[f"s{s}" for s in seq], lat=lat, lon=lon,
                      text_emb=blocks["text"], image_emb=blocks["image"], fused=blocks["text"], ocr_emb=blocks["ocr"],
                      gaz_lat=np.full(n, np.nan), gaz_lon=np.full(n, np.nan), text_reliant=np.zeros(n, bool),
                      row_keys=[str(i) for i in range(n)], encoder_key="test")


# --- pure maths -------------------------------------------------------------------------

def test_random_fourier_features_shape_range_and_determinism():
    b = fourier_matrix(8.0, 16, seed=3)
    assert b.shape == (2, 16) and torch.equal(b, fourier_matrix(8.0, 16, seed=3))
    assert not torch.equal(b, fourier_matrix(8.0, 16, seed=4)) and not torch.equal(b, fourier_matrix(1.0, 16, seed=3))
    assert 4 < float(b.std()) < 12  # ~ N(0, 8^2)
    xy = torch.rand(5, 2)
    f = rff_features(xy, b)
    assert f.shape == (5, 32) and float(f.abs().max()) <= 1.0
    # cos^2 + sin^2 = 1 per frequency: the features of a point have norm sqrt(F)
    assert torch.allclose(f.norm(dim=1), torch.full((5,), 4.0), atol=1e-5)
    # Nearby points have similar features at a low scale, unrelated ones at a high one.
    near = torch.tensor([[0.5, 0.5], [0.501, 0.5]])
    lo, hi = rff_features(near, fourier_matrix(1.0, 64)), rff_features(near, fourier_matrix(1000.0, 64))
    assert float(lo[0] @ lo[1]) / 64 > 0.99 > float(hi[0] @ hi[1]) / 64


def test_contrastive_loss_is_lowest_when_images_match_their_locations_and_training_lowers_it():
    torch.manual_seed(0)
    latlon = torch.tensor([[51.2, -1.5], [51.8, -0.5], [52.5, -1.0], [52.9, -0.2]])
    loc = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    scale = torch.tensor(10.0)
    matched = contrastive_loss(loc.clone(), loc, latlon, scale)
    shuffled = contrastive_loss(loc[[1, 2, 3, 0]], loc, latlon, scale)
    assert float(matched) < float(shuffled)
    # Two images at (almost) one place: the target is shared, not a false negative.
    twin = latlon.clone()
    twin[1] = twin[0] + 1e-6
    assert float(contrastive_loss(loc[[0, 0, 2, 3]], loc[[0, 0, 2, 3]], twin, scale)) < 1.0

    model = ContrastiveGeolocator(6, np.asarray(latlon), [0, 1, 2, 3], 0.1, (51.0, -2.0, 53.0, 0.0))
    x = torch.randn(4, 6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = contrastive_loss(model.embed(x), model.encode_locations(latlon), latlon, model.classifier.scale())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0]
    model.refresh_gallery()
    lat, lon, idx, conf, top = retrieve(model, x)
    assert idx.tolist() == [0, 1, 2, 3] and top.shape == (4, 4)  # each image retrieves its own location


def test_gallery_is_training_positions_plus_a_regular_grid_and_retrieval_returns_gallery_points():
    grid = GeocellGrid(BOX, 0.1)
    pts = regular_grid(grid)
    assert pts.shape == (grid.n_cells, 2)
    assert np.array_equal(np.sort(np.asarray(grid.cell_of(pts[:, 0], pts[:, 1]))), np.arange(grid.n_cells))
    assert len(regular_grid(grid, max_points=100)) <= 100
    lat, lon = np.array([51.5, 51.5, 52.25]), np.array([-1.0, -1.0, -0.3])
    gallery, cells = gallery_locations(lat, lon, grid)
    assert len(gallery) == 2 + grid.n_cells  # the duplicate training position once
    assert {(51.5, -1.0), (52.25, -0.3)} <= {tuple(p) for p in gallery[:2].tolist()}
    assert np.array_equal(cells, np.asarray(grid.cell_of(gallery[:, 0], gallery[:, 1])))

    model = ContrastiveGeolocator(5, gallery, cells.tolist(), 0.1, (51.0, -2.0, 53.0, 0.0))
    model.refresh_gallery()
    plat, plon, idx, _, _ = retrieve(model, torch.randn(7, 5))
    got = np.stack([plat.numpy(), plon.numpy()], 1)
    assert np.allclose(got, gallery[idx.numpy()].astype(np.float32))


def test_presets_and_specs():
    hybrid, contrastive = spec_for("hybrid"), spec_for("contrastive")
    config = hybrid.train_config(lr=1e-3, batch_size=32, max_epochs=3)
    assert (config.optimizer, config.batch_size, config.offset, config.haversine_weight) == ("sgd", 128, False, 0.0)
    assert hybrid.feature == "concat" and contrastive.feature == "concat_ocr"
    assert contrastive.train_config(batch_size=32).batch_size == 256
    # The seed's and default's specs (and so their data versions) are what they were.
    assert "family" not in PRESETS["default"].to_dict() and "family" not in PRESETS["seed"].to_dict()
    assert spec_for("hybrid").to_dict()["family"] == "hybrid"
    with pytest.raises(ValueError, match="family"):
        spec_for("default", family="resnet")
    with pytest.raises(ValueError, match="gazetteer_prior"):
        spec_for("contrastive", gazetteer_prior=True)


# --- each family learns what the features say ------------------------------------------

@pytest.mark.parametrize("family", ["hybrid", "contrastive"])
def test_family_beats_the_region_centre_where_features_determine_position(family, tmp_path):
    from geo_assets.defs.assets.models import _save, evaluate_model_dir
    from geo_assets.model.evaluate import evaluate
    from geo_assets.model.fit import fit_model

    ds, grid, spec = position_coded(1000), GeocellGrid(BOX, 0.1), spec_for(family)
    fit = fit_model(ds, grid, spec, SPLIT, max_epochs=25, cpu_threads=1)
    ev = evaluate(fit.model, fit.gallery, spec, ds, grid, fit.splits, "test", n_boot=200)
    m, base = ev["metrics"]["median_km"], ev["baseline"]["median_km"]
    assert ev["n"] >= 150
    assert m["high"] < base["low"] and m["value"] < base["value"] / 3, (m, base)
    # Saved and reloaded it predicts the same places (the report's numbers come from the reloaded model).
    _save(tmp_path / family, fit, spec, {"training_data_version": "x"}, grid)
    again = evaluate_model_dir(ds, tmp_path / family)
    assert again["metrics"]["median_km"]["value"] == pytest.approx(ev["metrics"]["median_km"]["value"], abs=1e-6)
    assert again["spec"]["family"] == family
    # `geo-assets predict` works on it too: a contrastive guess is a gallery location, a hybrid
    # one a class centre (no offset).
    from geo_assets.model.artifacts import load_model
    from geo_assets.model.predict import predict_features
    from geo_assets.model.refine import Gallery

    loaded = load_model(tmp_path / family, device="cpu")
    test = np.flatnonzero(fit.splits == "test")[:4]
    preds = predict_features(loaded, ds.features(spec.feature)[test], gallery=Gallery.load(tmp_path / family / "gallery.npz"),
                             image_features=ds.image_emb[test])
    places = loaded.model.centres.numpy()
    for p in preds:
        assert np.min(np.abs(places - np.float32([p["lat"], p["lon"]])).sum(axis=1)) < 1e-5
        assert p["unlike_training"] or 0 <= p["privacy_score"] <= 1


# --- a real Dagster run -----------------------------------------------------------------

def _write_embeddings(layout, n: int = 320) -> None:
    """The embeddings table as the graph writes it (one tile, both variants), from position_coded."""
    from geo_assets.store.parquet import write_table

    for variant, shift in (("unblurred", 0), ("blurred", 1)):
        ds = position_coded(n, shift=shift)
        table = pa.table({
            "image_id": ds.image_ids, "sequence_id": ds.sequence_ids, "lat": ds.lat, "lon": ds.lon,
            "encoder_key": ["synthetic-test"] * n, "image_sha256": [f"i{i}" for i in range(n)],
            "caption_sha256": [f"c{i}{variant}" for i in range(n)],
            "text_emb": ds.text_emb.tolist(), "image_emb": ds.image_emb.tolist(), "fused": ds.fused.tolist(),
            "ocr_emb": ds.ocr_emb.tolist()})
        write_table(layout.table_path("embeddings", "t0", variant), table)


def test_families_train_beside_the_default_and_the_report_shows_them(dagster_resources, monkeypatch):
    from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key
    from geo_assets.run.execution import materialize_report
    from geo_assets_tests.dagster_helpers import materialize_model, metadata

    monkeypatch.delenv("GEO_ASSETS_FAMILIES", raising=False)
    layout = dagster_resources["storage"].layout()
    _write_embeddings(layout)
    families = ["seed", "hybrid", "contrastive"]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["0.1"])
        for blur in ("unblurred", "blurred"):
            result = materialize_model(instance, dagster_resources, model_partition_key(blur, "0.1"), max_epochs=4,
                                       train_config={"families": families, "seed_protocol_twin": False,
                                                     "validation_fraction": 0.2, "test_fraction": 0.25})
            assert result.success
            meta = metadata(result, "geolocator_model")
            assert set(meta["families"]) == set(families)
            assert all(meta["families"][f]["seconds_per_epoch"] > 0 for f in families)
            folder = layout.model_dir(blur, "0.1")
            evaluation = json.loads((folder / "evaluation.json").read_text())
            assert set(evaluation["families"]) == set(families)
            for f in families:
                assert (folder / f / "predictions.parquet").is_file()
                fam = evaluation["families"][f]
                # Same test images as the main model, so the report can pair them.
                assert fam["n"] == evaluation["n"] > 0 and fam["evaluation_split"] == "test"
            assert evaluation["families"]["hybrid"]["spec"]["family"] == "hybrid"
            assert "seed_test_median_km" in metadata(result, "model_evaluation")
        # A city label scheme beside the cells: the report orders and pairs both kinds of key.
        instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, ["city5"])
        for blur in ("unblurred", "blurred"):
            assert materialize_model(instance, dagster_resources, model_partition_key(blur, "city5"), max_epochs=2,
                                     train_config={"families": ["contrastive"], "seed_protocol_twin": False,
                                                   "validation_fraction": 0.2, "test_fraction": 0.25}).success
        assert materialize_report(instance, dagster_resources).success
    md = (layout.root / "reports" / "privacy_report.md").read_text()
    for blur in ("Unblurred", "Blurred"):
        assert f"| {blur} 0.1 |" in md
        for f in families:
            assert f"| {blur} 0.1, {f} |" in md
    assert "## Model families on the same test split" in md
    section = md.split("## Model families on the same test split")[1]
    for f in families:
        for blur in ("Unblurred", "Blurred"):
            assert f"| {blur} 0.1 | {f} | default |" in section
        assert f"| {f} | 0.1 | " in section  # its own blurred-minus-unblurred row
    assert "| Unblurred city5 | contrastive | default |" in section and "| contrastive | city5 | " in section
    report = json.loads((layout.root / "reports" / "privacy_report.json").read_text())
    assert {m.get("family") for m in report["models"]} == {None, *families}
    assert set(report["families"]["blur_effects"]) == {f"{f} 0.1" for f in families} | {"contrastive city5"}


def test_family_names_from_config_or_environment(monkeypatch):
    from geo_assets.defs.assets.models import TrainingConfig

    monkeypatch.delenv("GEO_ASSETS_FAMILIES", raising=False)
    assert TrainingConfig().family_names() == []
    monkeypatch.setenv("GEO_ASSETS_FAMILIES", "hybrid, contrastive,default,hybrid")
    assert TrainingConfig().family_names() == ["hybrid", "contrastive"]  # the main model is not twice
    assert TrainingConfig(model="hybrid", families=["default"]).family_names() == ["default"]
    with pytest.raises(ValueError, match="model must be one of"):
        TrainingConfig(families=["clip"]).family_names()


def test_contrastive_training_is_reproducible_and_leaves_the_global_rng_alone():
    from geo_assets.model.contrastive import train_contrastive
    from geo_assets.model.train import TrainConfig

    ds, grid = position_coded(120), GeocellGrid(BOX, 0.1)
    is_val = np.arange(len(ds)) % 5 == 0
    config = TrainConfig(max_epochs=2, batch_size=32, cpu_threads=1, input_norm=True)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = train_contrastive(ds.features("concat_ocr"), ds.lat, ds.lon, is_val, grid, config)
    assert torch.equal(torch.rand(1), before)  # the caller's RNG stream is where it was
    b = train_contrastive(ds.features("concat_ocr"), ds.lat, ds.lon, is_val, grid, config)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [h["val_mean_km"] for h in a.history] == [h["val_mean_km"] for h in b.history]
    with pytest.raises(ValueError, match="outside the geocell grid"):
        train_contrastive(ds.features("concat_ocr")[:3], np.array([60.0, 51.5, 51.5]), np.array([-1.0] * 3),
                          np.zeros(3, bool), grid, config)
