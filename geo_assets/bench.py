"""`geo-assets bench`: stage throughput, incremental cost and scaling, measured in one run.

Three parts, all through the project's own modules (nothing is copied here):

1. Stage throughput on N synthetic images: pull (MapillaryClient against a
   LocalMapillaryServer over the SyntheticWorld: search + download + validate),
   OCR (RapidOCR on all N, EasyOCR on a small subset), blur (detect + blur +
   re-read, the blurred_images asset's work), captions (ImageNet-label
   captioner), text encoder (MiniLM), image encoder (EfficientNet-Lite0), fusion,
   one training epoch of the GeolocatorMLP at geocell 0.05 and 0.1, end-to-end
   prediction of one image (geo_assets.predict_images) and model-only inference.
   Each stage reports images/s and peak memory: VmRSS from /proc/self/status is
   sampled by a background thread during the stage, and the peak minus the RSS
   at the stage start is reported (MiB).
2. Incremental cost through real Dagster materializations of the tile assets
   on K tiles: (a) full build from empty, (b) rebuild with nothing new,
   (c) rebuild after ~5% new images, (d) the seed's non-incremental reference:
   every derived table, cache and blurred image deleted, recomputed from the
   same downloaded images.
3. Scaling: (2) at two or more data-set sizes, with growth ratios.

Tables are printed; everything (with machine info and timestamps) goes to JSON.
Run `geo-assets bench --help` for the options. The machine is assumed shared and
noisy: compare ratios measured in the same run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_IMAGES = 12
DEFAULT_EASYOCR_IMAGES = 2
DEFAULT_SIZES = (8, 16)
DEFAULT_TILES = 1
DEFAULT_TRAIN_ROWS = 512
DEFAULT_EPOCHS = 2
DEFAULT_NEW_FRACTION = 0.05
GEOCELLS = ("0.05", "0.1")
TILE_ASSET_NAMES = ("raw_images", "ocr_text", "blurred_images", "captions", "embeddings")
DERIVED_TABLES = ("ocr_text", "blurred_images", "captions", "embeddings")

Echo = Callable[[str], None]


# --------------------------------------------------------------------------- measuring


def rss_kib() -> int:
    """Resident set size of this process in KiB (VmRSS), 0 where /proc is missing."""
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Meter:
    """Wall time and peak RSS above the start of a block (sampled every `interval` s)."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.start_kib = 0
        self.peak_kib = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            value = rss_kib()
            if value > self.peak_kib:
                self.peak_kib = value

    def __enter__(self) -> "Meter":
        self.start_kib = self.peak_kib = rss_kib()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_kib = max(self.peak_kib, rss_kib())

    @property
    def peak_mib(self) -> float:
        return max(0.0, (self.peak_kib - self.start_kib) / 1024.0)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _stage(name: str, images: int, meter: Meter, seconds: float | None = None, *, load_seconds: float = 0.0,
           note: str = "", **extra) -> dict:
    secs = meter.seconds if seconds is None else seconds
    return {
        "stage": name,
        "images": int(images),
        "seconds": round(secs, 4),
        "images_per_s": round(images / secs, 3) if secs > 0 else 0.0,
        "peak_mib": round(meter.peak_mib, 1),
        "load_seconds": round(load_seconds, 3),
        "note": note,
        **extra,
    }


def machine_info() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda": bool(torch.cuda.is_available()),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "memory_total_mib": None,
        "loadavg_start": _loadavg(),
    }
    if info["cuda"]:
        info["cuda_device"] = torch.cuda.get_device_name(0)
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except Exception:  # pragma: no cover - optional detail
        pass
    try:
        import dagster

        info["dagster"] = dagster.__version__
    except Exception:  # pragma: no cover
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["memory_total_mib"] = int(line.split()[1]) // 1024
                    break
    except OSError:
        pass
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


# --------------------------------------------------------------------------- tiles


def pick_tiles(world, need: int, count: int = 1) -> list[str]:
    """`count` tile partition keys whose synthetic catalogue holds at least `need` images
    (most images first if none does)."""
    from geo_assets.defs.partitions import tile_keys
    from geo_assets.geo.tiles import Tile

    keys = tile_keys()
    sized = [(k, world.count(Tile.from_key(k).bbox)) for k in keys]
    enough = [k for k, n in sized if n >= need]
    if len(enough) >= count:
        return enough[:count]
    rest = [k for k, _ in sorted(sized, key=lambda kn: -kn[1]) if k not in enough]
    return (enough + rest)[:count]


