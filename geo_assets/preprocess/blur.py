"""Text-region detection and blurring (seed 3.4.5, made stronger).

The seed blurs only the boxes of one EasyOCR pass. That misses small, faint and
stylised text: a word the recogniser cannot read still leaks to a person, or to
a model. Here the blurred regions are the union of

- the boxes of the image's one OCR pass (``ocr_text``: no second OCR),
- the regions of that same pass's detector map at lowered thresholds
  (``RapidOcrEngine.read_with_regions``),
- detection-only passes of the given engines with lowered thresholds on a locally
  contrast-normalised grey copy of the image (``contrast_normalize``; ``scales``,
  1x and 1.5x by default) and optionally on the original (``original_scales``):
  PP-OCRv4's detector misses faint text (a faded sign, text in shade, a reflection)
  on the original but finds it there, and small text at 1.5x, and
- whole small sign boards whose marks none of those regions covers
  (``find_sign_boards``): the fallback for text too small and faint for any pass.

Each region is padded along its own axes (``padding_frac`` x text height +
``padding_px`` on every side) and blurred inside its (rotated) polygon: pixelated
to cells of a quarter of the text height, then Gaussian blurred with sigma 0.35 x
the text height (computed at the pixelated resolution, so large text costs no more
than small text).

The defaults were chosen on real photos with ground-truth word boxes (ICDAR 2015,
SVT: ``geo-assets bench blur-real``) together with the synthetic world; every
measurement behind them, and the history of earlier choices, is in PERFORMANCE.md
("Blur on real scene text" and "Per-image cost").
"""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from geo_assets.preprocess.ocr import Box, normalize_box

BLUR_VERSION = "blur-v4"
"""Bump when the regions or the blur change: blurred images are recomputed."""

SIGMA_FRAC = 0.35
"""Gaussian sigma as a fraction of the text height (the box's short side)."""
PIXEL_FRAC = 0.25
"""Mosaic cell size as a fraction of the text height, applied before the Gaussian."""
MIN_SIGMA = 2.0
MAX_KERNEL = 151
DEFAULT_SCALES: tuple[float, ...] = (1.0, 1.5)
"""Scales (x native size) of extra detection passes on the contrast-normalised image. Chosen on
real photos (ICDAR 2015, SVT) with the synthetic world (blur-v4): without them the
OCR pass's map missed 10% of legible real text that these passes find (PERFORMANCE.md)."""
DEFAULT_PADDING_FRAC = 0.2
"""Padding on every side of a region, as a fraction of its text height..."""
DEFAULT_PADDING_PX = 5
"""...plus this many pixels."""
DEFAULT_SIGN_BOARDS = True
"""Blur whole small sign boards whose marks no detection pass found (``find_sign_boards``)."""
DEFAULT_ORIGINAL_SCALES: tuple[float, ...] = ()
"""Scales of extra detection passes on the original image: (2.0,) adds ~0.4 s/image
and lifts coverage of tiny text (PERFORMANCE.md)."""


# --------------------------------------------------------------------------- regions


def contrast_normalize(image_bgr: np.ndarray, *, sigma: float = 15.0) -> np.ndarray:
    """Local contrast normalisation of the grey image (subtract the local mean, divide by
    the local standard deviation, Gaussian windows of ``sigma`` px), as 3 channels.
    Faint text (a faded sign, text in shade) comes out as strong as any other, which is
    what a detector needs: measured on rendered test images, detection on this image finds
    more ground-truth text than on the original at every scale."""
    grey = image_bgr if image_bgr.ndim == 2 else cv2.cvtColor(image_bgr[..., :3], cv2.COLOR_BGR2GRAY)
    grey = grey.astype(np.float32)
    mean = cv2.GaussianBlur(grey, (0, 0), sigma)
    std = np.sqrt(cv2.GaussianBlur((grey - mean) ** 2, (0, 0), sigma)) + 4.0
    norm = np.clip((grey - mean) / std * 40.0 + 128.0, 0, 255).astype(np.uint8)
    return cv2.cvtColor(norm, cv2.COLOR_GRAY2BGR)


