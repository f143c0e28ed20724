"""Clean OCR output into caption text (seed 3.4.1.2), as pure functions.

Dashcam and metadata overlays (dates, times, coordinates, speeds, camera brands,
watermark user names) are removed first; then an OCR item is kept only if it is
anchored by something a sign would say: a UK place name (offline gazetteer,
fuzzy for OCR slips), a road number, or common sign vocabulary. Inside a kept
item, only clean words survive. Coordinates never survive.
"""

from __future__ import annotations

import re

from geo_assets.preprocess.gazetteer import lookup_place

CAMERA_BRANDS = {
    "garmin", "nextbase", "viofo", "blackvue", "thinkware", "gopro", "xiaomi", "70mai", "rexing", "vantrue",
    "cobra", "transcend", "kenwood", "mapillary", "insta360", "dashcam", "dash", "cam", "ddpai", "azdome",
}

# Words that make an OCR item worth keeping (street signs, shop fronts, road furniture).
SIGN_WORDS = {
    "st", "saint", "street", "road", "rd", "lane", "ln", "avenue", "ave", "way", "close", "drive", "crescent",
    "place", "square", "terrace", "gardens", "grove", "court", "high", "school", "academy", "college",
    "university", "station", "bridge", "church", "chapel", "cathedral", "abbey", "castle", "hall", "park",
    "hill", "green", "common", "market", "centre", "center", "town", "city", "village", "north", "south",
    "east", "west", "upper", "lower", "welcome", "hotel", "inn", "pub", "arms", "tavern", "bakery",
    "pharmacy", "post", "office", "motors", "garage", "surgery", "dental", "library", "museum", "hospital",
    "police", "fire", "bus", "rail", "railway", "airport", "harbour", "port", "pier", "beach", "bay",
    "river", "loch", "lake", "moor", "forest", "wood", "farm", "mill", "cross", "junction", "services",
    "motorway", "bypass", "ring", "car", "parking", "football", "club", "stadium", "tandoori",
    "launderette", "fish", "chips", "bar", "cafe", "restaurant", "shop", "stores", "co-op", "tesco",
    "sainsbury's", "asda", "eurospar", "spar", "lidl", "aldi", "morrisons", "boots",
}

ROAD_NUMBER = re.compile(r"^(?:[AMB]\d{1,4}(?:\(M\))?|[AM]\d{1,4}M)$", re.IGNORECASE)

_NUM = r"[-+]?\d{1,3}(?:[.,]\d{3,})"
_COORD_PATTERNS = [
    # decimal pairs: "55.79857 -4.30273", "55.79857,-4.30273", "(55.798, -4.302)"
    re.compile(rf"\(?\s*{_NUM}\s*[,;/ ]\s*{_NUM}\s*\)?"),
    # hemisphere letters: "N55.79857 W4.30273", "55.79857N 4.30273W"
    re.compile(r"[NSEW]\s*\d{1,3}(?:[.,]\d+)?\s*°?", re.IGNORECASE),
    re.compile(r"\d{1,3}[.,]\d{2,}\s*°?\s*[NSEW]\b", re.IGNORECASE),
    # degrees / minutes / seconds: 55°47'54.9"N, 4°18'09.8"W, 55 47 54.9 N
    re.compile(r"\d{1,3}\s*[°º]\s*\d{1,2}\s*['′’]?\s*(?:\d{1,2}(?:[.,]\d+)?\s*[\"″”]?)?\s*[NSEW]?", re.IGNORECASE),
    re.compile(r"\b\d{1,3}\s+\d{1,2}\s+\d{1,2}(?:[.,]\d+)?\s*[NSEW]\b", re.IGNORECASE),
    # any lone decimal with 4+ decimals (a latitude or longitude on its own)
    re.compile(r"[-+]?\d{1,3}[.,]\d{4,}"),
    # dashes used instead of dots by some overlays: "55-1355"
    re.compile(r"\b\d{2}-\d{4,}\b"),
]
_DATE = re.compile(
    r"\b\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}\b"
    r"|\b\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{2,4}\b",
    re.IGNORECASE,
)
_TIME = re.compile(r"\b\d{1,2}[:.]\d{2}(?:[:.]\d{2})?\s*(?:am|pm)?\b|\b(?:am|pm)\b", re.IGNORECASE)
_SPEED = re.compile(r"\b\d{1,3}\s*(?:mph|km\s*/?\s*h|kmh|kph|km)\b", re.IGNORECASE)
_HANDLE = re.compile(r"@\w+|\bwww\.\S+|\S+\.(?:com|co\.uk|org|net)\b", re.IGNORECASE)
_WORD = re.compile(r"\b[AMB]\d{1,4}\b|[A-Za-z][A-Za-z'’\-]*[A-Za-z]|[A-Za-z]", re.IGNORECASE)
_VOWELS = set("aeiouyAEIOUY")


def contains_coordinates(text: str) -> bool:
    """True if any coordinate-like string is in `text` (used by an asset check)."""
    return any(p.search(text) for p in _COORD_PATTERNS)


def strip_overlays(text: str) -> str:
    """Remove coordinates, dates, times, speeds, handles and camera brands from one item."""
    for pattern in _COORD_PATTERNS:
        text = pattern.sub(" ", text)
    for pattern in (_DATE, _SPEED, _TIME, _HANDLE):
        text = pattern.sub(" ", text)
    words = [w for w in text.split() if w.lower().strip(".,:;!?'\"") not in CAMERA_BRANDS]
    return " ".join(words)


def _clean_word(token: str) -> str | None:
    if ROAD_NUMBER.match(token):
        return token.upper()
    if not token.isascii():
        return None
    letters = [c for c in token if c.isalpha()]
    if len(letters) < 2 and token.lower() not in {"a"}:
        return None
    if not any(c in _VOWELS for c in letters):
        return token if token.lower() in SIGN_WORDS else None
    if re.search(r"[^aeiouy'’\-]{5,}", token.lower()):  # consonant runs: OCR junk
        return None
    return token


def _anchored(words: list[str]) -> bool:
    for i, w in enumerate(words):
        low = w.lower()
        if low in SIGN_WORDS or ROAD_NUMBER.match(w) or lookup_place(w):
            return True
        if i + 1 < len(words) and lookup_place(f"{w} {words[i + 1]}", fuzzy=False):
            return True
    return False


def clean_ocr_text(items: list[str]) -> str:
    """OCR strings -> the text appended to a caption.

    >>> clean_ocr_text(['St Ninian $', 'High School', 'GARMIN', '20/12/2021 09:08:49 AM',
    ...                 '55.79857 -4.30273 13 MPH', "'cotncaouy", '7'])
    'St Ninian High School'
    """
    kept: list[str] = []
    for item in items:
        words = [w for w in (_clean_word(t) for t in _WORD.findall(strip_overlays(item))) if w]
        if words and _anchored(words):
            kept.extend(words)
    text = " ".join(kept)
    # Belt and braces: nothing coordinate-like may reach a caption.
    while contains_coordinates(text):
        text = " ".join(strip_overlays(text).split())
    return text


def find_place_names(text: str) -> list[str]:
    """Gazetteer places named in `text` (canonical names, in order, no repeats)."""
    words = _WORD.findall(text)
    found: list[str] = []
    i = 0
    while i < len(words):
        pair = lookup_place(f"{words[i]} {words[i + 1]}", fuzzy=False) if i + 1 < len(words) else None
        if pair:
            name, step = pair, 2
        else:
            name, step = lookup_place(words[i]), 1
        if name and name not in found:
            found.append(name)
        i += step
    return found
