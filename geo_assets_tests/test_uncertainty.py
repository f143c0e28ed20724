import json
import math
import time

import numpy as np
import pytest

from geo_assets.model import uncertainty as unc
from geo_assets.model.metrics import (DISTANCE_BANDS, GEOSCORE_SCALE_KM, evaluate_predictions, geoscore,
                                      per_image_outcomes)
from geo_assets.model.uncertainty import (METRICS_FROM_OUTCOMES, bootstrap_metrics, describe_difference,
                                          json_safe, paired_difference, point_metrics)

Z95 = 1.959963984540054


def _outcomes(n=500, seed=1, with_cells=True):
    rng = np.random.default_rng(seed)
    km = rng.lognormal(3.0, 2.0, n)
    if not with_cells:
        return {"km": km}
    true_cell = rng.integers(0, 40, n)
    topk = rng.integers(0, 40, (n, 10))
    return per_image_outcomes(km, topk[:, 0], true_cell, topk)


def test_metric_table_covers_every_reported_metric():
    expected = {"median_km", "mean_km", "geoscore", "geocell_accuracy_pct", "top5_accuracy_pct",
                "top10_accuracy_pct"} | {k for k, _ in DISTANCE_BANDS}
    assert set(METRICS_FROM_OUTCOMES) == expected
    # without hit arrays only the distance metrics are reported
    r = bootstrap_metrics({"km": [1.0, 2.0, 3.0]}, n_boot=20)
    assert set(r) == expected - {"geocell_accuracy_pct", "top5_accuracy_pct", "top10_accuracy_pct"}


def test_point_estimates_match_evaluate_predictions():
    rng = np.random.default_rng(3)
    n = 300
    true_lat, true_lon = rng.uniform(50, 58, n), rng.uniform(-6, 1, n)
    pred_lat, pred_lon = true_lat + rng.normal(0, 0.3, n), true_lon + rng.normal(0, 0.3, n)
    true_cell, topk = rng.integers(0, 30, n), rng.integers(0, 30, (n, 12))
    m = evaluate_predictions(pred_lat, pred_lon, true_lat, true_lon, topk[:, 0], true_cell, topk)
    from geo_assets.geo.haversine import haversine_km

    o = per_image_outcomes(haversine_km(pred_lat, pred_lon, true_lat, true_lon), topk[:, 0], true_cell, topk)
    r = bootstrap_metrics(o, n_boot=50)
    for key, entry in r.items():
        assert entry["value"] == pytest.approx(m[key], rel=1e-12), key
        assert entry["low"] <= entry["value"] <= entry["high"], key
    assert point_metrics(o) == {k: v["value"] for k, v in r.items()}


def test_bernoulli_band_width_matches_normal_approximation():
    p, n = 0.3, 2000
    rng = np.random.default_rng(7)
    hit = rng.random(n) < p
    km = np.where(hit, 5.0, 50.0)  # within 10 km exactly for the hits
    r = bootstrap_metrics({"km": km}, n_boot=2000, seed=11)["within_10km_pct"]
    p_hat = hit.mean()
    assert r["value"] == pytest.approx(100 * p_hat)
    expected_width = 2 * Z95 * math.sqrt(p_hat * (1 - p_hat) / n) * 100
    assert (r["high"] - r["low"]) == pytest.approx(expected_width, rel=0.15)
    assert r["low"] < r["value"] < r["high"]


def test_constant_distances_have_a_zero_width_interval():
    r = bootstrap_metrics({"km": np.full(200, 7.3)}, n_boot=300, seed=2)
    for key, e in r.items():
        assert e["low"] == pytest.approx(e["value"], rel=1e-12, abs=1e-12), key
        assert e["high"] == pytest.approx(e["value"], rel=1e-12, abs=1e-12), key
    assert r["median_km"] == {"value": 7.3, "low": 7.3, "high": 7.3}
    assert r["within_10km_pct"]["value"] == 100.0 and r["within_1km_pct"]["high"] == 0.0
    assert r["geoscore"]["value"] == pytest.approx(5000 * math.exp(-7.3 / GEOSCORE_SCALE_KM))


def test_bootstrap_median_and_means_equal_numpy_on_the_resampled_rows():
    # the count-matrix shortcut must give exactly what gathering the rows would
    o = _outcomes(n=101, seed=5)
    o["km"][:3] = np.inf
    rng = np.random.default_rng(0)
    counts = unc._count_draws(rng, 40, 101)
    stats = unc._Prepared(o, list(METRICS_FROM_OUTCOMES)).stats(counts)
    for b, c in enumerate(counts):
        rows = np.repeat(np.arange(101), c)
        km = o["km"][rows]
        assert stats["median_km"][b] == np.median(km)
        assert stats["mean_km"][b] == (np.inf if np.isinf(km).any() else pytest.approx(np.mean(km), rel=1e-12))
        assert stats["within_25km_pct"][b] == pytest.approx(100 * np.mean(km <= 25), rel=1e-12)
        assert stats["geoscore"][b] == pytest.approx(np.mean(geoscore(km)), rel=1e-12)
        assert stats["top10_accuracy_pct"][b] == pytest.approx(100 * np.mean(o["top10_hit"][rows]), rel=1e-12)