def detect_text_regions(
    image_bgr: np.ndarray,
    engines: Sequence,
    ocr_boxes: Iterable,
    *,
    scales: Sequence[float] = DEFAULT_SCALES,
    low_threshold: bool = True,
    normalize_contrast: bool = True,
    original_scales: Sequence[float] = DEFAULT_ORIGINAL_SCALES,
    sign_boards: bool = DEFAULT_SIGN_BOARDS,
    padding_frac: float = DEFAULT_PADDING_FRAC,
    padding_px: int = DEFAULT_PADDING_PX,
) -> list[Box]:
    """The union of the OCR pass's boxes and detection-only passes (no recognition) of
    every engine, with lowered thresholds by default:

    - at every scale in ``scales`` on the locally contrast-normalised image
      (``contrast_normalize``; the original image when ``normalize_contrast`` is False),
    - at every scale in ``original_scales`` on the original image (tiny text in a JPEG
      is often found at 2x on the original but not on the normalised copy),
    - then, with ``sign_boards``, every small sign board whose marks none of those
      regions (padded by ``padding_frac``/``padding_px``, as the blur pads them) covers:
      the whole board (``find_sign_boards``).

    Scales are multiples of the native size. Boxes are 4-point polygons in pixels of
    ``image_bgr``; exact duplicates are kept once."""
    boxes: list[Box] = []
    seen: set[tuple] = set()

    def add(box) -> None:
        try:
            b = normalize_box(box)
        except ValueError:
            return
        key = tuple(round(v) for p in b for v in p)
        if key not in seen:
            seen.add(key)
            boxes.append(b)

    for box in ocr_boxes or []:
        add(box)
    engines = list(engines or [])
    passes: list[tuple[np.ndarray, float]] = []
    if engines and scales:
        source = contrast_normalize(image_bgr) if normalize_contrast else image_bgr
        passes += [(source, float(s)) for s in scales]
    if engines and original_scales:
        passes += [(image_bgr, float(s)) for s in original_scales if not (not normalize_contrast and s in scales)]
    for engine in engines:
        for source, scale in passes:
            for box in engine.detect(source, low_threshold=low_threshold, scale=scale):
                add(box)
    if sign_boards:
        covered = blur_mask(boxes, image_bgr.shape, padding_frac=padding_frac, padding_px=padding_px)
        for box in find_sign_boards(image_bgr, covered):
            add(box)
    return boxes


def find_sign_boards(image_bgr: np.ndarray, covered: np.ndarray | None = None, *, grad_threshold: float = 18.0,
                     min_short: float = 6, max_short: float = 70, max_long: float = 200, min_fill: float = 0.85,
                     detail_share: tuple[float, float] = (0.03, 0.6), min_uncovered: float = 0.3) -> list[Box]:
    """Small sign boards with marks on them that no detection pass explains, as 4-point boxes.

    Text under ~10 px tall at low contrast is invisible to the detector at the scales
    we can afford, but the board it is printed on is not: a board is a region enclosed
    by a strong colour edge (its rim), close to a rotated rectangle, whose inside holds
    some marks (3-60% of its pixels). Boards whose marks are mostly (> 1 - min_uncovered)
    inside ``covered`` (the regions already found) are left out, so a board is blurred
    whole only when its text was missed. Windows with frames pass as boards too: the
    cost is a little extra blur, measured in PERFORMANCE.md ("Blur history")."""
    h, w = image_bgr.shape[:2]
    lab = cv2.cvtColor(cv2.GaussianBlur(image_bgr[..., :3], (0, 0), 1.0), cv2.COLOR_BGR2Lab)
    kernel = np.ones((3, 3), np.uint8)
    grad = np.max(np.stack([cv2.morphologyEx(c, cv2.MORPH_GRADIENT, kernel) for c in cv2.split(lab)]), axis=0)
    edges = (grad >= grad_threshold).astype(np.uint8)
    contours, hierarchy = cv2.findContours(edges, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    boards: list[Box] = []
    if hierarchy is None:
        return boards
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0]):
        if parent < 0 or len(contour) < 4:  # only holes: regions enclosed by an edge (a rim)
            continue
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
        short, long_ = min(rw, rh), max(rw, rh)
        if short < min_short or short > max_short or long_ > max_long:
            continue
        if cv2.contourArea(cv2.convexHull(contour)) < min_fill * rw * rh:
            continue
        # The board's inside, rasterised in its bounding window only (this runs per candidate).
        inner = np.round(cv2.boxPoints(((cx, cy), (max(1.0, rw - 2), max(1.0, rh - 2)), angle))).astype(np.int32)
        x0, y0 = np.maximum(inner.min(axis=0), 0)
        x1, y1 = np.minimum(inner.max(axis=0) + 1, (w, h))
        if x1 <= x0 or y1 <= y0:
            continue
        inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(inside, [inner - (x0, y0)], 1)
        sel = inside.astype(bool)
        marks = edges[y0:y1, x0:x1][sel].astype(bool)
        if not marks.size or not (detail_share[0] <= marks.mean() <= detail_share[1]):
            continue
        if covered is not None and covered[y0:y1, x0:x1][sel][marks].mean() > 1 - min_uncovered:
            continue
        boards.append(normalize_box(cv2.boxPoints(((cx, cy), (rw, rh), angle))))
    return boards


