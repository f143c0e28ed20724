"""Per-image preprocessing shared by the assets and `geo-assets predict`:
the blurred variant of an image and the caption text of a variant."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geo_assets.preprocess import blur as blur_mod
from geo_assets.preprocess.captioners import build_caption
from geo_assets.preprocess.text_cleaning import clean_ocr_text, find_place_names


@dataclass
class BlurredVariant:
    image_bgr: np.ndarray
    boxes: list
    words_after: list


def make_blurred_variant(image_bgr: np.ndarray, engine, ocr_words: list, *, scales=blur_mod.DEFAULT_SCALES,
                         original_scales=blur_mod.DEFAULT_ORIGINAL_SCALES, sign_boards: bool = blur_mod.DEFAULT_SIGN_BOARDS,
                         padding_frac: float = blur_mod.DEFAULT_PADDING_FRAC,
                         padding_px: int = blur_mod.DEFAULT_PADDING_PX) -> BlurredVariant:
    """Blur every text region (the OCR pass's boxes plus extra detection passes), then
    read the blurred image once with the same engine: the blurred variant's own text."""
    boxes = blur_mod.detect_text_regions(image_bgr, [engine], [w.box for w in ocr_words],
                                         scales=tuple(scales), original_scales=tuple(original_scales),
                                         low_threshold=True, sign_boards=sign_boards,
                                         padding_frac=padding_frac, padding_px=padding_px)
    blurred = blur_mod.blur_regions(image_bgr, boxes, padding_frac=padding_frac, padding_px=padding_px)
    return BlurredVariant(blurred, boxes, engine.read(blurred))


@dataclass
class CaptionText:
    caption: str
    cleaned: str
    place_names: list[str]


def caption_text(generated: str, ocr_words: list) -> CaptionText:
    """Seed 3.4.1: generated caption + the cleaned OCR text of the same variant."""
    cleaned = clean_ocr_text([w.text for w in ocr_words])
    return CaptionText(build_caption(generated, cleaned), cleaned, find_place_names(cleaned))
