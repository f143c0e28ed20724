"""Honest class probabilities: temperature scaling and the expected calibration error.

A classifier trained with cross entropy on a few hundred images is usually
over-confident: its arg-max probability is higher than how often the arg-max
is right. Temperature scaling (Guo et al. 2017) divides every logit by one
scalar T > 0 fitted to minimise a negative log-likelihood on the validation
split. It never changes which class is the arg-max (nor any ranking), so every
location the model predicts is unchanged; only the probabilities move.

Two likelihoods: `fit_temperature` the usual one of the true class, and
`fit_temperature_top1` that of the top-1 guess being right (a Bernoulli with the
arg-max probability). The models use the second: with classes only where
training data is, a validation image whose cell holds no class has no class
likelihood at all, and leaving those images out fits the temperature on the
images the model could get right, which makes it over-confident on the rest.

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


def _golden_min(f, a: float, b: float, tol: float) -> float:
    """Minimum of a unimodal f on [a, b] by golden-section search."""
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return (a + b) / 2


def fit_temperature(logits, labels, t_min: float = T_MIN, t_max: float = T_MAX, tol: float = 1e-4) -> float:
    """The T in [t_min, t_max] that minimises the mean NLL of softmax(logits / T) at `labels`.

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search on
    log T finds the minimum without gradients. No rows: 1.0 (nothing to learn from)."""
    z, y = _checked(logits, labels)
    if y.size == 0:
        return 1.0
    if not (0 < t_min < t_max):
        raise ValueError("need 0 < t_min < t_max")
    rows = np.arange(y.size)

    def f(log_t: float) -> float:
        zt = z / math.exp(log_t)
        return float(np.mean(_logsumexp(zt) - zt[rows, y]))

    return float(math.exp(_golden_min(f, math.log(t_min), math.log(t_max), tol)))


def top1_nll(logits, hit, temperature: float = 1.0) -> float:
    """Mean binary NLL of the arg-max probability of softmax(logits / temperature) against
    whether the arg-max was right (`hit`): the calibration of the top-1 confidence itself."""
    z = np.asarray(logits, dtype=np.float64)
    ok = np.asarray(hit, dtype=bool).reshape(-1)
    if z.ndim != 2 or z.shape[0] != ok.size:
        raise ValueError(f"logits must be (N, C) with one hit flag per row, got {z.shape} and {ok.size}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits must be finite")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if ok.size == 0:
        return float("nan")
    zt = z / temperature
    p = np.clip(np.exp(np.max(zt, axis=1) - _logsumexp(zt)), 1e-12, 1 - 1e-12)
    return float(-np.mean(np.where(ok, np.log(p), np.log1p(-p))))


def fit_temperature_top1(logits, hit, t_min: float = T_MIN, t_max: float = T_MAX, tol: float = 1e-4) -> float:
    """The T in [t_min, t_max] that minimises `top1_nll`: every row counts, also one whose true
    cell is no class of the model (a miss under any T), which the class NLL cannot use.
    The arg-max probability rises with 1/T, so the loss is unimodal in log T. No rows: 1.0."""
    z = np.asarray(logits, dtype=np.float64)
    top1_nll(z, hit)  # the input checks, once
    if z.shape[0] == 0:
        return 1.0
    return float(math.exp(_golden_min(lambda lt: top1_nll(z, hit, math.exp(lt)), math.log(t_min), math.log(t_max), tol)))


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

