"""Scene and text renderer for the synthetic world.

A scene is planned first (every random draw, from a generator seeded by
(world seed, image id)), then drawn with OpenCV. Its look depends on where the
image is: regional palette (Scotland, Wales, Northern Ireland, north England,
Midlands, south England) with a tint seeded by the nearest place (never by the
coordinates themselves), a skyline seeded by the sequence, sea on the horizon near
the coast, hills from the elevation field, and more and taller buildings in
bigger places. Texts (place-name signs, road numbers, shop names, dashcam
overlays) are drawn on patches, rotated, and composited; every text drawn is
recorded as a TextBox whose polygon bounds its drawn pixels (1 px margin), so
blur coverage can be measured against ground truth.

`plan_texts` runs only the planning (no scene pixels, no JPEG) and returns the
same TextBoxes as `render_image`.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

import cv2
import numpy as np

TEXT_KINDS = ("place_sign", "road_sign", "shop_sign", "dashcam")
JPEG_QUALITY = 90

# name, cv2 constant, weight (how often it is picked)
FONTS = (
    ("HERSHEY_SIMPLEX", cv2.FONT_HERSHEY_SIMPLEX, 4.0),
    ("HERSHEY_DUPLEX", cv2.FONT_HERSHEY_DUPLEX, 3.0),
    ("HERSHEY_COMPLEX", cv2.FONT_HERSHEY_COMPLEX, 2.0),
    ("HERSHEY_TRIPLEX", cv2.FONT_HERSHEY_TRIPLEX, 2.0),
    ("HERSHEY_PLAIN", cv2.FONT_HERSHEY_PLAIN, 1.5),
    ("HERSHEY_COMPLEX_SMALL", cv2.FONT_HERSHEY_COMPLEX_SMALL, 1.5),
    ("HERSHEY_SCRIPT_SIMPLEX", cv2.FONT_HERSHEY_SCRIPT_SIMPLEX, 0.7),
)
_FONT_P = np.array([f[2] for f in FONTS]) / sum(f[2] for f in FONTS)


@dataclass(frozen=True)
class TextBox:
    """One text the renderer drew.

    polygon: 4 (x, y) corners of the tight box around the drawn text pixels (plus
    a 1 px margin), in pixel coordinates of the rendered image, ordered
    top-left, top-right, bottom-right, bottom-left in the text's own frame.
    angle: rotation in degrees, counter-clockwise. contrast: |luma(text) -
    luma(background)| / 255 (low values are hard to read).
    """

    text: str
    kind: str
    polygon: tuple[tuple[float, float], ...]
    angle: float
    font_scale: float
    contrast: float
    font: str = ""

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        xs = [p[0] for p in self.polygon]
        ys = [p[1] for p in self.polygon]
        return min(xs), min(ys), max(xs), max(ys)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["polygon"] = [list(p) for p in self.polygon]
        return d


@dataclass(frozen=True)
class Rendered:
    jpeg: bytes
    texts: list[TextBox]


# --- palettes (RGB) -------------------------------------------------------------

def _load_palettes() -> dict:
    """Regional colours (data/palettes.csv): one (r, g, b) per part, or a tuple of them where
    the part has an index (building and roof variants)."""
    import csv
    from importlib.resources import files

    out: dict = {}
    with files("geo_assets.data").joinpath("palettes.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            colour = (int(row["r"]), int(row["g"]), int(row["b"]))
            parts = out.setdefault(row["region"], {})
            parts[row["part"]] = (*parts.get(row["part"], ()), colour) if row["index"] != "" else colour
    return out


_PALETTES = _load_palettes()
_OVERCAST = {"scotland": 0.6, "wales": 0.55, "northern_ireland": 0.55, "north_england": 0.5, "midlands": 0.4, "south_england": 0.3}

_SHOP_SUFFIXES = ("Fish Bar", "Pharmacy", "Motors", "Bakery", "Post Office", "Dental Care", "Tandoori", "Launderette",
                  "Hardware", "Kebab House", "Cafe", "News", "Butchers", "Florist", "Hair Studio", "Garage", "Chippy")
_MOTORWAYS = (
    ("M1", ((51.75, -0.4), (52.3, -1.1), (53.0, -1.3), (53.6, -1.45))),
    ("M6", ((52.5, -1.9), (53.0, -2.2), (53.6, -2.6), (54.3, -2.7), (54.85, -2.95))),
    ("M4", ((51.48, -0.6), (51.5, -1.8), (51.55, -2.6), (51.58, -3.2), (51.65, -3.9))),
    ("M5", ((52.2, -2.1), (51.6, -2.5), (51.1, -3.0), (50.75, -3.45))),
    ("M25", ((51.3, -0.3), (51.7, -0.1), (51.4, 0.2))),
    ("M62", ((53.45, -2.7), (53.6, -2.0), (53.7, -1.5), (53.72, -0.9))),
    ("M8", ((55.86, -4.3), (55.9, -3.7))), ("M74", ((55.75, -4.0), (55.3, -3.6), (55.0, -3.2))),
    ("M90", ((56.25, -3.4), (56.4, -3.4))), ("M9", ((56.0, -3.8),)), ("M11", ((51.8, 0.15), (52.1, 0.1))),
    ("M20", ((51.3, 0.6), (51.1, 1.0))), ("M3", ((51.2, -1.1), (51.3, -0.6))),
    ("M40", ((51.7, -0.9), (52.0, -1.3), (52.3, -1.7))), ("M18", ((53.5, -1.15),)), ("M27", ((50.9, -1.3),)),
    ("M53", ((53.3, -3.0),)), ("M56", ((53.35, -2.5),)), ("M60", ((53.45, -2.25),)), ("M61", ((53.6, -2.5),)),
    ("M65", ((53.8, -2.3),)), ("M180", ((53.55, -0.6),)), ("A1(M)", ((52.5, -0.3), (54.5, -1.55))),
    ("M32", ((51.5, -2.55),)), ("M50", ((52.0, -2.4),)), ("M54", ((52.7, -2.3),)), ("M69", ((52.5, -1.3),)),
    ("M80", ((55.95, -4.0),)), ("M73", ((55.85, -4.05),)), ("M77", ((55.75, -4.4),)),
    ("M1", ((54.5, -6.1), (54.45, -6.5))), ("M2", ((54.7, -6.1),)),
)


def ascii_text(text: str) -> str:
    """Hershey fonts draw ASCII only: fold accents and curly quotes."""
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _rgb2bgr(c) -> tuple[int, int, int]:
    return (int(c[2]), int(c[1]), int(c[0]))


def _luma(c_rgb) -> float:
    return 0.299 * c_rgb[0] + 0.587 * c_rgb[1] + 0.114 * c_rgb[2]


def _clip_rgb(c) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(v)))) for v in c)


def _mix(a, b, t: float):
    return tuple(x * (1 - t) + y * t for x, y in zip(a, b))


@lru_cache(maxsize=None)
def _font_px(font: int) -> int:
    """Height in px of 'H' at scale 1 (cap height), to pick scales by pixel size."""
    (_, h), _ = cv2.getTextSize("H", font, 1.0, 1)
    return max(1, h)


# --- road numbers ---------------------------------------------------------------


def _road_zone(lat: float, lon: float, admin: str) -> int:
    """First digit of A/B road numbers (the UK's road zones, roughly)."""
    if admin == "SCT":
        if lat < 56.1:
            return 7
        return 8 if lon < -4.2 else 9
    if lat > 53.3:
        if lon < -2.3:
            return 6
        if lon > -1.3:
            return 1
        return 6 if lon < -1.8 else 1
    bearing = math.degrees(math.atan2((lon + 0.12) * math.cos(math.radians(lat)), lat - 51.5)) % 360
    if bearing >= 340 or bearing < 105:
        return 1
    if bearing < 225:
        return 2
    if bearing < 275:
        return 3
    if bearing < 305:
        return 4
    if bearing < 325:
        return 5
    return 6


def _nearest_motorway(lat: float, lon: float) -> tuple[str, float]:
    best, best_km = "", 1e9
    for name, pts in _MOTORWAYS:
        for la, lo in pts:
            km = 111.2 * math.hypot(lat - la, (lon - lo) * math.cos(math.radians(lat)))
            if km < best_km:
                best, best_km = name, km
    return best, best_km


def _road_number(meta, rng: np.random.Generator) -> tuple[str, str]:
    """(number, style) with style in motorway | primary | local."""
    motorway, km = _nearest_motorway(meta.lat, meta.lon)
    if km < 30 and rng.random() < 0.35:
        return motorway, "motorway"
    if meta.admin == "NIR":
        if rng.random() < 0.7:
            return f"A{int(rng.integers(1, 56))}", "primary" if rng.random() < 0.5 else "local"
        return f"B{int(rng.integers(1, 200))}", "local"
    zone = _road_zone(meta.lat, meta.lon, meta.admin)
    if rng.random() < 0.65:
        digits = int(rng.choice([0, 1, 2, 3], p=[0.1, 0.35, 0.35, 0.2]))
        tail = "".join(str(int(d)) for d in rng.integers(0, 10, digits))
        return f"A{zone}{tail}", "primary" if rng.random() < 0.6 else "local"
    digits = int(rng.choice([2, 3], p=[0.4, 0.6]))
    tail = "".join(str(int(d)) for d in rng.integers(0, 10, digits))
    return f"B{zone}{tail}", "local"


# --- text patches ---------------------------------------------------------------


@dataclass
class _Line:
    text: str
    font_name: str
    font: int
    scale: float
    thick: int
    fg: tuple  # RGB


@dataclass
class _Stamp:
    """A rotated patch to composite at (x, y), with the texts it carries."""

    patch: np.ndarray  # BGR float32, premultiplied by alpha
    alpha: np.ndarray  # float32 0..1
    text_mask: np.ndarray  # uint8, text pixels only
    x: int
    y: int
    boxes: list[TextBox]
    pole: tuple | None = None  # (x, y_top, y_bottom, thickness) drawn before the stamp
    over_noise: bool = False  # dashcam overlays are drawn after the sensor noise


def _line_size(line: _Line) -> tuple[int, int, int]:
    (w, h), base = cv2.getTextSize(line.text, line.font, line.scale, line.thick)
    return w, h, base


def _make_patch(lines: list[_Line], bg_rgb, pad: int, border_rgb=None, board: bool = True):
    """Draw lines centred on a board (or on nothing); per-line masks and tight boxes."""
    sizes = [_line_size(l) for l in lines]
    gap = max(2, pad // 2)
    heights = [h + base + 2 * l.thick for (w, h, base), l in zip(sizes, lines)]
    width = max(w + 2 * l.thick for (w, h, base), l in zip(sizes, lines)) + 2 * pad
    height = sum(heights) + gap * (len(lines) - 1) + 2 * pad
    patch = np.zeros((height, width, 3), np.uint8)
    if board:
        patch[:] = _rgb2bgr(bg_rgb)
        if border_rgb is not None:
            bt = max(1, pad // 4)
            cv2.rectangle(patch, (0, 0), (width - 1, height - 1), _rgb2bgr(border_rgb), bt)
    masks, boxes = [], []
    y = pad
    for line, (w, h, base), lh in zip(lines, sizes, heights):
        x = (width - w) // 2
        org = (x, y + line.thick + h)
        m = np.zeros((height, width), np.uint8)
        cv2.putText(m, line.text, org, line.font, line.scale, 255, line.thick, cv2.LINE_AA)
        cv2.putText(patch, line.text, org, line.font, line.scale, _rgb2bgr(line.fg), line.thick, cv2.LINE_AA)
        bx, by, bw, bh = cv2.boundingRect(m)
        masks.append(m)
        boxes.append((bx, by, bx + bw - 1, by + bh - 1))
        y += lh + gap
    alpha = np.ones((height, width), np.float32) if board else (np.maximum.reduce(masks).astype(np.float32) / 255.0)
    return patch, alpha, masks, boxes


def _rotate(patch, alpha, masks, boxes, angle: float):
    """Rotate about the centre onto an expanded canvas; return rotated arrays, the
    union text mask, and each box's 4 corners (1 px margin) in canvas coordinates."""
    h, w = alpha.shape
    a = math.radians(angle)
    cw = int(math.ceil(abs(w * math.cos(a)) + abs(h * math.sin(a)))) + 2
    ch = int(math.ceil(abs(w * math.sin(a)) + abs(h * math.cos(a)))) + 2
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    m[0, 2] += (cw - w) / 2.0
    m[1, 2] += (ch - h) / 2.0
    flags = cv2.INTER_LINEAR
    pm = patch.astype(np.float32) * alpha[..., None]
    rp = cv2.warpAffine(pm, m, (cw, ch), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    ra = cv2.warpAffine(alpha, m, (cw, ch), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    union = np.maximum.reduce(masks) if len(masks) > 1 else masks[0]
    rm = cv2.warpAffine(union, m, (cw, ch), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    corners = []
    for x0, y0, x1, y1 in boxes:
        pts = np.array([[x0 - 1, y0 - 1], [x1 + 1, y0 - 1], [x1 + 1, y1 + 1], [x0 - 1, y1 + 1]], np.float64)
        corners.append(pts @ m[:, :2].T + m[:, 2])
    return rp, ra, rm, corners


def _contrast_fg(bg_rgb, fg_rgb, target: float | None):
    """Text colour: nominal fg, or pulled towards bg so |luma diff|/255 == target."""
    diff = abs(_luma(fg_rgb) - _luma(bg_rgb)) / 255.0
    if target is None or diff <= target or diff == 0:
        fg = fg_rgb
    else:
        fg = _mix(bg_rgb, fg_rgb, target / diff)
    fg = _clip_rgb(fg)
    return fg, round(abs(_luma(fg) - _luma(bg_rgb)) / 255.0, 3)


def _pick_font(rng: np.random.Generator) -> tuple[str, int]:
    i = int(rng.choice(len(FONTS), p=_FONT_P))
    name, font, _ = FONTS[i]
    if rng.random() < 0.1 and "SCRIPT" not in name:
        return name + "|ITALIC", font | cv2.FONT_ITALIC
    return name, font


def _size_px(rng: np.random.Generator, s: float) -> float:
    """Cap height in px: large, medium, or small and hard to read."""
    u = rng.random()
    if u < 0.3:
        px = rng.uniform(22, 40)
    elif u < 0.75:
        px = rng.uniform(12, 22)
    else:
        px = rng.uniform(6, 12)
    return px * s


# --- planning -------------------------------------------------------------------


@dataclass
class _Scene:
    width: int
    height: int
    s: float
    horizon: float
    sky_top: tuple
    sky_bottom: tuple
    light: float
    pal: dict
    grass: tuple
    field_col: tuple
    hill: tuple
    skyline: np.ndarray  # (n, 2) points
    sea: tuple | None  # (x0, x1, depth, colour, sand colour or None)
    fields: list = field(default_factory=list)  # (polygon, colour)
    road: tuple = ()  # (polygon, colour, vx, vy, bottom centre)
    road_lines: list = field(default_factory=list)  # (p0, p1, colour, thickness)
    trees: list = field(default_factory=list)  # (x, y, r, colour)
    buildings: list = field(default_factory=list)  # dicts
    lamps: list = field(default_factory=list)
    noise_amp: float = 5.0
    noise_seed: int = 0
    dash_strip: tuple | None = None  # (y0, alpha)


def _unit_hashes(key: str, k: int) -> list[float]:
    """k numbers in [0, 1) from a SHA-256 of `key` (stable across processes)."""
    digest = hashlib.sha256(key.encode()).digest()
    return [int.from_bytes(digest[4 * i : 4 * i + 4], "big") / 2.0**32 for i in range(k)]


def _image_rng(meta, seed: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(meta.id) & 0xFFFFFFFF, int(meta.id) >> 32, 7])


def _plan_scene(meta, rng: np.random.Generator, W: int, H: int) -> _Scene:
    s = min(W / 640.0, H / 480.0)
    pal = _PALETTES.get(meta.region, _PALETTES["midlands"])
    dt = datetime.fromtimestamp(meta.captured_at / 1000, tz=timezone.utc)
    hour = dt.hour + dt.minute / 60
    month = dt.month
    light = 1.0 - 0.3 * min(1.0, max(0.0, abs(hour - 13.0) - 4.0) / 4.0)
    if month in (11, 12, 1):
        light *= 0.9
    overcast = rng.random() < _OVERCAST.get(meta.region, 0.45)
    sky = pal["sky"] if overcast else pal["clear"]
    sky_top = _mix(sky, (60, 80, 120) if not overcast else (110, 115, 125), 0.35)
    sky_bottom = _mix(sky, (235, 235, 235), 0.35)
    # Local character (the tint of grass and fields) is seeded by the nearest place,
    # not computed from lat/lon: a model must learn places, not read coordinates.
    place_u = _unit_hashes(f"place:{meta.place}", 3)
    tint = tuple(9 * math.sin(2 * math.pi * u) for u in place_u)
    grass = tuple(g + t for g, t in zip(pal["grass"], tint))
    field_col = tuple(g + t for g, t in zip(pal["field"], tint))
    if month in (12, 1, 2):
        grass = _mix(grass, (128, 118, 88), 0.3)
        field_col = _mix(field_col, (120, 105, 80), 0.4)
    elif month in (9, 10, 11):
        grass = _mix(grass, (160, 130, 70), 0.15)
    hill = _mix(pal["hill"], pal["high"], meta.elevation)
    hill = _mix(hill, sky_bottom, 0.25)  # aerial perspective

    horizon = H * rng.uniform(0.40, 0.50)
    # Skyline: one phase per sequence (the same hills along one drive), turning with
    # the compass; its height follows the elevation field.
    n = 25
    xs = np.linspace(0, W, n)
    ph = 2 * math.pi * _unit_hashes(f"seq:{meta.sequence}", 1)[0] + meta.compass_angle / 57.3
    u = np.linspace(0, 1, n)
    shape = 0.55 + 0.25 * np.sin(u * 5.1 + ph) + 0.2 * np.sin(u * 11.7 + 1.7 * ph)
    amp = H * (0.02 + 0.26 * meta.elevation)
    ys = horizon - amp * np.clip(shape, 0.05, 1.2)

    sea = None
    if meta.coastal and meta.sea_bearing is not None:
        rel = ((meta.sea_bearing - meta.compass_angle + 180.0) % 360.0) - 180.0
        rel = max(-90.0, min(90.0, rel))
        cx = W / 2 + rel / 90.0 * W * 0.45
        half = W * rng.uniform(0.22, 0.45)
        x0, x1 = max(0.0, cx - half), min(float(W), cx + half)
        depth = H * rng.uniform(0.04, 0.09)
        sand = pal["sand"] if rng.random() < 0.6 else None
        sea = (x0, x1, depth, _mix(pal["sea"], sky_bottom, 0.15), sand)
        over = (xs >= x0) & (xs <= x1)
        ys = np.where(over, horizon - 1, ys)
    skyline = np.stack([xs, ys], axis=1)

    scene = _Scene(W, H, s, horizon, sky_top, sky_bottom, light, pal, grass, field_col, hill, skyline, sea)

    # Fields between horizon and road.
    gy0 = horizon + (sea[2] if sea else 0)
    for _ in range(int(rng.integers(2, 6))):
        y0 = rng.uniform(gy0, gy0 + (H - gy0) * 0.25)
        y1 = y0 + rng.uniform(4, 24) * s
        x0 = rng.uniform(-0.1, 0.8) * W
        x1 = x0 + rng.uniform(0.15, 0.5) * W
        poly = np.array([[x0, y0], [x1, y0 + rng.uniform(-3, 3) * s], [x1 + 30 * s, y1], [x0 - 30 * s, y1]])
        col = _mix(grass, field_col, rng.uniform(0.3, 1.0))
        scene.fields.append((poly, col))

    # Road in perspective.
    vx = W / 2 + rng.normal(0, W * 0.08)
    vy = horizon + 2 * s
    half_bottom = W * rng.uniform(0.28, 0.46)
    bc = W / 2 + rng.normal(0, W * 0.04)
    road_col = _mix(pal["road"], (128, 128, 128), rng.uniform(-0.3, 0.3))
    road_poly = np.array([[vx - 3 * s, vy], [vx + 3 * s, vy], [bc + half_bottom, H], [bc - half_bottom, H]])
    scene.road = (road_poly, road_col, vx, vy, bc, half_bottom)
    # centre dashes
    k = 9
    for i in range(k):
        t0 = (i + 0.2) / k
        t1 = (i + 0.6) / k
        p0 = (vx + (bc - vx) * t0 ** 2, vy + (H - vy) * t0 ** 2)
        p1 = (vx + (bc - vx) * t1 ** 2, vy + (H - vy) * t1 ** 2)
        scene.road_lines.append((p0, p1, (235, 235, 230), max(1, int(round(1 + 5 * s * t1)))))
    edge_col = (225, 190, 40) if meta.town_density > 0.35 else (235, 235, 230)
    for side in (-1, 1):
        p0 = (vx + side * 4 * s, vy)
        p1 = (bc + side * half_bottom * 0.92, H)
        scene.road_lines.append((p0, p1, edge_col, max(1, int(round(3 * s)))))

    def road_edge(y: float, side: int) -> float:
        t = (y - vy) / max(1.0, H - vy)
        return vx + (bc - vx) * t + side * (3 * s + (half_bottom - 3 * s) * t)

    # Trees (more in the countryside).
    n_trees = int(round((1 - meta.town_density) * 7 + rng.uniform(0, 3)))
    for _ in range(n_trees):
        side = -1 if rng.random() < 0.5 else 1
        t = rng.uniform(0.05, 0.8)
        y = vy + (H - vy) * t * 0.6
        edge = road_edge(y, side)
        x = edge + side * rng.uniform(10, 160) * s * (0.3 + t)
        r = (6 + 40 * t) * s * rng.uniform(0.7, 1.3)
        col = _mix((40, 90, 45), grass, rng.uniform(0, 0.4))
        scene.trees.append((x, y, r, col))

    # Buildings (more and taller in bigger places).
    n_b = int(round(meta.town_density * 9 + rng.uniform(0, 1.5)))
    tall = 1.0 + 1.6 * meta.town_density * min(1.0, math.log10(max(meta.place_population, 500)) / 6.5)
    for _ in range(n_b):
        side = -1 if rng.random() < 0.5 else 1
        t = rng.uniform(0.05, 0.9)
        base_y = vy + (H - vy) * t * 0.55
        edge = road_edge(base_y, side)
        bw = W * (0.05 + 0.16 * t) * rng.uniform(0.7, 1.3)
        bh = H * (0.06 + 0.22 * t) * rng.uniform(0.7, 1.3) * tall
        gapx = rng.uniform(4, 30) * s
        x0 = edge + gapx if side > 0 else edge - gapx - bw
        wall = rng.choice(len(pal["build"]))
        roof = rng.choice(len(pal["roof"]))
        scene.buildings.append(dict(
            t=t, x0=x0, x1=x0 + bw, y0=base_y - bh, y1=base_y, wall=pal["build"][wall], roof=pal["roof"][roof],
            gable=bool(rng.random() < 0.6 and bh < H * 0.35), rows=int(rng.integers(1, 2 + int(3 * tall))),
            cols=int(rng.integers(2, 6)), win=_mix((40, 45, 55), sky, rng.uniform(0, 0.4)),
        ))
    scene.buildings.sort(key=lambda b: b["t"])
    if meta.town_density > 0.3:
        for _ in range(int(rng.integers(1, 4))):
            side = -1 if rng.random() < 0.5 else 1
            t = rng.uniform(0.2, 0.9)
            y = vy + (H - vy) * t
            scene.lamps.append((road_edge(y, side) + side * 6 * s, y, (20 + 130 * t) * s))
    scene.noise_amp = float(rng.uniform(3.0, 7.0))
    scene.noise_seed = int(rng.integers(0, 2**31))
    return scene


def _place_stamp(rng, rp, ra, rm, corners, placed, W, H, region, margin=2):
    """Try random top-left positions inside `region` (x0, y0, x1, y1) avoiding placed rects."""
    ch, cw = ra.shape
    rx0, ry0, rx1, ry1 = region
    rx0, ry0 = max(rx0, margin), max(ry0, margin)
    rx1, ry1 = min(rx1, W - margin), min(ry1, H - margin)
    if rx1 - rx0 < cw or ry1 - ry0 < ch:
        return None
    for _ in range(12):
        x = int(rng.integers(int(rx0), int(rx1 - cw) + 1))
        y = int(rng.integers(int(ry0), int(ry1 - ch) + 1))
        rect = (x - 2, y - 2, x + cw + 2, y + ch + 2)
        if all(rect[2] <= p[0] or rect[0] >= p[2] or rect[3] <= p[1] or rect[1] >= p[3] for p in placed):
            return x, y
    return None


# Sign text that names no place (an image whose place_text is False; see world.py's
# place-text share): traffic and information signs, road signs to no named town (the road
# number still hints at the region, as real ones do), trades and pub names.
_NO_PLACE_SIGNS = (("NO ENTRY",), ("BUS STOP",), ("CAR PARK",), ("SLOW",), ("KEEP LEFT",), ("Private Road",),
                   ("Public Footpath",), ("Town Centre",), ("Please drive carefully",), ("GIVE WAY",),
                   ("SCHOOL", "Keep clear"), ("Residents only",))
_NO_PLACE_DESTINATIONS = ("Town Centre", "Ring Road", "Services", "Hospital", "Station", "Industrial Estate",
                          "Retail Park")
_NO_PLACE_SHOP_NAMES = ("Golden", "Express", "Star", "Happy", "Sunrise", "Best", "Top", "City", "Corner", "Premier")
_PUB_NAMES = ("The Red Lion", "The Crown", "The White Hart", "The Plough", "The Kings Head", "The Royal Oak",
              "The Swan", "The Bell")
_SHOP_BOARDS = ((20, 60, 40), (20, 30, 80), (150, 20, 30), (15, 15, 15), (240, 240, 235), (245, 200, 40), (90, 40, 90))


def _no_place_sign_lines(meta, kind: str, rng: np.random.Generator):
    """Like _sign_lines, with text that names no place."""
    if kind == "place_sign":
        lines = list(_NO_PLACE_SIGNS[int(rng.integers(0, len(_NO_PLACE_SIGNS)))])
        return lines, (242, 242, 238), [(20, 20, 20)] * len(lines), (20, 20, 20)
    if kind == "road_sign":
        number, style = _road_number(meta, rng)
        dest = _NO_PLACE_DESTINATIONS[int(rng.integers(0, len(_NO_PLACE_DESTINATIONS)))]
        form = int(rng.integers(0, 3))
        lines = [number] if form == 0 else ([number, f"{dest} {int(rng.integers(1, 10))}"] if form == 1 else [f"{number} {dest}"])
        if style == "motorway":
            return lines, (20, 60, 160), [(245, 245, 245)] * len(lines), (245, 245, 245)
        if style == "primary":
            return lines, (0, 95, 60), [(250, 210, 20)] + [(245, 245, 245)] * (len(lines) - 1), (245, 245, 245)
        return lines, (242, 242, 238), [(20, 20, 20)] * len(lines), (20, 20, 20)
    if rng.random() < 0.3:
        text = _PUB_NAMES[int(rng.integers(0, len(_PUB_NAMES)))]
    else:
        name = _NO_PLACE_SHOP_NAMES[int(rng.integers(0, len(_NO_PLACE_SHOP_NAMES)))]
        text = f"{name} {_SHOP_SUFFIXES[int(rng.integers(0, len(_SHOP_SUFFIXES)))]}"
    if rng.random() < 0.5:
        text = text.upper()
    bg = _SHOP_BOARDS[int(rng.integers(0, len(_SHOP_BOARDS)))]
    return [text], bg, [(245, 245, 240) if _luma(bg) < 128 else (20, 20, 20)], None


def _sign_lines(meta, kind: str, rng: np.random.Generator):
    """(lines of text, board RGB, nominal text RGB per line, border RGB)."""
    if not getattr(meta, "place_text", True):
        return _no_place_sign_lines(meta, kind, rng)
    place = ascii_text(meta.place)
    town = ascii_text(meta.nearest_town)
    if kind == "place_sign":
        bg, fg, border = (242, 242, 238), (20, 20, 20), (20, 20, 20)
        if meta.region == "wales":
            opts = [[place], ["Croeso i", place], [place, "Welcome to"], ["Croeso i " + place]]
        elif meta.region == "scotland":
            opts = [[place], ["Welcome to", place], [place.upper()], [place, "Please drive carefully"]]
            if rng.random() < 0.3:
                bg, fg, border = (30, 70, 150), (245, 245, 245), (245, 245, 245)
        else:
            opts = [[place.upper()], ["WELCOME TO", place.upper()], [place], [place, "Please drive carefully"]]
        if rng.random() < 0.12:
            bg, fg, border = (110, 60, 30), (245, 245, 240), (245, 245, 240)  # brown tourist sign
        lines = opts[int(rng.integers(0, len(opts)))]
        return lines, bg, [fg] * len(lines), border
    if kind == "road_sign":
        number, style = _road_number(meta, rng)
        miles = int(rng.integers(1, 40))
        dest = town if rng.random() < 0.7 else place
        form = int(rng.integers(0, 3))
        lines = [number] if form == 0 else ([number, f"{dest} {miles}"] if form == 1 else [f"{number} {dest}"])
        if style == "motorway":
            return lines, (20, 60, 160), [(245, 245, 245)] * len(lines), (245, 245, 245)
        if style == "primary":
            fgs = [(250, 210, 20)] + [(245, 245, 245)] * (len(lines) - 1)
            if form == 2:
                fgs = [(250, 210, 20)]
            return lines, (0, 95, 60), fgs, (245, 245, 245)
        return lines, (242, 242, 238), [(20, 20, 20)] * len(lines), (20, 20, 20)
    # shop sign
    suffix = _SHOP_SUFFIXES[int(rng.integers(0, len(_SHOP_SUFFIXES)))]
    u = rng.random()
    text = f"The {place} Arms" if u < 0.15 else (f"{place} Co-op" if u < 0.25 else f"{place} {suffix}")
    if rng.random() < 0.5:
        text = text.upper()
    boards = ((20, 60, 40), (20, 30, 80), (150, 20, 30), (15, 15, 15), (240, 240, 235), (245, 200, 40), (90, 40, 90))
    bg = boards[int(rng.integers(0, len(boards)))]
    fg = (245, 245, 240) if _luma(bg) < 128 else (20, 20, 20)
    if rng.random() < 0.3:
        fg = (230, 190, 60) if _luma(bg) < 128 else (120, 20, 20)
    return [text], bg, [fg], None


def _plan_sign(meta, kind: str, rng, scene: _Scene, placed: list, ymax: float, force_small: bool = False):
    W, H, s = scene.width, scene.height, scene.s
    lines_text, bg, fgs, border = _sign_lines(meta, kind, rng)
    font_name, font = _pick_font(rng)
    px = _size_px(rng, s) if not force_small else rng.uniform(7, 11) * s
    low_contrast = rng.random() < 0.2
    target = rng.uniform(0.12, 0.3) if low_contrast else None
    scale = px / _font_px(font)
    thick = max(1, int(round(scale * rng.uniform(0.9, 2.0))))
    if "PLAIN" in font_name or "SMALL" in font_name:
        thick = max(1, min(thick, 2))
    # Fit to 90% of the width.
    widest = max(cv2.getTextSize(t, font, scale, thick)[0][0] for t in lines_text)
    limit = W * 0.9 - 16 * s
    if widest > limit:
        scale *= limit / widest
        thick = max(1, min(thick, int(round(scale * 1.5))))
    lines = []
    contrasts = []
    for t, fg in zip(lines_text, fgs):
        fg2, c = _contrast_fg(bg, fg, target)
        lines.append(_Line(t, font_name, font, scale, thick, fg2))
        contrasts.append(c)
    pad = max(3, int(round(scale * _font_px(font) * 0.35)))
    patch, alpha, masks, boxes = _make_patch(lines, bg, pad, border)
    angle = float(np.clip(rng.normal(0, 6), -15, 15))
    rp, ra, rm, corners = _rotate(patch, alpha, masks, boxes, angle)
    ch, cw = ra.shape
    if kind == "shop_sign" and scene.buildings:
        cands = [b for b in scene.buildings if (b["x1"] - b["x0"]) > cw and (b["y1"] - b["y0"]) > ch * 1.5]
        if cands:
            b = cands[int(rng.integers(0, len(cands)))]
            region = (b["x0"], b["y0"], b["x1"], min(b["y0"] + (b["y1"] - b["y0"]) * 0.6, ymax))
            pos = _place_stamp(rng, rp, ra, rm, corners, placed, W, H, region)
            if pos is not None:
                return _finish_stamp(kind, lines, contrasts, angle, rp, ra, rm, corners, pos, None)
    region = (0, H * 0.12, W, min(ymax, H * 0.92))
    pos = _place_stamp(rng, rp, ra, rm, corners, placed, W, H, region)
    if pos is None:
        return None
    pole = None
    if kind != "shop_sign":
        px_ = pos[0] + cw / 2
        ground = min(ymax, max(pos[1] + ch + 4 * s, scene.horizon + (H - scene.horizon) * 0.35))
        pole = (px_, pos[1] + ch / 2, ground, max(1, int(round(3 * s))))
    return _finish_stamp(kind, lines, contrasts, angle, rp, ra, rm, corners, pos, pole)


def _finish_stamp(kind, lines, contrasts, angle, rp, ra, rm, corners, pos, pole) -> _Stamp:
    x, y = pos
    boxes = []
    for line, c, pts in zip(lines, contrasts, corners):
        poly = tuple((round(float(px) + x, 2), round(float(py) + y, 2)) for px, py in pts)
        boxes.append(TextBox(line.text, kind, poly, round(angle, 3), round(line.scale, 4), c, line.font_name))
    return _Stamp(rp, ra, rm, x, y, boxes, pole)


def _plan_dashcam(meta, rng, scene: _Scene) -> tuple[list[_Stamp], float]:
    W, H, s = scene.width, scene.height, scene.s
    dt = datetime.fromtimestamp(meta.captured_at / 1000, tz=timezone.utc)
    if rng.random() < 0.7:
        stamp = dt.strftime("%d/%m/%Y %I:%M:%S %p")
    else:
        stamp = dt.strftime("%Y/%m/%d %H:%M:%S")
    speed = int(rng.integers(3, 71))
    speed_text = f"{speed} MPH" if rng.random() < 0.8 else f"{int(speed * 1.609)} KM/H"
    items = [meta.camera_make.upper(), stamp, f"{meta.lat:.5f} {meta.lon:.5f}", speed_text]
    if rng.random() < 0.3:
        items.append(meta.creator)
    font_name, font = ("HERSHEY_SIMPLEX", cv2.FONT_HERSHEY_SIMPLEX) if rng.random() < 0.5 else (
        ("HERSHEY_DUPLEX", cv2.FONT_HERSHEY_DUPLEX) if rng.random() < 0.5 else ("HERSHEY_PLAIN", cv2.FONT_HERSHEY_PLAIN))
    px = H * 0.026 * rng.uniform(0.8, 1.25)
    scale = px / _font_px(font)
    thick = 1 if px < 14 * s or "PLAIN" in font_name else 2
    fg = (250, 250, 250) if rng.random() < 0.75 else (250, 225, 60)
    gap = 16 * s
    widths = [cv2.getTextSize(t, font, scale, thick)[0][0] + 2 * thick + 4 for t in items]
    total = sum(widths) + gap * (len(items) - 1)
    if total > W - 12 * s:
        f = (W - 12 * s) / total
        scale *= f
        widths = [cv2.getTextSize(t, font, scale, thick)[0][0] + 2 * thick + 4 for t in items]
        gap *= f
    strip_alpha = float(rng.uniform(0.45, 0.8))
    strip_h = int(round(px * 2.2)) + 6
    y0 = H - strip_h
    contrast = round(abs(_luma(fg) - (1 - strip_alpha) * 110.0) / 255.0, 3)
    stamps = []
    x = 6 * s
    for t, wdt in zip(items, widths):
        line = _Line(t, font_name, font, scale, thick, fg)
        patch, alpha, masks, boxes = _make_patch([line], (0, 0, 0), 2, None, board=False)
        ph, pw = alpha.shape
        xi = int(round(x))
        yi = int(round(y0 + (strip_h - ph) / 2))
        if xi + pw > W - 1:
            break
        rp = patch.astype(np.float32) * alpha[..., None]
        x0, y0b, x1, y1 = boxes[0]
        corners = [np.array([[x0 - 1, y0b - 1], [x1 + 1, y0b - 1], [x1 + 1, y1 + 1], [x0 - 1, y1 + 1]], np.float64)]
        st = _finish_stamp("dashcam", [line], [contrast], 0.0, rp, alpha, masks[0], corners, (xi, yi), None)
        st.over_noise = True
        stamps.append(st)
        x += wdt + gap
    scene.dash_strip = (y0, strip_alpha)
    return stamps, float(y0)


def _plan(meta, seed: int, W: int, H: int):
    if W < 16 or H < 16:
        raise ValueError(f"image size {W}x{H} is too small to render")
    rng = _image_rng(meta, seed)
    scene = _plan_scene(meta, rng, W, H)
    trng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(meta.id) & 0xFFFFFFFF, int(meta.id) >> 32, 11])
    stamps: list[_Stamp] = []
    ymax = float(H)
    if meta.has_dashcam:
        dash, ymax = _plan_dashcam(meta, trng, scene)
        stamps.extend(dash)
        ymax -= 2
    if meta.has_sign:
        n_signs = 1 + int(trng.random() < 0.45) + int(trng.random() < 0.15)
        kinds = ["place_sign", "road_sign", "shop_sign"]
        p = np.array([0.4, 0.35, 0.25]) if scene.buildings else np.array([0.55, 0.45, 0.0])
        placed: list[tuple] = []
        n_placed = 0
        for i in range(n_signs):
            kind = kinds[int(trng.choice(3, p=p / p.sum()))]
            st = _plan_sign(meta, kind, trng, scene, placed, ymax)
            if st is None and n_placed == 0:
                for _ in range(6):  # has_sign promises at least one sign
                    st = _plan_sign(meta, kind, trng, scene, placed, ymax, force_small=True)
                    if st is not None:
                        break
            if st is None:
                continue
            ch, cw = st.alpha.shape
            placed.append((st.x - 2, st.y - 2, st.x + cw + 2, st.y + ch + 2))
            stamps.append(st)
            n_placed += 1
    return scene, stamps


# --- drawing --------------------------------------------------------------------


def _c(rgb, light: float = 1.0):
    return _rgb2bgr(_clip_rgb(tuple(v * light for v in rgb)))


def _draw_scene(scene: _Scene) -> np.ndarray:
    W, H, L = scene.width, scene.height, scene.light
    img = np.empty((H, W, 3), np.uint8)
    hz = int(round(scene.horizon))
    # sky gradient
    t = np.linspace(0.0, 1.0, max(1, hz))[:, None]
    top = np.array(_c(scene.sky_top, L), np.float32)
    bot = np.array(_c(scene.sky_bottom, L), np.float32)
    img[:hz] = (top * (1 - t) + bot * t)[:, None, :].astype(np.uint8)
    img[hz:] = _c(scene.grass, L)
    # hills
    pts = np.vstack([scene.skyline, [[W, hz + 2], [0, hz + 2]]]).astype(np.int32)
    cv2.fillPoly(img, [pts], _c(scene.hill, L), cv2.LINE_AA)
    # sea band
    if scene.sea is not None:
        x0, x1, depth, col, sand = scene.sea
        cv2.rectangle(img, (int(x0), hz - 1), (int(x1), int(hz + depth)), _c(col, L), -1)
        if sand is not None:
            cv2.rectangle(img, (int(x0), int(hz + depth)), (int(x1), int(hz + depth * 1.4)), _c(sand, L), -1)
    for poly, col in scene.fields:
        cv2.fillPoly(img, [poly.astype(np.int32)], _c(col, L), cv2.LINE_AA)
    road_poly, road_col = scene.road[0], scene.road[1]
    cv2.fillPoly(img, [road_poly.astype(np.int32)], _c(road_col, L), cv2.LINE_AA)
    for p0, p1, col, th in scene.road_lines:
        cv2.line(img, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), _c(col, L), th, cv2.LINE_AA)
    for x, y, r, col in scene.trees:
        cv2.line(img, (int(x), int(y)), (int(x), int(y - r)), _c((80, 60, 40), L), max(1, int(r / 6)))
        cv2.circle(img, (int(x), int(y - r * 1.4)), int(max(2, r)), _c(col, L), -1, cv2.LINE_AA)
    for b in scene.buildings:
        x0, x1, y0, y1 = int(b["x0"]), int(b["x1"]), int(b["y0"]), int(b["y1"])
        cv2.rectangle(img, (x0, y0), (x1, y1), _c(b["wall"], L), -1)
        if b["gable"]:
            roof = np.array([[x0 - 2, y0], [x1 + 2, y0], [(x0 + x1) // 2, int(y0 - (x1 - x0) * 0.35)]], np.int32)
            cv2.fillPoly(img, [roof], _c(b["roof"], L), cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x0, y0), (x1, y0 + max(2, (y1 - y0) // 14)), _c(b["roof"], L), -1)
        rows, cols = b["rows"], b["cols"]
        bw, bh = x1 - x0, y1 - y0
        ww, wh = bw / (cols * 2 + 1), bh / (rows * 2 + 1.5)
        if ww >= 2 and wh >= 2:
            for r in range(rows):
                for c in range(cols):
                    wx = int(x0 + ww * (2 * c + 1))
                    wy = int(y0 + wh * (2 * r + 1))
                    cv2.rectangle(img, (wx, wy), (int(wx + ww), int(wy + wh)), _c(b["win"], L), -1)
    for x, y, h in scene.lamps:
        cv2.line(img, (int(x), int(y)), (int(x), int(y - h)), _c((60, 62, 66), L), max(1, int(2 * scene.s)))
    return img


def _composite(img: np.ndarray, st: _Stamp, mask: np.ndarray | None) -> None:
    ch, cw = st.alpha.shape
    H, W = img.shape[:2]
    x0, y0 = max(0, st.x), max(0, st.y)
    x1, y1 = min(W, st.x + cw), min(H, st.y + ch)
    if x1 <= x0 or y1 <= y0:
        return
    sx, sy = x0 - st.x, y0 - st.y
    a = st.alpha[sy:sy + (y1 - y0), sx:sx + (x1 - x0), None]
    p = st.patch[sy:sy + (y1 - y0), sx:sx + (x1 - x0)]
    roi = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.clip(roi * (1 - a) + p, 0, 255).astype(np.uint8)
    if mask is not None:
        m = st.text_mask[sy:sy + (y1 - y0), sx:sx + (x1 - x0)]
        np.maximum(mask[y0:y1, x0:x1], m, out=mask[y0:y1, x0:x1])


def render_pixels(meta, seed: int, width: int = 640, height: int = 480, with_mask: bool = False):
    """(BGR uint8 image, texts, text-pixel mask or None)."""
    scene, stamps = _plan(meta, seed, int(width), int(height))
    img = _draw_scene(scene)
    mask = np.zeros(img.shape[:2], np.uint8) if with_mask else None
    for st in stamps:
        if st.pole is not None:
            x, yt, yb, th = st.pole
            cv2.line(img, (int(x), int(yt)), (int(x), int(yb)), _c((90, 92, 96), scene.light), th)
    for st in stamps:
        if not st.over_noise:
            _composite(img, st, mask)
    noise = np.random.default_rng(scene.noise_seed).standard_normal((img.shape[0], img.shape[1]), dtype=np.float32)
    noisy = img.astype(np.float32) + (noise * scene.noise_amp)[..., None]
    img = np.clip(noisy, 0, 255).astype(np.uint8)
    if scene.dash_strip is not None:
        y0, a = scene.dash_strip
        yi = int(y0)
        img[yi:] = (img[yi:].astype(np.float32) * (1 - a)).astype(np.uint8)
    for st in stamps:
        if st.over_noise:
            _composite(img, st, mask)
    texts = [b for st in stamps for b in st.boxes]
    return img, texts, mask


def encode_jpeg(img: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def render_image(meta, seed: int, width: int = 640, height: int = 480) -> Rendered:
    img, texts, _ = render_pixels(meta, seed, width, height)
    return Rendered(encode_jpeg(img), texts)


def plan_texts(meta, seed: int, width: int = 640, height: int = 480) -> list[TextBox]:
    _, stamps = _plan(meta, seed, int(width), int(height))
    return [b for st in stamps for b in st.boxes]
