"""Position, capture time and sequence of one photo, from its EXIF header (pure parsing).

Sources, best first for time: DateTimeOriginal with its OffsetTimeOriginal (exact), the
GPS date and time stamps (UTC), mapillary_tools' JSON in ImageDescription (MAPCaptureTime,
UTC), DateTimeOriginal or DateTime without an offset (read as UTC: a local clock can be
hours off, which only moves the sequence cut, never the position). Position: GPS IFD, else
the MAP JSON's MAPLatitude / MAPLongitude. Sequence: the MAP JSON's MAPSequenceUUID.
Only the header is read (Pillow parses EXIF without decoding pixels).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from geo_assets.ingest.validate import parse_captured_at

GPS_IFD = 0x8825
EXIF_IFD = 0x8769
TAG_IMAGE_DESCRIPTION = 270
TAG_DATETIME = 306
TAG_DATETIME_ORIGINAL = 36867
TAG_OFFSET_TIME_ORIGINAL = 36881
TAG_SUBSEC_TIME_ORIGINAL = 37521

_SEQ_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_MAP_TIME_RE = re.compile(r"(\d{4})_(\d{2})_(\d{2})_(\d{2})_(\d{2})_(\d{2})(?:_(\d{1,6}))?")
_EXIF_TIME_RE = re.compile(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_RE = re.compile(r"([+-])(\d{2}):(\d{2})")


@dataclass(frozen=True)
class PhotoMeta:
    """What a photo says about itself; None where it says nothing (NaN: present but garbled)."""

    lat: float | None = None
    lon: float | None = None
    captured_at: int | None = None  # epoch ms, UTC
    sequence_id: str = ""
    fmt: str = ""  # the decoder's format name ("JPEG"); "" when the header did not open
    error: str = ""  # why the header could not be read
    position_from: str = ""  # exif | description | csv
    time_from: str = ""

    def to_json(self) -> dict:
        out = {}
        for k, v in self.__dict__.items():
            if v is None or v == "":
                continue
            out[k] = "nan" if isinstance(v, float) and math.isnan(v) else v  # JSON has no NaN
        return out

    @classmethod
    def from_json(cls, data: dict) -> "PhotoMeta":
        def num(v):
            return float("nan") if v == "nan" else (None if v is None else float(v))

        return cls(lat=num(data.get("lat")), lon=num(data.get("lon")),
                   captured_at=None if data.get("captured_at") is None else int(data["captured_at"]),
                   sequence_id=str(data.get("sequence_id", "")), fmt=str(data.get("fmt", "")),
                   error=str(data.get("error", "")), position_from=str(data.get("position_from", "")),
                   time_from=str(data.get("time_from", "")))

    def overlaid(self, other: dict) -> "PhotoMeta":
        """These fields replaced by a sidecar's (lat/lon together, time, sequence) where it has them."""
        changes = {k: other[k] for k in ("lat", "lon", "captured_at", "sequence_id", "position_from", "time_from")
                   if other.get(k) not in (None, "")}
        return replace(self, **changes)


def clean_sequence_id(value) -> str:
    """A sequence id safe as a group key: kept when it is a short URL-safe token (UUIDs are),
    else a digest of it (so the grouping survives, not the text); '' when absent."""
    if value is None or isinstance(value, bool):
        return ""
    text = str(value).strip()
    if not text:
        return ""
    return text if _SEQ_RE.fullmatch(text) else "s-" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:24]


def parse_time(value) -> int | None:
    """Epoch ms (UTC) from mapillary_tools' "2021_03_04_10_11_12_000", EXIF "2021:03:04 10:11:12",
    ISO 8601 or epoch milliseconds; None when absent or garbled."""
    if isinstance(value, str):
        text = value.strip()
        m = _MAP_TIME_RE.fullmatch(text)
        if m:
            frac = (m[7] or "0").ljust(6, "0")
            return _epoch_ms(*(int(g) for g in m.groups()[:6]), micro=int(frac))
        m = _EXIF_TIME_RE.fullmatch(text)
        if m:
            return _epoch_ms(*(int(g) for g in m.groups()))
    return parse_captured_at(value)


def _epoch_ms(y, mo, d, h, mi, s, micro: int = 0, offset: timedelta = timedelta(0)) -> int | None:
    try:
        dt = datetime(y, mo, d, h, mi, s, micro, tzinfo=timezone(offset))
    except (ValueError, OverflowError):
        return None
    ms = int(round(dt.timestamp() * 1000))
    return ms if ms > 0 else None


def _text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip("\x00 ") if value is not None else ""


