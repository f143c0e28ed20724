"""From a trained model's outputs to final coordinates: the gazetteer snap and retrieval
refinement (PIGEON's within-cell refinement, GeoCLIP's GPS gallery).

The classifier says which cells are likely; it cannot say where in a cell.

1. Gazetteer snap. When the OCR text named a place and the model's arg-max
   class lies within `snap_km` of it (or is the class nearest to it), the
   model agrees with the gazetteer
   (the gazetteer prior is how it was told), and the place's own coordinates
   are more precise than a cell centre plus offset: predict them.
2. Retrieval. Otherwise, with a gallery (every training image: its last hidden
   layer h, true location and class), the candidates are the gallery entries
   in the top-k classes, each scoring

       log p(class) + cosine(h_query, h_candidate) / temperature

   and the best one's location is the prediction.
3. Otherwise the seed's point: centre of the arg-max class + offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from geo_assets.model.geolocator import GeolocatorMLP, class_centres, predict_coords

DEFAULT_TOP_K = 5
DEFAULT_TEMPERATURE = 0.1


@dataclass
class Gallery:
    """Training images: retrieval candidates, and the reference set of the
    out-of-distribution score (model/ood.py)."""

    h: np.ndarray  # (G, 256) float32, L2-normalised last hidden layer
    lat: np.ndarray
    lon: np.ndarray
    cls: np.ndarray  # (G,) class index
    image: np.ndarray | None = None  # (G, D) float32, L2-normalised image-encoder features (None: older gallery)

    def save(self, path) -> None:
        import io

        from geo_assets.store.parquet import atomic_write_bytes

        buf = io.BytesIO()
        extra = {} if self.image is None else {"image": self.image.astype(np.float16)}
        np.savez_compressed(buf, h=self.h.astype(np.float16), lat=self.lat, lon=self.lon, cls=self.cls, **extra)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path) -> "Gallery":
        import io

        from geo_assets.store.backends import as_path

        with np.load(io.BytesIO(as_path(path).read_bytes())) as z:  # local or s3://
            image = z["image"].astype(np.float32) if "image" in z.files else None
            return cls(h=z["h"].astype(np.float32), lat=z["lat"], lon=z["lon"], cls=z["cls"], image=image)

    def vectors(self, space: str) -> np.ndarray:
        """The reference vectors of an out-of-distribution space (ood.SPACES)."""
        if space == "hidden":
            return self.h
        if space == "image":
            if self.image is None:
                raise ValueError("this gallery keeps no image features (saved before they were kept): retrain the model")
            return self.image
        raise ValueError(f"unknown out-of-distribution space {space!r}")


def _normalise(h: np.ndarray) -> np.ndarray:
    return h / np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-8)


def _logits(model: GeolocatorMLP, x: torch.Tensor, g: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    h = model.embed(x)
    logits = model.classifier(h)
    if model.gazetteer_prior and g is not None:
        logits = logits + model.prior(g)
    return logits, h


@torch.no_grad()
def model_logits(model: GeolocatorMLP, features: np.ndarray, gaz: np.ndarray | None, batch_size: int = 1024) -> np.ndarray:
    """(N, n_classes) class logits (with the gazetteer prior when the model has one): what
    the temperature is fitted on."""
    model.eval()
    x_all = torch.as_tensor(np.asarray(features, dtype=np.float32))
    g_all = torch.as_tensor(np.asarray(gaz, dtype=np.float32)) if gaz is not None else None
    parts = [_logits(model, x_all[s : s + batch_size], g_all[s : s + batch_size] if g_all is not None else None)[0].numpy()
             for s in range(0, len(x_all), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.n_cells), np.float32)


@torch.no_grad()
def model_outputs(model: GeolocatorMLP, features: np.ndarray, gaz: np.ndarray | None, grid,
                  batch_size: int = 1024, k: int = 10, temperature: float = 1.0) -> dict:
    """Class probabilities' top-k, the seed's point (centre + offset), confidence and h.

    `confidence` and `topk_p` are the model's own probabilities (retrieval scores with
    them, as it was tuned); `confidence_cal` and `topk_p_cal` the same classes' probabilities
    after dividing the logits by `temperature` (model/calibration.py): what is reported."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    centres = class_centres(model, grid)
    keys = ("lat", "lon", "cls", "confidence", "topk", "topk_p", "h", "confidence_cal", "topk_p_cal")
    out: dict = {key: [] for key in keys}
    model.eval()
    x_all = torch.as_tensor(np.asarray(features, dtype=np.float32))
    g_all = torch.as_tensor(np.asarray(gaz, dtype=np.float32)) if gaz is not None else None
    for start in range(0, len(x_all), batch_size):
        x = x_all[start : start + batch_size]
        g = g_all[start : start + batch_size] if g_all is not None else None
        logits, h = _logits(model, x, g)
        offset = (torch.sigmoid(model.regressor(h)) - 0.5) * model.geocell_size
        lat, lon = predict_coords(logits, offset, centres)
        probs = torch.softmax(logits, dim=1)
        top_p, top = probs.topk(min(k, probs.shape[1]), dim=1)
        # Dividing by T > 0 keeps every ranking: the same top-k classes, other probabilities.
        cal_p = torch.softmax(logits / temperature, dim=1).gather(1, top) if temperature != 1.0 else top_p
        out["lat"].append(lat.numpy()), out["lon"].append(lon.numpy())
        out["cls"].append(top[:, 0].numpy()), out["confidence"].append(top_p[:, 0].numpy())
        out["topk"].append(top.numpy()), out["topk_p"].append(top_p.numpy()), out["h"].append(h.numpy())
        out["confidence_cal"].append(cal_p[:, 0].numpy()), out["topk_p_cal"].append(cal_p.numpy())
    if not out["lat"]:
        return {"lat": np.zeros(0), "lon": np.zeros(0), "cls": np.zeros(0, np.int64), "confidence": np.zeros(0),
                "topk": np.zeros((0, k), np.int64), "topk_p": np.zeros((0, k)), "h": np.zeros((0, 0), np.float32),
                "confidence_cal": np.zeros(0), "topk_p_cal": np.zeros((0, k))}
    return {key: np.concatenate(v) for key, v in out.items()}


