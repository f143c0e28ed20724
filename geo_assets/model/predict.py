"""Predictions: feature vectors -> every model's guess and privacy score (seed 3.7), and
image files -> those predictions through the same preprocessing as training.

The image goes through the same preprocessing as training: one OCR pass, the
blurred variant, captions for both variants, encoders, fusion. Each model sees
the variant it was trained on (blurred models see the blurred image).

Inputs are checked before any model loads: each must be a readable file of at
most MAX_FILE_BYTES, an image the decoder knows, with at most the ingest's
pixel cap (validate.MAX_PIXELS; read from the header, before decoding). A bad
input is an error on its own entry; the others still get their predictions, and
no model loads when no input is usable. When an image's EXIF GPS, or a sidecar
`<image>.json` / `<stem>.json` with "lat" and "lon", puts it outside the region
the models cover, the entry says so (`warning`) next to the predictions.

Confidences are after each model's temperature (model/calibration.py). Each model
also scores how unlike its training images the photo is (model/ood.py); above
its threshold the prediction says `unlike_training: true`, its privacy score is
None with the reason (privacy_score.not_meaningful), and the entry carries
`ood_warning`, a plain sentence that the guesses are not meaningful.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from geo_assets.geo.bbox import in_region
from geo_assets.geo.haversine import haversine_km
from geo_assets.ingest.validate import MAX_PIXELS
from geo_assets.model.artifacts import LoadedModel
from geo_assets.model.geolocator import class_centres
from geo_assets.model.ood import flagged, ood_scores, warning_text
from geo_assets.model.privacy_score import not_meaningful, privacy_score
from geo_assets.model.refine import Gallery, model_outputs, refine, snap_distance_km
from geo_assets.config.settings import GeoSettings

MAX_FILE_BYTES = 100_000_000


class PredictionError(RuntimeError):
    pass


def load_input(path: Path, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray | None, str | None]:
    """(BGR image, None) or (None, a one-line reason); never decodes past the pixel cap."""
    import io
    import warnings

    from PIL import Image

    path = Path(path)
    if not path.exists():
        return None, f"{path}: no such file"
    if not path.is_file():
        return None, f"{path}: not a file"
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, f"{path}: {size:,} bytes is over the {MAX_FILE_BYTES:,} byte limit"
        data = path.read_bytes()
    except OSError as exc:
        return None, f"{path}: cannot read ({exc.strerror or exc})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                return None, f"{path}: {width}x{height} is over the {max_pixels:,} pixel limit"
            img.load()
            rgb = np.asarray(img.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, f"{path}: image is over the {max_pixels:,} pixel limit (refused before decoding)"
    except Exception as exc:  # PIL raises many types for garbage
        return None, f"{path}: not a readable image ({type(exc).__name__})"
    return np.ascontiguousarray(rgb[:, :, ::-1]), None


def sidecar_location(path: Path) -> tuple[float, float] | None:
    """(lat, lon) from `<image>.json` or `<stem>.json` next to the image, or None."""
    import json
    import math

    for side in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        try:
            if not side.is_file() or side.stat().st_size > 100_000:
                continue
            data = json.loads(side.read_text())
            lat, lon = float(data["lat"]), float(data["lon"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180:
            return lat, lon
    return None


def region_warning(truth: dict | None, region) -> str | None:
    """A sentence when the true location lies outside the models' region."""
    if not truth or truth.get("source") not in ("exif", "sidecar"):
        return None
    if in_region(truth["lat"], truth["lon"], region):
        return None
    return (f"the true location ({truth['lat']:.5f}, {truth['lon']:.5f}, from {truth['source']}) is outside the "
            f"region the models cover: their guesses can only be inside it")


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
    side = sidecar_location(path)
    if side:
        return {"lat": side[0], "lon": side[1], "source": "sidecar"}
    if world is not None:
        try:
            meta = world.meta(path.stem)
        except (KeyError, ValueError):
            return None
        return {"lat": meta.lat, "lon": meta.lon, "source": "synthetic world"}
    return None


def discover_models(models_dir: Path) -> list[Path]:
    from geo_assets.store.backends import storage_root

    return sorted(p.parent for p in storage_root(models_dir).glob("*/*/model.json"))  # local or s3://


