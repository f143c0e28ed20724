"""What blurring buys as the synthetic world's text assumption varies: the sizes, the
tiles, the folders and the stored result of the sensitivity run (`geo_assets/run/sensitivity.py`
runs it through Dagster; the `text_assumption_sensitivity` asset writes its result and
`privacy_report` reads it).

For each place-text share (the share of images whose text names the place they are in,
`SyntheticWorld(place_text_share=...)`) a small world of its own lives in
`<storage>/sensitivity/place-text=<share>/`. Every share uses the same tiles and the same
image ids: the worlds differ only in what the signs say.

The default size is meant to run in about 10-15 minutes on 2 cores (an estimate from the
main job's stage costs in PERFORMANCE.md), so the main job is not made any longer by it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geo_assets.synthetic.world import DEFAULT_PLACE_TEXT_SHARE, check_place_text_share

DEFAULT_SHARES = (DEFAULT_PLACE_TEXT_SHARE, round(DEFAULT_PLACE_TEXT_SHARE / 5, 4), 0.0)
DEFAULT_TILES = 8
DEFAULT_IMAGES_PER_TILE = 60
DEFAULT_GEOCELL = "0.05"  # the geocell of the seed's Figure 18 rows the report compares with
# A small world needs a bigger test share to hold enough sequences (as the graph tests do).
SPLIT = {"validation_fraction": 0.2, "test_fraction": 0.3}
RESULT_FILE = "text_assumption_sensitivity.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SensitivityConfig:
    shares: tuple[float, ...] = DEFAULT_SHARES
    tiles: int = DEFAULT_TILES
    images_per_tile: int = DEFAULT_IMAGES_PER_TILE
    geocell: str = DEFAULT_GEOCELL
    max_epochs: int | None = None
    n_boot: int = 1000

    def __post_init__(self):
        if not self.shares:
            raise ValueError("sensitivity needs at least one place-text share")
        object.__setattr__(self, "shares", tuple(check_place_text_share(s) for s in self.shares))
        if len(set(self.shares)) != len(self.shares):
            raise ValueError(f"place-text shares repeat: {self.shares}")
        if self.tiles < 1 or self.images_per_tile < 10:
            raise ValueError("sensitivity needs at least 1 tile and 10 images per tile")


def pick_tiles(tile_keys: list[str], world, count: int) -> list[str]:
    """The `count` tiles holding the most world images (ties by key): the same for every share,
    since the share never moves an image."""
    from geo_assets.geo.tiles import Tile

    counts = []
    for key in tile_keys:
        counts.append((-world.count(Tile.from_key(key).bbox), key))
    return [key for _, key in sorted(counts)[:count]]


def share_folder(root: Path, share: float) -> Path:
    return Path(root) / "sensitivity" / f"place-text={share:g}"


def place_text_rates(world, ids: list[str]) -> tuple[float, float]:
    """(share of the images naming their place, share with any sign) over the given image ids."""
    if not ids:
        return 0.0, 0.0
    metas = [world.meta(i) for i in ids]
    return float(np.mean([m.place_text for m in metas])), float(np.mean([m.has_sign for m in metas]))


def command_line(config: SensitivityConfig | None = None) -> str:
    config = config or SensitivityConfig()
    parts = ["geo-assets sensitivity"]
    if config.shares != DEFAULT_SHARES:
        parts.append("--shares " + ",".join(f"{s:g}" for s in config.shares))
    if config.tiles != DEFAULT_TILES:
        parts.append(f"--tiles {config.tiles}")
    if config.images_per_tile != DEFAULT_IMAGES_PER_TILE:
        parts.append(f"--images-per-tile {config.images_per_tile}")
    if config.geocell != DEFAULT_GEOCELL:
        parts.append(f"--geocell {config.geocell}")
    return " ".join(parts)


def read_result(path: Path) -> dict | None:
    """The stored result, None when it was never computed; a clear error when it is unreadable."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"corrupt sensitivity file {path}: {exc}; rerun `geo-assets sensitivity`") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION or not isinstance(data.get("rows"), list):
        raise ValueError(f"{path} is not a text-assumption sensitivity result (format {FORMAT_VERSION}); "
                         "rerun `geo-assets sensitivity`")
    return data
