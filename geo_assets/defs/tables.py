"""Schemas of the per-tile tables the Dagster layer writes, and small table helpers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa

OCR_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("sha256", pa.string()), ("engine", pa.string()),
    ("words_json", pa.string()), ("n_words", pa.int32()), ("seconds", pa.float32()), ("error", pa.string()),
])

BLUR_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("sha256", pa.string()), ("blur_version", pa.string()),
    ("blurred_path", pa.string()), ("blurred_sha256", pa.string()), ("boxes_json", pa.string()),
    ("n_boxes", pa.int32()), ("ocr_engine", pa.string()), ("ocr_words_json", pa.string()),
    ("seconds", pa.float32()), ("error", pa.string()),
])

CAPTION_SCHEMA = pa.schema([
    ("image_id", pa.string()), ("variant", pa.string()), ("image_sha256", pa.string()),
    ("captioner_id", pa.string()), ("generated", pa.string()), ("ocr_clean", pa.string()),
    ("caption", pa.string()), ("place_names_json", pa.string()), ("has_place_text", pa.bool_()),
])

BLUR_CHECK_CACHE_SCHEMA = pa.schema([
    ("blurred_sha256", pa.string()), ("checker", pa.string()), ("words_json", pa.string()),
])
"""What the second OCR engine read on a blurred image, so a rerun's check costs no OCR."""

OCR_REGIONS_CACHE_SCHEMA = pa.schema([
    ("image_sha256", pa.string()), ("engine", pa.string()), ("regions_json", pa.string()),
])
"""The OCR pass's low-threshold detector regions per image: the blur's candidates, so the
blur runs no detector pass of its own."""

CAPTION_CACHE_SCHEMA = pa.schema([
    ("image_sha256", pa.string()), ("variant", pa.string()), ("captioner_id", pa.string()), ("generated", pa.string()),
])


def rows_by(table: pa.Table, key: str) -> dict[str, dict]:
    return {row[key]: row for row in table.to_pylist()}


class UnreadableImage(ValueError):
    pass


def load_bgr(path: Path) -> np.ndarray:
    """Read an image file as BGR, with a clear error when it is missing or corrupt."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).exists() else None
    if data is None:
        raise UnreadableImage(f"image file missing: {path}")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImage(f"image file is not a decodable image: {path}")
    return image
