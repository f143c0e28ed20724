"""Cleaning rules: record checks and full-decode image checks."""

from __future__ import annotations

import hashlib
import io
import math

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from geo_assets.geo.bbox import BBox
from geo_assets.ingest.validate import (
    COLOUR_STD_MIN,
    LAPLACIAN_VAR_MIN,
    ImageRejected,
    RejectReason,
    parse_captured_at,
    validate_image_bytes,
    validate_record,
)
from geo_assets.synthetic.world import SyntheticWorld

TILE = BBox(-2.4, 51.9, -0.4, 53.9)


@pytest.fixture(scope="module")
def world() -> SyntheticWorld:
    return SyntheticWorld(seed=0)


def _record(**over):
    rec = {
        "id": "1234567890123456",
        "computed_geometry": {"type": "Point", "coordinates": [-1.5, 53.0]},
        "captured_at": 1_600_000_000_000,
        "thumb_1024_url": "http://127.0.0.1/thumbs/1024/1234567890123456.jpg",
    }
    rec.update(over)
    return {k: v for k, v in rec.items() if v is not ...}


def test_valid_record():
    out = validate_record(_record(), TILE)
    assert out == {"image_id": "1234567890123456", "lat": 53.0, "lon": -1.5, "captured_at": 1_600_000_000_000,
                   "url": "http://127.0.0.1/thumbs/1024/1234567890123456.jpg", "sequence_id": ""}
    # numeric id, geometry fallback, ISO time, 2048 URL fallback
    out = validate_record(_record(id=42, computed_geometry=..., geometry={"type": "Point", "coordinates": [-1.0, 52.5]},
                                  captured_at="2020-09-13T12:26:40Z", thumb_1024_url=...,
                                  thumb_2048_url="http://x/2048.jpg"), TILE)
    assert out["image_id"] == "42" and (out["lat"], out["lon"]) == (52.5, -1.0)
    assert out["captured_at"] == 1_600_000_000_000 and out["url"] == "http://x/2048.jpg"


@pytest.mark.parametrize("over, reason", [
    (dict(computed_geometry=...), "missing_coordinates"),
    (dict(computed_geometry=None), "missing_coordinates"),
    (dict(computed_geometry={"type": "Point"}), "missing_coordinates"),
    (dict(computed_geometry={"type": "Point", "coordinates": [1.0]}), "bad_coordinates"),
    (dict(computed_geometry={"type": "Point", "coordinates": ["x", "y"]}), "bad_coordinates"),
    (dict(computed_geometry={"type": "Point", "coordinates": [math.nan, 53.0]}), "bad_coordinates"),
    (dict(computed_geometry={"type": "Point", "coordinates": [-1.5, 95.0]}), "bad_coordinates"),
    (dict(computed_geometry={"type": "Point", "coordinates": [0, 0]}), "bad_coordinates"),
    (dict(computed_geometry="garbage"), "missing_coordinates"),
    (dict(computed_geometry={"type": "Point", "coordinates": [-3.0, 53.0]}), "outside_tile"),
    (dict(computed_geometry={"type": "Point", "coordinates": [-1.5, 53.9]}), "outside_tile"),  # north edge: next tile
    (dict(captured_at=...), "missing_captured_at"),
    (dict(captured_at="soon"), "missing_captured_at"),
    (dict(thumb_1024_url=...), "missing_url"),
    (dict(id=...), "missing_id"),
    (dict(id="../../../../x"), "bad_id"),
    (dict(id="sub/dir/x"), "bad_id"),
    (dict(id="12ab"), "bad_id"),
    (dict(id="１２３"), "bad_id"),  # non-ASCII digits
    (dict(thumb_1024_url="file:///etc/passwd"), "bad_url"),
    (dict(thumb_1024_url="ftp://127.0.0.1/x.jpg"), "bad_url"),
    (dict(thumb_1024_url="http://"), "bad_url"),
    (dict(thumb_1024_url="http://[::1/x.jpg"), "bad_url"),
    (dict(thumb_1024_url="http://h:99999/x.jpg"), "bad_url"),
    (dict(thumb_1024_url="http://h/x y.jpg"), "bad_url"),
    (dict(thumb_1024_url="http://h/" + "x" * 5000), "bad_url"),
])
def test_record_rejects(over, reason):
    out = validate_record(_record(**over), TILE)
    assert isinstance(out, RejectReason) and out.reason == reason and out.detail


