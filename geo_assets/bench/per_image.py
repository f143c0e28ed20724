"""Per-image cost of the tile stages, today's code against the previous code path (PERFORMANCE.md, "Per-image cost"),
measured in one process on the same images, the two paths interleaved round by round so
that a shared, noisy machine slows both alike: compare the ratios, not the seconds.

current (what the assets run, through the same functions):
  ocr_text        ``variants.ocr_image``: RapidOCR's pass (its models under OpenVINO on
                  CPU), whose detector map also gives the low-threshold regions for the blur
  blurred_images  ``variants.make_blurred_variant`` with those regions, no extra detection
                  pass (``BlurConfig()``), sign boards, blur, one re-read, JPEG encoding
  captions        ``variants.generate_captions`` + ``caption_text``, both variants
  embeddings      ``embed.rows.encode_batch``, both variants (the image backbone's pass, under
                  OpenVINO on CPU, is shared with the captioner through the encoder's feature cache)

previous (the code path today's replaced, kept here only to compare with):
  ocr_text        ``engine.read`` with RapidOCR's models under onnxruntime (the same
                  words; no regions)
  blurred_images  two low-threshold detection passes on the contrast-normalised image
                  (1x, 1.5x), sign boards, blur, one re-read, JPEG encoding
  captions        the same captioner on an EfficientNet-Lite0 under torch, in the default
                  memory format and without the feature cache
  embeddings      the same encoders, the image backbone run again

Quality on the same images (synthetic world ground truth): text boxes >= 80% blurred,
blurred share of the image, true words RapidOCR reads on the blurred images (a full read
of every blurred image, whatever the path's own re-read) and, on a subset, true words
EasyOCR reads on them; and how often the current windowed re-read differs from a full read
(raw words, and the cleaned text that goes into the caption).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

Echo = Callable[[str], None]
LEGACY_SCALES = (1.0, 1.5)
"""The previous path's blur detection passes on the contrast-normalised image."""
STAGES = ("ocr_text", "blurred_images", "captions", "embeddings")
CHUNK = 16
"""Images per interleaving step: 32 rows (both variants), one embeddings batch."""


def world_sample(n: int, world_seed: int = 0) -> tuple[list, list[np.ndarray]]:
    """The first ``n`` synthetic-world images (with and without text, as a tile holds them),
    JPEG-decoded as the assets see them, with their ids."""
    import cv2

    from geo_assets.defs.resources import synthetic_world

    world = synthetic_world(world_seed)
    ids = list(world.ids[:n])
    images = [cv2.imdecode(np.frombuffer(world.render(i).jpeg, np.uint8), cv2.IMREAD_COLOR) for i in ids]
    return ids, images


def legacy_blurred_variant(image_bgr, engine, ocr_words, **kwargs):
    """The previous path's blur: its own detection passes at 1x and 1.5x on the
    contrast-normalised image, and a re-read of every blurred image."""
    from geo_assets.preprocess import blur as blur_mod
    from geo_assets.preprocess.variants import BlurredVariant

    boxes = blur_mod.detect_text_regions(image_bgr, [engine], [w.box for w in ocr_words], scales=LEGACY_SCALES,
                                         original_scales=(), low_threshold=True, sign_boards=True, **kwargs)
    blurred = blur_mod.blur_regions(image_bgr, boxes, **kwargs)
    return BlurredVariant(blurred, boxes, engine.read(blurred))


