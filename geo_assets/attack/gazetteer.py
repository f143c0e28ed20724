"""The gazetteer attacker: a model-free adversary that reads an image's
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

    Only mentions with *evidence* (``evidence``) count. On real photos most
    place names are shop, brand and person names ("SALE", "THE BATH HOUSE", "Clive
    Coker", "KURT GEIGER LONDON"), so a mention counts with a cue ("Welcome to", a road
    sign, a second place nearby, a UK postcode or phone number) or, without one, when
    its name is distinctive (no everyday word, person name, brand word or bigger place
    abroad), read as spelt, with no unexplained word beside it, and the text names no big
    place abroad. A common English word is never fuzzy-matched or split into places
    ("SEAFOOD" is not Seaford, "ORCHARD" not "or" + Chard). ``strict=False`` counts every
    mention (the attacker without this rule), kept for measurement (``false_guesses``).

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
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

ATTACKER_VERSION = "gazetteer_attack-v2"
"""Bump when the attacker's rules or word lists change: the asset recomputes its guesses, and the
shipped false-guess measurement (``attack.false_guesses``) no longer counts as this attacker's."""

import numpy as np

from geo_assets.geo.bbox import UK_REGION, BBox
from geo_assets.geo.haversine import haversine_km
from geo_assets.preprocess.gazetteer import COMMON_WORD_PLACES, SIGN_WORDS, Gazetteer, Place, place_key, uk_gazetteer
from geo_assets.data.place_words import brand_places, common_words, place_words, world_places
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
    evidence: str = field(default="", compare=False)  # what made the attacker speak (``evidence``)


@dataclass(frozen=True)
class Mention:
    """One place name found in the text."""

    name: str  # canonical gazetteer name
    item: int  # index of the OCR item (line) it was read in
    destination: bool  # a distance follows or a road number leads it: a road sign's destination
    place: Place  # the candidate chosen (see ``resolve_shared_names``)
    candidates: tuple[Place, ...]  # every gazetteer place of this name inside the region
    road_sign: bool = False  # a road number leads it, or a distance follows it and a road number is read too
    words: int = 1  # words of the name as read ("Milton Keynes": 2)
    exact: bool = True  # read as spelt (not a fuzzy or OCR-confusion match)
    welcome: bool = False  # "Welcome to" / "Croeso i" leads it
    foreign_neighbour: str | None = None  # an unexplained word next to it: part of a longer name ("Clive Coker")
    new_prefix: bool = False  # "New" leads it and "New <name>" is no UK place ("NEW YORK")


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
_CO_OP = re.compile(r"\bco-op\b", re.I)
_PRICE = re.compile(r"^(?:[$\u00a3\u20ac#]\s?\d[\d.,/-]*|\d[\d.,]*\s?%)$")


CONNECTORS = frozenset({"the", "of", "and", "on", "upon", "in", "le", "by", "at", "for", "with", "to", "i", "a", "y", "yr"})
"""Small words that join a place name to its sign or shop words ("The Kendal Arms")."""


def is_common_word(token: str) -> bool:
    """A common English word of 5+ letters (``data/common_words.txt``): a word, not a misread place."""
    key = place_key(token)
    return len(key) >= 5 and key in common_words()


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


def _tokens(segment: str, gazetteer: Gazetteer, strict: bool = True) -> list[str]:
    out = []
    # Hyphens as spaces: "STRATFORD-UPON-AVONMOTORS" -> words the run-on splitter and find() handle.
    text = unicodedata.normalize("NFKC", segment)
    if strict:
        text = _CO_OP.sub("Coop", text)  # one sign word, not "CO" + "OP"
    for raw in text.replace("-", " ").split():
        tok = raw.strip(_STRIP)
        if not tok:
            continue
        if strict and _PRICE.match(raw.strip(_STRIP.replace("%", "").replace("$", "").replace("#", ""))):
            out.append(raw)  # "70%", "$264", "#02-07": a price or a unit, never a road sign's miles
            continue
        if strict and is_common_word(tok):
            out.append(tok)  # "ORCHARD" is a word, not "or" + "Chard"; "SEAFOOD" is not a misread Seaford
            continue
        pieces = split_run_on(tok, gazetteer)
        if strict and len(pieces) > 1 and any(len(p.strip(_STRIP)) == 1 and p.strip(_STRIP).isalpha() for p in pieces):
            pieces = [tok]  # "ROCHER" is not "Roche" + "r": a split that leaves a stray letter explains nothing
        for piece in pieces:
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


