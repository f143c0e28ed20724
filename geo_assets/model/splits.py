"""Train / validation / test splits as a pure function of a group key.

Protocols:

- ``sequence`` (default): every image of one Mapillary sequence lands in the
  same split. Images a few metres apart on one drive are near-duplicates; a
  per-image split puts their neighbours in training and flatters the model.
- ``block``: whole geographic blocks (``block_deg`` squares of lat/lon) are
  held out, so a test image has no training image in its block at all.
- ``seed_random``: the seed's protocol, a random per-image 80/20
  train/validation split with no test set. Kept so the seed's numbers can be
  reproduced; its "test" rows are its validation rows (as the seed reported).

The split of a group is decided by a salted SHA-256 of its key, so it never
depends on which other images exist: an incremental pull never moves an image
from one split to another, and every model partition sees the same split.
Images without a sequence id fall back to their own id as the group (a
single-image sequence).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "validation", "test")
PROTOCOLS = ("sequence", "block", "seed_random")
DEFAULT_PROTOCOL = "sequence"
SALT = "geo_assets-split-v2"


@dataclass(frozen=True)
class SplitConfig:
    protocol: str = DEFAULT_PROTOCOL
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    block_deg: float = 0.5
    salt: str = SALT

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"split protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        for name in ("validation_fraction", "test_fraction"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
                raise ValueError(f"{name} must be in [0, 1), got {v!r}")
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError("validation_fraction + test_fraction must leave rows for training")
        if not (isinstance(self.block_deg, (int, float)) and 0.01 <= self.block_deg <= 10.0):
            raise ValueError(f"block_deg must be in [0.01, 10] degrees, got {self.block_deg!r}")

    @property
    def fractions(self) -> tuple[float, float]:
        """(validation, test) fractions actually used: the seed protocol is 80/20 with no test."""
        if self.protocol == "seed_random":
            return 0.2, 0.0
        return float(self.validation_fraction), float(self.test_fraction)

    @property
    def evaluation_split(self) -> str:
        """Where reported numbers come from: test, except under the seed's protocol."""
        return "validation" if self.protocol == "seed_random" else "test"

    def key(self) -> str:
        v, t = self.fractions
        extra = f"-{self.block_deg:g}" if self.protocol == "block" else ""
        return f"{self.protocol}{extra}-v{v:g}-t{t:g}-{self.salt}"


def unit_hash(key: str, salt: str = SALT) -> float:
    """A uniform number in [0, 1) from a salted SHA-256 of `key`."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_of_key(key: str, validation_fraction: float, test_fraction: float, salt: str = SALT) -> str:
    u = unit_hash(key, salt)
    if u < test_fraction:
        return "test"
    if u < test_fraction + validation_fraction:
        return "validation"
    return "train"


def block_key(lat: float, lon: float, block_deg: float) -> str:
    return f"b{math.floor(lat / block_deg)}:{math.floor(lon / block_deg)}@{block_deg:g}"


def group_keys(image_ids, sequence_ids, lat, lon, config: SplitConfig) -> list[str]:
    """The key each image is split by, under `config.protocol`."""
    ids = [str(i) for i in image_ids]
    if config.protocol == "seed_random":
        return [f"img:{i}" for i in ids]
    if config.protocol == "block":
        la = np.asarray(lat, dtype=np.float64).reshape(-1)
        lo = np.asarray(lon, dtype=np.float64).reshape(-1)
        if not (len(la) == len(lo) == len(ids)):
            raise ValueError("image_ids, lat and lon must have the same length")
        return [block_key(a, b, config.block_deg) for a, b in zip(la.tolist(), lo.tolist())]
    seqs = ["" if s is None else str(s) for s in sequence_ids]
    if len(seqs) != len(ids):
        raise ValueError(f"{len(ids)} image ids but {len(seqs)} sequence ids")
    return [f"seq:{s}" if s else f"img:{i}" for i, s in zip(ids, seqs)]


def assign_splits(image_ids, sequence_ids, lat, lon, config: SplitConfig | None = None) -> np.ndarray:
    """One of SPLITS per image (numpy array of str), a pure function of each image's group."""
    config = config or SplitConfig()
    v, t = config.fractions
    keys = group_keys(image_ids, sequence_ids, lat, lon, config)
    memo: dict[str, str] = {}
    out = np.empty(len(keys), dtype=object)
    for i, k in enumerate(keys):
        s = memo.get(k)
        if s is None:
            s = memo[k] = split_of_key(k, v, t, config.salt)
        out[i] = s
    return out.astype(str) if len(keys) else np.zeros(0, dtype=str)


def split_summary(splits: np.ndarray, groups: list[str] | None = None) -> dict:
    """Rows (and groups, when given) per split, for metadata and the report."""
    splits = np.asarray(splits)
    out = {s: int(np.count_nonzero(splits == s)) for s in SPLITS}
    if groups is not None:
        for s in SPLITS:
            out[f"{s}_groups"] = len({g for g, sp in zip(groups, splits.tolist()) if sp == s})
    return out


def split_shortfall(splits: np.ndarray, groups: list[str], protocol: str) -> tuple[str | None, str | None]:
    """(error, warning) when the grouped split of a small data set cannot train or test.

    A folder of one drive is one sequence: the split puts all of it in one place. No
    training rows is an error (nothing to learn from); no test rows is a warning (the
    model trains, but there is nothing held out to report)."""
    splits = np.asarray(splits)
    n = {s: int(np.count_nonzero(splits == s)) for s in SPLITS}
    where = {s: len({g for g, sp in zip(groups, splits.tolist()) if sp == s}) for s in SPLITS}
    total_groups = len(set(groups))
    unit = "block" if protocol == "block" else "sequence"

    def count(k: int) -> str:
        return f"{k} {unit}{'' if k == 1 else 's'}"

    spread = ", ".join(f"{n[s]} in {s} ({count(where[s])})" for s in SPLITS)
    held = (f"{len(splits)} images in {count(total_groups)}, split by {protocol}: {spread}. A {unit} never spans "
            f"two splits, so a data set needs images from many {unit}s (dozens) for training and test numbers")
    if n["train"] == 0:
        return f"no training images: {held}.", None
    if n["test"] == 0:
        return None, f"no test images: the model trains, but nothing is held out to report. {held}."
    return None, None
