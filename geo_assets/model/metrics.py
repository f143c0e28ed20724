"""Validation metrics (seed 4, Figure 18; seeds 003/004 for top-k and the wider bands).

Pure numpy. `evaluate_predictions` returns a flat dict with these keys:

    n                       number of rows
    median_km, mean_km      great-circle error
    geocell_accuracy        fraction of rows whose predicted cell is the true cell, in [0, 1]
    geocell_accuracy_pct    the same in percent, [0, 100]
    top5_accuracy           fraction whose true cell is among the first 5 columns of topk_cells
                            (all columns when fewer than 5 are given)
    top5_accuracy_pct       the same in percent
    top10_accuracy          fraction whose true cell is among the first 10 columns of topk_cells
                            (NaN when fewer than 10 columns are given: a top-5 list says
                            nothing certain about the top 10)
    top10_accuracy_pct      the same in percent
    geoscore                mean GeoScore, 5000 * exp(-km / 1492.7), in [0, 5000] (OSV-5M)
    within_100m_pct, within_1km_pct, within_10km_pct, within_25km_pct, within_100km_pct,
    within_200km_pct, within_750km_pct, within_2500km_pct
                            percent of rows with error <= that distance, [0, 100]

Percentages are always `*_pct` in [0, 100]; fractions never carry a suffix.
Anything that cannot be computed (no rows, no cells or no top-k given) is NaN,
so every key is always present and always a float (except `n`).

`per_image_outcomes` gives the per-row arrays the summary is built from (distance and
hit flags); model/uncertainty.py resamples them for bootstrap intervals.
"""

from __future__ import annotations

import numpy as np

from geo_assets.geo.haversine import haversine_km

# (key, threshold in km)
DISTANCE_BANDS: tuple[tuple[str, float], ...] = (
    ("within_100m_pct", 0.1),
    ("within_1km_pct", 1.0),
    ("within_10km_pct", 10.0),
    ("within_25km_pct", 25.0),
    ("within_100km_pct", 100.0),
    ("within_200km_pct", 200.0),
    ("within_750km_pct", 750.0),
    ("within_2500km_pct", 2500.0),
)
METRIC_KEYS = ("n", "median_km", "mean_km", "geocell_accuracy", "geocell_accuracy_pct", "top5_accuracy",
               "top5_accuracy_pct", "top10_accuracy", "top10_accuracy_pct", "geoscore") + tuple(
                   k for k, _ in DISTANCE_BANDS)

NAN = float("nan")

# OSV-5M's GeoScore: 5000 * exp(-d / 1492.7 km), so 5000 for an exact guess.
GEOSCORE_SCALE_KM = 1492.7
GEOSCORE_MAX = 5000.0


def geoscore(d_km) -> np.ndarray:
    """Per-image GeoScore of great-circle errors in km: 5000 * exp(-d / 1492.7).

    An infinite distance (an abstention) scores 0; NaN stays NaN."""
    d = np.asarray(d_km, dtype=np.float64)
    return GEOSCORE_MAX * np.exp(-d / GEOSCORE_SCALE_KM)