def _foreign(token: str | None, gazetteer: Gazetteer) -> str | None:
    """``token`` when it is a word that neither a sign nor a place name explains."""
    if not token:
        return None
    word = token.strip(_STRIP)
    key = place_key(word)
    if len(key) < 2 or not key.replace(" ", "").isalpha() or is_road_number(word) or _is_distance(word):
        return None
    if key in SIGN_WORDS or key in CONNECTORS or key in gazetteer.words or key in gazetteer.places:
        return None
    return word


def find_mentions(texts: Sequence[str], gazetteer: Gazetteer | None = None, region: Sequence[BBox] = UK_REGION,
                  *, fuzzy: bool = True, strict: bool = True,
                  line_neighbours: Sequence[tuple[int | None, int | None]] | None = None) -> list[Mention]:
    """Every place named in ``texts`` (OCR items in reading order), with its destination
    mark and the evidence ``accept`` weighs. ``line_neighbours``: per item, the items just
    left and right of it on the same text line (``line_neighbours``), None where unknown."""
    gazetteer = gazetteer or uk_gazetteer()
    segments: list[tuple[int, list[str], bool, bool]] = []  # item, tokens, first / last segment of its item
    for i, item in enumerate(texts):
        segs = [(seg, _tokens(seg, gazetteer, strict)) for seg in strip_overlays(item).split("|")]
        segs = [toks for _, toks in segs if toks]  # dates, times, speeds, brands, coordinates removed
        for k, toks in enumerate(segs):
            segments.append((i, toks, k == 0, k == len(segs) - 1))
    item_tokens: dict[int, list[str]] = {}
    for item, toks, _, _ in segments:
        item_tokens.setdefault(item, []).extend(toks)

    def outer(item: int, side: int) -> str | None:
        """The token across the gap to the item beside ``item`` on its line (side -1: left, +1: right)."""
        if not line_neighbours or item >= len(line_neighbours):
            return None
        other = line_neighbours[item][0 if side < 0 else 1]
        toks = item_tokens.get(other) if other is not None else None
        return (toks[-1] if side < 0 else toks[0]) if toks else None

    # A distance after a name is a road sign's miles only where the sign's road number is
    # read too ("A17" above "Peterborough 12"); "SALE 117" is not a road sign.
    has_road_number = any(is_road_number(t) for _, toks, _, _ in segments for t in toks)
    out: list[Mention] = []
    seg_of: list[int] = []  # the segment of each mention
    for s, (item, toks, first_seg, last_seg) in enumerate(segments):
        letters = [t for t in toks if any(ch.isalpha() for ch in t)]
        for start, end, name in gazetteer.find(" ".join(toks), fuzzy=fuzzy, allow_common=True):
            after = toks[end] if end < len(toks) else None
            if after is None and s + 1 < len(segments) and segments[s + 1][0] == item + 1 and len(segments[s + 1][1]) == 1:
                after = segments[s + 1][1][0]  # the distance read as its own item: "Aberdeen" "26"
            distance = after is not None and _is_distance(after)
            read = " ".join(place_key(t) for t in toks[start:end])
            if strict and read != place_key(name) and any(is_common_word(t) for t in toks[start:end]):
                continue  # "SEAFOOD", "COATS": a word spelt right, not a misread Seaford or Coates
            before = tuple(place_key(t) for t in toks[max(0, start - 2):start])
            if strict and start == 0 and s > 0 and segments[s - 1][0] >= item - 1:
                before = tuple(place_key(t) for t in segments[s - 1][1][-2:])  # "WELCOME TO" on the line above
            welcome = before in _WELCOME
            if end - start == 1 and place_key(toks[start]) in COMMON_WORD_PLACES and not strict:
                alone = len(letters) == 1
                if not (alone or distance or welcome):
                    continue  # "Street", "Bridge", "Green" as sign words
            cands = candidates(name, gazetteer, region)
            if not cands:
                continue  # a county or region (no coordinates), or a place outside the region
            road_led = any(is_road_number(t) for t in toks[:start])
            left = toks[start - 1] if start > 0 else (outer(item, -1) if first_seg else None)
            right = toks[end] if end < len(toks) else (outer(item, +1) if last_seg else None)
            new_prefix = before[-1:] == ("new",) and f"new {place_key(name)}" not in gazetteer.places
            out.append(Mention(name, item, distance or road_led, cands[0], cands, road_sign=road_led or (
                               distance and has_road_number), words=end - start,
                               exact=read == place_key(name), welcome=welcome,
                               foreign_neighbour=_foreign(left, gazetteer) or _foreign(right, gazetteer),
                               new_prefix=new_prefix))
            seg_of.append(s)
    # Multi-word names an engine read word by word ("Ponders" "End": EasyOCR returns words).
    flat = [(s, t) for s, (_, toks, _, _) in enumerate(segments) for t in toks]
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
            destination = bool(after and _is_distance(after)) or road_led
            out.append(Mention(name, segments[first][0], destination, cands[0], cands,
                               road_sign=road_led or (destination and has_road_number), words=end - start))
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