# --------------------------------------------------------------------------- geometry


def _rect_of(box) -> tuple[tuple[float, float], tuple[float, float], float]:
    pts = np.asarray(normalize_box(box), dtype=np.float32)
    return cv2.minAreaRect(pts)


def text_height(box) -> float:
    """The box's short side: the text height for a text line."""
    (_, _), (w, h), _ = _rect_of(box)
    return float(min(w, h))


def pad_box(box, *, padding_frac: float = DEFAULT_PADDING_FRAC, padding_px: int = DEFAULT_PADDING_PX) -> np.ndarray:
    """The box grown on every side by ``padding_frac * text height + padding_px``,
    along its own (rotated) axes. Returns a (4, 2) float32 array."""
    centre, (w, h), angle = _rect_of(box)
    pad = padding_frac * min(w, h) + padding_px
    return cv2.boxPoints((centre, (w + 2 * pad, h + 2 * pad), angle)).astype(np.float32)


def blur_mask(boxes: Iterable, image_shape, *, padding_frac: float = DEFAULT_PADDING_FRAC,
              padding_px: int = DEFAULT_PADDING_PX) -> np.ndarray:
    """Boolean HxW mask of every padded box: exactly the pixels ``blur_regions`` changes."""
    h, w = int(image_shape[0]), int(image_shape[1])
    mask = np.zeros((h, w), np.uint8)
    for box in boxes or []:
        poly = pad_box(box, padding_frac=padding_frac, padding_px=padding_px)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
    return mask.astype(bool)


