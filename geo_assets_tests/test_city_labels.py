"""UK city label schemes as geocell partition values (issue 24, item 1): the city list from the
gazetteer (stable, suburbs merged), keys that are refused, the scheme's interface, saving and
loading a model with it, and a city50 model that must beat the region-centre baseline on images
rendered at city positions."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest

from geo_assets.config.geocell_sizes import add_geocell, read_geocells, remove_geocell
from geo_assets.config.settings import GeoSettings
from geo_assets.defs.partitions import check_geocell_partition_key, split_model_partition_key, model_partition_key
from geo_assets.geo.bbox import UK_REGION, BBox
from geo_assets.geo.geocells import GeocellGrid
from geo_assets.geo.haversine import haversine_km
from geo_assets.geo.labels import (CityLabels, _region_cities, label_key, label_sort_key, labels_for, merge_radius_km,
                                   merged_cities, uk_cities)

TEST_REGION = (BBox(-2.0, 51.0, 0.0, 53.0),)  # conftest's GEO_ASSETS_REGION


# --- the city list -------------------------------------------------------------------


def _row(name, lat, lon, population, gid):
    return SimpleNamespace(name=name, lat=lat, lon=lon, population=population, geonameid=gid)


def test_merge_rule_on_a_hand_example():
    # A 1M city has a 8.9 km disc, a 100k town 2.8 km: touching up to 11.7 km apart.
    assert merge_radius_km(1_000_000) == pytest.approx(8.92, abs=0.01)
    rows = [
        _row("Big", 52.0, -1.0, 1_000_000, 1),
        _row("Suburb", 52.09, -1.0, 100_000, 2),  # 10.0 km north: discs touch -> merged into Big
        _row("Town", 52.2, -1.0, 100_000, 3),  # 22 km north: its own city
        _row("Village", 52.205, -1.0, 1_000, 4),  # 0.6 km from Town: merged into Town, not Big
        _row("Alpha", 51.5, -1.5, 50_000, 6),  # a tie in population: name first
        _row("Beta", 51.5, -0.5, 50_000, 5),
    ]
    cities = merged_cities(rows)
    assert [c.name for c in cities] == ["Big", "Town", "Alpha", "Beta"]
    assert cities[0].merged == ("Suburb",) and cities[1].merged == ("Village",)
    # Row order does not matter; a limit keeps the first N.
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    again = merged_cities(shuffled)
    assert again == cities and [c.merged for c in again] == [c.merged for c in cities]
    # A limit keeps the first N; past it a place still merges (Village), never becomes a city.
    assert [(c.name, c.merged) for c in merged_cities(rows, limit=2)] == [("Big", ("Suburb",)), ("Town", ("Village",))]


def test_uk_city_list_is_stable_and_merges_suburbs_into_their_city():
    c150 = uk_cities(UK_REGION, 150)
    assert c150 == uk_cities(tuple(UK_REGION), 150)
    assert uk_cities(UK_REGION, 50) == c150[:50]  # city50 is the first 50 of city150
    names = [c.name for c in c150]
    assert names[:8] == ["London", "Birmingham", "Glasgow", "Manchester", "Sheffield", "Leeds", "Edinburgh", "Liverpool"]
    by_name = {c.name: c for c in c150}
    # Suburbs that geonames lists as cities are merged into theirs ...
    for suburb, city in [("Croydon", "London"), ("Brent", "London"), ("Islington", "London"), ("Salford", "Manchester"),
                         ("Birkenhead", "Liverpool"), ("Gateshead", "Newcastle upon Tyne"), ("Hove", "Brighton")]:
        assert suburb not in by_name and suburb in by_name[city].merged, (suburb, city)
    # ... cities near each other but apart stay apart.
    for city in ("Bradford", "Leeds", "Wolverhampton", "Sunderland", "Belfast", "Cardiff", "Aberdeen"):
        assert city in by_name
    pops = [c.population for c in c150]
    assert pops == sorted(pops, reverse=True)
    # No two kept cities' built-up discs touch (else the smaller would have merged).
    lat, lon = np.array([c.lat for c in c150]), np.array([c.lon for c in c150])
    d = haversine_km(lat[:, None], lon[:, None], lat[None], lon[None])
    r = np.array([merge_radius_km(c.population) for c in c150])
    np.fill_diagonal(d, np.inf)
    assert np.all(d > r[:, None] + r[None, :])
    # The region matters: the test region's cities are all inside it.
    inside = uk_cities(TEST_REGION, 50)
    assert all(TEST_REGION[0].contains(c.lat, c.lon) for c in inside) and inside[0].name == "London"


def test_a_region_without_enough_cities_is_refused_clearly():
    with pytest.raises(ValueError, match="no UK place"):
        uk_cities((BBox(13.0, 55.6, 13.4, 55.8),), 50)  # Lund
    small = (BBox(-1.3, 51.7, -1.2, 51.8),)  # Oxford and a few villages
    n = len(_region_cities(small))
    assert n >= 1 and uk_cities(small, 1)[0].name == "Oxford"
    with pytest.raises(ValueError, match=f"city{n + 1} needs {n + 1} UK cities inside the region, which holds {n}"):
        labels_for(f"city{n + 1}", small)


# --- keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["city0", "city501", "city99999", "city../x", "city-5", "city5/..", "city 5", "city5e1",
                                 "city", "cityfifty", "city\u0665"])
def test_hostile_city_keys_are_refused_everywhere(tmp_path, key):
    with pytest.raises(ValueError, match="city label scheme"):
        label_key(key)
    with pytest.raises(ValueError, match="not a geocell size or city label scheme"):
        check_geocell_partition_key(key)
    with pytest.raises(ValueError):
        split_model_partition_key(model_partition_key("blurred", key))
    with pytest.raises(ValueError, match="city label scheme"):
        add_geocell(tmp_path, key)
    assert not (tmp_path / "geocells.txt").exists()


def test_city_keys_are_partition_keys_beside_sizes(tmp_path, monkeypatch):
    monkeypatch.delenv("GEO_ASSETS_GEOCELLS", raising=False)
    assert label_key(" City50 ") == "city50" and label_key("city050") == "city50" and label_key("0.10") == "0.1"
    assert check_geocell_partition_key("city150") == "city150"
    with pytest.raises(ValueError):
        check_geocell_partition_key("city050")  # only the canonical form is a partition key
    assert split_model_partition_key(model_partition_key("unblurred", "city50")) == ("unblurred", "city50")
    assert sorted(["city150", "0.1", "city50", "0.05"], key=label_sort_key) == ["0.05", "0.1", "city50", "city150"]
    sizes, changed = add_geocell(tmp_path, "City150")
    assert changed and sizes == ["0.05", "0.1", "city150"]
    assert add_geocell(tmp_path, "city50")[0] == ["0.05", "0.1", "city50", "city150"]
    assert read_geocells(tmp_path) == ["0.05", "0.1", "city50", "city150"]
    assert remove_geocell(tmp_path, "city150") == (["0.05", "0.1", "city50"], True)
    monkeypatch.setenv("GEO_ASSETS_GEOCELLS", "0.1,city50")
    assert GeoSettings.from_env().geocell_sizes == ("0.1", "city50")


def test_the_cli_adds_a_city_scheme_and_refuses_a_hostile_one(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "GEO_ASSETS_STORAGE": str(tmp_path / "storage"), "GEO_ASSETS_MODELS": str(tmp_path / "models"),
           "DAGSTER_HOME": str(tmp_path / "storage")}
    env.pop("GEO_ASSETS_GEOCELLS", None)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "geo_assets.cli", "geocell", *args], cwd=Path(__file__).parents[1],
                              env=env, capture_output=True, text=True, timeout=300)

    added = cli("add", "City50", "--no-run")
    assert added.returncode == 0, added.stderr
    assert "configured geocell sizes: 0.05, 0.1, city50" in added.stdout
    assert (tmp_path / "storage" / "geocells.txt").read_text().splitlines()[1:] == ["0.05", "0.1", "city50"]
    refused = cli("add", "city../x", "--no-run")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and "city label scheme" in refused.stderr
    assert (tmp_path / "storage" / "geocells.txt").read_text().splitlines()[1:] == ["0.05", "0.1", "city50"]


def test_a_city_scheme_the_region_cannot_hold_is_refused_when_added(tmp_path, monkeypatch):
    monkeypatch.setenv("GEO_ASSETS_REGION", "-1.3,51.7,-1.2,51.8")
    with pytest.raises(ValueError, match="city500 needs 500 UK cities"):
        add_geocell(tmp_path, "city500")
    assert not (tmp_path / "geocells.txt").exists()
    (tmp_path / "geocells.txt").write_text("0.1\ncity500\n")
    with pytest.raises(ValueError, match="geocells.txt:2: city500 needs 500"):
        read_geocells(tmp_path)


# --- the scheme -------------------------------------------------------------------------


def test_city_labels_have_the_grid_interface():
    labels = labels_for("city50", TEST_REGION)
    assert isinstance(labels, CityLabels) and labels.key == "city50" and labels.n_cells == 50
    assert isinstance(labels_for("0.1", TEST_REGION), GeocellGrid)
    table = labels.centres_table()
    assert table.shape == (50, 2)
    # A point at a city (or 1 km from it) is that city's; the nearest city otherwise.
    assert labels.cell_of(*labels.centre_of(7)) == 7
    assert list(labels.cell_of(table[:, 0] + 0.009, table[:, 1])) == list(range(50))
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(51, 53, 300), rng.uniform(-2, 0, 300)
    d = haversine_km(lat[:, None], lon[:, None], table[None, :, 0], table[None, :, 1])
    assert np.array_equal(labels.cell_of(lat, lon), d.argmin(axis=1))
    with pytest.raises(ValueError, match="outside"):
        labels.cell_of(55.0, -1.0)
    with pytest.raises(ValueError, match="out of range"):
        labels.centre_of(50)
    # The offset range is half the median spacing each way: a few to a few tens of km.
    assert 0.01 < labels.size < 0.5
    assert CityLabels.from_json(labels.to_json()) == labels


def _city_dataset(labels: CityLabels, per_city: int = 12, dim: int = 24, seed: int = 0):
    """Images rendered at city positions: each city's features share a prototype; 1-2 km
    jitter; 3 sequences of 4 images per city (the split is by sequence)."""
    from geo_assets.model.dataset import GeoDataset

    rng = np.random.default_rng(seed)
    n_c = labels.n_cells
    proto = rng.normal(size=(n_c, dim)).astype(np.float32) * 2
    city = np.repeat(np.arange(n_c), per_city)
    n = city.size
    c_lat, c_lon = labels.centre_of(city)
    lat = np.clip(c_lat + rng.normal(0, 0.01, n), labels.bounds.min_lat, labels.bounds.max_lat)
    lon = np.clip(c_lon + rng.normal(0, 0.015, n), labels.bounds.min_lon, labels.bounds.max_lon)
    x = proto[city] + rng.normal(size=(n, dim)).astype(np.float32) * 0.7
    ids = [f"img{i:05d}" for i in range(n)]
    seqs = [f"seq{c:03d}_{(i % per_city) // 4}" for i, c in enumerate(city)]
    nan = np.full(n, np.nan)
    return GeoDataset(ids, seqs, lat, lon, text_emb=x, image_emb=x, fused=x, ocr_emb=x[:, :4], gaz_lat=nan, gaz_lon=nan,
                      text_reliant=np.zeros(n, bool), row_keys=ids, encoder_key="synthetic"), city


@pytest.fixture(scope="module")
def city_model():
    from geo_assets.model.fit import fit_model
    from geo_assets.model.spec import spec_for
    from geo_assets.model.splits import SplitConfig

    labels = labels_for("city50", TEST_REGION)
    ds, city = _city_dataset(labels)
    spec = spec_for("seed")
    split = SplitConfig(validation_fraction=0.2, test_fraction=0.3)
    fit = fit_model(ds, labels, spec, split, max_epochs=15, cpu_threads=1, seed=0)
    return labels, ds, city, spec, split, fit


def test_a_city50_model_beats_the_region_centre_on_images_at_cities(city_model):
    from geo_assets.model.evaluate import evaluate

    labels, ds, city, spec, split, fit = city_model
    report = evaluate(fit.model, fit.gallery, spec, ds, labels, fit.splits, "test", n_boot=200,
                      calibration=fit.calibration, ood=fit.ood)
    m, base = report["metrics"], report["baseline"]
    assert report["n"] > 100
    # Far better than always guessing the training centre, with the intervals apart ...
    assert m["median_km"]["high"] < base["median_km"]["low"], (m["median_km"], base["median_km"])
    assert m["median_km"]["value"] < 10 < base["median_km"]["value"]
    # ... and the city is the class: city accuracy is reported, with its interval.
    acc = m["city_accuracy_pct"]
    assert acc == m["geocell_accuracy_pct"] and acc["low"] <= acc["value"] <= acc["high"] and acc["value"] > 60
    test = fit.splits == "test"
    hits = np.asarray(report["rows"]["cell_hit"])
    assert 100 * hits.mean() == pytest.approx(acc["value"])
    assert np.array_equal(labels.cell_of(ds.lat[test], ds.lon[test]), city[test])  # the true label is the nearest city
    assert report["label_scheme"]["key"] == "city50" and report["label_scheme"]["names"][0] == "London"


def test_a_city_model_saves_and_loads_with_its_cities(city_model, tmp_path):
    from geo_assets.model.artifacts import load_model, read_meta, save_model
    from geo_assets.model.refine import model_outputs

    labels, ds, city, spec, split, fit = city_model
    save_model(tmp_path / "m", fit.model, {"blur": "unblurred", "geocell": "city50"}, grid=labels)
    meta = read_meta(tmp_path / "m")
    assert meta["grid"]["scheme"] == "cities" and len(meta["grid"]["cities"]) == 50
    loaded = load_model(tmp_path / "m", device="cpu")
    assert loaded.grid == labels
    x = ds.features(spec.feature)[:20]
    a = model_outputs(fit.model, x, None, labels)
    b = model_outputs(loaded.model, x, None, loaded.grid)
    assert np.array_equal(a["cls"], b["cls"]) and np.allclose(a["lat"], b["lat"])
    # The guess is the city plus an offset of at most half the spacing each way.
    c_lat, c_lon = labels.centre_of(a["cls"])
    assert np.all(np.abs(a["lat"] - c_lat) <= labels.size / 2 + 1e-6)
    assert np.all(np.abs(a["lon"] - c_lon) <= labels.size / 2 + 1e-6)


# --- the real graph ---------------------------------------------------------------------


@pytest.mark.slow
def test_adding_city50_backfills_exactly_its_two_models_and_the_report_shows_it(dagster_resources, capsys):
    """On a real instance: tiles, the 0.1 models, then `city50` added to geocells.txt. The geocell
    sensor (the one mechanism) adds the partition and requests exactly its two runs; they train
    and evaluate with city accuracy; the privacy report shows cells and cities side by side;
    removing it drops the partition and trains nothing."""
    import json

    import dagster as dg

    from geo_assets.config.geocell_sizes import write_geocells
    from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, tile_keys
    from geo_assets.run import execution
    from geo_assets_tests.dagster_helpers import materialize_model, materialize_tile, metadata

    layout = dagster_resources["storage"].layout()
    split = {"validation_fraction": 0.2, "test_fraction": 0.3}
    with dg.instance_for_test() as instance:
        write_geocells(layout.root, ["0.1"])
        assert {str(r.partition_key) for r in execution.sync_geocells(instance, dagster_resources)} == {
            str(model_partition_key(b, "0.1")) for b in ("unblurred", "blurred")}
        for tile in tile_keys():
            assert materialize_tile(instance, dagster_resources, tile, images_per_tile=24).success
        for blur in ("unblurred", "blurred"):
            assert materialize_model(instance, dagster_resources, model_partition_key(blur, "0.1"), max_epochs=3,
                                     train_config=split).success
        before = {p: p.stat().st_mtime_ns for p in layout.models_root.glob("*/*/model.pt")}

        write_geocells(layout.root, ["0.1", "city50"])
        requests = execution.sync_geocells(instance, dagster_resources)
        city_keys = {str(model_partition_key(b, "city50")) for b in ("unblurred", "blurred")}
        assert {str(r.partition_key) for r in requests} == city_keys and len(requests) == 2
        assert execution.existing_geocells(instance) == ["0.1", "city50"]
        trained = execution.run_requested(instance, dagster_resources, requests, run_config={
            "ops": {"geolocator_model": {"config": {"max_epochs": 3, **split}}}})
        assert all(r.success for r in trained)
        assert execution.sync_geocells(instance, dagster_resources) == []  # applied: nothing new next tick
        after = {p: p.stat().st_mtime_ns for p in layout.models_root.glob("*/*/model.pt")}
        assert set(after) - set(before) == {layout.model_dir(b, "city50") / "model.pt" for b in ("unblurred", "blurred")}
        assert all(after[p] == t for p, t in before.items())

        for result in trained:
            trained_meta = metadata(result, "geolocator_model")
            assert trained_meta["grid_cells"] == 50 and trained_meta["classes"] <= 50
            assert 0 <= metadata(result, "model_evaluation")["test_city_accuracy_pct"] <= 100
        evaluation = json.loads((layout.model_dir("unblurred", "city50") / "evaluation.json").read_text())
        acc = evaluation["metrics"]["city_accuracy_pct"]
        assert evaluation["n"] > 0 and acc["low"] <= acc["value"] <= acc["high"]
        assert evaluation["label_scheme"]["key"] == "city50" and evaluation["label_scheme"]["names"][0] == "London"
        cells = json.loads((layout.model_dir("unblurred", "0.1") / "evaluation.json").read_text())
        assert "city_accuracy_pct" not in cells["metrics"] and "label_scheme" not in cells
        model_json = json.loads((layout.model_dir("blurred", "city50") / "model.json").read_text())
        assert model_json["grid"]["scheme"] == "cities" and len(model_json["grid"]["cities"]) == 50

        report = execution.materialize_report(instance, dagster_resources)
        assert report.success
        md = (layout.root / "reports" / "privacy_report.md").read_text()
        for label in ("Unblurred 0.1", "Blurred 0.1", "Unblurred city50", "Blurred city50"):
            assert f"| {label} |" in md, label
        assert "City acc. %" in md and "### Cities city50" in md and "### Geocell 0.1" in md
        print(md[: md.index("## Split protocols")])

        # Removing the scheme drops its partition and requests nothing; its files are kept.
        write_geocells(layout.root, ["0.1"])
        assert execution.sync_geocells(instance, dagster_resources) == []
        assert execution.existing_geocells(instance) == ["0.1"]
        assert (layout.model_dir("unblurred", "city50") / "model.pt").is_file()