# --------------------------------------------------------------------------- evidence

BIG_TOWN = 100_000
"""A UK place this populous is a place first, even where its name is also a word or a
surname ("Reading" stays a word: it is in ``COMMON_WORD_PLACES``)."""
GIVEN_NAME_RANK = 500  # top US census given names: "Keith", "Winston", "Clive"'s peers
SURNAME_RANK = 1000  # top US census surnames: "Nelson", "Washington", "Houston"
FUZZY_NEEDS_CUE = True
"""A one-word fuzzy match ("ROCHER" -> Roche, "ASTRON" -> Aston) counts only with a cue: on
real photos nearly every one was a brand or a word, on the synthetic world few guesses
rested on one (PERFORMANCE.md)."""
CORROBORATE_KM = 30.0
"""Two different names whose places lie this close back each other up: chance
misreadings of shop words are seldom neighbours."""

_POSTCODE = re.compile(r"\b(?:[A-Z]{1,2}\d{1,2}[A-Z]?)\s?\d[ABD-HJLNP-UW-Z]{2}\b")
_UK_PHONE = re.compile(r"(?:\+\s?44\s?\(?0?\)?\s?|\b0)(?:1\d{2,4}|2\d|3\d{2}|7\d{3})[\s-]?\d{3,4}[\s-]?\d{3,4}\b")
_UK_PHRASES = re.compile(r"\b(?:please\s+drive\s+carefully|twinned\s+with|gefeilldrefi\s+gyda)\b", re.I)


def uk_marker(texts: Sequence[str]) -> str | None:
    """The first thing in the text that only a UK image carries: a postcode, a UK phone
    number, a village-sign phrase. None when there is none."""
    joined = "  ".join(texts)
    for pattern in (_POSTCODE, _UK_PHONE, _UK_PHRASES):
        m = pattern.search(joined)
        if m:
            return m.group(0)
    return None


def place_abroad(texts: Sequence[str]) -> str | None:
    """The first big place abroad the text names ("SYDNEY", "LOS ANGELES"; ``data/world_places.txt``),
    or None. A shop listing its cities or a poster naming them is no sign of where it stands."""
    keys = place_key(" ".join(texts)).split()
    world = world_places()
    for n in (3, 2, 1):
        for i in range(len(keys) - n + 1):
            if " ".join(keys[i:i + n]) in world:
                return " ".join(keys[i:i + n])
    return None


def ambiguity(name: str, population: int) -> str | None:
    """Why a single-word UK place name is weak evidence on its own, or None: it is an
    everyday word ("Sale", "Bath"), three letters or fewer, a brand word ("LONDON" on
    fashion labels), a common given name or surname ("Keith", "Nelson"), or a bigger
    place abroad shares it ("Portland, US"). Lists: ``data/place_words.csv``,
    ``data/brand_places.txt``."""
    key = place_key(name)
    if key in COMMON_WORD_PLACES:
        return "word"
    if len(key) <= 3:
        return "short"  # "Hoo" from "H2O", "Rye", "Eye": three letters are read by chance
    if key in brand_places():
        return "brand word"
    pw = place_words().get(key)
    if pw is None:
        return None
    if pw.elsewhere:
        return f"abroad ({pw.elsewhere})"
    if population >= BIG_TOWN:
        return None
    if pw.english:
        return "word"
    if (pw.given_rank or 10**9) <= GIVEN_NAME_RANK or (pw.surname_rank or 10**9) <= SURNAME_RANK:
        return "person name"
    return None


def _corroborated(m: Mention, mentions: list[Mention], km: float = CORROBORATE_KM) -> bool:
    others = [p for o in mentions if place_key(o.name) != place_key(m.name) for p in o.candidates]
    if not others:
        return False
    olat = np.array([p.lat for p in others])
    olon = np.array([p.lon for p in others])
    return any(float(np.min(haversine_km(c.lat, c.lon, olat, olon))) <= km for c in m.candidates)