# --------------------------------------------------------------------------- 1. stage throughput


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def bench_stages(workdir: Path, *, images: int = DEFAULT_IMAGES, easyocr_images: int = DEFAULT_EASYOCR_IMAGES,
                 train_rows: int = DEFAULT_TRAIN_ROWS, epochs: int = DEFAULT_EPOCHS, inference_repeats: int = 50,
                 echo: Echo = print) -> dict:
    """Per-stage throughput and peak memory on `images` synthetic images (see the module doc)."""
    import secrets

    import cv2
    import numpy as np

    from geo_assets.defs.resources import CaptionerResource, EncoderResource, synthetic_world
    from geo_assets.store.images import load_bgr
    from geo_assets.embed.fusion import CrossAttentionFusion
    from geo_assets.geo.bbox import region_bounds
    from geo_assets.geo.geocells import GeocellGrid, parse_geocell_size
    from geo_assets.geo.tiles import Tile
    from geo_assets.ingest.pull import pull_tile
    from geo_assets.mapillary.client import MapillaryClient
    from geo_assets.model.artifacts import load_model, save_model
    from geo_assets.model.refine import model_outputs
    from geo_assets.model.splits import SplitConfig, assign_splits
    from geo_assets.model.train import TrainConfig, train_geolocator
    from geo_assets.model.predict import predict_images
    from geo_assets.preprocess.ocr import make_ocr_engine
    from geo_assets.preprocess.variants import caption_text, make_blurred_variant
    from geo_assets.settings import BLUR_VARIANTS, GeoSettings
    from geo_assets.store.layout import StorageLayout
    from geo_assets.synthetic.server import LocalMapillaryServer

    if images < 1:
        raise ValueError("--images must be >= 1")
    layout = StorageLayout(workdir / "stages" / "storage", workdir / "stages" / "models")
    stages: list[dict] = []
    extra: dict = {}

    def done(row: dict) -> None:
        stages.append(row)
        echo(f"  {row['stage']:<34} {row['images']:>5} images {row['seconds']:>9.3f} s "
             f"{row['images_per_s']:>9.2f} img/s  peak +{row['peak_mib']:.0f} MiB")

    with Meter() as m:
        world = synthetic_world(0)
    extra["world_build_seconds"] = round(m.seconds, 3)
    extra["world_images"] = len(world)

    # -- pull: search + download + validate + store, over the local Mapillary-compatible API
    tiles = pick_tiles(world, need=int(images * 1.3) + 2, count=64)
    token = secrets.token_urlsafe(16)
    rows: list[dict] = []
    with LocalMapillaryServer(world, token=token) as server:
        client = MapillaryClient(base_url=server.base_url, token=token, timeout=15.0, max_retries=5, backoff=0.5)
        searched = 0
        with Meter() as m:
            for key in tiles:
                if len(rows) >= images:
                    break
                result = pull_tile(client, Tile.from_key(key), layout, known_ids=set(), known_sha256=set(),
                                   start_captured_at=None, max_new=images - len(rows), source="synthetic:0")
                searched += int(result.stats.get("searched", 0))
                rows += result.rows
        requests_made = int(client.stats.get("requests", 0))
        client.close()
    if not rows:
        raise RuntimeError("the pull stage stored no image: nothing to benchmark")
    done(_stage("pull (search + download)", len(rows), m, note=f"{requests_made} API requests, {searched} records searched",
                requests=requests_made, records_searched=searched))
    n = len(rows)
    bgr = [load_bgr(layout.root / r["path"]) for r in rows]

    # -- OCR: RapidOCR on every image, EasyOCR on a subset (about 1 s per image or more on CPU)
    with Meter() as m:
        t0 = time.perf_counter()
        rapid = make_ocr_engine("rapidocr")
        load = time.perf_counter() - t0
        t1 = time.perf_counter()
        words = [rapid.read(im) for im in bgr]
        work = time.perf_counter() - t1
    done(_stage("OCR RapidOCR", n, m, work, load_seconds=load, note=f"load {load:.1f} s not in seconds",
                words=sum(len(w) for w in words)))

    k = max(1, min(int(easyocr_images), n))
    with Meter() as m:
        t0 = time.perf_counter()
        easy = make_ocr_engine("easyocr")
        load = time.perf_counter() - t0
        t1 = time.perf_counter()
        easy_words = [easy.read(im) for im in bgr[:k]]
        work = time.perf_counter() - t1
    done(_stage("OCR EasyOCR (subset)", k, m, work, load_seconds=load,
                note=f"subset of {k} of {n} images; load {load:.1f} s not in seconds",
                words=sum(len(w) for w in easy_words)))

    # -- blur: detection passes (low thresholds) + pixelate/Gaussian blur + one re-read,
    #    with the blurred_images asset's default config
    from geo_assets.defs.assets.preprocess import BlurConfig

    blur_config = BlurConfig()
    scales = "x, ".join(f"{s:g}" for s in blur_config.scales) + "x"
    with Meter() as m:
        variants = [make_blurred_variant(im, rapid, w, **blur_config.variant_kwargs()) for im, w in zip(bgr, words)]
    done(_stage("blur (detect + blur + re-read)", n, m,
                note=f"as the blurred_images asset: RapidOCR detection at {scales}, blur, one re-read",
                boxes=sum(len(v.boxes) for v in variants), scales=list(blur_config.scales)))

    # both variants from here on, as the caption and embedding assets do
    items = [("unblurred", im, w) for im, w in zip(bgr, words)] + [("blurred", v.image_bgr, v.words_after) for v in variants]
    rgb = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for _, im, _ in items]
    both = f"{n} images x 2 variants"

    with Meter() as m:
        t0 = time.perf_counter()
        captioner = CaptionerResource().captioner()
        load = time.perf_counter() - t0
        t1 = time.perf_counter()
        generated: list[str] = []
        for batch in _chunks(rgb, 16):
            generated += list(captioner.caption_batch(batch))
        captions = [caption_text(g, w).caption for g, (_, _, w) in zip(generated, items)]
        work = time.perf_counter() - t1
    done(_stage("caption (imagenet-labels)", len(items), m, work, load_seconds=load,
                note=f"{both}; caption + OCR text cleaning; load {load:.1f} s not in seconds",
                captioner=getattr(captioner, "captioner_id", "")))

    encoders = EncoderResource()
    with Meter() as m:
        t0 = time.perf_counter()
        text_encoder = encoders.text_encoder()
        load = time.perf_counter() - t0
        t1 = time.perf_counter()
        text_cls = np.concatenate([text_encoder.encode(batch) for batch in _chunks(captions, 32)])
        work = time.perf_counter() - t1
    done(_stage("text encoder (MiniLM)", len(items), m, work, load_seconds=load,
                note=f"{both}; batches of 32; load {load:.1f} s not in seconds", encoder=text_encoder.encoder_id,
                device=str(getattr(text_encoder, "device", ""))))

    with Meter() as m:
        t0 = time.perf_counter()
        image_encoder = encoders.image_encoder()
        load = time.perf_counter() - t0
        t1 = time.perf_counter()
        encoded = [image_encoder.encode(batch) for batch in _chunks(rgb, 32)]
        image_cls = np.concatenate([e.cls for e in encoded])
        tokens = np.concatenate([e.tokens for e in encoded])
        work = time.perf_counter() - t1
    done(_stage("image encoder (EfficientNet-Lite0)", len(items), m, work, load_seconds=load,
                note=f"{both}; batches of 32; already loaded by the captioner" if load < 0.5 else
                f"{both}; batches of 32; load {load:.1f} s not in seconds",
                encoder=image_encoder.encoder_id, device=str(getattr(image_encoder, "device", ""))))
    del image_cls

    with Meter() as m:
        t0 = time.perf_counter()
        fusion = CrossAttentionFusion(text_encoder.dim, image_encoder.dim)
        load = time.perf_counter() - t0
        t1 = time.perf_counter()
        fused = fusion.fuse(text_cls, tokens)
        work = time.perf_counter() - t1
    done(_stage("fusion (cross-attention)", len(items), m, work, load_seconds=load, note=both, fusion=fusion.fusion_id))
    del tokens

    # -- training: one MLP per (variant, geocell), as the geolocator_model asset
    grid_bounds = region_bounds(GeoSettings.from_env().region)
    lat = np.array([r["lat"] for r in rows], dtype=np.float64)
    lon = np.array([r["lon"] for r in rows], dtype=np.float64)
    ids = [r["image_id"] for r in rows]
    reps = max(1, math.ceil(train_rows / n))
    train = {}
    for geocell in GEOCELLS:
        grid = GeocellGrid(grid_bounds, parse_geocell_size(geocell))
        per_variant = []
        with Meter() as m:
            for v, variant in enumerate(BLUR_VARIANTS):
                feats = fused[v * n : (v + 1) * n]
                x = np.tile(feats, (reps, 1))[:max(train_rows, n)]
                x_ids = (ids * reps)[: len(x)]
                x_lat, x_lon = np.tile(lat, reps)[: len(x)], np.tile(lon, reps)[: len(x)]
                # The seed's per-image 80/20 (tiled rows repeat ids: the split only times training).
                is_val = assign_splits(x_ids, [""] * len(x_ids), x_lat, x_lon, SplitConfig(protocol="seed_random")) == "validation"
                config = TrainConfig(max_epochs=max(1, epochs), patience=max(1, epochs))
                result = train_geolocator(x, x_lat, x_lon, is_val, grid, config)
                save_model(layout.model_dir(variant, geocell), result.model, {
                    "blur": variant, "geocell": geocell, "feature": "fused", "encoder_key": "bench",
                    "training_data_version": "bench", "n_train": int((~is_val).sum()), "n_val": int(is_val.sum()),
                    "history": result.history, "best_epoch": result.best_epoch, "device": result.device,
                }, grid=grid)
                epoch_s = [h["seconds"] for h in result.history]
                per_variant.append({"variant": variant, "rows_trained": int((~is_val).sum()), "rows_val": int(is_val.sum()),
                                    "epochs": len(epoch_s), "epoch_seconds": [round(s, 4) for s in epoch_s],
                                    "device": result.device})
        rows_per_epoch = sum(p["rows_trained"] for p in per_variant)
        mean_epoch = sum(statistics.fmean(p["epoch_seconds"]) for p in per_variant)
        params = sum(p.numel() for p in result.model.parameters())
        train[geocell] = per_variant
        done(_stage(f"train epoch (geocell {geocell})", rows_per_epoch, m, mean_epoch,
                    note=(f"{grid.n_cells} cells, {params / 1e6:.1f} M params; both variants; {n} real fused rows "
                          f"repeated to {len(x)}; epoch incl. validation"),
                    geocells=grid.n_cells, params=params, per_variant=per_variant, total_seconds=round(m.seconds, 3)))

    # -- prediction: one image end to end with every trained model (4), as `geo-assets predict`
    paths = [layout.root / r["path"] for r in rows]
    with Meter() as m:
        first = predict_images([paths[0]], models_dir=layout.models_root)
    first_s = m.seconds
    with Meter() as m:
        t0 = time.perf_counter()
        loaded = [load_model(d) for d in sorted(p.parent for p in layout.models_root.glob("*/*/model.json"))]
        model_load = time.perf_counter() - t0
    with Meter() as m:
        second = predict_images([paths[min(1, n - 1)]], models_dir=layout.models_root)
    ok = not first[0].get("error") and not second[0].get("error") and len(second[0]["predictions"]) == len(loaded)
    done(_stage("predict end to end (1 image)", 1, m,
                note=(f"{len(loaded)} models; warm process; includes {model_load:.2f} s loading the models from disk; "
                      f"first call {first_s:.2f} s"),
                first_call_seconds=round(first_s, 3), model_load_seconds=round(model_load, 3), ok=ok))

    # -- model only: one fused vector through each model, median of repeats
    x1 = fused[:1]
    for lm in loaded:
        if lm.meta.get("blur") != "unblurred":
            continue
        for _ in range(3):
            model_outputs(lm.model, x1, None, lm.grid)
        times = []
        with Meter() as m:
            for _ in range(max(1, inference_repeats)):
                t0 = time.perf_counter()
                model_outputs(lm.model, x1, None, lm.grid)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model_outputs(lm.model, fused[:n], None, lm.grid)
            batch_s = time.perf_counter() - t0
        med = statistics.median(times)
        done(_stage(f"model inference (geocell {lm.meta['geocell']})", 1, m, med,
                    note=f"median of {len(times)}; batch of {n}: {n / batch_s:.0f} img/s",
                    p90_seconds=round(sorted(times)[int(0.9 * (len(times) - 1))], 6),
                    batch_images_per_s=round(n / batch_s, 1)))
    return {"images": n, "stages": stages, "tiles": [t for t in tiles if any(r["path"].split("/")[2] == t for r in rows)],
            **extra}