def changed_windows(mask: np.ndarray, context_px: int = 48, max_share: float = 0.6) -> list[tuple[int, int, int, int]] | None:
    """Windows (x0, y0, x1, y1) that hold every pixel of ``mask`` with ``context_px`` around
    it, merged until none overlap; None when they would cover more than ``max_share`` of
    the image (then one full pass costs less than the windows)."""
    h, w = mask.shape[:2]
    if not mask.any():
        return []
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((2 * context_px + 1, 2 * context_px + 1), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    rects = [[int(x), int(y), int(x + rw), int(y + rh)] for x, y, rw, rh, _ in stats[1:n]]
    merged = True
    while merged:  # bounding boxes of separate blobs can still overlap: merge them
        merged = False
        for i in range(len(rects)):
            for j in range(i + 1, len(rects)):
                a, b = rects[i], rects[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    rects[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del rects[j]
                    merged = True
                    break
            if merged:
                break
    area = sum((r[2] - r[0]) * (r[3] - r[1]) for r in rects)
    if area > max_share * h * w:
        return None
    return [tuple(r) for r in rects]


# --------------------------------------------------------------------------- blur


def _odd(n: float) -> int:
    k = max(3, int(round(n)))
    return k if k % 2 == 1 else k + 1


def blur_params(height: float, *, kernel: int | None = None, sigma: float | None = None) -> tuple[int, float, int]:
    """(kernel, sigma, mosaic cell) for text of the given height."""
    s = float(sigma) if sigma else max(MIN_SIGMA, SIGMA_FRAC * height)
    k = _odd(kernel) if kernel else min(MAX_KERNEL, _odd(2 * np.ceil(3 * s) + 1))
    cell = max(1, int(round(PIXEL_FRAC * height)))
    return k, s, cell


def _blur_crop(crop: np.ndarray, k: int, s: float, cell: int) -> np.ndarray:
    """Pixelate to ``cell`` px, Gaussian blur (kernel ``k``, sigma ``s`` in full-size
    pixels) at that low resolution, and scale back up smoothly. Equivalent to a mosaic
    followed by a Gaussian of the same sigma, at a fraction of the cost for large text."""
    h, w = crop.shape[:2]
    if cell > 1:
        small = cv2.resize(crop, (max(1, round(w / cell)), max(1, round(h / cell))), interpolation=cv2.INTER_AREA)
    else:
        small = crop
    sk = _odd(k / cell) if cell > 1 else k
    small = cv2.GaussianBlur(small, (sk, sk), max(0.5, s / cell), borderType=cv2.BORDER_REPLICATE)
    if cell > 1:
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return small


def blur_regions(
    image_bgr: np.ndarray,
    boxes: Iterable,
    *,
    padding_frac: float = DEFAULT_PADDING_FRAC,
    padding_px: int = DEFAULT_PADDING_PX,
    kernel: int | None = None,
    sigma: float | None = None,
) -> np.ndarray:
    """A copy of the image with every (padded, rotated) box pixelated and Gaussian
    blurred inside its polygon. ``kernel``/``sigma`` (full-size pixels) fix the blur;
    by default both grow with the text height, so large text is blurred as hard as
    small text."""
    out = np.array(image_bgr, copy=True)
    h, w = out.shape[:2]
    for box in boxes or []:
        height = text_height(box)
        poly = pad_box(box, padding_frac=padding_frac, padding_px=padding_px)
        k, s, cell = blur_params(height, kernel=kernel, sigma=sigma)
        margin = k // 2 + 1
        x0, y0 = np.floor(poly.min(axis=0)).astype(int) - margin
        x1, y1 = np.ceil(poly.max(axis=0)).astype(int) + margin + 1
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if x1 <= x0 or y1 <= y0:
            continue
        crop = out[y0:y1, x0:x1]
        blurred = _blur_crop(crop, k, s, cell)
        local = np.zeros(crop.shape[:2], np.uint8)
        cv2.fillPoly(local, [np.round(poly - [x0, y0]).astype(np.int32)], 1)
        sel = local.astype(bool)
        crop[sel] = blurred[sel]
    return out


# --------------------------------------------------------------------------- measurement


def blur_coverage(
    blurred,
    gt_polygons: Iterable,
    image_shape,
    *,
    padding_frac: float = DEFAULT_PADDING_FRAC,
    padding_px: int = DEFAULT_PADDING_PX,
) -> list[float]:
    """For each ground-truth text polygon, the fraction of its area inside the blurred
    regions. ``blurred`` is either the HxW mask of blurred pixels or the list of boxes
    given to ``blur_regions`` (padded here the same way)."""
    h, w = int(image_shape[0]), int(image_shape[1])
    if isinstance(blurred, np.ndarray) and blurred.ndim == 2 and blurred.shape == (h, w):
        mask = blurred.astype(bool)
    else:
        mask = blur_mask(blurred, (h, w), padding_frac=padding_frac, padding_px=padding_px)
    out = []
    for poly in gt_polygons:
        gt = np.zeros((h, w), np.uint8)
        cv2.fillPoly(gt, [np.round(np.asarray(poly, dtype=float)).astype(np.int32).reshape(-1, 2)], 1)
        area = int(gt.sum())
        if area == 0:
            out.append(1.0)
            continue
        out.append(float(np.count_nonzero(gt.astype(bool) & mask)) / area)
    return out
