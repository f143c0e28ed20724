"""Honest class probabilities: temperature scaling and the expected calibration error.

A classifier trained with cross entropy on a few hundred images is usually
over-confident: its arg-max probability is higher than how often the arg-max
is right. Temperature scaling (Guo et al. 2017) divides every logit by one
scalar T > 0 fitted to minimise the negative log-likelihood on the validation
split. It never changes which class is the arg-max (nor any ranking), so every
location the model predicts is unchanged; only the probabilities move.

The expected calibration error (ECE) is how far the top-1 confidence is from
the top-1 accuracy, averaged over equal-width confidence bins weighted by the
number of images in each bin: 0 = the confidence says exactly how often the
model is right.

Pure numpy; the model code computes the logits.
"""

from __future__ import annotations

import math

import numpy as np

T_MIN, T_MAX = 0.05, 50.0
ECE_BINS = 15


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = np.max(z, axis=1, keepdims=True)
    return (m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True)))[:, 0]


def _checked(logits, labels) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if z.ndim != 2 or z.shape[0] != y.size:
        raise ValueError(f"logits must be (N, C) with one label per row, got {z.shape} and {y.size} labels")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {z.shape[1]}); drop rows without a class first")
    return z, y


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature)."""
    z, y = _checked(logits, labels)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if y.size == 0:
        return float("nan")
    z = z / temperature
    return float(np.mean(_logsumexp(z) - z[np.arange(y.size), y]))


def fit_temperature(logits, labels, t_min: float = T_MIN, t_max: float = T_MAX, tol: float = 1e-4) -> float:
    """The T in [t_min, t_max] that minimises the mean NLL of softmax(logits / T).

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search on
    log T finds the minimum without gradients. No rows: 1.0 (nothing to learn from)."""
    z, y = _checked(logits, labels)
    if y.size == 0:
        return 1.0
    if not (0 < t_min < t_max):
        raise ValueError("need 0 < t_min < t_max")
    rows = np.arange(y.size)
    lse_cache: dict[float, float] = {}

    def f(log_t: float) -> float:
        if log_t not in lse_cache:
            zt = z / math.exp(log_t)
            lse_cache[log_t] = float(np.mean(_logsumexp(zt) - zt[rows, y]))
        return lse_cache[log_t]

    a, b = math.log(t_min), math.log(t_max)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    while b - a > tol:
        if f(c) <= f(d):
            b, d = d, c
            c = b - g * (b - a)
        else:
            a, c = c, d
            d = a + g * (b - a)
    return float(math.exp((a + b) / 2))


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - np.max(z, axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(confidence, correct, n_bins: int = ECE_BINS) -> float:
    """ECE of top-1 `confidence` (N,) in [0, 1] against `correct` (N,) bool, over
    `n_bins` equal-width bins ((0, 1/n], ..., a confidence of 0 falls in the first).
    Returns a fraction in [0, 1]; NaN when there are no rows."""
    p = np.asarray(confidence, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct, dtype=bool).reshape(-1)
    if p.size != ok.size:
        raise ValueError(f"confidence has {p.size} rows but correct has {ok.size}")
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if p.size == 0:
        return float("nan")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1 + 1e-9:
        raise ValueError("confidence must be probabilities in [0, 1]")
    bins = np.clip(np.ceil(p * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        m = bins == b
        ece += m.sum() / p.size * abs(ok[m].mean() - p[m].mean())
    return float(ece)

