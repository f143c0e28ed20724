"""Reading stored image files (any backend), with a clear error when one is missing or corrupt."""

from __future__ import annotations

import cv2
import numpy as np

from geo_assets.store import reads
from geo_assets.store.backends import as_path, backend_for


class UnreadableImage(ValueError):
    pass


def load_bgr(path) -> np.ndarray:
    """The image at `path` as BGR; UnreadableImage when it is missing or not decodable."""
    path = as_path(path)
    reads.note(path)
    try:
        data = np.frombuffer(backend_for(path).read_bytes(path), dtype=np.uint8)
    except (FileNotFoundError, IsADirectoryError):
        raise UnreadableImage(f"image file missing: {path}") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UnreadableImage(f"image file is not a decodable image: {path}")
    return image
