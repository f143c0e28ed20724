"""Predictions: feature vectors -> every model's guess and privacy score (seed 3.7), and
image files -> those predictions through the same preprocessing as training.

The image goes through the functions the assets call, in their order: one OCR pass,
the blurred variant (through the JPEG the `blurred_images` asset stores and the later
assets read), captions for both variants, then `embed.rows.encode_batch`, the
`embeddings` asset's own row function, and the model input assembled from those
vectors as training assembles it (`dataset.assemble_features`). The gazetteer feature is
the attacker's guess from the same words over the configured region, as the
`gazetteer_attack` asset makes it. Each model sees the variant it was trained on.
Nothing here imports the Dagster layer: the OCR engine, captioner, encoders and world
come from the pure factories the resources call.

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

from dataclasses import dataclass
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
from geo_assets.config.settings import BLUR_VARIANTS, GeoSettings

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
            img.load()  # a full decode: truncated or corrupt data is refused here
            rgb = np.asarray(img.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, f"{path}: image is over the {max_pixels:,} pixel limit (refused before decoding)"
    except Exception as exc:  # PIL raises many types for garbage
        return None, f"{path}: not a readable image ({type(exc).__name__})"
    # The pixels the assets see: OpenCV's decode, as store.images.load_bgr reads a stored
    # image (its JPEG decoder and EXIF rotation can differ from PIL's); PIL's only for
    # formats OpenCV cannot read.
    bgr = _decode_bgr(data)
    return (bgr if bgr is not None else np.ascontiguousarray(rgb[:, :, ::-1])), None


def _decode_bgr(data: bytes) -> np.ndarray | None:
    return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)


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


@dataclass
class FeatureModels:
    """What turns an image into the embedding rows: the OCR engine, the captioner, the
    encoders and their fusion, built by the same pure factories the resources call."""

    engine: object
    captioner: object
    text_encoder: object
    image_encoder: object
    fusion: object

    @classmethod
    def build(cls, ocr_engine: str = "rapidocr", captioner_kind: str = "imagenet-labels",
              captioner_model_path: str | None = None, text_kind: str = "minilm", text_model_path: str | None = None,
              image_kind: str = "efficientnet-lite0", image_model_path: str | None = None) -> "FeatureModels":
        from geo_assets.embed.encoders import make_image_encoder, make_text_encoder
        from geo_assets.embed.fusion import CrossAttentionFusion
        from geo_assets.preprocess.captioners import build_captioner
        from geo_assets.preprocess.ocr import make_ocr_engine

        text_encoder = make_text_encoder(text_kind, text_model_path)
        image_encoder = make_image_encoder(image_kind, image_model_path)
        return cls(make_ocr_engine(ocr_engine), build_captioner(captioner_kind, captioner_model_path), text_encoder,
                   image_encoder, CrossAttentionFusion(text_encoder.dim, image_encoder.dim))


def variant_rows(image_bgr: np.ndarray, models: FeatureModels, region=None) -> dict[str, dict]:
    """Per blur variant: the `embeddings` row's vectors for this image (VECTOR_COLUMNS), its
    caption and cleaned OCR text, and `gaz`, the attacker's (1, 2) guess (NaN: none). The
    preprocessing is the assets' (module docstring); `region` bounds the guess as the
    `gazetteer_attack` asset's does (None: the settings' region)."""
    from geo_assets.attack.gazetteer import locate
    from geo_assets.embed.rows import encode_batch
    from geo_assets.preprocess.variants import (caption_text, encode_jpeg, generate_captions, make_blurred_variant,
                                                ocr_image)

    region = region if region is not None else GeoSettings.from_env().region
    ocr_pass = ocr_image(models.engine, image_bgr)
    blurred = make_blurred_variant(image_bgr, models.engine, ocr_pass.words, regions=ocr_pass.regions)
    data = encode_jpeg(blurred.image_bgr)
    stored = _decode_bgr(data) if data is not None else None
    if stored is None:
        raise PredictionError("could not encode the blurred image as the blurred_images asset stores it")
    images = {"unblurred": image_bgr, "blurred": stored}
    words = {"unblurred": ocr_pass.words, "blurred": blurred.words_after}
    rgb = [cv2.cvtColor(images[v], cv2.COLOR_BGR2RGB) for v in BLUR_VARIANTS]
    texts = [caption_text(generated, words[v])
             for v, generated in zip(BLUR_VARIANTS, generate_captions(models.captioner, rgb))]
    encoded = encode_batch(models.text_encoder, models.image_encoder, models.fusion, [t.caption for t in texts],
                           [t.cleaned for t in texts], rgb)
    rows = {}
    for i, variant in enumerate(BLUR_VARIANTS):
        guess = locate([w.text for w in words[variant]], region=region)
        rows[variant] = {**encoded.row(i), "caption": texts[i].caption, "ocr_clean": texts[i].cleaned,
                         "gaz": np.array([[guess.lat, guess.lon]] if guess else [[np.nan, np.nan]])}
    return rows


def model_input(row: dict, feature: str) -> np.ndarray:
    """The (1, D) model input `feature` from one row's vectors, as training assembles it."""
    from geo_assets.model.dataset import assemble_features

    return assemble_features(feature, *(np.asarray(row[c], dtype=np.float32)[None]
                                        for c in ("text_emb", "image_emb", "fused", "ocr_emb")))


def predict_images(paths: list[Path], models_dir: Path | str | None = None, *, ocr_engine: str = "rapidocr",
                   captioner_kind: str = "imagenet-labels", world_seed: int | None = 0,
                   on_result=None) -> list[dict]:
    """Every model's prediction for every image (module docstring); `on_result(entry)` is
    called after each image (progress)."""
    from geo_assets.model.artifacts import load_model
    from geo_assets.synthetic.world import synthetic_world

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
    feature_models = FeatureModels.build(ocr_engine, captioner_kind)
    world = synthetic_world(world_seed) if world_seed is not None else None

    results = []
    for entry, image in inputs:
        results.append(entry)
        if image is None:
            continue
        try:
            _predict_one(entry, Path(entry["image"]), image, feature_models, world, model_dirs, models, galleries,
                         settings.region)
        except Exception as exc:  # one image failing never loses the others' results
            entry["predictions"] = []
            entry["error"] = f"{entry['image']}: prediction failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
        if on_result is not None:
            on_result(entry)
    return results


def _predict_one(entry: dict, path: Path, image, feature_models: FeatureModels, world, model_dirs, models, galleries,
                 region) -> None:
    rows = variant_rows(image, feature_models, region)
    truth = _truth(path, world)
    entry["truth"] = truth
    warning = region_warning(truth, region)
    if warning:
        entry["warning"] = warning
    entry["captions"] = {k: v["caption"] for k, v in rows.items()}
    for model_dir, loaded in zip(model_dirs, models):
        blur, geocell = loaded.meta["blur"], loaded.meta["geocell"]
        row = rows[blur]
        x = model_input(row, loaded.meta.get("feature", "fused"))
        pred = predict_features(loaded, x, row["gaz"], galleries[model_dir],
                                image_features=np.asarray(row["image_emb"], dtype=np.float32)[None])[0]
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