# --------------------------------------------------------------------------- 2. incremental cost


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
    from geo_assets.execution import materialize_tile
    from geo_assets.run_stats import materialization_counts, step_seconds

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
    from geo_assets.settings import GeoSettings

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


# --------------------------------------------------------------------------- printing


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    align = align or ("l" + "r" * (len(headers) - 1))

    def line(values):
        return "| " + " | ".join(v.ljust(w) if a == "l" else v.rjust(w) for v, w, a in zip(values, widths, align)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in cells)])


def stage_table(stages: list[dict]) -> str:
    def secs(v: float) -> str:
        return f"{v:.4f}" if v < 1 else f"{v:.2f}"

    return format_table(
        ["stage", "images", "seconds", "images/s", "peak MiB", "notes"],
        [[s["stage"], s["images"], secs(s["seconds"]), f"{s['images_per_s']:.2f}", f"{s['peak_mib']:.0f}", s["note"]]
         for s in stages],
        "lrrrrl",
    )


def incremental_table(results: list[dict]) -> str:
    rows = []
    for r in results:
        a = r["a_full"]["seconds"]
        for key, label in (("a_full", "(a) full build"), ("b_no_new", "(b) rebuild, nothing new"),
                           ("b_pull_only", "(b') daily pull only, nothing new"),
                           ("c_new", "(c) rebuild, new images"), ("d_recompute", "(d) recompute all (seed)")):
            x = r[key]
            steps = x["steps"]
            per = " / ".join(f"{steps.get(k, 0):.1f}" for k in TILE_ASSET_NAMES)
            rows.append([r["images_per_tile"], label, x["new_images"], x["total_images"], f"{x['seconds']:.2f}",
                         f"{x['seconds'] / a:.3f}", f"{x['peak_mib']:.0f}", per])
    return format_table(["images/tile", "run", "new", "total", "seconds", "ratio to (a)", "peak MiB",
                         "raw / ocr / blur / captions / embeddings s"], rows, "rlrrrrrl")


