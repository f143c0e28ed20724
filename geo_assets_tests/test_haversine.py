import math

import numpy as np
import pytest
import torch

from geo_assets.geo.haversine import EARTH_RADIUS_KM, haversine_km, haversine_km_torch

LONDON = (51.5074, -0.1278)
EDINBURGH = (55.9533, -3.1883)


def test_known_distances():
    assert haversine_km(*LONDON, *EDINBURGH) == pytest.approx(534, abs=3)
    assert haversine_km(*LONDON, *LONDON) == 0.0
    # one degree of latitude along a meridian
    assert haversine_km(51.0, 0.0, 52.0, 0.0) == pytest.approx(EARTH_RADIUS_KM * math.pi / 180, rel=1e-9)
    # antipodes: half the circumference
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_KM, rel=1e-9)


def test_symmetric_and_vectorised():
    rng = np.random.default_rng(1)
    a = rng.uniform(50, 60, (2, 100))
    b = rng.uniform(-8, 2, (2, 100))
    d1 = haversine_km(a[0], b[0], a[1], b[1])
    d2 = haversine_km(a[1], b[1], a[0], b[0])
    assert d1.shape == (100,) and np.allclose(d1, d2)
    assert isinstance(haversine_km(*LONDON, *EDINBURGH), float)


def test_torch_matches_numpy():
    rng = np.random.default_rng(2)
    lat1, lat2 = rng.uniform(49.9, 60.9, (2, 500))
    lon1, lon2 = rng.uniform(-8.2, 1.8, (2, 500))
    expect = haversine_km(lat1, lon1, lat2, lon2)
    got = haversine_km_torch(*(torch.tensor(v, dtype=torch.float64) for v in (lat1, lon1, lat2, lon2))).numpy()
    assert np.allclose(got, expect, rtol=1e-9, atol=0.02)  # torch clamps a >= 1e-12 (~13 m floor)
    got32 = haversine_km_torch(*(torch.tensor(v, dtype=torch.float32) for v in (lat1, lon1, lat2, lon2))).numpy()
    assert np.allclose(got32, expect, rtol=1e-3, atol=0.1)


def test_gradient_is_finite_at_zero_distance():
    lat = torch.tensor([52.0, 53.0], dtype=torch.float32, requires_grad=True)
    lon = torch.tensor([-1.0, -2.0], dtype=torch.float32, requires_grad=True)
    d = haversine_km_torch(lat, lon, torch.tensor([52.0, 53.0]), torch.tensor([-1.0, -2.0]))
    assert torch.all(d < 0.02)
    d.sum().backward()
    assert torch.all(torch.isfinite(lat.grad)) and torch.all(torch.isfinite(lon.grad))


def test_gradient_points_towards_the_truth():
    lat = torch.tensor([52.0], dtype=torch.float64, requires_grad=True)
    d = haversine_km_torch(lat, torch.tensor([0.0], dtype=torch.float64), torch.tensor([53.0], dtype=torch.float64),
                           torch.tensor([0.0], dtype=torch.float64))
    d.sum().backward()
    # moving north reduces the distance by ~111 km per degree
    assert lat.grad.item() == pytest.approx(-EARTH_RADIUS_KM * math.pi / 180, rel=1e-6)