def evidence(m: Mention, mentions: list[Mention], marker: str | None, abroad: str | None = None) -> str | None:
    """Why ``m`` is taken as a UK place named on purpose, or None (it is dropped).

    A *cue* is enough on its own: "Welcome to" before it, a road sign's shape (a road
    number before it, a distance after it), another named place within
    ``CORROBORATE_KM``, or a UK-only marker anywhere in the text (``uk_marker``).
    Without a cue the name itself must carry it: several words read exactly, or one word
    that is no everyday word, common person name or bigger place abroad (``ambiguity``),
    and no unexplained word next to it ("KURT GEIGER LONDON", "Clive Coker": a business
    or person named after a place). A fuzzy match of one word needs the same. "New"
    before a name that is no UK "New ..." ("NEW YORK") is never a cue-less guess."""
    if m.welcome:
        return "welcome"
    if m.new_prefix:
        return None
    if m.road_sign:
        return "road sign"
    if _corroborated(m, mentions):
        return "corroborated"
    if marker:
        return f"uk marker ({marker})"
    if abroad or m.foreign_neighbour:
        return None
    if m.words > 1:
        return "multi-word name"
    if not m.exact and FUZZY_NEEDS_CUE:
        return None
    if ambiguity(m.name, max(p.population for p in m.candidates)):
        return None
    return "distinctive name" if m.exact else "distinctive name (fuzzy)"


def line_neighbours(words) -> list[tuple[int | None, int | None]] | None:
    """Per OCR item, the item just left and right of it on the same text line, from the
    boxes (None without boxes). Engines and ground truth that give one word per item
    ("HARRY" "WINSTON") are joined back into lines for the neighbour check."""
    boxes = []
    for w in words or ():
        text = w if isinstance(w, str) else getattr(w, "text", None)
        if not (isinstance(text, str) and text.strip()):
            continue
        box = None if isinstance(w, str) else getattr(w, "box", None)
        if not box:
            return None
        arr = np.asarray(box, dtype=float).reshape(-1, 2)
        boxes.append((arr[:, 0].min(), arr[:, 0].max(), arr[:, 1].min(), arr[:, 1].max()))
    out: list[tuple[int | None, int | None]] = []
    for i, (x0, x1, y0, y1) in enumerate(boxes):
        h = max(1.0, y1 - y0)
        left = right = None
        best_l = best_r = None
        for j, (a0, a1, b0, b1) in enumerate(boxes):
            if j == i:
                continue
            hj = max(1.0, b1 - b0)
            overlap = min(y1, b1) - max(y0, b0)
            if overlap < 0.5 * min(h, hj) or max(h, hj) > 2.0 * min(h, hj):
                continue  # another line, or text of another size
            gap_r, gap_l = a0 - x1, x0 - a1
            limit = 1.2 * max(h, hj)
            if -0.3 * h <= gap_r <= limit and (best_r is None or gap_r < best_r):
                right, best_r = j, gap_r
            if -0.3 * h <= gap_l <= limit and (best_l is None or gap_l < best_l):
                left, best_l = j, gap_l
        out.append((left, right))
    return out


def locate(words, gazetteer: Gazetteer | None = None, region: Sequence[BBox] | None = None, *,
           rule: str = DEFAULT_RULE, fuzzy: bool = True, disambiguate: bool = True, strict: bool = True) -> Guess | None:
    """Guess where an image is from its OCR ``words`` (strings or ``OcrWord``, reading
    order): printed coordinates, else the place the rule picks among the mentions with
    ``evidence``, else None (abstain). ``region`` (boxes, default the UK) bounds both
    coordinates and places. ``strict=False``: every mention counts (the attacker without the
    evidence rule; its false guesses on real photos are in PERFORMANCE.md), kept for measurement."""
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
        return Guess(lat, lon, "coordinates", text, None, "printed coordinates")
    neighbours = line_neighbours(words) if strict else None
    mentions = find_mentions(texts, gazetteer, region, fuzzy=fuzzy, strict=strict, line_neighbours=neighbours)
    if not mentions:
        return None
    if disambiguate:
        mentions = resolve_shared_names(mentions)
    why: dict[int, str] = {}
    if strict:
        marker, abroad = uk_marker(texts), place_abroad(texts)
        for m in mentions:
            reason = evidence(m, mentions, marker, abroad)
            if reason:
                why[id(m)] = reason
        mentions = [m for m in mentions if id(m) in why]
        if not mentions:
            return None
    m = RULES[rule](mentions)
    return Guess(float(m.place.lat), float(m.place.lon), "place", m.name, int(m.place.population),
                 why.get(id(m), "any mention"))
