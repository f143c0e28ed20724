import math

import numpy as np
import pytest

from geo_assets.geo.bbox import BBox
from geo_assets.geo.geocells import GeocellGrid
from geo_assets.geo.haversine import EARTH_RADIUS_KM
from geo_assets.model.metrics import DISTANCE_BANDS, METRIC_KEYS, evaluate_predictions, region_centre_baseline

KM_PER_DEG = EARTH_RADIUS_KM * math.pi / 180


def _north_of(lat, km):
    return lat + km / KM_PER_DEG


def test_distance_bands_on_hand_made_errors():
    errors_km = [0.05, 0.5, 5.0, 20.0, 50.0, 150.0, 500.0, 2000.0, 3000.0]
    true_lat = np.full(len(errors_km), 10.0)
    true_lon = np.zeros(len(errors_km))
    pred_lat = np.array([_north_of(10.0, e) for e in errors_km])
    m = evaluate_predictions(pred_lat, true_lon, true_lat, true_lon)
    assert m["n"] == 9
    assert m["median_km"] == pytest.approx(50.0, rel=1e-6)
    assert m["mean_km"] == pytest.approx(sum(errors_km) / 9, rel=1e-6)
    expected = {"within_100m_pct": 1, "within_1km_pct": 2, "within_10km_pct": 3, "within_25km_pct": 4,
                "within_100km_pct": 5, "within_200km_pct": 6, "within_750km_pct": 7, "within_2500km_pct": 8}
    for key, count in expected.items():
        assert m[key] == pytest.approx(100 * count / 9), key
    assert set(m) == set(METRIC_KEYS)
    assert [k for k, _ in DISTANCE_BANDS] == list(expected)
    assert math.isnan(m["geocell_accuracy"]) and math.isnan(m["top5_accuracy_pct"])


def test_perfect_predictions():
    lat, lon = np.array([51.5, 55.9]), np.array([-0.1, -3.2])
    m = evaluate_predictions(lat, lon, lat, lon, [3, 7], [3, 7], [[3, 1], [7, 2]])
    assert m["median_km"] == 0.0 and m["within_100m_pct"] == 100.0
    assert m["geocell_accuracy"] == 1.0 and m["geocell_accuracy_pct"] == 100.0
    assert m["top5_accuracy"] == 1.0


def test_cell_and_top5_accuracy():
    z = np.zeros(4)
    true_cell = np.array([1, 2, 3, 4])
    pred_cell = np.array([1, 9, 3, 9])
    topk = np.array([[1, 5, 6, 7, 8, 9], [9, 2, 0, 0, 0, 0], [3, 0, 0, 0, 0, 0], [9, 8, 7, 6, 5, 4]])
    m = evaluate_predictions(z, z, z, z, pred_cell, true_cell, topk)
    assert m["geocell_accuracy"] == 0.5 and m["geocell_accuracy_pct"] == 50.0
    # row 4 has its true cell only in column 6: not in the top 5
    assert m["top5_accuracy"] == 0.75 and m["top5_accuracy_pct"] == 75.0


def test_empty_and_mismatched_inputs():
    m = evaluate_predictions([], [], [], [])
    assert m["n"] == 0 and math.isnan(m["median_km"]) and math.isnan(m["within_1km_pct"])
    with pytest.raises(ValueError, match="length"):
        evaluate_predictions([1.0], [1.0, 2.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="cell"):
        evaluate_predictions([1.0], [1.0], [1.0], [1.0], [1, 2], [1])


def test_region_centre_baseline():
    train_lat, train_lon = np.array([51.0, 53.0]), np.array([-1.0, -1.0])
    true_lat, true_lon = np.array([52.0, 53.0]), np.array([-1.0, -1.0])
    b = region_centre_baseline(train_lat, train_lon, true_lat, true_lon)
    assert (b["centre_lat"], b["centre_lon"]) == (52.0, -1.0)
    assert b["n"] == 2
    assert b["median_km"] == pytest.approx(KM_PER_DEG / 2, rel=1e-9)
    assert b["within_1km_pct"] == 50.0
    grid = GeocellGrid(BBox(-2.0, 51.0, 0.0, 54.0), 0.5)
    b = region_centre_baseline(train_lat, train_lon, true_lat, true_lon, grid)
    assert b["geocell_accuracy"] == 0.5
    with pytest.raises(ValueError):
        region_centre_baseline([], [], true_lat, true_lon)


def test_geoscore():
    from geo_assets.model.metrics import GEOSCORE_SCALE_KM, geoscore

    assert GEOSCORE_SCALE_KM == 1492.7
    assert geoscore(0.0) == 5000.0
    assert geoscore(1492.7) == pytest.approx(5000 / math.e, rel=1e-12)
    assert np.array_equal(geoscore([0.0, np.inf]), [5000.0, 0.0])
    errors_km = np.array([0.0, 100.0, 1000.0])
    pred_lat = np.array([_north_of(10.0, e) for e in errors_km])
    m = evaluate_predictions(pred_lat, np.zeros(3), np.full(3, 10.0), np.zeros(3))
    assert m["geoscore"] == pytest.approx(np.mean(5000 * np.exp(-errors_km / 1492.7)), rel=1e-6)
    assert math.isnan(evaluate_predictions([], [], [], [])["geoscore"])


def test_top10_accuracy():
    z = np.zeros(3)
    true_cell = np.array([1, 2, 3])
    topk = np.array([[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0],    # column 10: top-10 hit, top-5 miss
                     [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],    # column 11: miss for both
                     [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])   # column 1: hit for both
    m = evaluate_predictions(z, z, z, z, topk[:, 0], true_cell, topk)
    assert m["top10_accuracy"] == pytest.approx(2 / 3) and m["top10_accuracy_pct"] == pytest.approx(200 / 3)
    assert m["top5_accuracy"] == pytest.approx(1 / 3)
    assert set(m) == set(METRIC_KEYS)
    # a top-5 list cannot tell a top-10 miss: NaN, not a copy of the top-5 number
    m = evaluate_predictions(z, z, z, z, topk[:, 0], true_cell, topk[:, :5])
    assert math.isnan(m["top10_accuracy"]) and math.isnan(m["top10_accuracy_pct"])
    assert m["top5_accuracy"] == pytest.approx(1 / 3)


def test_per_image_outcomes():
    from geo_assets.model.metrics import per_image_outcomes

    true_cell = np.array([1, 2, 3])
    topk = np.array([[5, 0, 0, 0, 0, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0] * 10])
    o = per_image_outcomes([1.0, np.inf, 3.0], topk[:, 0], true_cell, topk)
    assert set(o) == {"km", "cell_hit", "top5_hit", "top10_hit"}
    assert o["km"].dtype == np.float64 and o["km"][1] == np.inf
    assert o["cell_hit"].tolist() == [False, True, False]
    assert o["top5_hit"].tolist() == [False, True, False]
    assert o["top10_hit"].tolist() == [True, True, False]
    assert o["top10_hit"].dtype == bool
    assert set(per_image_outcomes([1.0])) == {"km"}
    assert set(per_image_outcomes([1.0, 2.0], [1, 2], [1, 3])) == {"km", "cell_hit"}
    assert set(per_image_outcomes([1.0], [1], [1], [[1, 2, 3]])) == {"km", "cell_hit", "top5_hit"}
    with pytest.raises(ValueError, match="NaN"):
        per_image_outcomes([1.0, float("nan")])
    with pytest.raises(ValueError, match="cell"):
        per_image_outcomes([1.0, 2.0], [1], [1, 2])
