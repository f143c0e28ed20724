"""Reading stored image files, with a clear error when one is missing or corrupt."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class UnreadableImage(ValueError):
    pass


def load_bgr(path: Path) -> np.ndarray:
    """Read an image file (local or s3://) as BGR, with a clear error when it is missing or corrupt."""
    from geo_assets.store.paths import ObjectPath

    if isinstance(path, ObjectPath):
        try:
            data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
        except FileNotFoundError:
            data = None
    else:
        data = np.fromfile(str(path), dtype=np.uint8) if Path(path).exists() else None
    if data is None:
        raise UnreadableImage(f"image file missing: {path}")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise UnreadableImage(f"image file is not a decodable image: {path}")
    return image