def test_same_seed_same_numbers_other_seed_other_numbers():
    o = _outcomes()
    groups = np.arange(500) // 4
    assert bootstrap_metrics(o, seed=3) == bootstrap_metrics(o, seed=3)
    assert bootstrap_metrics(o, groups, seed=3) == bootstrap_metrics(o, groups, seed=3)
    assert bootstrap_metrics(o, seed=3) != bootstrap_metrics(o, seed=4)
    o2 = _outcomes(seed=9)
    assert paired_difference(o, o2, groups, seed=3) == paired_difference(o, o2, groups, seed=3)


def test_cluster_bootstrap_widens_by_sqrt_of_the_duplication():
    rng = np.random.default_rng(4)
    base = np.where(rng.random(400) < 0.4, 1.0, 100.0)
    km = np.repeat(base, 10)  # every image 10 times ...
    groups = np.repeat(np.arange(400), 10)  # ... each copy in its original's group
    iid = bootstrap_metrics({"km": km}, n_boot=2000, seed=1)["within_10km_pct"]
    clustered = bootstrap_metrics({"km": km}, groups, n_boot=2000, seed=1)["within_10km_pct"]
    assert iid["value"] == clustered["value"]
    ratio = (clustered["high"] - clustered["low"]) / (iid["high"] - iid["low"])
    assert ratio == pytest.approx(math.sqrt(10), rel=0.15)
    # groups of one row each are the plain bootstrap
    assert bootstrap_metrics({"km": base}, np.arange(400), seed=5) == bootstrap_metrics({"km": base}, seed=5)


def test_cluster_bootstrap_with_unequal_group_sizes():
    rng = np.random.default_rng(8)
    sizes = rng.integers(1, 20, 60)
    groups = np.repeat([f"seq{i}" for i in range(60)], sizes)  # string keys, as sequence ids are
    km = rng.lognormal(2, 1.5, len(groups))
    r = bootstrap_metrics({"km": km}, groups, n_boot=500)
    for e in r.values():
        assert e["low"] <= e["value"] <= e["high"]
    with pytest.raises(ValueError, match="groups"):
        bootstrap_metrics({"km": km}, groups[:-1])