class _Paths:
    """The models, loaded once, and one function per (path, stage)."""

    def __init__(self, batch_size: int = 32):
        from geo_assets.defs.assets.preprocess import BlurConfig, CaptionConfig
        from geo_assets.defs.resources import CaptionerResource, EncoderResource, OcrResource
        from geo_assets.embed.encoders import EfficientNetLite0Encoder
        from geo_assets.embed.fusion import CrossAttentionFusion
        from geo_assets.preprocess.captioners import make_captioner

        from geo_assets.preprocess.ocr import RapidOcrEngine

        self.engine = OcrResource().primary()
        # The previous path ran RapidOCR's models under onnxruntime (today: OpenVINO on CPU).
        self.legacy_engine = RapidOcrEngine(runtime="onnxruntime")
        self.blur_kwargs = BlurConfig().variant_kwargs()
        self.caption_batch = CaptionConfig().batch_size
        self.batch_size = batch_size
        encoders = EncoderResource()
        self.text_encoder = encoders.text_encoder()
        self.image_encoder = encoders.image_encoder()
        self.captioner = CaptionerResource().captioner()
        self.fusion = CrossAttentionFusion(self.text_encoder.dim, self.image_encoder.dim)
        self.legacy_image_encoder = EfficientNetLite0Encoder(channels_last=False, cache_items=0, runtime="torch")
        self.legacy_captioner = make_captioner(
            "imagenet-labels", label_fn=lambda images: self.legacy_image_encoder.top_labels(images, k=5))

    def run(self, path: str, images: list[np.ndarray]) -> tuple[dict, dict]:
        """Every tile stage on ``images`` along ``path``; (seconds per stage, outputs)."""
        import cv2

        from geo_assets.embed.rows import encode_batch
        from geo_assets.preprocess.variants import (
            caption_text, encode_jpeg, generate_captions, make_blurred_variant, ocr_image,
        )

        legacy = path == "previous"
        if not legacy and hasattr(self.image_encoder, "clear_feature_cache"):
            self.image_encoder.clear_feature_cache()  # each round starts cold, as a new tile does
        seconds: dict = {}
        t0 = time.perf_counter()
        if legacy:
            passes = [(self.legacy_engine.read(im), None) for im in images]
        else:
            passes = [(p.words, p.regions) for p in (ocr_image(self.engine, im) for im in images)]
        t1 = time.perf_counter()
        variants = []
        for im, (words, regions) in zip(images, passes):
            if legacy:
                v = legacy_blurred_variant(im, self.legacy_engine, words, padding_frac=self.blur_kwargs["padding_frac"],
                                           padding_px=self.blur_kwargs["padding_px"])
            else:
                v = make_blurred_variant(im, self.engine, words, regions=regions, **self.blur_kwargs)
            encode_jpeg(v.image_bgr)
            variants.append(v)
        t2 = time.perf_counter()
        seconds["ocr_text"], seconds["blurred_images"] = t1 - t0, t2 - t1

        items = [(im, words) for im, (words, _) in zip(images, passes)] + [(v.image_bgr, v.words_after) for v in variants]
        t0 = time.perf_counter()
        rgb = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im, _ in items]
        captioner = self.legacy_captioner if legacy else self.captioner
        generated = generate_captions(captioner, rgb, self.caption_batch)
        texts = [caption_text(g, words) for g, (_, words) in zip(generated, items)]
        t1 = time.perf_counter()
        image_encoder = self.legacy_image_encoder if legacy else self.image_encoder
        rgb = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im, _ in items]  # the asset decodes again
        fused = []
        for start in range(0, len(items), self.batch_size):
            sl = slice(start, start + self.batch_size)
            fused.append(encode_batch(self.text_encoder, image_encoder, self.fusion, [t.caption for t in texts[sl]],
                                      [t.cleaned for t in texts[sl]], rgb[sl]).fused)
        t2 = time.perf_counter()
        seconds["captions"], seconds["embeddings"] = t1 - t0, t2 - t1
        return seconds, {"words": [w for w, _ in passes], "variants": variants, "generated": generated,
                         "fused": np.concatenate(fused) if fused else np.zeros((0, 0))}