def growth_table(rows: list[dict]) -> str:
    return format_table(
        ["sizes", "total images", "new images", "(a) full", "(b) no new", "(c) new", "(c)-(b)", "(d) recompute"],
        [[f"{g['from']} -> {g['to']}", g["total_images"], g["new_images"], g["a_full"], g["b_no_new"], g["c_new"],
          g["c_minus_b"] if g["c_minus_b"] is not None else "n/a", g["d_recompute"]] for g in rows],
        "lrrrrrrr",
    )


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geo-assets bench", description="Stage throughput, incremental cost and scaling.")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, help=f"images for the stage throughput (default {DEFAULT_IMAGES})")
    p.add_argument("--easyocr-images", type=int, default=DEFAULT_EASYOCR_IMAGES,
                   help=f"EasyOCR subset (default {DEFAULT_EASYOCR_IMAGES}; about 1 s or more per image on CPU)")
    p.add_argument("--train-rows", type=int, default=DEFAULT_TRAIN_ROWS,
                   help=f"rows per training epoch: the fused vectors repeated to this many (default {DEFAULT_TRAIN_ROWS})")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs timed per model (default {DEFAULT_EPOCHS})")
    p.add_argument("--tiles", type=int, default=DEFAULT_TILES, help=f"tiles K for the incremental runs (default {DEFAULT_TILES})")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help=f"images per tile for the incremental runs, comma-separated (default {','.join(map(str, DEFAULT_SIZES))})")
    p.add_argument("--new-fraction", type=float, default=DEFAULT_NEW_FRACTION,
                   help="new images added for run (c), as a fraction of images per tile (at least 1; default 0.05)")
    p.add_argument("--check-sample", type=int, default=None,
                   help="blurred_images check_sample (EasyOCR re-reads per run; default: the asset's default)")
    p.add_argument("--skip-stages", action="store_true", help="only the incremental and scaling part")
    p.add_argument("--skip-incremental", action="store_true", help="only the stage throughput part")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench-<timestamp>.json)")
    p.add_argument("--workdir", default=None, help="temp folder for storage and models (default: a new temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    return p


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--sizes must be integers separated by commas, got {text!r}") from exc
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes must be positive integers, got {text!r}")
    return sorted(set(sizes))


def default_out() -> Path:
    from geo_assets.settings import PROJECT_ROOT

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return PROJECT_ROOT / "benchmarks" / "results" / f"bench-{stamp}.json"


def run_bench(args: argparse.Namespace, echo: Echo = print) -> dict:
    started = time.perf_counter()
    sizes = parse_sizes(args.sizes)
    report: dict = {"started_at": _now(), "machine": machine_info(), "settings": {
        "images": args.images, "easyocr_images": args.easyocr_images, "train_rows": args.train_rows,
        "epochs": args.epochs, "tiles": args.tiles, "sizes": sizes, "new_fraction": args.new_fraction,
        "check_sample": args.check_sample,
    }}
    m = report["machine"]
    echo(f"geo_assets bench: {m['cpu_count']} CPUs, torch threads {m['torch_threads']}, device {m['device']}, "
         f"load average {m['loadavg_start']}")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="geo_assets_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    report["workdir"] = str(workdir)
    try:
        if not args.skip_stages:
            echo(f"\n1. stage throughput on {args.images} synthetic images")
            t0 = time.perf_counter()
            report["stage_throughput"] = bench_stages(workdir, images=args.images, easyocr_images=args.easyocr_images,
                                                      train_rows=args.train_rows, epochs=args.epochs, echo=echo)
            report["stage_throughput"]["seconds"] = round(time.perf_counter() - t0, 2)
            report["stage_throughput"]["loadavg_end"] = _loadavg()
        if not args.skip_incremental:
            echo(f"\n2-3. incremental cost through Dagster, {args.tiles} tile(s), sizes {sizes} images per tile")
            t0 = time.perf_counter()
            from geo_assets.defs.resources import synthetic_world

            warm = warm_up(echo)
            need = int(math.ceil((max(sizes) + new_images_for(max(sizes), args.new_fraction)) * 1.2)) + 2
            tiles = pick_tiles(synthetic_world(0), need=need, count=args.tiles)
            results = [bench_incremental(workdir, s, tiles, new_fraction=args.new_fraction,
                                         check_sample=args.check_sample, echo=echo) for s in sizes]
            report["incremental"] = {"tiles": tiles, "warm_up_seconds": round(warm, 2), "sizes": results,
                                     "growth": growth(results), "seconds": round(time.perf_counter() - t0, 2),
                                     "loadavg_end": _loadavg()}
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["finished_at"] = _now()
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["machine"]["loadavg_end"] = _loadavg()
    return report


def print_report(report: dict, echo: Echo = print) -> None:
    m = report["machine"]
    echo("\n" + "=" * 100)
    echo(f"geo_assets bench, {report['started_at']} .. {report['finished_at']} ({report['seconds']:.0f} s); "
         f"{m['cpu_count']} CPUs, torch threads {m['torch_threads']}, device {m['device']}; "
         f"load average {m['loadavg_start']} -> {m.get('loadavg_end')}")
    st = report.get("stage_throughput")
    if st:
        echo(f"\nStage throughput ({st['images']} synthetic images; models loaded once per process, load time "
             f"not in 'seconds'; peak MiB = peak RSS above the stage's start, a model load included where "
             f"the stage loads its model)\n")
        echo(stage_table(st["stages"]))
    inc = report.get("incremental")
    if inc:
        echo(f"\nIncremental cost (Dagster materializations of the tile assets, {len(inc['tiles'])} tile(s): "
             f"{', '.join(inc['tiles'])})\n")
        echo(incremental_table(inc["sizes"]))
        echo("")
        echo(format_table(["images/tile", "new in (c)", "b/a", "c/a", "d/a", "c/d", "(c)-(b) s per new image",
                           "(a) s per image"],
                          [[r["images_per_tile"], r["c_new"]["new_images"], r["ratios"]["b_over_a"], r["ratios"]["c_over_a"],
                            r["ratios"]["d_over_a"], r["ratios"]["c_over_d"],
                            r["marginal_seconds_per_new_image"] if r["marginal_seconds_per_new_image"] is not None else "n/a",
                            r["full_seconds_per_image"]] for r in inc["sizes"]]))
        if inc["growth"]:
            echo("\nGrowth between sizes (cost at the larger size / cost at the smaller)\n")
            echo(growth_table(inc["growth"]))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\..*")
    if argv and argv[0] == "--":  # `geo-assets bench -- --images 8`
        argv = argv[1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parse_sizes(args.sizes)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.images < 1 or args.tiles < 1 or args.epochs < 1 or args.train_rows < 1 or args.easyocr_images < 1:
        parser.error("--images, --tiles, --epochs, --train-rows and --easyocr-images must be >= 1")
    if args.skip_stages and args.skip_incremental:
        parser.error("nothing to do: --skip-stages and --skip-incremental together")
    report = run_bench(args)
    out = Path(args.out) if args.out else default_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    report["out"] = str(out)
    out.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
