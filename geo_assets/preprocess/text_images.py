"""Benchmark and test images with known text: cv2.putText in several Hershey fonts,
sizes 0.4-2.0, rotations up to 15 degrees, high and low contrast (some on sign
plates, some dashcam overlays), on a textured gradient background at 640x480.
Every drawn string's ground-truth polygon (the rotated box around its ink, 4
points) is recorded, so blur coverage and post-blur readability can be measured
without the synthetic world."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FONTS = [
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_SIMPLEX | cv2.FONT_ITALIC,
]

WORDS = [
    "Glasgow", "High Street", "A57", "M6", "B1167", "Station Road", "Church Lane", "St Ninian High School",
    "Leicester", "Peterborough", "Bakery", "Royal Hotel", "Bridge St", "Market Square", "Kings Arms Inn",
    "Manchester 12", "Oxford", "Park Lane", "School", "Cambridge", "North Road", "Tesco", "Co-op",
    "Bus Stop", "Keep Left", "Car Park", "Sheffield", "York", "Harrogate", "Mill Lane", "Post Office",
]
OVERLAYS = ["GARMIN 20/12/2021 09:08:49 AM", "55.79857 -4.30273 13 MPH", "NEXTBASE 2023-05-01 14:22", "40km/h"]


@dataclass
class DrawnText:
    text: str
    polygon: list[list[float]]
    font: int
    size: float
    angle: float
    contrast: float


@dataclass
class TextImage:
    image_bgr: np.ndarray
    texts: list[DrawnText]


def background(rng: np.random.Generator, w: int = 640, h: int = 480) -> np.ndarray:
    """Sky/road gradient + noise + a few blocks and lines: enough texture to confuse a detector a bit."""
    top = rng.integers(90, 220, 3)
    bottom = rng.integers(30, 160, 3)
    t = np.linspace(0.0, 1.0, h)[:, None, None]
    img = (top[None, None, :] * (1 - t) + bottom[None, None, :] * t) * np.ones((1, w, 1))
    img += rng.normal(0, 8, (h, w, 3))
    for _ in range(rng.integers(3, 8)):  # buildings, hedges
        x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(h // 4, h - 40))
        x1, y1 = x0 + int(rng.integers(40, 240)), y0 + int(rng.integers(30, 160))
        cv2.rectangle(img, (x0, y0), (x1, y1), rng.integers(20, 235, 3).tolist(), -1)
    for _ in range(rng.integers(2, 6)):  # kerbs, wires
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, rng.integers(0, 255, 3).tolist(), int(rng.integers(1, 4)))
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)
    return img


def _draw_one(img: np.ndarray, occupied: np.ndarray, rng: np.random.Generator, text: str, *,
              font: int, size: float, angle: float, low_contrast: bool, plate: bool) -> DrawnText | None:
    h, w = img.shape[:2]
    thickness = 1 if size < 0.9 else int(rng.integers(1, 3))
    (tw, th), base = cv2.getTextSize(text, font, size, thickness)
    pad = 2
    cw, ch = tw + 2 * pad, th + base + 2 * pad
    if cw >= w - 20 or ch >= h - 20:
        return None
    # Text ink on a transparent canvas, then rotated into place.
    ink = np.zeros((ch, cw), np.uint8)
    cv2.putText(ink, text, (pad, pad + th), font, size, 255, thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(ink)
    if len(xs) == 0:
        return None
    rad = np.deg2rad(angle)
    half_w = int(np.ceil((abs(cw * np.cos(rad)) + abs(ch * np.sin(rad))) / 2)) + 8
    half_h = int(np.ceil((abs(cw * np.sin(rad)) + abs(ch * np.cos(rad))) / 2)) + 8
    if 2 * half_w >= w - 4 or 2 * half_h >= h - 4:
        return None
    cx, cy = int(rng.integers(half_w + 2, w - half_w - 2)), int(rng.integers(half_h + 2, h - half_h - 2))
    m = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
    m[0, 2] += cx - cw / 2
    m[1, 2] += cy - ch / 2
    # Ground truth: the ink's tight box, rotated with the text.
    x0, x1, y0, y1 = xs.min() - 0.5, xs.max() + 0.5, ys.min() - 0.5, ys.max() + 0.5
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], float)
    poly = corners @ m.T
    region = np.zeros((h, w), np.uint8)
    cv2.fillPoly(region, [np.round(poly).astype(np.int32)], 1)
    region = cv2.dilate(region, np.ones((9, 9), np.uint8))
    if (region & occupied).any():
        return None
    occupied |= region
    warped = cv2.warpAffine(ink, m, (w, h), flags=cv2.INTER_LINEAR).astype(np.float32) / 255.0
    bg_colour = np.array(cv2.mean(img, mask=region)[:3])
    if plate:  # a sign plate behind the text
        plate_poly = np.array([[-6, -6, 1], [cw + 6, -6, 1], [cw + 6, ch + 6, 1], [-6, ch + 6, 1]], float) @ m.T
        bg_colour = rng.integers(0, 255, 3).astype(float)
        cv2.fillPoly(img, [np.round(plate_poly).astype(np.int32)], bg_colour.tolist(), cv2.LINE_AA)
    bg_luma = luma(bg_colour)
    if low_contrast:  # a faded or shaded sign: the background's hue, 30-60 grey levels lighter or darker
        delta = float(rng.uniform(30, 60))
        colour = np.clip(bg_colour + (delta if bg_luma < 128 else -delta), 0, 255)
    else:
        colour = np.array([255.0, 255.0, 255.0]) if bg_luma < 128 else np.array([10.0, 10.0, 10.0])
        colour = np.clip(colour + rng.normal(0, 10, 3), 0, 255)
    alpha = warped[..., None]
    img[:] = np.clip(img * (1 - alpha) + colour[None, None, :] * alpha, 0, 255).astype(np.uint8)
    return DrawnText(text, poly.round(2).tolist(), font, size, angle, float(abs(luma(colour) - bg_luma)))


def luma(bgr) -> float:
    b, g, r = (float(v) for v in bgr)
    return 0.114 * b + 0.587 * g + 0.299 * r


def make_text_image(seed: int, *, n_texts: int | None = None, w: int = 640, h: int = 480,
                    min_size: float = 0.4, max_size: float = 2.0, overlay_prob: float = 0.3) -> TextImage:
    rng = np.random.default_rng(seed)
    img = background(rng, w, h)
    occupied = np.zeros((h, w), np.uint8)
    texts: list[DrawnText] = []
    n = int(rng.integers(2, 6)) if n_texts is None else n_texts
    # A dashcam overlay along the bottom edge on some images, like the seed's Figure 11.
    if rng.random() < overlay_prob:
        overlay = str(rng.choice(OVERLAYS))
        drawn = None
        for _ in range(10):
            drawn = _draw_one(img, occupied, rng, overlay, font=cv2.FONT_HERSHEY_PLAIN,
                              size=float(rng.uniform(0.8, 1.3)), angle=0.0, low_contrast=False, plate=False)
            if drawn:
                texts.append(drawn)
                break
    attempts = 0
    while len(texts) < n and attempts < 60:
        attempts += 1
        text = str(rng.choice(WORDS))
        drawn = _draw_one(
            img, occupied, rng, text,
            font=int(FONTS[int(rng.integers(0, len(FONTS)))]),
            size=float(rng.uniform(min_size, max_size)),
            angle=float(rng.uniform(-15, 15)),
            low_contrast=bool(rng.random() < 0.35),
            plate=bool(rng.random() < 0.4),
        )
        if drawn:
            texts.append(drawn)
    return TextImage(img, texts)


def text_images(n: int, start_seed: int = 1000, **kwargs) -> list[TextImage]:
    return [make_text_image(start_seed + i, **kwargs) for i in range(n)]