def test_parse_captured_at():
    assert parse_captured_at(1_600_000_000_000) == 1_600_000_000_000
    assert parse_captured_at("1600000000000") == 1_600_000_000_000
    assert parse_captured_at("2020-09-13T12:26:40Z") == 1_600_000_000_000
    assert parse_captured_at(True) is None and parse_captured_at(None) is None and parse_captured_at([1]) is None


def _check_pass(world, ids):
    for image_id in ids:
        data = world.render(image_id).jpeg
        v = validate_image_bytes(data)
        assert (v.width, v.height) == (640, 480)
        assert v.sha256 == hashlib.sha256(data).hexdigest()
        assert v.colour_std >= 2 * COLOUR_STD_MIN and v.laplacian_var >= 2 * LAPLACIAN_VAR_MIN


def test_synthetic_images_pass(world):
    _check_pass(world, world.ids[7::201][:40])


@pytest.mark.slow
def test_200_synthetic_images_pass(world):
    """Essentially all synthetic images pass (with a 2x margin on both thresholds)."""
    _check_pass(world, world.ids[::40][:200])


def _jpeg(img_bgr: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def _reason(data: bytes, **kw) -> str:
    with pytest.raises(ImageRejected) as info:
        validate_image_bytes(data, **kw)
    assert info.value.detail
    return info.value.reason


def test_truncated_jpeg_is_undecodable(world, monkeypatch):
    data = world.render(world.ids[5]).jpeg
    assert _reason(data[: len(data) // 2]) == "undecodable"
    assert _reason(data[:-2]) == "undecodable"  # even just the end marker missing
    # PIL pads truncated files silently when this global is set anywhere in the process
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert _reason(data[: len(data) // 2]) == "undecodable"


def test_garbage_is_undecodable():
    assert _reason(b"") == "undecodable"
    assert _reason(b"<html>Not Found</html>") == "undecodable"
    assert _reason(b"\xff\xd8\xff\xe0" + b"\x00" * 2000 + b"\xff\xd9") == "undecodable"


def test_size_limits(world):
    img = cv2.imdecode(np.frombuffer(world.render(world.ids[9]).jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert _reason(_jpeg(cv2.resize(img, (300, 225)))) == "too_small"
    assert _reason(world.render(world.ids[9]).jpeg, max_pixels=100_000) == "too_many_pixels"
    assert validate_image_bytes(_jpeg(cv2.resize(img, (1024, 768)))).width == 1024


def test_black_and_uniform_frames(world):
    rng = np.random.default_rng(0)
    black = np.clip(rng.normal(4, 2, (480, 640, 3)), 0, 255).astype(np.uint8)
    assert _reason(_jpeg(black)) == "low_colour_variance"
    grey = np.full((480, 640, 3), 128, np.uint8)
    assert _reason(_jpeg(grey)) == "low_colour_variance"
    img = cv2.imdecode(np.frombuffer(world.render(world.ids[3]).jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert _reason(_jpeg((img * 0.05).astype(np.uint8))) == "low_colour_variance"  # night / tunnel


def test_blurry_frames(world):
    for image_id in world.ids[20:25]:
        img = cv2.imdecode(np.frombuffer(world.render(image_id).jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert _reason(_jpeg(cv2.GaussianBlur(img, (0, 0), 3))) == "too_blurry"


def test_png_is_refused_unless_asked_for(world):
    img = Image.open(io.BytesIO(world.render(world.ids[2]).jpeg))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert _reason(buf.getvalue()) == "not_jpeg"  # thumbnails are JPEG; the decoder decides
    v = validate_image_bytes(buf.getvalue(), formats=None)
    assert (v.width, v.height) == (640, 480)
