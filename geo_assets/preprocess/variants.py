"""Per-image preprocessing shared by the assets, the bench and `geo-assets predict`:
the OCR pass of an image, its blurred variant, and the caption text of a variant."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from geo_assets.preprocess import blur as blur_mod
from geo_assets.preprocess.captioners import build_caption
from geo_assets.preprocess.text_cleaning import clean_ocr_text, find_place_names

JPEG_QUALITY = 92


@dataclass
class OcrPass:
    words: list
    """What the engine reads (``OcrWord``s): the OCR table's words."""
    regions: list
    """Low-threshold text regions of the same detector pass: the blur's candidates."""


def ocr_image(engine, image_bgr: np.ndarray) -> OcrPass:
    """One OCR pass: the words, plus the regions its detector found at lowered thresholds
    (no second detector run; engines without ``read_with_regions`` give no regions)."""
    read = getattr(engine, "read_with_regions", None)
    if read is None:
        return OcrPass(engine.read(image_bgr), [])
    words, regions = read(image_bgr)
    return OcrPass(words, regions)


@dataclass
class BlurredVariant:
    image_bgr: np.ndarray
    boxes: list
    words_after: list


def make_blurred_variant(image_bgr: np.ndarray, engine, ocr_words: list, *, regions: list | None = None,
                         scales=blur_mod.DEFAULT_SCALES, original_scales=blur_mod.DEFAULT_ORIGINAL_SCALES,
                         sign_boards: bool = blur_mod.DEFAULT_SIGN_BOARDS,
                         padding_frac: float = blur_mod.DEFAULT_PADDING_FRAC,
                         padding_px: int = blur_mod.DEFAULT_PADDING_PX) -> BlurredVariant:
    """Blur every text region (the OCR pass's word boxes and low-threshold regions, any
    extra detection passes, small sign boards), then read the blurred image once with the
    same engine: the blurred variant's own text.

    ``ocr_words`` must be ``engine``'s read of ``image_bgr``; ``regions`` the same pass's
    regions (``ocr_image``). Without ``regions`` the pass is run again here to get them."""
    if regions is None:
        regions = ocr_image(engine, image_bgr).regions
    boxes = blur_mod.detect_text_regions(image_bgr, [engine], [w.box for w in ocr_words] + list(regions),
                                         scales=tuple(scales), original_scales=tuple(original_scales),
                                         low_threshold=True, sign_boards=sign_boards,
                                         padding_frac=padding_frac, padding_px=padding_px)
    blurred = blur_mod.blur_regions(image_bgr, boxes, padding_frac=padding_frac, padding_px=padding_px)
    mask = blur_mod.blur_mask(boxes, image_bgr.shape, padding_frac=padding_frac, padding_px=padding_px)
    return BlurredVariant(blurred, boxes, reread_blurred(engine, blurred, mask))


REREAD_CONTEXT_PX = 48
"""Context kept around the changed pixels in a re-read: the detector needs ~64 px at its
scale (1.5x here) to find small text (blur.py's docstring)."""


def reread_blurred(engine, blurred_bgr: np.ndarray, changed: np.ndarray) -> list:
    """The engine's read of the blurred image, read only where blurring changed it.

    Outside the changed pixels (and their context) the blurred image is the original, on
    which the OCR pass's every word was blurred, so a read there finds no word: only the
    windows around the changes are read (``read_windows``). An engine without windowed
    reads, or windows covering most of the image, get a full read. The bench compares
    this with a full read of the same images (``bench.per_image``)."""
    read_windows = getattr(engine, "read_windows", None)
    if read_windows is None:
        return engine.read(blurred_bgr)
    windows = blur_mod.changed_windows(changed, REREAD_CONTEXT_PX)
    if windows is None:
        return engine.read(blurred_bgr)
    return read_windows(blurred_bgr, windows) if windows else []


def encode_jpeg(image_bgr: np.ndarray, quality: int = JPEG_QUALITY) -> bytes | None:
    """The JPEG bytes the blurred_images asset stores (None when OpenCV cannot encode)."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else None


@dataclass
class CaptionText:
    caption: str
    cleaned: str
    place_names: list[str]


def caption_text(generated: str, ocr_words: list) -> CaptionText:
    """Seed 3.4.1: generated caption + the cleaned OCR text of the same variant."""
    cleaned = clean_ocr_text([w.text for w in ocr_words])
    return CaptionText(build_caption(generated, cleaned), cleaned, find_place_names(cleaned))


def generate_captions(captioner, images_rgb: list[np.ndarray], batch_size: int = 32) -> list[str]:
    """The captioner's generated caption per image, in batches of ``batch_size``."""
    out: list[str] = []
    for start in range(0, len(images_rgb), batch_size):
        out += list(captioner.caption_batch(images_rgb[start : start + batch_size]))
    return out