def predict_images(paths: list[Path], models_dir: Path | str | None = None, *, ocr_engine: str = "rapidocr",
                   captioner_kind: str = "imagenet-labels", world_seed: int | None = 0,
                   on_result=None) -> list[dict]:
    """Every model's prediction for every image (module docstring); `on_result(entry)` is
    called after each image (progress)."""
    from geo_assets.defs.resources import CaptionerResource, EncoderResource, synthetic_world
    from geo_assets.embed.fusion import CrossAttentionFusion
    from geo_assets.model.artifacts import load_model
    from geo_assets.model.refine import Gallery
    from geo_assets.preprocess.ocr import make_ocr_engine

    settings = GeoSettings.from_env()
    inputs = []  # (entry, BGR image or None): every input checked before any model loads
    for path in paths:
        path = Path(path)
        image, error = load_input(path)
        entry: dict = {"image": str(path), "predictions": []}
        if error:
            entry["error"] = error
        inputs.append((entry, image))
    if all(image is None for _, image in inputs):
        return [entry for entry, _ in inputs]

    models_dir = models_dir or settings.models_dir
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
    for entry, image in inputs:
        results.append(entry)
        if image is None:
            continue
        try:
            _predict_one(entry, Path(entry["image"]), image, engine, captioner, text_encoder, image_encoder, fusion,
                         world, model_dirs, models, galleries, settings.region)
        except Exception as exc:  # one image failing never loses the others' results
            entry["predictions"] = []
            entry["error"] = f"{entry['image']}: prediction failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
        if on_result is not None:
            on_result(entry)
    return results


def _predict_one(entry: dict, path: Path, image, engine, captioner, text_encoder, image_encoder, fusion, world,
                 model_dirs, models, galleries, region) -> None:
    from geo_assets.attack.gazetteer import locate
    from geo_assets.embed.encoders import encode_optional_texts
    from geo_assets.model.dataset import FEATURES, assemble_features
    from geo_assets.preprocess.variants import caption_text, make_blurred_variant, ocr_image

    ocr_pass = ocr_image(engine, image)
    words = ocr_pass.words
    blurred = make_blurred_variant(image, engine, words, regions=ocr_pass.regions)
    variants = {"unblurred": (image, words), "blurred": (blurred.image_bgr, blurred.words_after)}
    features = {}
    for name, (bgr, variant_words) in variants.items():
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        text = caption_text(captioner.caption_batch([rgb])[0], variant_words)
        text_cls = text_encoder.encode([text.caption])
        ocr_cls = encode_optional_texts(text_encoder, [text.cleaned])
        enc = image_encoder.encode([rgb])
        fused = fusion.fuse(text_cls, enc.tokens)
        guess = locate(variant_words)
        features[name] = {**{f: assemble_features(f, text_cls, enc.cls, fused, ocr_cls) for f in FEATURES},
                          "caption": text.caption, "image_cls": np.asarray(enc.cls, dtype=np.float32),
                          "gaz": np.array([[guess.lat, guess.lon]] if guess else [[np.nan, np.nan]])}
    truth = _truth(path, world)
    entry["truth"] = truth
    warning = region_warning(truth, region)
    if warning:
        entry["warning"] = warning
    entry["captions"] = {k: v["caption"] for k, v in features.items()}
    for model_dir, loaded in zip(model_dirs, models):
        blur, geocell = loaded.meta["blur"], loaded.meta["geocell"]
        x = np.asarray(features[blur][loaded.meta.get("feature", "fused")], dtype=np.float32)
        pred = predict_features(loaded, x, features[blur]["gaz"], galleries[model_dir],
                                image_features=features[blur]["image_cls"])[0]
        p = {"model": f"{blur} {geocell}", **pred}
        if truth:
            p["distance_km"] = float(haversine_km(p["lat"], p["lon"], truth["lat"], truth["lon"]))
        entry["predictions"].append(p)
    unlike = [p["model"] for p in entry["predictions"] if p.get("unlike_training")]
    if unlike:
        every = len(unlike) == len(entry["predictions"])
        entry["ood_warning"] = (f"this photo is unlike the images {'the models were' if every else 'models ' + ', '.join(unlike) + ' were'} "
                                "trained on: their guesses, confidences and privacy scores for it are not meaningful")


