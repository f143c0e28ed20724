import pytest

from geo_assets.geo.bbox import UK_REGION, BBox, in_region, region_bounds
from geo_assets.geo.tiles import Tile, tiles_for_region


def test_bbox_validates_and_round_trips_query():
    box = BBox(-1.5, 51.0, -1.0, 51.5)
    assert BBox.from_query(box.to_query()) == box
    with pytest.raises(ValueError, match="longitude"):
        BBox(1.0, 50.0, 0.0, 51.0)
    with pytest.raises(ValueError, match="4 comma"):
        BBox.from_query("1,2,3")
    with pytest.raises(ValueError, match="non-numeric"):
        BBox.from_query("a,b,c,d")


def test_bbox_is_half_open_so_neighbours_never_share_a_point():
    west, east = BBox(-1.0, 50.0, 0.0, 51.0), BBox(0.0, 50.0, 1.0, 51.0)
    assert west.contains(50.5, -0.5) and not west.contains(50.5, 0.0)
    assert east.contains(50.5, 0.0)


def test_quadrants_cover_the_box_exactly():
    box = BBox(-2.0, 50.0, 0.0, 52.0)
    quads = box.quadrants()
    assert sum(q.area for q in quads) == pytest.approx(box.area)
    assert {(q.min_lon, q.min_lat) for q in quads} == {(-2.0, 50.0), (-1.0, 50.0), (-2.0, 51.0), (-1.0, 51.0)}


def test_default_tiles_cover_land_without_overlap():
    tiles = tiles_for_region(UK_REGION, 2.0)
    assert len(tiles) >= 20
    keys = [t.key for t in tiles]
    assert len(set(keys)) == len(keys)
    for a in tiles:
        for b in tiles:
            if a is b:
                continue
            overlap_lon = min(a.bbox.max_lon, b.bbox.max_lon) - max(a.bbox.min_lon, b.bbox.min_lon)
            overlap_lat = min(a.bbox.max_lat, b.bbox.max_lat) - max(a.bbox.min_lat, b.bbox.min_lat)
            assert overlap_lon <= 1e-9 or overlap_lat <= 1e-9, (a.key, b.key)
    bounds = region_bounds(UK_REGION)
    for t in tiles:
        assert bounds.min_lon <= t.bbox.min_lon and t.bbox.max_lon <= bounds.max_lon
    # London and Edinburgh are in exactly one tile each.
    for lat, lon in [(51.507, -0.128), (55.953, -3.188)]:
        assert sum(t.bbox.contains(lat, lon) for t in tiles) == 1
        assert in_region(lat, lon, UK_REGION)


def test_tile_key_round_trip_and_errors():
    for t in tiles_for_region(UK_REGION, 1.5):
        assert Tile.from_key(t.key) == t
    with pytest.raises(ValueError, match="not a tile key"):
        Tile.from_key("london")


def test_tile_size_must_be_positive():
    with pytest.raises(ValueError):
        tiles_for_region(UK_REGION, 0.0)
