"""The image privacy score (seed 002), at fixed physical scales.

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

For a photo unlike the training images (model/ood.py) the model's probabilities
say nothing about where it is, so a number here would only look exact:
`not_meaningful` gives the score as None with the reason instead.
"""

from __future__ import annotations

import numpy as np

from geo_assets.geo.haversine import haversine_km

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


def not_meaningful(reason: str) -> dict:
    """The score fields of a photo the score cannot speak for: None, and why."""
    return {"privacy_score": None, "city_confidence": None, "district_confidence": None,
            "privacy_score_note": f"not meaningful: {reason}"}
