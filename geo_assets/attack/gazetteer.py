"""The gazetteer attacker (issue 12): a model-free adversary that reads an image's
text, looks it up in the offline UK gazetteer, and guesses where the image was
taken, or abstains. It needs no training data, so what it locates on the blurred
variant is the most direct measure of what blurring text fails to hide.

``locate(words)`` takes the OCR output of one image (strings or ``OcrWord``) in
reading order and applies three rules in turn:

(a) Coordinates. A latitude/longitude pair printed in the text (dashcam overlays:
    ``"51.38971 -0.28321"``) wins: it is the location to a few metres. Pairs
    outside the region are rejected. OCR noise: a comma for the decimal point and
    the two numbers run together (``"51.38971-0.28321"``) are read as printed. A
    dropped minus sign is repaired only where that is safe: the negated longitude
    is used only when the printed reading is impossible (outside the region, or
    more than ``NEAR_PLACE_KM`` from every gazetteer place, i.e. at sea) and the
    negated one is possible. A printed reading that is possible is never flipped,
    even though east of Greenwich a dropped minus cannot be told from a real
    positive longitude. Only the north-hemisphere latitude is accepted. Not
    repaired: EasyOCR often drops the longitude's sign, degrees and point
    (``"51.90777" "91299"`` for ``-1.91299``); the degrees cannot be known, so
    such a read is not a coordinate guess.

(b) Place names. Every UK place named in the text (``Gazetteer.find``: exact
    multi-word names, fuzzy single words of 5+ letters, OCR digit/letter
    confusions such as ``"0xford"`` or ``"Oidham"``, RapidOCR's run-on words
    split first, words EasyOCR returns one by one joined for multi-word names) is
    a *mention*. A mention is marked a *destination* when a distance number
    follows it on its line (``"Aberdeen 26"``, a road sign's miles) or a road
    number leads it (``"A17 Peterborough"``): the road goes there, the camera is
    not there. The rule kept (``DEFAULT_RULE``, chosen by measurement on the
    synthetic world, see ``RULES``) guesses the least populous *unmarked* place:
    place signs and shop fronts name the place the camera is in, road signs name
    the big town the road leads to. Only when every mention is a destination is a
    destination guessed. A single everyday word that is also a place ("Bath",
    "Reading", "Street") counts only where it stands alone on its line, follows
    "Welcome to" / "Croeso i", or carries a distance. A name several UK places
    share (two Hayes, three Newports) is resolved to the candidate nearest the
    other places named in the same image, else to the most populous one.

(c) Otherwise abstain (``None``).

What is *not* used, and why:

- Road numbers (A57, B4876, M6). In the synthetic world they are drawn at random
  within the UK's road zone of the image (and motorways by proximity to a
  hand-placed polyline), so there is no road network to look a number up in; an
  offline attacker could at most learn the zone (a ~100-300 km wedge). Nothing is
  faked here: road numbers only mark the name after them as a destination.
- The distance on a destination sign. In the synthetic world the miles are drawn
  at random (1-39), unrelated to the true distance, so they are not used to move
  the guess off the destination town.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import numpy as np

from geo_assets.geo.bbox import UK_REGION, BBox
from geo_assets.geo.haversine import haversine_km
from geo_assets.preprocess.gazetteer import COMMON_WORD_PLACES, SIGN_WORDS, Gazetteer, Place, place_key, uk_gazetteer
from geo_assets.preprocess.text_cleaning import is_road_number, split_run_on, strip_overlays

SOURCES = ("coordinates", "place")

NEAR_PLACE_KM = 30.0
"""A coordinate reading farther than this from every gazetteer place is at sea or
off the map: a printed reading that far out may have lost its minus sign."""

DISAMBIGUATE_KM = 80.0
"""A shared name resolves to the candidate nearest another named place only within this distance."""


@dataclass(frozen=True)
class Guess:
    """Where the attacker thinks the image is, and what gave it away."""

    lat: float
    lon: float
    source: str  # "coordinates" | "place"
    matched: str  # the coordinate text as read, or the canonical place name
    population: int | None = None  # the place's population; None for coordinates


@dataclass(frozen=True)
class Mention:
    """One place name found in the text."""

    name: str  # canonical gazetteer name
    item: int  # index of the OCR item (line) it was read in
    destination: bool  # a distance follows or a road number leads it: a road sign's destination
    place: Place  # the candidate chosen (see ``resolve_shared_names``)
    candidates: tuple[Place, ...]  # every gazetteer place of this name inside the region


# --------------------------------------------------------------------------- input


def word_texts(words: Iterable | None) -> list[str]:
    """The non-empty strings of ``words`` (strings, ``OcrWord`` or anything with ``.text``)."""
    out = []
    for w in words or ():
        text = w if isinstance(w, str) else getattr(w, "text", None)
        if isinstance(text, str) and text.strip():
            out.append(text.strip())
    return out


def in_region(lat: float, lon: float, region: Sequence[BBox]) -> bool:
    return any(b.contains(lat, lon) for b in region)


@functools.lru_cache(maxsize=4)
def _place_arrays(gazetteer: Gazetteer) -> tuple[np.ndarray, np.ndarray]:
    pts = [(p.lat, p.lon) for p in gazetteer.places.values() if p.lat is not None]
    arr = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def near_a_place(lat: float, lon: float, gazetteer: Gazetteer, km: float = NEAR_PLACE_KM) -> bool:
    plat, plon = _place_arrays(gazetteer)
    if plat.size == 0:
        return True
    close = (np.abs(plat - lat) < km / 100.0 + 0.05) & (np.abs(plon - lon) < km / 50.0 + 0.1)
    if not close.any():
        return False
    return bool(np.min(haversine_km(lat, lon, plat[close], plon[close])) <= km)


# --------------------------------------------------------------------------- (a) coordinates

_MINUS = "-\u2212\u2013\u2014~"
_COORD_PAIR = re.compile(
    r"(?<![\d.,])(?P<lat_sign>[-+\u2212\u2013\u2014~]?)(?P<lat>\d{2}[.,]\d{3,7})"
    r"\s*[,;/|]?\s*"
    r"(?P<lon_sign>[-+\u2212\u2013\u2014~]?)\s?(?P<lon>\d{1,3}[.,]\d{3,7})(?!\d)"
)


def read_coordinates(texts: Sequence[str], region: Sequence[BBox] = UK_REGION,
                     gazetteer: Gazetteer | None = None) -> tuple[float, float, str] | None:
    """(lat, lon, text as read) of the first plausible coordinate pair, or None."""
    gazetteer = gazetteer or uk_gazetteer()
    joined = "  ".join(texts)  # an overlay split over two OCR items still pairs up
    for m in _COORD_PAIR.finditer(joined):
        if m["lat_sign"] and m["lat_sign"] != "+":
            continue  # UK latitudes are north
        lat = float(m["lat"].replace(",", "."))
        lon_abs = float(m["lon"].replace(",", "."))
        printed = -lon_abs if m["lon_sign"] and m["lon_sign"] in _MINUS else lon_abs
        if in_region(lat, printed, region) and (printed < 0 or near_a_place(lat, printed, gazetteer)):
            return lat, printed, m.group(0).strip()
        if not m["lon_sign"] and lon_abs > 0 and in_region(lat, -lon_abs, region) and near_a_place(lat, -lon_abs, gazetteer):
            return lat, -lon_abs, m.group(0).strip()  # a dropped minus sign, repaired only where it is safe
    return None


# --------------------------------------------------------------------------- (b) place names

_STRIP = "\"'`\u00b4\u2018\u2019\u201c\u201d$\u00a3\u20ac%^*_=+|\\/<>[](){}!?;:,.~\u00b7\u2022\u2026-"
_DISTANCE = re.compile(r"^(?:\d{1,3}(?:[.,]\d)?\s?(?:mi|miles?)?|\d{0,2}[\u00bc\u00bd\u00be])$", re.I)
_OCR_DIGITS = (str.maketrans({"0": "o", "1": "l", "5": "s", "8": "b", "4": "a", "3": "e", "6": "g"}),
               str.maketrans({"0": "o", "1": "i", "5": "s", "8": "b", "4": "a", "3": "e", "6": "g"}))
_WELCOME = (("welcome", "to"), ("croeso", "i"))


def _is_distance(token: str) -> bool:
    return bool(_DISTANCE.match(token)) and not is_road_number(token)


_CONFUSABLE = (("rn", "m"), ("m", "rn"), ("i", "l"), ("l", "i"), ("vv", "w"), ("cl", "d"), ("li", "h"))


def _ocr_variants(key: str):
    """Readings of ``key`` with one OCR confusion undone ("oidham" -> "oldham", "glusbum" -> "glusburn")."""
    for a, b in _CONFUSABLE:
        start = key.find(a)
        while start != -1:
            yield key[:start] + b + key[start + len(a):]
            start = key.find(a, start + 1)


def _fix_ocr(token: str, gazetteer: Gazetteer) -> str:
    """The place a misread token stands for, when one confusion away from it: digits read
    for letters ("0xford") or a letter pair confused ("Oidham"). Tokens already a place,
    and readings that are everyday words, are left alone."""
    key = place_key(token)
    if not key or key in gazetteer.places:
        return token
    digits = sum(ch.isdigit() for ch in token)
    letters = sum(ch.isalpha() for ch in token)
    if 0 < digits <= 2 and letters >= 3 and not is_road_number(token):
        for table in _OCR_DIGITS:
            fixed = token.translate(table)
            if place_key(fixed) in gazetteer.places and place_key(fixed) not in COMMON_WORD_PLACES:
                return fixed
    if digits == 0 and letters >= 5 and key.isalpha() and key not in SIGN_WORDS:
        for variant in _ocr_variants(key):
            if variant in gazetteer.places and variant not in COMMON_WORD_PLACES:
                return gazetteer.places[variant].name
    return token


def _tokens(segment: str, gazetteer: Gazetteer) -> list[str]:
    out = []
    # Hyphens as spaces: "STRATFORD-UPON-AVONMOTORS" -> words the run-on splitter and find() handle.
    for raw in unicodedata.normalize("NFKC", segment).replace("-", " ").split():
        tok = raw.strip(_STRIP)
        if not tok:
            continue
        for piece in split_run_on(tok, gazetteer):
            piece = piece.strip(_STRIP)
            for word in piece.split():
                out.append(_fix_ocr(word, gazetteer))
    return [t for t in out if t]


@functools.lru_cache(maxsize=1)
def _uk_candidates() -> dict[str, tuple[Place, ...]]:
    """Every GB place of 500+ people by lookup key, most populous first (names repeat)."""
    from geo_assets.data.places import gb_places

    by_key: dict[str, list[Place]] = {}
    for r in gb_places():
        by_key.setdefault(place_key(r.name), []).append(Place(r.name, r.admin1, r.lat, r.lon, r.population))
    return {k: tuple(sorted(v, key=lambda p: -p.population)) for k, v in by_key.items()}


def candidates(name: str, gazetteer: Gazetteer, region: Sequence[BBox] = UK_REGION) -> tuple[Place, ...]:
    """The gazetteer places called ``name`` that have coordinates and lie in ``region``."""
    key = place_key(name)
    if gazetteer is uk_gazetteer():
        places = _uk_candidates().get(key, ())
    else:
        place = gazetteer.places.get(key)
        places = (place,) if place is not None else ()
    return tuple(p for p in places if p.lat is not None and p.lon is not None and in_region(p.lat, p.lon, region))


def find_mentions(texts: Sequence[str], gazetteer: Gazetteer | None = None, region: Sequence[BBox] = UK_REGION,
                  *, fuzzy: bool = True) -> list[Mention]:
    """Every place named in ``texts`` (OCR items in reading order), with its destination mark."""
    gazetteer = gazetteer or uk_gazetteer()
    segments: list[tuple[int, list[str]]] = []
    for i, item in enumerate(texts):
        for seg in strip_overlays(item).split("|"):  # dates, times, speeds, brands, coordinates
            toks = _tokens(seg, gazetteer)
            if toks:
                segments.append((i, toks))
    out: list[Mention] = []
    seg_of: list[int] = []  # the segment of each mention
    for s, (item, toks) in enumerate(segments):
        letters = [t for t in toks if any(ch.isalpha() for ch in t)]
        for start, end, name in gazetteer.find(" ".join(toks), fuzzy=fuzzy, allow_common=True):
            after = toks[end] if end < len(toks) else None
            if after is None and s + 1 < len(segments) and segments[s + 1][0] == item + 1 and len(segments[s + 1][1]) == 1:
                after = segments[s + 1][1][0]  # the distance read as its own item: "Aberdeen" "26"
            distance = after is not None and _is_distance(after)
            if end - start == 1 and place_key(toks[start]) in COMMON_WORD_PLACES:
                before = tuple(place_key(t) for t in toks[max(0, start - 2):start])
                alone = len(letters) == 1
                if not (alone or distance or before in _WELCOME):
                    continue  # "Street", "Bridge", "Green" as sign words
            cands = candidates(name, gazetteer, region)
            if not cands:
                continue  # a county or region (no coordinates), or a place outside the region
            road_led = any(is_road_number(t) for t in toks[:start])
            out.append(Mention(name, item, distance or road_led, cands[0], cands))
            seg_of.append(s)
    # Multi-word names an engine read word by word ("Ponders" "End": EasyOCR returns words).
    flat = [(s, t) for s, (_, toks) in enumerate(segments) for t in toks]
    for start, end, name in gazetteer.find(" ".join(t for _, t in flat), fuzzy=False):
        if end - start > 1 and flat[start][0] != flat[end - 1][0]:
            cands = candidates(name, gazetteer, region)
            after = flat[end][1] if end < len(flat) else None
            road_led = start > 0 and flat[start - 1][0] == flat[start][0] - 1 and is_road_number(flat[start - 1][1])
            if not cands:
                continue
            first, last, key = flat[start][0], flat[end - 1][0], f" {place_key(name)} "
            # "Newport" read alone is part of "Newport Pagnell", not a place of its own.
            keep = [k for k, (m, seg) in enumerate(zip(out, seg_of))
                    if not (first <= seg <= last and f" {place_key(m.name)} " in key)]
            out, seg_of = [out[k] for k in keep], [seg_of[k] for k in keep]
            out.append(Mention(name, segments[first][0], bool(after and _is_distance(after)) or road_led, cands[0], cands))
            seg_of.append(first)
    return out


def resolve_shared_names(mentions: list[Mention], km: float = DISAMBIGUATE_KM) -> list[Mention]:
    """A name several places share takes the candidate nearest another named place
    (within ``km``); otherwise it keeps the most populous candidate."""
    out = []
    for m in mentions:
        others = [p for o in mentions if o.name != m.name for p in o.candidates]
        if len(m.candidates) > 1 and others:
            olat = np.array([p.lat for p in others])
            olon = np.array([p.lon for p in others])
            dist = [float(np.min(haversine_km(c.lat, c.lon, olat, olon))) for c in m.candidates]
            best = int(np.argmin(dist))
            if dist[best] <= km:
                m = replace(m, place=m.candidates[best])
        out.append(m)
    return out


# --------------------------------------------------------------------------- rules


def _pop(m: Mention) -> int:
    return int(m.place.population)


def _pick(prefer_unmarked: bool, least: bool) -> Callable[[list[Mention]], Mention]:
    def pick(mentions: list[Mention]) -> Mention:
        pool = [m for m in mentions if not m.destination] if prefer_unmarked else []
        pool = pool or mentions
        if least:
            return min(pool, key=lambda m: (_pop(m), m.item, m.name))
        return max(pool, key=lambda m: (_pop(m), -m.item, m.name))
    return pick


RULES: dict[str, Callable[[list[Mention]], Mention]] = {
    "most_populous": _pick(False, False),  # the naive baseline
    "least_populous": _pick(False, True),
    "unmarked_most_populous": _pick(True, False),
    "unmarked_least_populous": _pick(True, True),
}
"""Place-name rules: each picks one mention (destinations are the ``destination`` mark).

