"""Sequences for photos whose files name none: cut by capture time and distance (pure).

The split keeps a sequence in one of train / validation / test, so consecutive frames of
one drive must share an id. Photos are grouped by folder, ordered by capture time, and a
new sequence starts where the gap to the previous photo exceeds `max_gap_s` or the jump
exceeds `max_jump_m` (mapillary_tools cuts at 60 s and 600 m by default; so do we).
An id is a digest of the folder and the first photo's time and place: it does not depend
on file names or on photos later in the sequence, so adding photos at its end keeps it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

MAX_GAP_S = 60.0
MAX_JUMP_M = 600.0


@dataclass(frozen=True)
class TimedPoint:
    key: str  # the photo's relative path
    group: str  # photos in different groups (folders) never share a sequence
    captured_at: int  # epoch ms
    lat: float
    lon: float


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    k = math.pi / 180
    a = math.sin((lat2 - lat1) * k / 2) ** 2 + math.cos(lat1 * k) * math.cos(lat2 * k) * math.sin((lon2 - lon1) * k / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(min(1.0, math.sqrt(a)))


def sequence_id_for(first: TimedPoint) -> str:
    text = f"{first.group}\x00{first.captured_at}\x00{first.lat:.6f},{first.lon:.6f}"
    return "auto-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def cut_sequences(points: list[TimedPoint], max_gap_s: float = MAX_GAP_S, max_jump_m: float = MAX_JUMP_M) -> dict[str, str]:
    """{point key: sequence id}; see the module docstring."""
    if max_gap_s <= 0 or max_jump_m <= 0:
        raise ValueError(f"max_gap_s and max_jump_m must be positive, got {max_gap_s} and {max_jump_m}")
    out: dict[str, str] = {}
    by_group: dict[str, list[TimedPoint]] = {}
    for p in points:
        by_group.setdefault(p.group, []).append(p)
    for members in by_group.values():
        members.sort(key=lambda p: (p.captured_at, p.key))
        first = prev = None
        for p in members:
            if prev is None or (p.captured_at - prev.captured_at) / 1000.0 > max_gap_s \
                    or metres(prev.lat, prev.lon, p.lat, p.lon) > max_jump_m:
                first = p
            out[p.key] = sequence_id_for(first)
            prev = p
    return out