def _quality(ids, images, variants, world, easy, easy_images: int, padding: dict, full_reads: list) -> dict:
    """Coverage, area and readability; readability from a full read of every blurred image
    (``full_reads``), whatever the path's own re-read was."""
    from geo_assets.bench.ocr_engines import matching_words
    from geo_assets.preprocess import blur as blur_mod
    from geo_assets.preprocess.text_cleaning import clean_ocr_text

    coverages, area, rapid_leaks, easy_leaks = [], [], [], []
    raw_differ = clean_differ = 0
    for k, (image_id, im, v) in enumerate(zip(ids, images, variants)):
        truths = [t.text for t in world.ground_truth(image_id)]
        mask = blur_mod.blur_mask(v.boxes, im.shape, **padding)
        area.append(float(mask.mean()))
        full = full_reads[k]
        raw_differ += sorted(w.text for w in full) != sorted(w.text for w in v.words_after)
        clean_differ += clean_ocr_text([w.text for w in full]) != clean_ocr_text([w.text for w in v.words_after])
        if truths:
            coverages += blur_mod.blur_coverage(mask, [t.polygon for t in world.ground_truth(image_id)], im.shape)
            rapid_leaks += matching_words(full, truths)
    with_text = [k for k, i in enumerate(ids) if world.ground_truth(i)][:easy_images]
    for k in with_text:
        easy_leaks += matching_words(easy.read(variants[k].image_bgr), [t.text for t in world.ground_truth(ids[k])])
    cov = np.asarray(coverages)
    return {"text_boxes": int(len(cov)), "covered_80pct_share": round(float((cov >= 0.8).mean()), 4) if len(cov) else 1.0,
            "blurred_area_share": round(float(np.mean(area)), 4), "rapidocr_true_words_after": len(rapid_leaks),
            "easyocr_images": len(with_text), "easyocr_true_words_after": len(easy_leaks),
            "reread_vs_full_read_raw_words_differ": raw_differ, "reread_vs_full_read_cleaned_text_differs": clean_differ,
            "leaked_examples": (rapid_leaks + easy_leaks)[:10]}


def bench_per_image(images: int = 24, *, rounds: int = 2, easyocr_images: int = 2, echo: Echo = print) -> dict:
    """Seconds per image of each tile stage along both paths, interleaved, and blur quality."""
    from geo_assets.defs.resources import OcrResource, synthetic_world
    from geo_assets.preprocess import blur as blur_mod

    ids, imgs = world_sample(images)
    paths = _Paths()
    paths.run("current", imgs[:2])  # warm both paths outside the timings
    paths.run("previous", imgs[:2])
    timings: dict = {"previous": {s: [] for s in STAGES}, "current": {s: [] for s in STAGES}}
    outputs: dict = {}
    # Chunks of a caption/encoder batch's size, the two paths alternating chunk by chunk, so
    # that load from other processes falls on both alike.
    chunks = [list(range(i, min(i + CHUNK, len(imgs)))) for i in range(0, len(imgs), CHUNK)]
    for r in range(max(1, rounds)):
        total = {p: dict.fromkeys(STAGES, 0.0) for p in timings}
        parts: dict = {p: [] for p in timings}
        for c, chunk in enumerate(chunks):
            for path in (("previous", "current") if (r + c) % 2 == 0 else ("current", "previous")):
                seconds, out = paths.run(path, [imgs[i] for i in chunk])
                parts[path].append(out)
                for s in STAGES:
                    total[path][s] += seconds[s]
        for path in timings:
            for s in STAGES:
                timings[path][s].append(total[path][s] / len(imgs))
            outputs[path] = {
                "words": [w for o in parts[path] for w in o["words"]],
                "variants": [v for o in parts[path] for v in o["variants"]],
                # unblurred rows first, as run() orders them within a chunk
                "generated": [g for o in parts[path] for g in o["generated"][: len(o["words"])]],
                "fused": np.concatenate([o["fused"][: len(o["words"])] for o in parts[path]]),
            }
            echo(f"  round {r + 1} {path:<8} " + "  ".join(f"{s} {timings[path][s][-1]:.3f}" for s in STAGES)
                 + "  s/image")
    rows = []
    for s in (*STAGES, "total"):
        if s == "total":
            prev = [sum(x) for x in zip(*(timings["previous"][t] for t in STAGES))]
            cur = [sum(x) for x in zip(*(timings["current"][t] for t in STAGES))]
        else:
            prev, cur = timings["previous"][s], timings["current"][s]
        ratios = [p / c for p, c in zip(prev, cur) if c > 0]
        rows.append({"stage": s, "previous_s_per_image": round(statistics.median(prev), 4),
                     "current_s_per_image": round(statistics.median(cur), 4),
                     "ratio": round(statistics.median(ratios), 2) if ratios else None,
                     "ratio_per_round": [round(x, 2) for x in ratios]})

    world = synthetic_world(0)
    easy = OcrResource().second()
    padding = {"padding_frac": blur_mod.DEFAULT_PADDING_FRAC, "padding_px": blur_mod.DEFAULT_PADDING_PX}
    quality = {}
    for p in ("previous", "current"):
        variants = outputs[p]["variants"]
        full = [v.words_after if p == "previous" else paths.engine.read(v.image_bgr) for v in variants]
        quality[p] = _quality(ids, imgs, variants, world, easy, easyocr_images, padding, full)
    # The unblurred variant's outputs must not change; the blurred variant's follow the new regions.
    n = len(imgs)
    # Text and boxes exactly; confidences to float rounding (onnxruntime vs OpenVINO).
    same_words = all([(w.text, w.box) for w in a] == [(w.text, w.box) for w in b]
                     and np.allclose([w.confidence for w in a], [w.confidence for w in b], atol=1e-3)
                     for a, b in zip(outputs["previous"]["words"], outputs["current"]["words"]))
    same_captions = outputs["previous"]["generated"] == outputs["current"]["generated"]
    fused_diff = float(np.max(np.abs(outputs["previous"]["fused"] - outputs["current"]["fused"]))) if n else 0.0
    encoders = encoder_throughput(paths, imgs, rounds=max(1, rounds), echo=echo)
    return {"images": len(imgs), "rounds": max(1, rounds), "stages": rows, "quality": quality,
            "same_ocr_words": same_words, "same_unblurred_captions": same_captions,
            "max_abs_unblurred_fused_difference": fused_diff, "encoders": encoders}


