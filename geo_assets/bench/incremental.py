"""Part 2 and 3 of the bench: incremental cost through real Dagster materializations of
the tile assets, (a) full build, (b) nothing new, (b') daily pull only, (c) new images,
(d) the seed's recompute-everything, at one or more sizes, with growth ratios."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from geo_assets.bench.meter import Meter

DEFAULT_SIZES = (8, 16)
DEFAULT_TILES = 1
DEFAULT_NEW_FRACTION = 0.05
TILE_ASSET_NAMES = ("raw_images", "ocr_text", "blurred_images", "captions", "embeddings")
DERIVED_TABLES = ("ocr_text", "blurred_images", "captions", "embeddings")

Echo = Callable[[str], None]


def warm_up(echo: Echo = print) -> float:
    """Load every model the tile assets use (cached per process), so the first
    materialization does not pay for it; returns the seconds spent."""
    from geo_assets.defs.resources import CaptionerResource, EncoderResource, OcrResource, synthetic_world

    t0 = time.perf_counter()
    synthetic_world(0)
    ocr = OcrResource()
    ocr.primary()
    ocr.second()
    CaptionerResource().captioner()
    EncoderResource().text_encoder()
    EncoderResource().image_encoder()
    took = time.perf_counter() - t0
    echo(f"  models loaded / warm in {took:.1f} s")
    return took


def materialize_tiles(instance, resources: dict, tiles: list[str], images_per_tile: int,
                      check_sample: int | None = None, pull_only: bool = False) -> dict:
    """Materialize the tile assets for every tile (one Dagster run each, like the main job);
    `pull_only`: raw_images alone, what the daily_pull schedule runs."""
    from geo_assets.definitions import TILE_ASSET_NAMES
    from geo_assets.run.execution import materialize_tile
    from geo_assets.run.stats import materialization_counts, step_seconds

    selection = TILE_ASSET_NAMES[:1] if pull_only else TILE_ASSET_NAMES

    runs = []
    t_all = time.perf_counter()
    with Meter() as meter:
        for tile in tiles:
            t0 = time.perf_counter()
            result = materialize_tile(instance, resources, tile, selection=selection, images_per_tile=int(images_per_tile),
                                      check_sample=None if pull_only else check_sample,
                                      tags={"geo_assets/step": f"bench {tile}"})
            took = time.perf_counter() - t0
            if not result.success:
                failures = [e.message for e in result.all_events if e.is_failure][:3]
                raise RuntimeError(f"bench materialization of tile {tile} failed: {failures}")
            runs.append({"tile": tile, "seconds": round(took, 3), "steps": step_seconds(instance, result.run_id),
                         "counts": materialization_counts(result)})
    seconds = time.perf_counter() - t_all
    steps: dict = {}
    for r in runs:
        for k, v in r["steps"].items():
            steps[k] = round(steps.get(k, 0.0) + v, 3)
    new = sum(int(r["counts"].get("raw_images", {}).get("new_images", 0)) for r in runs)
    total = sum(int(r["counts"].get("raw_images", {}).get("total_images", 0)) for r in runs)
    return {"seconds": round(seconds, 3), "peak_mib": round(meter.peak_mib, 1), "new_images": new,
            "total_images": total, "steps": steps, "runs": runs}


def delete_derived(storage_dir: Path) -> list[str]:
    """Remove every derived table, cache and blurred image; keep raw images and their tables."""
    removed = []
    for rel in [*(f"tables/{t}" for t in DERIVED_TABLES), "cache", "images/blurred"]:
        p = storage_dir / rel
        if p.exists():
            shutil.rmtree(p)
            removed.append(rel)
    return removed


def new_images_for(size: int, fraction: float = DEFAULT_NEW_FRACTION) -> int:
    return max(1, int(round(size * fraction)))


def bench_incremental(workdir: Path, size: int, tiles: list[str], *, new_fraction: float = DEFAULT_NEW_FRACTION,
                      check_sample: int | None = None, echo: Echo = print) -> dict:
    """(a) full build, (b) no-new rebuild, (c) rebuild after new images, (d) full recompute."""
    import dagster as dg

    from geo_assets.defs.resources import build_resources
    from geo_assets.config.settings import GeoSettings

    root = workdir / f"incremental-{size}"
    storage_dir, models_dir = root / "storage", root / "models"
    resources = build_resources(GeoSettings.from_env().with_storage(storage_dir, models_dir))
    grown = size + new_images_for(size, new_fraction)
    out: dict = {"images_per_tile": size, "images_per_tile_after": grown, "tiles": tiles}

    def show(label: str, r: dict) -> None:
        echo(f"  size {size} {label:<28} {r['seconds']:>8.2f} s  new {r['new_images']:>3}  total {r['total_images']:>4}")

    with dg.instance_for_test() as instance:
        out["a_full"] = materialize_tiles(instance, resources, tiles, size, check_sample)
        show("(a) full build", out["a_full"])
        out["b_no_new"] = materialize_tiles(instance, resources, tiles, size, check_sample)
        show("(b) rebuild, nothing new", out["b_no_new"])
        out["b_pull_only"] = materialize_tiles(instance, resources, tiles, size, check_sample, pull_only=True)
        show("(b') daily pull, nothing new", out["b_pull_only"])
        out["c_new"] = materialize_tiles(instance, resources, tiles, grown, check_sample)
        show(f"(c) rebuild, +{grown - size} new/tile", out["c_new"])
        out["d_removed"] = delete_derived(storage_dir)
        out["d_recompute"] = materialize_tiles(instance, resources, tiles, grown, check_sample)
        show("(d) recompute all (seed)", out["d_recompute"])
    a = out["a_full"]["seconds"]
    d = out["d_recompute"]["seconds"]
    out["ratios"] = {
        "b_over_a": round(out["b_no_new"]["seconds"] / a, 4),
        "b_pull_only_over_a": round(out["b_pull_only"]["seconds"] / a, 4),
        "c_over_a": round(out["c_new"]["seconds"] / a, 4),
        "d_over_a": round(d / a, 4),
        "c_over_d": round(out["c_new"]["seconds"] / d, 4),
    }
    new = out["c_new"]["new_images"]
    out["marginal_seconds_per_new_image"] = round((out["c_new"]["seconds"] - out["b_no_new"]["seconds"]) / new, 3) if new else None
    out["full_seconds_per_image"] = round(a / max(1, out["a_full"]["total_images"]), 3)
    return out


def growth(results: list[dict]) -> list[dict]:
    """Ratios between consecutive sizes: does a cost follow total images or new images?"""
    rows = []
    for lo, hi in zip(results, results[1:]):
        g = {"from": lo["images_per_tile"], "to": hi["images_per_tile"]}

        def ratio(x, y):
            return round(y / x, 3) if x else None

        g["total_images"] = ratio(lo["a_full"]["total_images"], hi["a_full"]["total_images"])
        g["new_images"] = ratio(lo["c_new"]["new_images"], hi["c_new"]["new_images"])
        for key, label in (("a_full", "a_full"), ("b_no_new", "b_no_new"), ("c_new", "c_new"), ("d_recompute", "d_recompute")):
            g[label] = ratio(lo[key]["seconds"], hi[key]["seconds"])
        inc_lo = lo["c_new"]["seconds"] - lo["b_no_new"]["seconds"]
        inc_hi = hi["c_new"]["seconds"] - hi["b_no_new"]["seconds"]
        g["c_minus_b"] = ratio(inc_lo, inc_hi) if inc_lo > 0 else None
        rows.append(g)
    return rows

