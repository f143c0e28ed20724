"""Label schemes: what one class of a geolocator is. The geocell partition dimension holds
either a square-cell size in degrees ('0.05', '0.1': geo/geocells.py) or a UK city scheme
('city50', 'city150': the N most populous UK cities of the region, seed 001).

Everything that reads a geocell partition key goes through `parse_label_key` (and
`label_key`, its canonical form); `labels_for(key, region)` gives the scheme the model
code uses, a GeocellGrid or a CityLabels with the same interface: `bounds`, `size`,
`n_cells`, `cell_of(lat, lon)`, `centre_of(ids)`, `centres_table()`.

The city list (`uk_cities`) comes from the gazetteer rows the project ships
(geo_assets/data/places.csv: geonames cities500, GB rows, with population). Suburbs are
merged into their city: each place is read as a disc of built-up land at
BUILT_UP_DENSITY_PER_KM2, radius sqrt(population / (pi * density)) km (London about
27 km, a town of 150,000 about 3.5 km). Going down the places by population, a place
whose disc touches the disc of a bigger city already kept is merged into the nearest
such city (Croydon, Brent, Watford into London; Salford into Manchester; Gateshead into
Newcastle; Bradford stays apart from Leeds, 14 km away); otherwise it is the next city.
A rule from population and distance alone, because geonames has no "part of" relation:
London's boroughs are listed as cities beside London itself. Order: population (the
kept place's own geonames figure: London's already counts its boroughs), then name, then
geonameid, so the same rows always give the same cities, and city50 is the first 50 of
city150. Each image's label is its nearest kept city (great circle); the class's point is
that city's position, and the model's offset head moves its guess by up to half the
median spacing between the cities (`CityLabels.size`), the half-way line to a neighbour.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

import numpy as np

from geo_assets.geo.bbox import BBox, in_region, region_bounds
from geo_assets.geo.geocells import GeocellGrid, check_geocell_count, geocell_key, parse_geocell_size
from geo_assets.geo.haversine import haversine_km

CITY_PREFIX = "city"
MIN_CITIES, MAX_CITIES = 1, 500
BUILT_UP_DENSITY_PER_KM2 = 4000.0  # people per km² of built-up land: a round figure for UK towns (3-5,000), judged by the merges it gives
KM_PER_DEG_LAT = 111.195
_CITY_KEY = re.compile(r"city([0-9]{1,6})")  # digits only: no sign, no path, no spaces
_CITY_HELP = f"city<N> with N in {MIN_CITIES}..{MAX_CITIES}, e.g. city50"


def parse_label_key(value) -> tuple[str, float | int]:
    """('cells', size in degrees) or ('cities', N); a ValueError that names both forms otherwise."""
    text = str(value).strip().lower() if isinstance(value, str) else value
    if isinstance(text, str) and text.startswith(CITY_PREFIX):
        m = _CITY_KEY.fullmatch(text)
        n = int(m.group(1)) if m else None
        if n is None or not (MIN_CITIES <= n <= MAX_CITIES):
            raise ValueError(f"geocell key {str(value)[:60]!r} is not a UK city label scheme ({_CITY_HELP}) "
                             "nor a geocell size in degrees")
        return "cities", n
    try:
        return "cells", parse_geocell_size(text)
    except ValueError as exc:
        raise ValueError(f"{exc} (or a UK city label scheme: {_CITY_HELP})") from None


def label_key(value) -> str:
    """The canonical partition key: '0.050' -> '0.05', ' City50 ' -> 'city50'."""
    kind, v = parse_label_key(value)
    return f"{CITY_PREFIX}{v}" if kind == "cities" else geocell_key(v)


def is_city_key(key) -> bool:
    try:
        return parse_label_key(key)[0] == "cities"
    except ValueError:
        return False


def label_sort_key(key) -> tuple:
    """Sizes first, smallest first, then city schemes by N (unparseable keys last, by text)."""
    try:
        kind, v = parse_label_key(key)
    except ValueError:
        return (2, 0.0, str(key))
    return (0 if kind == "cells" else 1, float(v), "")


@dataclass(frozen=True)
class City:
    name: str
    lat: float
    lon: float
    population: int
    geonameid: int
    # Places merged into it (suburbs), biggest first: informative, not part of what a class is.
    merged: tuple[str, ...] = field(default=(), compare=False)


def merge_radius_km(population: int) -> float:
    """Radius of a disc of built-up land holding `population` at BUILT_UP_DENSITY_PER_KM2."""
    return math.sqrt(max(int(population), 0) / (math.pi * BUILT_UP_DENSITY_PER_KM2))


def merged_cities(rows, limit: int = MAX_CITIES) -> tuple[City, ...]:
    """Up to `limit` cities from place rows (name, lat, lon, population, geonameid), suburbs
    merged into the nearest bigger city whose disc theirs touches (module docstring)."""
    order = sorted(rows, key=lambda r: (-int(r.population), r.name, int(r.geonameid)))
    kept: list[list] = []  # [row, merged names]
    lat = np.zeros(0)
    lon = np.zeros(0)
    radius = np.zeros(0)
    for r in order:
        if kept:
            d = np.atleast_1d(haversine_km(r.lat, r.lon, lat, lon))
            touching = np.flatnonzero(d <= radius + merge_radius_km(r.population))
            if touching.size:
                kept[int(touching[np.argmin(d[touching])])][1].append(r.name)
                continue
        if len(kept) >= limit:  # past the last city a place can still merge, never be a city
            continue
        kept.append([r, []])
        lat, lon = np.append(lat, r.lat), np.append(lon, r.lon)
        radius = np.append(radius, merge_radius_km(r.population))
    return tuple(City(r.name, float(r.lat), float(r.lon), int(r.population), int(r.geonameid), tuple(m))
                 for r, m in kept)


@functools.lru_cache(maxsize=16)
def _region_cities(region: tuple[BBox, ...]) -> tuple[City, ...]:
    from geo_assets.data.places import gb_places

    return merged_cities([r for r in gb_places() if in_region(r.lat, r.lon, region)], MAX_CITIES)


def uk_cities(region, n: int) -> tuple[City, ...]:
    """The `n` most populous UK cities inside `region` (boxes), suburbs merged; ValueError
    when the region holds fewer."""
    region = tuple(region)
    cities = _region_cities(region)
    if len(cities) < n:
        raise ValueError(f"city{n} needs {n} UK cities inside the region, which holds {len(cities)} "
                         f"(gazetteer places, suburbs merged): use city{len(cities)} or fewer" if cities else
                         f"city{n}: the region holds no UK place of the gazetteer")
    return cities[:n]


def median_spacing_deg(lat, lon, fallback_deg: float) -> float:
    """Median distance from each city to its nearest other city, in degrees of latitude
    (3 significant digits); `fallback_deg` for a single city."""
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    if lat.size < 2:
        return float(f"{fallback_deg:.3g}")
    d = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    np.fill_diagonal(d, np.inf)
    return float(f"{max(np.median(d.min(axis=1)) / KM_PER_DEG_LAT, 0.001):.3g}")


@dataclass(frozen=True)
class CityLabels:
    """One class per city: nearest-city labels, the city's position as the class point."""

    bounds: BBox
    cities: tuple[City, ...]
    size: float  # the offset head's range in degrees (+-size/2): the median city spacing

    def __post_init__(self) -> None:
        if not self.cities:
            raise ValueError("a city label scheme needs at least one city")
        if not (isinstance(self.size, (int, float)) and math.isfinite(self.size) and self.size > 0):
            raise ValueError(f"city label offset range must be a positive number of degrees, got {self.size!r}")
        object.__setattr__(self, "_lat", np.array([c.lat for c in self.cities], dtype=np.float64))
        object.__setattr__(self, "_lon", np.array([c.lon for c in self.cities], dtype=np.float64))

    @classmethod
    def for_region(cls, region, n: int) -> "CityLabels":
        region = tuple(region)
        bounds = region_bounds(region)
        cities = uk_cities(region, n)
        size = median_spacing_deg([c.lat for c in cities], [c.lon for c in cities], max(bounds.height, bounds.width))
        return cls(bounds, cities, size)

    @property
    def key(self) -> str:
        return f"{CITY_PREFIX}{len(self.cities)}"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cities]

    @property
    def n_cells(self) -> int:
        return len(self.cities)

    def cell_of(self, lat, lon):
        """Index of the nearest city for point(s) inside the bounds (ValueError outside)."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        b = self.bounds
        if np.any(~((lat >= b.min_lat) & (lat <= b.max_lat) & (lon >= b.min_lon) & (lon <= b.max_lon))):
            raise ValueError("point outside the city labels' bounds")
        flat_lat, flat_lon = lat.reshape(-1), lon.reshape(-1)
        ids = np.empty(flat_lat.size, dtype=np.int64)
        for s in range(0, flat_lat.size, 4096):  # (4096 x 500) distances at most per chunk
            d = haversine_km(flat_lat[s : s + 4096, None], flat_lon[s : s + 4096, None], self._lat[None], self._lon[None])
            ids[s : s + 4096] = np.argmin(np.atleast_2d(d), axis=1)
        return int(ids[0]) if lat.ndim == 0 else ids.reshape(lat.shape)

    def centre_of(self, cell_id):
        """(lat, lon) of city id(s)."""
        ids = np.asarray(cell_id, dtype=np.int64)
        if np.any((ids < 0) | (ids >= self.n_cells)):
            raise ValueError(f"city id out of range [0, {self.n_cells})")
        if ids.ndim == 0:
            return float(self._lat[ids]), float(self._lon[ids])
        return self._lat[ids], self._lon[ids]

    def centres_table(self) -> np.ndarray:
        return np.stack([self._lat, self._lon], axis=1)

    def to_json(self) -> dict:
        """Saved with the model (model.json "grid"), so a model reads back its own cities."""
        b = self.bounds
        return {"scheme": "cities", "key": self.key, "bounds": [b.min_lon, b.min_lat, b.max_lon, b.max_lat],
                "bounds_order": "min_lon,min_lat,max_lon,max_lat", "size": self.size, "n_cells": self.n_cells,
                "cities": [[c.name, c.lat, c.lon, c.population, c.geonameid] for c in self.cities]}

    @classmethod
    def from_json(cls, data: dict) -> "CityLabels":
        bbox = BBox(*(float(v) for v in data["bounds"]))
        cities = tuple(City(str(name), float(lat), float(lon), int(pop), int(gid))
                       for name, lat, lon, pop, gid in data["cities"])
        labels = cls(bbox, cities, float(data["size"]))
        if int(data.get("n_cells", labels.n_cells)) != labels.n_cells:
            raise ValueError(f"city labels list {labels.n_cells} cities but say n_cells {data['n_cells']}")
        return labels


def labels_for(key, region) -> GeocellGrid | CityLabels:
    """The label scheme of a geocell partition key over `region` (a tuple of boxes)."""
    kind, v = parse_label_key(key)
    region = tuple(region)
    if kind == "cities":
        return CityLabels.for_region(region, int(v))
    return GeocellGrid(region_bounds(region), float(v))


def check_label_scheme(key, region) -> str:
    """The canonical key when the scheme can be built over `region`: a size within the cell
    cap (geocells.check_geocell_count), or city<N> where the region holds N cities."""
    kind, v = parse_label_key(key)
    region = tuple(region)
    if kind == "cities":
        uk_cities(region, int(v))
    else:
        check_geocell_count(region_bounds(region), float(v))
    return label_key(key)