def _vec(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    return a


def evaluate_predictions(pred_lat, pred_lon, true_lat, true_lon, pred_cell=None, true_cell=None,
                         topk_cells=None) -> dict:
    """Metrics of predictions against the truth; see the module docstring for the keys."""
    pl, po, tl, to = (_vec(v, n) for v, n in ((pred_lat, "pred_lat"), (pred_lon, "pred_lon"),
                                              (true_lat, "true_lat"), (true_lon, "true_lon")))
    n = len(tl)
    if not (len(pl) == len(po) == len(to) == n):
        raise ValueError(f"length mismatch: pred {len(pl)}/{len(po)}, true {n}/{len(to)}")
    out: dict = {k: NAN for k in METRIC_KEYS}
    out["n"] = int(n)
    if n == 0:
        return out
    d = np.atleast_1d(haversine_km(pl, po, tl, to))
    out["median_km"] = float(np.median(d))
    out["mean_km"] = float(np.mean(d))
    for key, km in DISTANCE_BANDS:
        out[key] = float(100.0 * np.mean(d <= km))
    out["geoscore"] = float(np.mean(geoscore(d)))
    hits = _cell_hits(n, pred_cell, true_cell, topk_cells)
    for name, key in (("cell_hit", "geocell_accuracy"), ("top5_hit", "top5_accuracy"),
                      ("top10_hit", "top10_accuracy")):
        if name in hits:
            acc = float(np.mean(hits[name]))
            out[key], out[key + "_pct"] = acc, 100.0 * acc
    return out


def _cell_hits(n: int, pred_cell, true_cell, topk_cells) -> dict[str, np.ndarray]:
    """Per-row hit flags; only those the given arrays allow (see per_image_outcomes)."""
    hits: dict[str, np.ndarray] = {}
    if pred_cell is None or true_cell is None:
        return hits
    pc = np.asarray(pred_cell).reshape(-1)
    tc = np.asarray(true_cell).reshape(-1)
    if len(pc) != n or len(tc) != n:
        raise ValueError(f"cell arrays must have {n} rows, got {len(pc)} and {len(tc)}")
    hits["cell_hit"] = pc == tc
    if topk_cells is not None:
        tk = np.asarray(topk_cells)
        if tk.ndim == 1:
            tk = tk[:, None]
        if tk.shape[0] != n:
            raise ValueError(f"topk_cells must have {n} rows, got {tk.shape[0]}")
        hits["top5_hit"] = np.any(tk[:, :5] == tc[:, None], axis=1)
        # Fewer than 10 columns cannot show a top-10 miss, so no top-10 flag at all.
        if tk.shape[1] >= 10:
            hits["top10_hit"] = np.any(tk[:, :10] == tc[:, None], axis=1)
    return hits


def per_image_outcomes(distances_km, pred_cell=None, true_cell=None, topk_cells=None) -> dict[str, np.ndarray]:
    """Per-image outcome arrays, the rows a bootstrap resamples (model/uncertainty.py).

    Always "km" (float64 great-circle error; +inf marks an abstention, which every
    distance metric counts as a miss). With pred_cell and true_cell also "cell_hit";
    with topk_cells too "top5_hit" (first 5 columns, all when fewer are given, as in
    evaluate_predictions) and, only when topk_cells has at least 10 columns, "top10_hit".
    Hit arrays are bool. NaN distances raise ValueError: an abstention must be +inf,
    so that a missing prediction is never silently dropped or scored.
    """
    km = _vec(distances_km, "distances_km").copy()
    if np.isnan(km).any():
        raise ValueError("distances_km holds NaN; mark an abstention with +inf")
    if (km < 0).any():
        raise ValueError("distances_km must be >= 0")
    out = {"km": km}
    out.update(_cell_hits(len(km), pred_cell, true_cell, topk_cells))
    return out


def region_centre_baseline(train_lat, train_lon, true_lat, true_lon, grid=None) -> dict:
    """Metrics for always predicting the training set's mean location (the failure mode
    the seed found in its regression-only prototype, seed 2.5). With a GeocellGrid the
    geocell accuracy of that constant guess is included too. Adds centre_lat/centre_lon."""
    tl, to = _vec(train_lat, "train_lat"), _vec(train_lon, "train_lon")
    if len(tl) == 0:
        raise ValueError("region_centre_baseline needs at least one training row")
    c_lat, c_lon = float(np.mean(tl)), float(np.mean(to))
    n = len(_vec(true_lat, "true_lat"))
    pl, po = np.full(n, c_lat), np.full(n, c_lon)
    pred_cell = true_cell = None
    if grid is not None and n:
        b = grid.bounds
        lat_c = np.clip(c_lat, b.min_lat, b.max_lat)
        lon_c = np.clip(c_lon, b.min_lon, b.max_lon)
        pred_cell = np.full(n, grid.cell_of(lat_c, lon_c))
        true_cell = grid.cell_of(np.asarray(true_lat, dtype=np.float64), np.asarray(true_lon, dtype=np.float64))
    out = evaluate_predictions(pl, po, true_lat, true_lon, pred_cell, true_cell)
    out["centre_lat"], out["centre_lon"] = c_lat, c_lon
    return out