def _degrees(values, ref) -> float:
    """(deg, min, sec) rationals and a hemisphere letter -> signed degrees; NaN when garbled."""
    try:
        d, m, s = (float(v) for v in values)
    except (TypeError, ValueError, ZeroDivisionError):
        return float("nan")
    deg = d + m / 60 + s / 3600
    return -deg if _text(ref).upper() in ("S", "W") else deg


def _exif_datetime(text, offset_text="", subsec="") -> int | None:
    m = _EXIF_TIME_RE.match(_text(text))
    if not m:
        return None
    offset = timedelta(0)
    om = _OFFSET_RE.fullmatch(_text(offset_text))
    if om:
        offset = (1 if om[1] == "+" else -1) * timedelta(hours=int(om[2]), minutes=int(om[3]))
    digits = re.sub(r"\D", "", _text(subsec))[:6]
    return _epoch_ms(*(int(g) for g in m.groups()), micro=int(digits.ljust(6, "0")) if digits else 0, offset=offset)


def _gps_datetime(gps: dict) -> int | None:
    date, stamp = _text(gps.get(29)), gps.get(7)
    m = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})", date)
    if not m or not stamp:
        return None
    try:
        h, mi, s = (float(v) for v in stamp)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not all(math.isfinite(v) for v in (h, mi, s)):
        return None
    base = _epoch_ms(int(m[1]), int(m[2]), int(m[3]), 0, 0, 0)
    return None if base is None else base + int(round((h * 3600 + mi * 60 + s) * 1000))


def map_description(text) -> dict:
    """mapillary_tools' JSON in ImageDescription (or one entry of its description file), or {}."""
    text = _text(text)
    if not text.startswith("{"):
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def fields_from_description(entry: dict, origin: str) -> dict:
    """lat / lon / captured_at / sequence_id from one mapillary_tools description entry
    (MAPLatitude, MAPLongitude, MAPCaptureTime, MAPSequenceUUID); absent keys left out."""
    out: dict = {}
    if "MAPLatitude" in entry or "MAPLongitude" in entry:
        try:
            lat, lon = float(entry.get("MAPLatitude")), float(entry.get("MAPLongitude"))
        except (TypeError, ValueError):
            lat = lon = float("nan")
        out.update(lat=lat, lon=lon, position_from=origin)
    if entry.get("MAPCaptureTime") is not None:
        t = parse_time(entry.get("MAPCaptureTime"))
        if t is not None:
            out.update(captured_at=t, time_from=origin)
    seq = clean_sequence_id(entry.get("MAPSequenceUUID"))
    if seq:
        out["sequence_id"] = seq
    return out


def meta_from_exif(exif, fmt: str) -> PhotoMeta:
    """PhotoMeta from a Pillow Image.Exif (`Image.getexif()`)."""
    gps = dict(exif.get_ifd(GPS_IFD) or {})
    sub = dict(exif.get_ifd(EXIF_IFD) or {})
    desc = map_description(exif.get(TAG_IMAGE_DESCRIPTION))
    from_desc = fields_from_description(desc, "exif-description") if desc else {}

    lat = lon = None
    position_from = ""
    if 2 in gps and 4 in gps:
        lat, lon = _degrees(gps[2], gps.get(1, "N")), _degrees(gps[4], gps.get(3, "E"))
        position_from = "exif"
    elif "lat" in from_desc:
        lat, lon, position_from = from_desc["lat"], from_desc["lon"], from_desc["position_from"]

    candidates = (
        (_exif_datetime(sub.get(TAG_DATETIME_ORIGINAL), sub.get(TAG_OFFSET_TIME_ORIGINAL), sub.get(TAG_SUBSEC_TIME_ORIGINAL))
         if sub.get(TAG_OFFSET_TIME_ORIGINAL) else None, "exif-offset"),
        (_gps_datetime(gps), "exif-gps"),
        (from_desc.get("captured_at"), "exif-description"),
        (_exif_datetime(sub.get(TAG_DATETIME_ORIGINAL), "", sub.get(TAG_SUBSEC_TIME_ORIGINAL)), "exif-local"),
        (_exif_datetime(exif.get(TAG_DATETIME)), "exif-local"),
    )
    captured_at, time_from = next(((t, why) for t, why in candidates if t is not None), (None, ""))
    return PhotoMeta(lat=lat, lon=lon, captured_at=captured_at, sequence_id=from_desc.get("sequence_id", ""),
                     fmt=fmt, position_from=position_from, time_from=time_from)


def read_photo_meta(fh) -> PhotoMeta:
    """Parse the header of an open binary file; never raises (a bad header is `.error`)."""
    from PIL import Image

    try:
        with Image.open(fh) as im:
            fmt = im.format or ""
            return meta_from_exif(im.getexif(), fmt)
    except Exception as exc:  # Pillow raises many types on garbage; the reason is recorded
        return PhotoMeta(error=f"{type(exc).__name__}: {str(exc)[:200]}")
