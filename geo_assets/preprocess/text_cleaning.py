"""Cleaning of raw OCR output (seed 3.4.1.2), pure functions.

``clean_ocr_text`` drops dashcam and metadata overlays (dates, times, coordinates
in every common notation, speeds, camera brands, watermarks, user names, number
plates) and OCR noise, and keeps the words that carry place information: UK
place names (offline gazetteer, fuzzy for OCR errors), road numbers (A57, M6,
B1167, A1(M)), street and sign vocabulary (Street, Road, High, School, ...),
shop chains, and capitalised names standing next to one of those ("St Ninian").

The seed's example::

    >>> clean_ocr_text(['St Ninian $', 'High School', 'GARMIN', '20/12/2021 09:08:49 AM',
    ...                 '55.79857 -4.30273 13 MPH', "'cotncaouy", '7'])
    'St Ninian High School'

Guarantee: the only tokens with digits that survive are road numbers, so no
coordinate, date, time or speed can reach a caption (``contains_coordinates``
of the result is always False).
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

from geo_assets.preprocess.gazetteer import COMMON_WORD_PLACES, SIGN_WORDS, ascii_fold, place_key, uk_gazetteer

# --------------------------------------------------------------------------- patterns

_NUM = r"\d{1,3}(?:[.,]\d+)?"
_DEC = r"[-+\u2212]?\d{1,3}[.,]\d{2,}"
_DEG = r"(?:[°º˚\u00b0]|deg\b|degrees\b)"
_MIN = r"['′’`´]"
_SEC = r"(?:[\"″”]|''|′′|’’)"
_HEMI = r"[NSEWnsew]"

COORDINATE_PATTERNS = [
    # degrees with a degree sign, optional minutes and seconds, optional hemisphere:
    # N55°47'54.9" W4°18'09.8", 55°47.915'N, 55° 47' 54.9" N, 55.79857°
    re.compile(rf"(?:\b{_HEMI}\s*)?[-+\u2212]?{_NUM}\s*{_DEG}(?!\s*[CF]\b)(?:\s*{_NUM}\s*{_MIN}?)?(?:\s*{_NUM}\s*{_SEC}?)?(?:\s*{_HEMI}\b)?", re.I),
    # degrees minutes seconds without a degree sign: 55 47'54.9", 55 47 54.9 N
    re.compile(rf"\b\d{{1,3}}\s+\d{{1,2}}\s*{_MIN}\s*(?:\d{{1,2}}(?:[.,]\d+)?\s*{_SEC}?)?"),
    re.compile(rf"\b\d{{1,3}}\s*{_MIN}\s*\d{{1,2}}(?:[.,]\d+)?\s*{_SEC}"),
    re.compile(rf"\b\d{{1,3}}\s+\d{{1,2}}\s+\d{{1,2}}(?:[.,]\d+)?\s*{_HEMI}\b"),
    # hemisphere letter and a decimal or degrees-minutes number: N55.79857, N 55 47.915, 4.30273W
    re.compile(rf"\b{_HEMI}\s?[-+]?\d{{1,3}}(?:[.,]\d{{2,}}|\s+\d{{1,2}}[.,]\d+)"),
    re.compile(rf"(?<![\w.]){_DEC}\s?{_HEMI}\b"),
    # a pair of decimals: 55.79857 -4.30273, 55.79857,-4.30273, 55,79857 -4,30273, (55.7986; -4.3027)
    re.compile(rf"(?<![\w.]){_DEC}\s*(?:[,;/|]\s*|\s+|(?=[-+\u2212]))[-+\u2212]?\s?\d{{1,3}}[.,]\d{{2,}}"),
    # labelled values: lat: 55.79, Lon=-4.3, GPS 55.7
    re.compile(r"\b(?:lat(?:itude)?|lon(?:gitude)?|lng|gps|coords?|position|pos)\s*[:=]?\s*[-+\u2212]?\d", re.I),
]
_SINGLE_DECIMAL = re.compile(r"(?<![\w.,])[-+\u2212]?(\d{1,3})[.,](\d{4,})(?![\d])")

_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
DATE_PATTERNS = [
    re.compile(r"\b\d{1,4}\s?[/.\-]\s?\d{1,2}\s?[/.\-]\s?\d{1,4}\b"),  # 20/12/2021, 2021-12-20, 20.12.21
    re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s*{_MONTHS}\s*,?\s*\d{{2,4}}\b", re.I),  # 20 Dec 2021
    re.compile(rf"\b{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?\s*,?\s*\d{{2,4}}\b", re.I),  # Dec 20, 2021
    re.compile(r"\b(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:[_\-T]?\d{4,6})?\b"),  # 20211220[_090849]
]
TIME_PATTERNS = [
    re.compile(r"\b\d{1,2}\s?:\s?\d{2}(?:\s?:\s?\d{2})?(?:[.,]\d+)?\s*(?:[AaPp]\.?\s?[Mm]\.?)?(?![\w])"),  # 09:08:49 AM
    re.compile(r"\b\d{1,2}\.\d{2}\.\d{2}\b"),  # 09.08.49
    re.compile(r"\b\d{1,2}\s*[AaPp]\.?[Mm]\.?(?![\w])"),  # 9 AM
    re.compile(r"\b(?:GMT|BST|UTC)(?:\s*[+\-]\s*\d{1,2}(?::?\d{2})?)?\b"),
]
SPEED_PATTERNS = [
    re.compile(r"\b\d{1,3}(?:[.,]\d+)?\s*(?:mph|m\.p\.h\.?|km\s?/\s?h|kmh|kph|km/hr|kmph|knots|kts)(?![\w])", re.I),
    re.compile(r"(?<!\w)(?:mph|km\s?/\s?h|kmh|kph)(?![\w])", re.I),
    re.compile(r"\b(?:speed|spd)\s*[:=]?\s*\d+", re.I),
]
CAMERA_BRANDS = (
    "garmin", "nextbase", "viofo", "blackvue", "black vue", "thinkware", "transcend", "drivepro", "vantrue",
    "rexing", "70mai", "xiaomi", "mijia", "yi", "mio", "mivue", "cobra", "roadhawk", "road hawk", "road angel",
    "roav", "anker", "apeman", "crosstour", "azdome", "kenwood", "uniden", "papago", "waylens", "gopro",
    "insta360", "redtiger", "miofive", "street guardian", "navman", "dashcam", "dash cam", "nexar", "owlcam",
    "wolfbox", "campark", "akaso", "z-edge", "kingslim", "chortau", "jomise", "lamax", "snooper", "ddpai",
    "rove", "vava", "aukey", "toguard", "vicovation", "lukas", "iroad", "blueskysea", "dod", "falcon zero",
    "mapillary", "kartaview", "openstreetcam", "google", "street view", "streetview", "sony", "panasonic",
)
WATERMARK_PATTERNS = [
    re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(b).replace(r"\ ", r"\s*") for b in CAMERA_BRANDS)
               + r")(?![A-Za-z])(?:[\s\-]*(?:[A-Za-z]{0,4}\d[\w\-]*))*", re.I),  # and a model code: VIOFO A119 V3
    re.compile(r"@\s?[\w.\-]+"),  # @user
    re.compile(r"#\w+"),
    re.compile(r"(?:©|\(c\)|copyright)\s*[\w .\-]*", re.I),
    re.compile(r"\b(?:https?://|www\.)\S+", re.I),
    re.compile(r"\b[\w\-]+(?:\.[\w\-]+)*\.(?:com|net|org|io|co\.uk|org\.uk|uk)\b", re.I),
    re.compile(r"\b[A-Z]{2}\d{2}\s?[A-Z]{3}\b"),  # UK number plate AB12 CDE
    # dashcam status words and labelled values
    re.compile(r"\b(?:rec|gps|g-?sensor|ev|iso|fps|hdr|wdr|\d{3,4}p|[248]k|ch\s?\d|cam\s?\d|alt(?:itude)?|heading|hdg|sats?)\b", re.I),
    re.compile(r"\b[A-Za-z]{1,6}\s*[:=]\s*[-+]?[\d.,]+"),
]
_BRAND_KEYS = frozenset(place_key(b) for b in CAMERA_BRANDS) | frozenset(place_key(b).replace(" ", "") for b in CAMERA_BRANDS)
OVERLAY_PATTERNS = COORDINATE_PATTERNS + DATE_PATTERNS + TIME_PATTERNS + SPEED_PATTERNS + WATERMARK_PATTERNS

ROAD_NUMBER = re.compile(r"^[ABM]\d{1,4}(?:\(M\)|M)?$", re.I)
"""UK road numbers: A57, M6, B1167, A1(M), A3M."""

_CONNECTORS = frozenset({"of", "on", "upon", "the", "le", "and", "in", "under", "by", "next", "with", "at",
                         "y", "de", "&", "upon-tyne"})
_STRIP = "\"'`´‘’“”$£€%^*_=+|\\/<>[](){}!?;:,.~·•…-"
_VOWELS = set("aeiouy")
_OCR_DIGITS = [str.maketrans({"0": "o", "1": "l", "5": "s", "8": "b", "4": "a", "3": "e", "6": "g"}),
               str.maketrans({"0": "o", "1": "i", "5": "s", "8": "b", "4": "a", "3": "e", "6": "g"})]


# --------------------------------------------------------------------------- public helpers


def contains_coordinates(text: str) -> bool:
    """True when ``text`` holds anything that looks like a latitude/longitude: decimal
    pairs, a single decimal with 4+ decimals in [-180, 180], degrees/minutes/seconds,
    hemisphere-letter forms, or labelled values (lat:, lon=, GPS)."""
    if not text:
        return False
    if any(p.search(text) for p in COORDINATE_PATTERNS):
        return True
    for m in _SINGLE_DECIMAL.finditer(text):
        if int(m.group(1)) <= 180:
            return True
    return False


def strip_overlays(text: str) -> str:
    """``text`` with every overlay pattern (coordinates, dates, times, speeds, brands,
    watermarks, plates) replaced by a separator ' | '."""
    for pattern in OVERLAY_PATTERNS:
        text = pattern.sub(" | ", text)
    return _SINGLE_DECIMAL.sub(" | ", text)


def is_road_number(token: str) -> bool:
    return bool(ROAD_NUMBER.match(token))


def _plausible_word(word: str) -> bool:
    """Letters only (inner ' and - allowed), 3+ letters, a vowel, no 3 repeated letters,
    no 5-consonant run: filters most OCR junk like 'xkcdqz' or 'lllll'."""
    letters = word.replace("'", "").replace("-", "")
    if len(letters) < 3 or not letters.isalpha() or not letters.isascii():
        return False
    low = letters.lower()
    if not (_VOWELS & set(low)):
        return False
    if re.search(r"(.)\1\1", low) or re.search(r"[^aeiouy]{5,}", low):
        return False
    vowel_share = sum(c in _VOWELS for c in low) / len(low)
    return 0.15 <= vowel_share <= 0.75


def _name_like(word: str) -> bool:
    """A capitalised or all-caps plausible word: could be part of a proper name."""
    core = word.replace("'", "").replace("-", "")
    return _plausible_word(word) and (word[0].isupper()) and (word.istitle() or word.isupper() or core[1:].islower())


class _Tok:
    __slots__ = ("text", "kind")

    def __init__(self, text: str, kind: str):
        self.text = text
        self.kind = kind  # road | vocab | place | name | connector | drop


def _normalise_token(raw: str) -> str:
    tok = raw.strip(_STRIP)
    # "A1(M)" keeps its bracket; other brackets were stripped above.
    if re.match(r"^[ABM]\d{1,4}\(M\)?$", raw.strip(_STRIP.replace("(", "").replace(")", "")), re.I):
        tok = raw.strip(_STRIP.replace("(", "").replace(")", ""))
        if not tok.endswith(")"):
            tok += ")"
    return tok


def _classify(tok: str, gaz) -> _Tok:
    if not tok:
        return _Tok(tok, "drop")
    if is_road_number(tok):
        return _Tok(tok.upper(), "road")
    low = tok.lower()
    key = place_key(tok)
    if low in _CONNECTORS:
        return _Tok(tok, "connector")
    if any(ch.isdigit() for ch in tok):
        # OCR digit/letter confusion in an otherwise alphabetic word: "Schoo1", "0xford".
        letters = sum(ch.isalpha() for ch in tok)
        digits = sum(ch.isdigit() for ch in tok)
        if letters >= 3 and digits <= 2 and re.fullmatch(r"[A-Za-z0-9'\-]+", tok):
            for table in _OCR_DIGITS:
                fixed = tok.translate(table)
                fixed_key = place_key(fixed)
                if fixed_key in SIGN_WORDS:
                    return _Tok(fixed, "vocab")
                place = gaz.lookup(fixed)
                if place is not None and fixed_key not in COMMON_WORD_PLACES:
                    return _Tok(place.name, "place")
        return _Tok(tok, "drop")
    if not re.fullmatch(r"[A-Za-z][A-Za-z'\-&]*", ascii_fold(tok)):
        return _Tok(tok, "drop")
    if key in _BRAND_KEYS:
        return _Tok(tok, "drop")  # a camera brand split off a run-on overlay: "NEXTBASE2023-05-01"
    if key in SIGN_WORDS or key.replace(" ", "") in SIGN_WORDS:
        return _Tok(tok, "vocab")
    if len(key) >= 3 and gaz.is_place(tok):
        return _Tok(tok, "place")
    if len(key) >= 2 and key in COMMON_WORD_PLACES:
        return _Tok(tok, "vocab")  # "Bridge", "Street", "Green": sign words here
    fixed = gaz.fuzzy(tok)
    if fixed is not None:
        return _Tok(fixed, "place")
    if _name_like(tok):
        return _Tok(tok, "name")
    return _Tok(tok, "drop")


_CASE_SPLIT = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]{2})")
_ALNUM_RUNS = re.compile(r"\d+|[^\d]+")


def _segment_caps(word: str, lexicon: frozenset[str]) -> list[str]:
    """Split an all-caps run-on ("HARROWONTHEHILLKEBABHOUSE") into lexicon words by
    dynamic programming (a known word costs 1, an unknown chunk 3 + 0.5 per letter).
    Returns [word] unless most of the letters end up in known words."""
    s = word.lower()
    n = len(s)
    best = [0.0] + [float("inf")] * n
    back = [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - 24), i):
            chunk = s[j:i]
            cost = 1.0 if len(chunk) >= 2 and chunk in lexicon else 3.0 + 0.5 * len(chunk)
            if best[j] + cost < best[i]:
                best[i], back[i] = best[j] + cost, j
    cuts, i = [], n
    while i > 0:
        cuts.append((back[i], i))
        i = back[i]
    cuts.reverse()
    known = sum(b - a for a, b in cuts if s[a:b] in lexicon)
    if len(cuts) < 2 or known < 0.7 * n:
        return [word]
    return [word[a:b] for a, b in cuts]


def split_run_on(token: str, gaz=None) -> list[str]:
    """Words an OCR engine ran together: RapidOCR's PP-OCRv4 often drops the spaces of
    English text ("EythornePostOffice", "A29Folkestone", "HARROWONTHEHILLKEBABHOUSE").
    Splits at case changes and letter/digit boundaries (keeping road numbers whole),
    then splits all-caps run-ons into known words. Tokens that are already a known
    word, place or road number are returned as they are."""
    gaz = gaz or uk_gazetteer()
    if not token or is_road_number(token) or place_key(token) in SIGN_WORDS or place_key(token) in gaz.places:
        return [token] if token else []
    if sum(ch.isdigit() for ch in token) <= 2 and sum(ch.isalpha() for ch in token) >= 3:
        for table in _OCR_DIGITS:  # "Schoo1", "0xford": a misread letter, not a number
            fixed_key = place_key(token.translate(table))
            if fixed_key in SIGN_WORDS or fixed_key in gaz.places:
                return [token]
    pieces: list[str] = []
    for part in _CASE_SPLIT.split(token):
        runs = _ALNUM_RUNS.findall(part)
        if len(runs) >= 2 and runs[0].upper() in ("A", "B", "M") and runs[1].isdigit():
            runs = [runs[0] + runs[1]] + runs[2:]  # "A29Folkestone": the road number stays whole
        pieces.extend(runs)
    out: list[str] = []
    lexicon = _lexicon()
    for piece in pieces:
        if piece.lower().endswith("co-op") and len(piece) > 5:  # "PORTREECO-OP"
            piece, tail = piece[:-5], piece[-5:]
        else:
            tail = ""
        caps = len(piece) >= 6 and piece.isupper()
        title = len(piece) >= 10 and piece[0].isupper() and piece[1:].islower()  # "Pleasedrivecarefully"
        if piece.isalpha() and (caps or title) and place_key(piece) not in lexicon:
            out.extend(_segment_caps(piece, lexicon))
        else:
            out.append(piece)
        if tail:
            out.append(tail)
    return [p for p in out if p]


@functools.lru_cache(maxsize=1)
def _lexicon() -> frozenset[str]:
    """Words a run-on may be split into: sign words, words of place names, connectors."""
    return frozenset(SIGN_WORDS | uk_gazetteer().words | _CONNECTORS | {w for w in COMMON_WORD_PLACES if " " not in w})


def _classify_item(item: str, gaz) -> list[list[_Tok]]:
    """The classified tokens of one OCR item, per segment (overlays split an item)."""
    segments = []
    for segment in strip_overlays(item).split("|"):
        raw = [piece for t in segment.split() for piece in split_run_on(_normalise_token(t), gaz)]
        toks = [_classify(t, gaz) for t in raw if t]
        # Multi-word places ("Milton Keynes", "Bury St Edmunds") override the word classes.
        words = [t.text for t in toks]
        for start, end, _name in gaz.find(" ".join(words), fuzzy=False):
            if end - start > 1:
                for t in toks[start:end]:
                    t.kind = "place"
        if toks:
            segments.append(toks)
    return segments


def _anchored(toks: list[_Tok]) -> bool:
    return any(t.kind in ("place", "road", "vocab") for t in toks)


def _kept(toks: list[_Tok], anchored: bool) -> list[str]:
    keep = [t.kind in ("place", "road", "vocab") or (t.kind == "name" and anchored) for t in toks]
    for i, t in enumerate(toks):  # connectors only inside a kept phrase: "Newcastle upon Tyne"
        if t.kind == "connector" and 0 < i < len(toks) - 1 and keep[i - 1] and keep[i + 1]:
            keep[i] = True
    return [t.text for t, k in zip(toks, keep) if k]


def clean_ocr_text(words: Iterable[str]) -> str:
    """The seed's cleaning: drop overlays and noise from OCR output, keep place-like
    and sign words. ``words`` are the OCR strings in reading order; the result is one
    space-separated string (empty when nothing is kept).

    A capitalised word that is neither a place nor a sign word ("Ninian") is kept only
    next to an anchor (a place, road number or sign word) in its own text segment or
    in the OCR item just before or after it (signs are often read line by line)."""
    gaz = uk_gazetteer()
    items = [_classify_item(item, gaz) for item in (words or []) if isinstance(item, str) and item.strip()]
    kept: list[str] = []
    for i, segments in enumerate(items):
        whole_item = len(segments) == 1  # an item cut by an overlay does not borrow anchors
        neighbours = [items[j] for j in (i - 1, i + 1) if 0 <= j < len(items) and len(items[j]) == 1]
        near = whole_item and any(_anchored(n[0]) for n in neighbours)
        for toks in segments:
            for tok in _kept(toks, _anchored(toks) or near):
                if kept and kept[-1].lower() == tok.lower():
                    continue  # the same word read twice in a row
                kept.append(tok)
    # Belt and braces: the only digits that may survive are in road numbers.
    kept = [t for t in kept if is_road_number(t) or not any(ch.isdigit() for ch in t)]
    text = " ".join(kept)
    if contains_coordinates(text):  # pragma: no cover - unreachable by construction
        text = " ".join(t for t in kept if not any(ch.isdigit() for ch in t))
    return text


def find_place_names(text: str) -> list[str]:
    """UK place names (canonical gazetteer spelling) found in ``text``, each once, in
    order of first appearance. Single everyday words that are also places ("Street",
    "Bridge", "Bath") count only inside a multi-word name."""
    if not text:
        return []
    seen: list[str] = []
    for name in uk_gazetteer().find_names(strip_overlays(text).replace("|", " ")):
        if name not in seen:
            seen.append(name)
    return seen


def _alnum(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def read_matches(read: Iterable, truths: Iterable[str], *, split_truths: bool = True, min_confidence: float = 0.5,
                 min_chars: int = 3) -> list[tuple[str, set[int]]]:
    """Which read words say one of ``truths``: (the word read, indices of the truths it matches)
    for every word (``OcrWord``) read with confidence >= ``min_confidence`` whose letters and
    digits (3+) are inside a truth or hold it, case and punctuation ignored. With ``split_truths``
    each word of a truth is a truth too. The one rule by which the blur's check, its benchmarks
    and the real-photo benchmark decide that text is still readable."""
    refs = []
    for i, truth in enumerate(truths):
        for part in {truth, *(truth.split() if split_truths else ())}:
            norm = _alnum(part)
            if len(norm) >= min_chars:
                refs.append((norm, i))
    out = []
    for word in read:
        token = _alnum(word.text)
        if len(token) < min_chars or word.confidence < min_confidence:
            continue
        hit = {i for norm, i in refs if token in norm or norm in token}
        if hit:
            out.append((word.text, hit))
    return out
