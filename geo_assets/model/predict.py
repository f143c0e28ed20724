"""Predictions for new images' feature vectors, and the privacy score (seed 3.7, seed 002).

Seed 002's image privacy score:

    score = 1                      if city confidence < cutoff
            1 - district confidence otherwise

"City" and "district" were two classifiers there. Here one model's class
probabilities give both, at fixed physical scales rather than at its own cell
size: city confidence = probability mass of the classes whose centres lie within
`CITY_KM` of the predicted point, district confidence = the mass within
`DISTRICT_KM`. A model's arg-max probability alone would not be comparable
across geocell sizes (a 0.05 degree model spreads the same belief over four
times as many cells as a 0.1 one); masses within fixed radii are, up to the
cell-centre granularity (a 0.1 degree cell is about 11 x 7 km, so its district
mass is counted from centres up to 10 km away).

0 = the model is certain where the image is; 1 = it gives nothing away.
"""

from __future__ import annotations

import numpy as np
import torch

from geo_assets.geo.haversine import haversine_km
from geo_assets.model.artifacts import LoadedModel
from geo_assets.model.geolocator import class_centres
from geo_assets.model.refine import Gallery, model_outputs, refine, snap_distance_km

CITY_KM = 50.0
DISTRICT_KM = 10.0
CITY_CUTOFF = 0.2


def privacy_score(probs: np.ndarray, centres: np.ndarray, lat: float, lon: float, *, city_km: float = CITY_KM,
                  district_km: float = DISTRICT_KM, cutoff: float = CITY_CUTOFF) -> dict:
    """Seed 002's score from one image's class probabilities (n_classes,) and the class
    centres (n_classes, 2). Returns score, city and district confidence."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    if p.size == 0 or p.size != c.shape[0] or not np.all(np.isfinite(p)):
        raise ValueError("probs must be finite, one per class centre")
    if not (0 < district_km <= city_km):
        raise ValueError("need 0 < district_km <= city_km")
    d = np.atleast_1d(haversine_km(c[:, 0], c[:, 1], np.full(p.size, lat), np.full(p.size, lon)))
    city = float(p[d <= city_km].sum())
    district = float(p[d <= district_km].sum())
    score = 1.0 if city < cutoff else float(np.clip(1.0 - district, 0.0, 1.0))
    return {"privacy_score": score, "city_confidence": city, "district_confidence": district}


@torch.no_grad()
def predict_features(loaded: LoadedModel, features: np.ndarray, gaz: np.ndarray | None = None,
                     gallery: Gallery | None = None) -> list[dict]:
    """One dict per row: lat, lon (after retrieval refinement when the model has a gallery),
    source, cell (grid id), confidence (arg-max class probability) and the privacy score."""
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
    out = model_outputs(model, x_np, gaz_np if model.gazetteer_prior else None, loaded.grid, k=model.n_cells)
    spec = loaded.meta.get("spec", {})
    centres_np = class_centres(model, loaded.grid).cpu().numpy()
    lat, lon, source = refine(out, gallery if spec.get("retrieval") else None,
                              gaz_np if model.gazetteer_prior else None, centres_np, snap_distance_km(loaded.grid.size))
    centres = centres_np
    cells = class_grid_cells(model)
    results = []
    for i in range(n):
        probs = np.zeros(model.n_cells)
        probs[out["topk"][i]] = out["topk_p"][i]
        score = privacy_score(probs, centres, float(lat[i]), float(lon[i]))
        results.append({"lat": float(lat[i]), "lon": float(lon[i]), "source": str(source[i]),
                        "cell": int(cells[out["cls"][i]]), "confidence": float(out["confidence"][i]), **score})
    return results