@torch.no_grad()
def embed_rows(model: GeolocatorMLP, features: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(N, 256) last hidden layer h of the rows (not normalised)."""
    model.eval()
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    parts = [model.embed(x[s : s + batch_size]).numpy() for s in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.hidden[-1]), np.float32)


def build_gallery(model: GeolocatorMLP, features: np.ndarray, lat: np.ndarray, lon: np.ndarray, grid,
                  image_features: np.ndarray | None = None) -> Gallery:
    """Training rows -> gallery (their h, true location and class, and their image-encoder
    features when given, for the out-of-distribution score)."""
    from geo_assets.model.geolocator import class_grid_cells

    h = embed_rows(model, features)
    cells = np.asarray(grid.cell_of(np.asarray(lat), np.asarray(lon)), dtype=np.int64).reshape(-1)
    lookup = {int(c): i for i, c in enumerate(class_grid_cells(model).tolist())}
    cls = np.array([lookup.get(int(c), -1) for c in cells], dtype=np.int64)
    image = None if image_features is None else _normalise(np.asarray(image_features, np.float32)).astype(np.float32)
    return Gallery(h=_normalise(h).astype(np.float32), lat=np.asarray(lat, np.float64), lon=np.asarray(lon, np.float64),
                   cls=cls, image=image)


def snap_distance_km(geocell_size: float) -> float:
    """How close the arg-max class centre must be to the named place: a cell and a half, at least 10 km."""
    return max(10.0, 1.5 * geocell_size * 111.2 * 2**0.5)


def refine(outputs: dict, gallery: Gallery | None, gaz: np.ndarray | None, centres: np.ndarray, snap_km: float,
           top_k: int = DEFAULT_TOP_K, temperature: float = DEFAULT_TEMPERATURE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (lat, lon, source) per query; source is 'gazetteer', 'retrieval' or 'offset' (the seed's point).
    `centres` (n_classes, 2) are the class centres; `gaz` (N, 2) the gazetteer guesses (NaN = none)."""
    from geo_assets.geo.haversine import haversine_km

    n = len(outputs["lat"])
    lat, lon = outputs["lat"].astype(np.float64).copy(), outputs["lon"].astype(np.float64).copy()
    source = np.full(n, "offset", dtype=object)
    if n == 0:
        return lat, lon, source
    snapped = np.zeros(n, dtype=bool)
    if gaz is not None:
        gaz = np.asarray(gaz, dtype=np.float64).reshape(n, 2)
        have = np.isfinite(gaz).all(axis=1)
        if have.any():
            c = np.asarray(centres, dtype=np.float64)
            hidx = np.flatnonzero(have)
            top = c[outputs["cls"][hidx]]
            d = np.atleast_1d(haversine_km(top[:, 0], top[:, 1], gaz[hidx, 0], gaz[hidx, 1]))
            # Where classes are sparse the named place's own cell may hold no class: the model
            # also agrees when its arg-max is the class nearest to the place.
            nearest = np.argmin(haversine_km(gaz[hidx, :1], gaz[hidx, 1:], c[None, :, 0], c[None, :, 1]), axis=1)
            idx = hidx[(d <= snap_km) | (outputs["cls"][hidx] == nearest)]
            snapped[idx] = True
            lat[idx], lon[idx], source[idx] = gaz[idx, 0], gaz[idx, 1], "gazetteer"
    if gallery is None:
        return lat, lon, source
    topk = outputs["topk"][:, :top_k]
    logp = np.log(np.maximum(outputs["topk_p"][:, :top_k], 1e-12))
    hq = _normalise(outputs["h"])
    order = np.argsort(gallery.cls, kind="stable")
    cls_sorted = gallery.cls[order]
    by_class: dict[int, np.ndarray] = {}
    for c in np.unique(topk):
        lo, hi = np.searchsorted(cls_sorted, c, "left"), np.searchsorted(cls_sorted, c, "right")
        by_class[int(c)] = order[lo:hi]
    for i in np.flatnonzero(~snapped):
        best_score, best = -np.inf, None
        for c, lp in zip(topk[i].tolist(), logp[i].tolist()):
            members = by_class.get(c)
            if members is None or members.size == 0:
                continue
            sims = gallery.h[members] @ hq[i]
            j = int(np.argmax(sims))
            score = lp + float(sims[j]) / temperature
            if score > best_score:
                best_score, best = score, (gallery.lat[members[j]], gallery.lon[members[j]])
        if best is not None:
            lat[i], lon[i] = best
            source[i] = "retrieval"
    return lat, lon, source
