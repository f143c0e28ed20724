"""Ask every trained model where an image is (seed 3.7), and how much it gives away.

The image goes through the same preprocessing as training: one OCR pass, the
blurred variant, captions for both variants, encoders, fusion. Each model sees
the variant it was trained on (blurred models see the blurred image).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from geo_assets.geo.haversine import haversine_km
from geo_assets.settings import GeoSettings


class PredictionError(RuntimeError):
    pass


def exif_gps(path: Path) -> tuple[float, float] | None:
    """(lat, lon) from EXIF GPS tags, or None."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            gps = im.getexif().get_ifd(0x8825)
    except Exception:
        return None
    if not gps or 2 not in gps or 4 not in gps:
        return None

    def to_deg(values, ref) -> float:
        d, m, s = (float(v) for v in values)
        deg = d + m / 60 + s / 3600
        return -deg if ref in ("S", "W") else deg

    try:
        return to_deg(gps[2], gps.get(1, "N")), to_deg(gps[4], gps.get(3, "E"))
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _truth(path: Path, world) -> dict | None:
    gps = exif_gps(path)
    if gps:
        return {"lat": gps[0], "lon": gps[1], "source": "exif"}
    if world is not None:
        try:
            meta = world.meta(path.stem)
        except (KeyError, ValueError):
            return None
        return {"lat": meta.lat, "lon": meta.lon, "source": "synthetic world"}
    return None


def discover_models(models_dir: Path) -> list[Path]:
    return sorted(p.parent for p in Path(models_dir).glob("*/*/model.json"))


def predict_images(paths: list[Path], models_dir: Path | str | None = None, *, ocr_engine: str = "rapidocr",
                   captioner_kind: str = "imagenet-labels", world_seed: int | None = 0) -> list[dict]:
    from geo_assets.defs.resources import CaptionerResource, EncoderResource, synthetic_world
    from geo_assets.embed.fusion import CrossAttentionFusion, concat_features
    from geo_assets.model.artifacts import load_model
    from geo_assets.attack.gazetteer import locate
    from geo_assets.model.predict import predict_features
    from geo_assets.model.refine import Gallery
    from geo_assets.preprocess.ocr import make_ocr_engine
    from geo_assets.preprocess.variants import caption_text, make_blurred_variant

    models_dir = Path(models_dir) if models_dir else GeoSettings.from_env().models_dir
    model_dirs = discover_models(models_dir)
    if not model_dirs:
        raise PredictionError(f"no trained models under {models_dir}: run `geo-assets run` first")
    models = [load_model(d, device="cpu") for d in model_dirs]
    galleries = {d: Gallery.load(d / "gallery.npz") if (d / "gallery.npz").exists() else None for d in model_dirs}
    engine = make_ocr_engine(ocr_engine)
    captioner = CaptionerResource(kind=captioner_kind).captioner()
    encoders = EncoderResource()
    text_encoder, image_encoder = encoders.text_encoder(), encoders.image_encoder()
    fusion = CrossAttentionFusion(text_encoder.dim, image_encoder.dim)
    world = synthetic_world(world_seed) if world_seed is not None else None

    results = []
    for path in paths:
        path = Path(path)
        entry: dict = {"image": str(path), "predictions": []}
        image = cv2.imread(str(path)) if path.is_file() else None
        if image is None:
            entry["error"] = f"cannot read {path}: missing, not a file, or not a decodable image"
            results.append(entry)
            continue
        words = engine.read(image)
        blurred = make_blurred_variant(image, engine, words)
        variants = {"unblurred": (image, words), "blurred": (blurred.image_bgr, blurred.words_after)}
        features = {}
        for name, (bgr, variant_words) in variants.items():
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            text = caption_text(captioner.caption_batch([rgb])[0], variant_words)
            text_cls = text_encoder.encode([text.caption])
            ocr_cls = text_encoder.encode([text.cleaned]) if text.cleaned.strip() else np.zeros((1, text_encoder.dim), np.float32)
            enc = image_encoder.encode([rgb])
            concat = concat_features(text_cls, enc.cls)
            guess = locate(variant_words)
            features[name] = {"fused": fusion.fuse(text_cls, enc.tokens), "concat": concat,
                              "concat_ocr": np.concatenate([concat, ocr_cls], axis=1), "caption": text.caption,
                              "gaz": np.array([[guess.lat, guess.lon]] if guess else [[np.nan, np.nan]])}
        truth = _truth(path, world)
        entry["truth"] = truth
        entry["captions"] = {k: v["caption"] for k, v in features.items()}
        for model_dir, loaded in zip(model_dirs, models):
            blur, geocell = loaded.meta["blur"], loaded.meta["geocell"]
            x = np.asarray(features[blur][loaded.meta.get("feature", "fused")], dtype=np.float32)
            pred = predict_features(loaded, x, features[blur]["gaz"], galleries[model_dir])[0]
            p = {"model": f"{blur} {geocell}", **pred}
            if truth:
                p["distance_km"] = float(haversine_km(p["lat"], p["lon"], truth["lat"], truth["lon"]))
            entry["predictions"].append(p)
        results.append(entry)
    return results
