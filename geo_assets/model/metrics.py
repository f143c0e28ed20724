"""Validation metrics (seed 4, Figure 18; seeds 003/004 for top-k and the wider bands).

Pure numpy. `evaluate_predictions` returns a flat dict with these keys:

    n                       number of rows
    median_km, mean_km      great-circle error
    geocell_accuracy        fraction of rows whose predicted cell is the true cell, in [0, 1]
    geocell_accuracy_pct    the same in percent, [0, 100]
    top5_accuracy           fraction whose true cell is among the first 5 columns of topk_cells
                            (all columns when fewer than 5 are given)
    top5_accuracy_pct       the same in percent
    within_100m_pct, within_1km_pct, within_10km_pct, within_25km_pct, within_100km_pct,
    within_200km_pct, within_750km_pct, within_2500km_pct
                            percent of rows with error <= that distance, [0, 100]

Percentages are always `*_pct` in [0, 100]; fractions never carry a suffix.
Anything that cannot be computed (no rows, no cells or no top-k given) is NaN,
so every key is always present and always a float (except `n`).
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
               "top5_accuracy_pct") + tuple(k for k, _ in DISTANCE_BANDS)

NAN = float("nan")


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
    if pred_cell is not None and true_cell is not None:
        pc = np.asarray(pred_cell).reshape(-1)
        tc = np.asarray(true_cell).reshape(-1)
        if len(pc) != n or len(tc) != n:
            raise ValueError(f"cell arrays must have {n} rows, got {len(pc)} and {len(tc)}")
        acc = float(np.mean(pc == tc))
        out["geocell_accuracy"], out["geocell_accuracy_pct"] = acc, 100.0 * acc
        if topk_cells is not None:
            tk = np.asarray(topk_cells)
            if tk.ndim == 1:
                tk = tk[:, None]
            if tk.shape[0] != n:
                raise ValueError(f"topk_cells must have {n} rows, got {tk.shape[0]}")
            acc5 = float(np.mean(np.any(tk[:, :5] == tc[:, None], axis=1)))
            out["top5_accuracy"], out["top5_accuracy_pct"] = acc5, 100.0 * acc5
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