Measured with ``python -m geo_assets.attack.measure`` on the synthetic world (seed 0,
8,549 images; % of images, an abstention is a miss):

=========================  ========  =======  ========  ========
rule                       coverage  <=1 km   <=10 km   <=25 km
=========================  ========  =======  ========  ========
ground truth, 3,894 images with any text
most_populous (naive)      95.8      51.4     85.4      90.6
least_populous             95.8      53.8     88.8      92.8
unmarked_most_populous     95.8      53.7     88.6      92.7
unmarked_least_populous    95.8      53.8     88.8      92.8
ground truth, 2,538 with signs and no dashcam overlay
most_populous (naive)      93.5      25.5     77.6      85.5
unmarked_least_populous    93.5      29.1     82.8      88.9
RapidOCR, 120 rendered images with text (unblurred)
most_populous (naive)      95.0      47.5     85.0      90.8
unmarked_least_populous    95.0      48.3     88.3      91.7
=========================  ========  =======  ========  ========

``least_populous`` and ``unmarked_least_populous`` never disagree on the synthetic
world (its destinations are always 50,000+ towns, bigger than the place the camera
is in); the destination mark is kept because it does not rely on that: a sign in a
city pointing to a village is read right only by the mark.
"""

DEFAULT_RULE = "unmarked_least_populous"


def locate(words, gazetteer: Gazetteer | None = None, region: Sequence[BBox] | None = None, *,
           rule: str = DEFAULT_RULE, fuzzy: bool = True, disambiguate: bool = True) -> Guess | None:
    """Guess where an image is from its OCR ``words`` (strings or ``OcrWord``, reading
    order): printed coordinates, else the place the rule picks, else None (abstain).
    ``region`` (boxes, default the UK) bounds both coordinates and places."""
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    gazetteer = gazetteer or uk_gazetteer()
    region = tuple(region) if region else UK_REGION
    texts = word_texts(words)
    if not texts:
        return None
    coords = read_coordinates(texts, region, gazetteer)
    if coords is not None:
        lat, lon, text = coords
        return Guess(lat, lon, "coordinates", text, None)
    mentions = find_mentions(texts, gazetteer, region, fuzzy=fuzzy)
    if not mentions:
        return None
    if disambiguate:
        mentions = resolve_shared_names(mentions)
    m = RULES[rule](mentions)
    return Guess(float(m.place.lat), float(m.place.lon), "place", m.name, int(m.place.population))