def ood_check(loaded: LoadedModel, gallery: Gallery | None, features: np.ndarray,
              image_features: np.ndarray | None) -> list[dict]:
    """Per row: the out-of-distribution score in the model's space, its threshold and whether
    the score is above it, plus every space's score and flag (`ood_by_space`, for choosing the
    space: ood_check.py). Empty dicts when the model has no threshold or the vectors its space
    needs are not given."""
    from geo_assets.model.refine import embed_rows

    ood = loaded.meta.get("ood") or {}
    n = len(features)
    if gallery is None or ood.get("threshold") is None:
        return [{} for _ in range(n)]
    vectors = {"hidden": lambda: embed_rows(loaded.model.cpu(), features)}
    if image_features is not None and gallery.image is not None:
        vectors["image"] = lambda: np.asarray(image_features, dtype=np.float32).reshape(n, -1)
    if ood["space"] not in vectors:
        return [{} for _ in range(n)]
    by_space = {}
    for space, fitted in (ood.get("spaces") or {ood["space"]: {"threshold": ood["threshold"]}}).items():
        if space in vectors and fitted.get("threshold") is not None:
            scores = ood_scores(gallery.vectors(space), vectors[space](), int(ood["k"]))
            by_space[space] = (scores, flagged(scores, fitted["threshold"]), float(fitted["threshold"]))
    scores, flags, threshold = by_space[ood["space"]]
    return [{"ood_score": float(scores[i]), "ood_threshold": threshold, "unlike_training": bool(flags[i]),
             "ood_by_space": {k: {"score": float(v[0][i]), "threshold": v[2], "flagged": bool(v[1][i])}
                              for k, v in by_space.items()}}
            for i in range(n)]


@torch.no_grad()
def predict_features(loaded: LoadedModel, features: np.ndarray, gaz: np.ndarray | None = None,
                     gallery: Gallery | None = None, image_features: np.ndarray | None = None) -> list[dict]:
    """One dict per row: lat, lon (after retrieval refinement when the model's spec asks for
    it), source, cell (grid id), confidence (arg-max class probability after the model's
    temperature), the privacy score, and the out-of-distribution check (`ood_check`; the
    gallery is its reference set, `image_features` the rows' image-encoder vectors)."""
    from geo_assets.model.geolocator import class_grid_cells

    x_np = np.asarray(features, dtype=np.float32)
    if x_np.ndim == 1:
        x_np = x_np[None]
    model = loaded.model.cpu()
    if x_np.ndim != 2 or x_np.shape[1] != model.in_dim:
        raise ValueError(f"features must be (N, {model.in_dim}) for this model "
                         f"({loaded.meta.get('feature', 'fused')} features), got {x_np.shape}")
    n = x_np.shape[0]
    gaz_np = None if gaz is None else np.asarray(gaz, dtype=np.float64).reshape(n, 2)
    temperature = float((loaded.meta.get("calibration") or {}).get("temperature") or 1.0)
    out = model_outputs(model, x_np, gaz_np if model.gazetteer_prior else None, loaded.grid, k=model.n_cells,
                        temperature=temperature)
    spec = loaded.meta.get("spec", {})
    centres_np = class_centres(model, loaded.grid).cpu().numpy()
    lat, lon, source = refine(out, gallery if spec.get("retrieval") else None,
                              gaz_np if model.gazetteer_prior else None, centres_np, snap_distance_km(loaded.grid.size))
    centres = centres_np
    cells = class_grid_cells(model)
    checks = ood_check(loaded, gallery, x_np, image_features)
    results = []
    for i in range(n):
        if checks[i].get("unlike_training"):
            score = not_meaningful(warning_text(checks[i]["ood_score"], checks[i]["ood_threshold"]))
        else:
            probs = np.zeros(model.n_cells)
            probs[out["topk"][i]] = out["topk_p_cal"][i]
            score = privacy_score(probs, centres, float(lat[i]), float(lon[i]))
        results.append({"lat": float(lat[i]), "lon": float(lon[i]), "source": str(source[i]),
                        "cell": int(cells[out["cls"][i]]), "confidence": float(out["confidence_cal"][i]),
                        "confidence_uncalibrated": float(out["confidence"][i]), "temperature": temperature,
                        **score, **checks[i]})
    return results
