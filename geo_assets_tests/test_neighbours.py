"""Nearest neighbours in embedding space and their ground distance."""

import numpy as np
import pytest

from geo_assets.embed.neighbours import nearest_neighbours, neighbour_distance_summary


def _clustered(n_per: int = 10, seed: int = 0):
    """Two places 300 km apart; vectors cluster by place."""
    rng = np.random.default_rng(seed)
    centres = [(51.5, -0.1), (53.5, -2.2)]
    directions = rng.normal(size=(2, 16))
    vecs, lat, lon = [], [], []
    for (la, lo), d in zip(centres, directions):
        for _ in range(n_per):
            vecs.append(d + 0.05 * rng.normal(size=16))
            lat.append(la + rng.uniform(-0.01, 0.01))
            lon.append(lo + rng.uniform(-0.01, 0.01))
    return np.array(vecs), np.array(lat), np.array(lon)


def test_neighbours_exclude_self_and_are_sorted_by_similarity():
    vecs, lat, lon = _clustered()
    found = nearest_neighbours(vecs, lat, lon, [0, 15], k=3)
    assert len(found) == 6
    for q in (0, 15):
        mine = [n for n in found if n.query == q]
        assert all(n.neighbour != q for n in mine)
        assert [n.cosine for n in mine] == sorted((n.cosine for n in mine), reverse=True)
        assert all(n.km < 5 for n in mine), "neighbours come from the same place"


def test_summary_ratio_is_low_when_vectors_carry_place_and_near_one_when_not():
    vecs, lat, lon = _clustered()
    s = neighbour_distance_summary(vecs, lat, lon)
    assert s["rows"] == 20 and s["median_nn_km"] < 5 and s["median_random_km"] > 100
    assert s["ratio"] < 0.05
    noise = np.random.default_rng(1).normal(size=vecs.shape)
    assert neighbour_distance_summary(noise, lat, lon)["ratio"] > 0.3


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="2-D"):
        nearest_neighbours(np.zeros(4), [0.0] * 4, [0.0] * 4, [0])
    with pytest.raises(ValueError, match="same number"):
        nearest_neighbours(np.ones((3, 2)), [0.0] * 2, [0.0] * 3, [0])
    assert neighbour_distance_summary(np.ones((1, 2)), [0.0], [0.0])["median_nn_km"] is None
