"""The shipped UK window of global-land-mask (geo_assets/data/land_mask_uk.npz): the
package's answers inside it, the package itself outside, regeneration reproduces it."""

from __future__ import annotations

import numpy as np
import pytest

from geo_assets.data import land_mask


@pytest.fixture(scope="module")
def globe():
    from global_land_mask import globe

    return globe


def test_window_answers_what_the_package_answers(globe):
    rng = np.random.default_rng(7)
    min_lon, min_lat, max_lon, max_lat = land_mask.WINDOW
    lat = rng.uniform(min_lat, max_lat, 300_000)
    lon = rng.uniform(min_lon, max_lon, 300_000)
    # the edges and corners of the window, and grid lines where truncation decides the cell
    lat = np.concatenate([lat, [min_lat, max_lat, min_lat, max_lat], np.full(50, 51.5)])
    lon = np.concatenate([lon, [min_lon, max_lon, max_lon, min_lon], -0.5 + np.arange(50) / 120.0])
    ours = land_mask.is_land(lat, lon)
    assert ours.dtype == bool and ours.shape == lat.shape
    assert np.array_equal(ours, globe.is_land(lat.copy(), lon.copy()))
    assert 0.15 < ours.mean() < 0.5  # sea and land both present: not an all-False window
    assert land_mask.is_land(np.array([51.5074]), np.array([-0.1278]))[0]  # London
    assert not land_mask.is_land(np.array([50.5]), np.array([-3.0]))[0]  # Lyme Bay


def test_points_outside_the_window_use_the_package(globe):
    lat, lon = np.array([51.5, 40.4]), np.array([-0.1, -3.7])  # London and Madrid: one outside
    assert np.array_equal(land_mask.is_land(lat, lon), globe.is_land(lat.copy(), lon.copy()))
    assert land_mask.is_land(np.array([40.4]), np.array([-3.7]))[0]
    with pytest.raises(ValueError, match="latitude must be within"):
        land_mask.is_land(np.array([91.0]), np.array([0.0]))


def test_regenerate_reproduces_the_shipped_window(tmp_path):
    copy = land_mask.regenerate(tmp_path / "land.npz")
    with np.load(copy) as new, np.load(land_mask.NPZ_PATH) as shipped:
        assert set(new.files) == set(shipped.files)
        for key in shipped.files:
            assert np.array_equal(new[key], shipped[key]), key
