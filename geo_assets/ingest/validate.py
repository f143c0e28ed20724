"""Cleaning rules for pulled images (seed 2.1.2 and seed 003), as pure functions.

`validate_record` checks an API record (id, coordinates, capture time, a
thumbnail URL, inside the tile); `validate_image_bytes` decodes the bytes fully
and checks size, colour variance (black or uniform frames) and sharpness
(variance of the Laplacian). Each rejection has a short reason code.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

import cv2
import numpy as np
from PIL import Image

from geo_assets.geo.bbox import BBox
from geo_assets.mapillary.redact import url_problem

# --- thresholds -----------------------------------------------------------------
# Measured on the analysis image (long side scaled down to ANALYSIS_MAX_SIDE so the
# numbers do not depend on resolution) over 400 rendered synthetic images (every
# 20th of seed 0; geo_assets_tests/test_ingest_validate.py re-checks 200):
#
# COLOUR_STD_MIN: seed 003 keeps an image when its most varied colour channel
#   varies "by some amount". Synthetic scenes measure a max per-channel standard
#   deviation of >= 38 (median 55); a black frame with sensor noise measures ~2,
#   a uniform grey JPEG ~2, the same scenes darkened to 5% (night, tunnel) <= 3.5.
#   10 rejects all of those with a wide margin on both sides.
# LAPLACIAN_VAR_MIN: variance of the Laplacian of the grey image (seed 003's blur
#   filter; the usual rule of thumb for ~500-px photos is 100). Synthetic scenes
#   measure >= 210 (median ~890); the same scenes through a Gaussian blur of
#   sigma 1.5 measure <= 47 (median 10), sigma 2 <= 22, sigma 3 <= 7.3. 40 rejects
#   clearly out-of-focus frames and stays under 100 so that soft but usable
#   photos (haze, rain) are kept.
COLOUR_STD_MIN = 10.0
LAPLACIAN_VAR_MIN = 40.0
ANALYSIS_MAX_SIDE = 640
MIN_WIDTH = 320
MIN_HEIGHT = 240
MAX_PIXELS = 40_000_000

# URL fields in order of preference: 1024 px is plenty for OCR and the encoders,
# and the smallest useful download.
URL_FIELDS = ("thumb_1024_url", "thumb_2048_url", "thumb_original_url")

# Mapillary image ids are decimal digits (today 15-16 of them). Anything else from the
# API is refused as `bad_id`: the id names a file under storage/.
IMAGE_ID_RE = re.compile(r"[0-9]{1,32}")

REASONS = (
    "missing_id", "bad_id", "missing_coordinates", "bad_coordinates", "outside_tile", "missing_captured_at", "missing_url", "bad_url",
    "download_failed", "not_jpeg", "undecodable", "too_small", "too_many_pixels", "low_colour_variance", "too_blurry",
    "duplicate_id", "duplicate_sha256", "duplicate_position",
    "outside_region",  # folder source: a photo whose position no tile of the region holds
)


@dataclass(frozen=True)
class RejectReason:
    reason: str
    detail: str


class ImageRejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ValidatedImage:
    width: int
    height: int
    sha256: str
    colour_std: float = 0.0
    laplacian_var: float = 0.0


# --- records --------------------------------------------------------------------


def parse_captured_at(value) -> int | None:
    """Epoch ms from an int/float, a digit string, or ISO 8601; None if absent or garbled."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) if math.isfinite(value) and value > 0 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text) or None
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return int(round(dt.timestamp() * 1000))
    return None


def record_coordinates(record: dict) -> tuple[float, float] | RejectReason:
    """(lat, lon) from computed_geometry (preferred) or geometry, GeoJSON [lon, lat]."""
    geom = None
    for key in ("computed_geometry", "geometry"):
        if record.get(key) is not None:
            geom = record[key]
            break
    if geom is None:
        return RejectReason("missing_coordinates", "record has neither computed_geometry nor geometry")
    coords = geom.get("coordinates") if isinstance(geom, dict) else None
    if coords is None:
        return RejectReason("missing_coordinates", f"geometry has no coordinates: {str(geom)[:80]}")
    if not isinstance(coords, (list, tuple)) or len(coords) < 2:
        return RejectReason("bad_coordinates", f"coordinates are not [lon, lat]: {str(coords)[:80]}")
    try:
        if any(isinstance(c, bool) for c in coords[:2]):
            raise TypeError
        lon, lat = float(coords[0]), float(coords[1])
    except (TypeError, ValueError):
        return RejectReason("bad_coordinates", f"coordinates are not numbers: {str(coords)[:80]}")
    if not (math.isfinite(lat) and math.isfinite(lon)) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return RejectReason("bad_coordinates", f"coordinates out of range: lat={lat}, lon={lon}")
    if lat == 0 and lon == 0:
        return RejectReason("bad_coordinates", "coordinates are (0, 0), a placeholder")
    return lat, lon


