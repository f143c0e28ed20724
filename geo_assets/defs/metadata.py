"""Small helpers that turn results into Dagster metadata and data versions."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from pathlib import Path
from typing import Iterable

import cv2
import dagster as dg
import numpy as np


def data_version_of(parts: Iterable[str]) -> dg.DataVersion:
    """A data version from the sorted identities of a partition's rows."""
    h = hashlib.sha256()
    for part in sorted(parts):
        h.update(part.encode())
        h.update(b"\n")
    return dg.DataVersion(h.hexdigest()[:24])


def counts_md(counter: Counter | dict, key_name: str = "reason", value_name: str = "count") -> dg.MetadataValue:
    rows = sorted(dict(counter).items(), key=lambda kv: (-kv[1], kv[0]))
    lines = [f"| {key_name} | {value_name} |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    if not rows:
        lines.append("| (none) | 0 |")
    return dg.MetadataValue.md("\n".join(lines))


def _thumb_data_uri(image_bgr: np.ndarray, width: int = 160) -> str:
    h, w = image_bgr.shape[:2]
    thumb = cv2.resize(image_bgr, (width, max(1, int(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:
        raise ValueError("could not encode a preview thumbnail")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def preview_md(paths: list[Path], captions: list[str] | None = None, width: int = 160) -> dg.MetadataValue:
    """A few thumbnails inline (base64), with a caption each."""
    cells = []
    for i, path in enumerate(paths):
        image = cv2.imread(str(path))
        if image is None:
            continue
        label = captions[i] if captions else Path(path).stem
        cells.append(f"![{label}]({_thumb_data_uri(image, width)})<br/>{label}")
    if not cells:
        return dg.MetadataValue.md("(no images)")
    return dg.MetadataValue.md(" | ".join(cells) + "\n" + "|".join(["---"] * len(cells)))