def encoder_throughput(paths: "_Paths", images: list[np.ndarray], *, rounds: int = 2,
                       echo: Echo = print) -> list[dict]:
    """Images/s of ``encode`` (resize, normalise, EfficientNet-Lite0: current runtime against the
    torch model of the previous path, feature caches off) and captions/s of the text encoder on
    64 caption-like sentences of 14-16 words, the paths alternating round by round; medians."""
    import cv2

    from geo_assets.embed.encoders import EfficientNetLite0Encoder

    rgb = [cv2.cvtColor(im, cv2.COLOR_BGR2RGB) for im in images]
    current = EfficientNetLite0Encoder(cache_items=0)
    previous = paths.legacy_image_encoder
    texts = [f"a photo of a street with a sign reading {w} road, {i} miles" for i, w in
                      enumerate(["High", "Station", "Church", "Mill", "London", "Bridge", "Market", "Park"] * 8)]
    for enc in (current, previous):
        enc.encode(rgb[:4])
    paths.text_encoder.encode(texts[:8])
    runs: dict = {"image current": [], "image previous": [], "text": []}
    for r in range(rounds):
        order = (("image current", current), ("image previous", previous))
        for name, enc in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            enc.encode(rgb)
            runs[name].append(len(rgb) / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        paths.text_encoder.encode(texts)
        runs["text"].append(len(texts) / (time.perf_counter() - t0))
    rows = [
        {"encoder": f"image: EfficientNet-Lite0 encode, {current.runtime}", "items": len(rgb),
         "per_second": round(statistics.median(runs["image current"]), 1),
         "previous_per_second": round(statistics.median(runs["image previous"]), 1)},
        {"encoder": f"text: {getattr(paths.text_encoder, 'encoder_id', 'MiniLM')}", "items": len(texts),
         "per_second": round(statistics.median(runs["text"]), 1), "previous_per_second": None},
    ]
    for row in rows:
        echo(f"  {row['encoder']}: {row['per_second']}/s" + (f" (previous {row['previous_per_second']}/s)"
                                                              if row["previous_per_second"] else ""))
    return rows
