"""Part 1 of the bench: throughput and peak memory of every stage on N synthetic images,
each through the functions the assets call (``preprocess.variants``, ``embed.rows``)."""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Callable

from geo_assets.bench.meter import Meter

DEFAULT_IMAGES = 12
DEFAULT_EASYOCR_IMAGES = 2
DEFAULT_TRAIN_ROWS = 512
DEFAULT_EPOCHS = 2
GEOCELLS = ("0.05", "0.1")

Echo = Callable[[str], None]



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
    from geo_assets.preprocess.variants import (
        caption_text, encode_jpeg, generate_captions, make_blurred_variant, ocr_image,
    )
    from geo_assets.config.settings import BLUR_VARIANTS, GeoSettings
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
        passes = [ocr_image(rapid, im) for im in bgr]
        words = [p.words for p in passes]
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
    from geo_assets.defs.assets.preprocess import BlurConfig, CaptionConfig

    blur_config = BlurConfig()
    scales = ("extra detection at " + "x, ".join(f"{s:g}" for s in blur_config.scales) + "x"
              if blur_config.scales else "no extra detection pass")
    with Meter() as m:
        variants = [make_blurred_variant(im, rapid, p.words, regions=p.regions, **blur_config.variant_kwargs())
                    for im, p in zip(bgr, passes)]
        for v in variants:  # the asset stores each as a JPEG
            encode_jpeg(v.image_bgr)
    done(_stage("blur (detect + blur + re-read)", n, m,
                note=f"as the blurred_images asset: the OCR pass's regions, {scales}, sign boards, blur, one re-read",
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
        generated = generate_captions(captioner, rgb, CaptionConfig().batch_size)
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
        if hasattr(image_encoder, "clear_feature_cache"):  # the encoder's own speed, not the captioner's cached pass
            image_encoder.clear_feature_cache()
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