def validate_record(record: dict, tile_bbox: BBox) -> dict | RejectReason:
    """An API record -> {image_id, lat, lon, captured_at, url, sequence_id} or a RejectReason.

    Points on the tile's north/east edges belong to the next tile (BBox.contains
    is half-open), so they are `outside_tile` here.
    """
    if not isinstance(record, dict):
        return RejectReason("missing_id", f"record is not an object: {str(record)[:80]}")
    rid = record.get("id")
    if rid is None or isinstance(rid, bool) or str(rid).strip() == "":
        return RejectReason("missing_id", "record has no id")
    image_id = str(rid).strip()
    if not IMAGE_ID_RE.fullmatch(image_id):
        return RejectReason("bad_id", f"image id is not decimal digits: {image_id[:40]!r}")
    coords = record_coordinates(record)
    if isinstance(coords, RejectReason):
        return coords
    lat, lon = coords
    if not tile_bbox.contains(lat, lon):
        return RejectReason("outside_tile", f"({lat:.6f}, {lon:.6f}) is outside tile {tile_bbox.to_query()}")
    captured_at = parse_captured_at(record.get("captured_at"))
    if captured_at is None:
        return RejectReason("missing_captured_at", f"captured_at is missing or garbled: {record.get('captured_at')!r}")
    url = next((record[k] for k in URL_FIELDS if isinstance(record.get(k), str) and record[k].strip()), None)
    if url is None:
        return RejectReason("missing_url", f"record has none of {', '.join(URL_FIELDS)}")
    url = url.strip()
    problem = url_problem(url)
    if problem:
        return RejectReason("bad_url", problem)
    return {"image_id": image_id, "lat": lat, "lon": lon, "captured_at": captured_at, "url": url,
            "sequence_id": sequence_id_of(record)}


def sequence_id_of(record: dict) -> str:
    """The record's sequence id ('' when the API gave none): the split groups by it.

    Mapillary sends `sequence` as a string id; some answers nest it as {"id": ...}."""
    seq = record.get("sequence")
    if isinstance(seq, dict):
        seq = seq.get("id")
    if not isinstance(seq, (str, int)) or isinstance(seq, bool):
        return ""
    seq = str(seq).strip()
    # Ids are short URL-safe tokens; anything else is not trusted as a group key.
    return seq if re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", seq) else ""


# --- bytes ----------------------------------------------------------------------


def _jpeg_complete(data: bytes) -> bool:
    """A JPEG must end with its EOI marker (FFD9), allowing a little trailing padding.
    Entropy-coded data stuffs every FF byte, so FFD9 only appears as a marker; a
    file cut short has none near its end (PIL would otherwise pad silently when
    ImageFile.LOAD_TRUNCATED_IMAGES is set anywhere in the process)."""
    tail = data[-1024:].rstrip(b"\x00\r\n\t ")
    return tail.endswith(b"\xff\xd9")


def image_quality(rgb: np.ndarray) -> tuple[float, float]:
    """(max per-channel std, variance of the Laplacian) of an RGB uint8 image,
    measured after scaling its long side down to ANALYSIS_MAX_SIDE."""
    h, w = rgb.shape[:2]
    scale = ANALYSIS_MAX_SIDE / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    _, std = cv2.meanStdDev(np.ascontiguousarray(rgb))
    colour_std = float(std.max())
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    _, lap_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))
    lap_var = float(lap_std[0, 0]) ** 2
    return colour_std, lap_var


def validate_image_bytes(data: bytes, min_width: int = MIN_WIDTH, min_height: int = MIN_HEIGHT,
                         max_pixels: int = MAX_PIXELS, formats: tuple[str, ...] | None = ("JPEG",)) -> ValidatedImage:
    """Decode fully and check; raise ImageRejected(reason, detail) on failure.

    Only JPEG by default (what the thumbnail URLs serve): the decoder's own verdict
    on the bytes, whatever the Content-Type said. `formats=None` takes any format."""
    if not data:
        raise ImageRejected("undecodable", "empty body")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        fmt = img.format or "unknown"
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except Exception as exc:  # PIL raises several types for garbage
        raise ImageRejected("undecodable", f"not an image PIL can open ({type(exc).__name__}: {exc})") from None
    if formats is not None and fmt not in formats:
        raise ImageRejected("not_jpeg", f"the bytes are {fmt}, not {' or '.join(formats)}")
    if width * height > max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height} is over {max_pixels} pixels")
    if width < min_width or height < min_height:
        raise ImageRejected("too_small", f"{width}x{height} is under {min_width}x{min_height}")
    if fmt == "JPEG" and not _jpeg_complete(data):
        raise ImageRejected("undecodable", f"truncated JPEG: no end-of-image marker ({len(data)} bytes)")
    try:
        img.load()
        rgb = np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except Exception as exc:
        raise ImageRejected("undecodable", f"{fmt} does not decode ({type(exc).__name__}: {exc})") from None
    colour_std, lap_var = image_quality(rgb)
    if colour_std < COLOUR_STD_MIN:
        raise ImageRejected("low_colour_variance",
                            f"max channel std {colour_std:.1f} < {COLOUR_STD_MIN} (black or uniform frame)")
    if lap_var < LAPLACIAN_VAR_MIN:
        raise ImageRejected("too_blurry", f"Laplacian variance {lap_var:.1f} < {LAPLACIAN_VAR_MIN}")
    return ValidatedImage(int(width), int(height), hashlib.sha256(data).hexdigest(), round(colour_std, 3), round(lap_var, 3))