def test_paired_difference_of_identical_outcomes_is_exactly_zero():
    o = _outcomes()
    d = paired_difference(o, {k: v.copy() for k, v in o.items()}, groups=np.arange(500) // 5)
    assert set(d) == set(METRICS_FROM_OUTCOMES)
    for key, e in d.items():
        assert (e["diff"], e["low"], e["high"], e["significant"]) == (0.0, 0.0, 0.0, False), key
        assert e["a"] == e["b"]


def test_paired_difference_detects_a_large_shift_with_the_right_sign():
    rng = np.random.default_rng(12)
    km_a = rng.lognormal(2.0, 1.0, 400)
    km_b = km_a + 200.0  # b is much worse on every image
    d = paired_difference({"km": km_a}, {"km": km_b})
    assert d["median_km"]["diff"] == pytest.approx(200.0)
    assert d["median_km"]["significant"] and d["median_km"]["low"] > 0
    assert d["mean_km"]["low"] == pytest.approx(200.0) and d["mean_km"]["high"] == pytest.approx(200.0)
    w = d["within_10km_pct"]
    assert w["diff"] < 0 and w["high"] < 0 and w["significant"]
    assert d["geoscore"]["diff"] < 0 and d["geoscore"]["significant"]
    # a reversed pair gives the mirrored interval
    r = paired_difference({"km": km_b}, {"km": km_a})["within_10km_pct"]
    assert (r["low"], r["high"]) == pytest.approx((-w["high"], -w["low"]))


def test_paired_interval_is_narrower_than_the_unpaired_one():
    # a and b share most of their per-image difficulty, so pairing removes it
    rng = np.random.default_rng(2)
    km_a = rng.lognormal(3.0, 2.0, 500)
    km_b = km_a * rng.uniform(0.8, 1.0, 500)
    d = paired_difference({"km": km_a}, {"km": km_b})["within_25km_pct"]
    single = bootstrap_metrics({"km": km_a})["within_25km_pct"]
    assert (d["high"] - d["low"]) < (single["high"] - single["low"])


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="same rows"):
        paired_difference({"km": [1.0, 2.0]}, {"km": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="rows"):
        bootstrap_metrics({"km": [1.0, 2.0], "cell_hit": [True]})
    with pytest.raises(ValueError, match="km"):
        bootstrap_metrics({"cell_hit": [True]})
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_metrics({"km": [1.0, float("nan")]})


def test_abstentions_count_as_misses():
    km = np.array([1.0, 2.0, 3.0, np.inf, np.inf])
    p = point_metrics({"km": km})
    assert p["median_km"] == 3.0
    assert p["mean_km"] == math.inf  # documented: inf as soon as any row abstained
    assert p["within_10km_pct"] == 60.0 and p["within_2500km_pct"] == 60.0
    assert p["geoscore"] == pytest.approx(np.sum(geoscore(km[:3])) / 5)
    r = bootstrap_metrics({"km": km}, n_boot=400)
    assert r["median_km"]["high"] == math.inf and r["median_km"]["low"] >= 1.0
    assert r["mean_km"]["high"] == math.inf
    assert 0.0 <= r["within_10km_pct"]["low"] <= 60.0 <= r["within_10km_pct"]["high"] <= 100.0
    # all abstained: the median is inf with an [inf, inf] interval, not NaN
    r = bootstrap_metrics({"km": np.full(5, np.inf)}, n_boot=50)
    assert r["median_km"] == {"value": math.inf, "low": math.inf, "high": math.inf}
    assert r["geoscore"]["value"] == 0.0 and r["within_2500km_pct"]["high"] == 0.0
    # b abstains on everything, a never: the median difference is +inf, undefined when both do
    d = paired_difference({"km": np.ones(5)}, {"km": np.full(5, np.inf)}, n_boot=50)
    assert d["median_km"]["diff"] == math.inf
    assert d["within_10km_pct"]["diff"] == -100.0 and d["within_10km_pct"]["significant"]
    d = paired_difference({"km": np.full(5, np.inf)}, {"km": np.full(5, np.inf)}, n_boot=50)
    assert math.isnan(d["median_km"]["diff"]) and math.isnan(d["median_km"]["low"])
    assert d["median_km"]["significant"] is False


def test_empty_input_gives_nan_everywhere():
    r = bootstrap_metrics({"km": [], "cell_hit": []})
    assert "geocell_accuracy_pct" in r and "top5_accuracy_pct" not in r
    for e in r.values():
        assert all(math.isnan(e[k]) for k in ("value", "low", "high"))
    d = paired_difference({"km": []}, {"km": []}, groups=[])
    for e in d.values():
        assert all(math.isnan(e[k]) for k in ("a", "b", "diff", "low", "high")) and e["significant"] is False
    assert all(math.isnan(v) for v in point_metrics({"km": []}).values())


def test_describe_difference_sentences():
    d = {"a": 31.0, "b": 12.0, "diff": -19.0, "low": -25.1, "high": -12.9, "significant": True}
    assert describe_difference("Blurring", "within 10 km", d, "%") == (
        "Blurring lowers within 10 km from 31.0% to 12.0% (-19.0 points, 95% CI -25.1 to -12.9): significant.")
    d = {"a": 40.0, "b": 40.5, "diff": 0.5, "low": -3.0, "high": 2.1, "significant": False}
    assert describe_difference("Blurring", "within 25 km", d, "%") == (
        "Blurring raises within 25 km from 40.0% to 40.5% (+0.5 points, 95% CI -3.0 to +2.1): "
        "not significant (the interval includes zero).")
    d = {"a": 12.34, "b": 15.0, "diff": 2.66, "low": 0.4, "high": 5.0, "significant": True, "level": 0.9}
    assert describe_difference("The text model", "the median error", d, "km") == (
        "The text model raises the median error from 12.3 km to 15.0 km (+2.7 km, 90% CI +0.4 to +5.0): "
        "significant.")
    # straight from paired_difference
    o = {"km": np.arange(1.0, 101.0)}
    s = describe_difference("Nothing", "GeoScore", paired_difference(o, o)["geoscore"], "")
    assert s.startswith("Nothing leaves GeoScore unchanged at ")
    assert s.endswith("not significant (the interval includes zero).")


def test_json_safe():
    r = bootstrap_metrics({"km": np.array([1.0, np.inf, np.inf])}, n_boot=30)
    r["extra"] = (np.float32(np.nan), np.array([1.5, np.inf]), np.bool_(True), np.int64(3))
    safe = json_safe(r)
    json.dumps(safe, allow_nan=False)  # strict JSON: no Infinity/NaN tokens
    assert safe["mean_km"]["value"] is None and safe["within_10km_pct"]["value"] == pytest.approx(100 / 3)
    assert safe["extra"] == [None, [1.5, None], True, 3]


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_metrics({"km": [1.0]}, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_metrics({"km": [1.0]}, level=1.0)


def test_speed_500_rows_1000_draws():
    o = _outcomes()
    bootstrap_metrics(o, n_boot=10)
    t0 = time.perf_counter()
    bootstrap_metrics(o, n_boot=1000)
    bootstrap_metrics(o, groups=np.arange(500) // 5, n_boot=1000)
    # generous bound: ~0.02 s each on an idle core, the CI machine may be busy
    assert time.perf_counter() - t0 < 1.0
