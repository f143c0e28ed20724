import numpy as np
import pytest

from geo_assets.geo.bbox import UK_REGION, BBox, region_bounds
from geo_assets.geo.geocells import GeocellGrid, geocell_key, parse_geocell_size

SMALL = BBox(-2.0, 51.0, 0.0, 53.0)


def test_dimensions_of_small_and_uk_grids():
    g = GeocellGrid(SMALL, 0.5)
    assert (g.n_rows, g.n_cols, g.n_cells) == (4, 4, 16)
    uk = region_bounds(UK_REGION)
    assert GeocellGrid(uk, 0.05).n_cells == 220 * 200
    assert GeocellGrid(uk, 0.1).n_cells == 110 * 100
    # a size that does not divide the box still covers it (last row/col partly outside)
    g = GeocellGrid(SMALL, 0.3)
    assert (g.n_rows, g.n_cols) == (7, 7)


def test_row_major_flattening():
    g = GeocellGrid(SMALL, 0.5)
    assert g.cell_of(51.1, -1.9) == 0
    assert g.cell_of(51.1, -1.4) == 1  # one column east: +1
    assert g.cell_of(51.6, -1.9) == g.n_cols  # one row north: +n_cols
    assert g.cell_of(52.6, -0.4) == 3 * g.n_cols + 3
    lat, lon = g.centre_of(g.n_cols + 2)  # row 1, col 2
    assert (lat, lon) == pytest.approx((51.75, -0.75))


def test_corners_and_far_edges_fall_in_the_grid():
    g = GeocellGrid(SMALL, 0.5)
    assert g.cell_of(51.0, -2.0) == 0  # south-west corner
    assert g.cell_of(53.0, 0.0) == g.n_cells - 1  # north-east corner: last row/col
    assert g.cell_of(53.0, -2.0) == (g.n_rows - 1) * g.n_cols  # north-west
    assert g.cell_of(51.0, 0.0) == g.n_cols - 1  # south-east
    assert g.cell_of(51.5, -1.5) == g.n_cols + 1  # an inner boundary belongs to the cell above/right


def test_round_trips_every_cell_and_random_points():
    g = GeocellGrid(region_bounds(UK_REGION), 0.1)
    ids = np.arange(g.n_cells)
    lat, lon = g.centre_of(ids)
    assert np.array_equal(g.cell_of(lat, lon), ids)
    rng = np.random.default_rng(0)
    b = g.bounds
    plat = rng.uniform(b.min_lat, b.max_lat, 5000)
    plon = rng.uniform(b.min_lon, b.max_lon, 5000)
    clat, clon = g.centre_of(g.cell_of(plat, plon))
    assert np.all(np.abs(clat - plat) <= g.size / 2 + 1e-9)
    assert np.all(np.abs(clon - plon) <= g.size / 2 + 1e-9)
    table = g.centres_table()
    assert table.shape == (g.n_cells, 2)
    assert np.allclose(table[:, 0], lat) and np.allclose(table[:, 1], lon)


def test_scalar_and_array_types():
    g = GeocellGrid(SMALL, 0.5)
    assert isinstance(g.cell_of(52.0, -1.0), int)
    assert isinstance(g.centre_of(3), tuple) and isinstance(g.centre_of(3)[0], float)
    assert g.cell_of(np.array([51.1, 52.9]), np.array([-1.9, -0.1])).tolist() == [0, 15]


@pytest.mark.parametrize("lat,lon", [(50.99, -1.0), (53.01, -1.0), (52.0, -2.01), (52.0, 0.01)])
def test_out_of_bounds_points_raise(lat, lon):
    with pytest.raises(ValueError, match="outside"):
        GeocellGrid(SMALL, 0.5).cell_of(lat, lon)


@pytest.mark.parametrize("cell", [-1, 16, 10_000])
def test_out_of_range_ids_raise(cell):
    with pytest.raises(ValueError, match="out of range"):
        GeocellGrid(SMALL, 0.5).centre_of(cell)


def test_geocell_keys_are_canonical():
    assert geocell_key(0.05) == "0.05"
    assert geocell_key("0.10") == "0.1"
    assert geocell_key(0.2) == "0.2"
    assert parse_geocell_size("0.05") == 0.05
    for bad in ("x", "0", "-0.1", "11", "nan"):
        with pytest.raises(ValueError):
            parse_geocell_size(bad)
