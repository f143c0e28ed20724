"""Bootstrap confidence intervals for the evaluation report.

Pure numpy. The input is the per-image outcome dict of
`geo_assets.model.metrics.per_image_outcomes` ("km", and optionally "cell_hit",
"top5_hit", "top10_hit"); every reported metric is a function of those rows
(`METRICS_FROM_OUTCOMES`), so a percentile bootstrap over rows gives its interval.

* `bootstrap_metrics`  value and interval of each metric.
* `paired_difference`  b minus a on the same rows (two models, or one model on
  blurred and unblurred images), resampling the same rows for both, so the
  interval reflects the per-image pairing and is much narrower than comparing
  two independent intervals.
* With `groups` (one key per row, e.g. the Mapillary sequence id) whole groups
  are resampled with replacement (cluster bootstrap): images of one sequence are
  near-duplicates, so treating them as independent would overstate precision.

Implementation: each bootstrap draw is held as a row of counts (how often each
row was drawn), `counts @ values` gives every mean metric of every draw at once,
and medians are read off the cumulative counts in sorted order. This is exactly
the median/mean of the resampled multiset, for the plain and the cluster
bootstrap alike (where draws have different numbers of rows), without building
ragged index lists.

Abstentions (km = +inf) count as misses in every band and score GeoScore 0; the
median may be +inf (more than half abstained), and **mean_km is +inf as soon as
any row abstained** -- a mean over the finite rows would reward abstaining on
hard images. Use `json_safe` before writing results to JSON (inf/NaN -> None).
Empty input gives NaN everywhere, never an exception.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from geo_assets.model.metrics import DISTANCE_BANDS, geoscore

NAN = float("nan")
# Upper bound on draw-by-row cells processed at once (int64 counts + float copies).
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class MetricFromOutcomes:
    """How one reported metric follows from the outcome arrays.

    kind: "median" (median of the per-row value), "mean" (mean of the per-row value;
    +inf if any row is +inf) or "pct" (100 * mean of a per-row bool).
    needs: the outcome key that must be present. row_value: outcomes -> per-row array.
    """

    kind: str
    needs: str
    row_value: Callable[[dict], np.ndarray]


def _band(km: float) -> Callable[[dict], np.ndarray]:
    return lambda o: o["km"] <= km  # inf <= km is False: an abstention is a miss


METRICS_FROM_OUTCOMES: dict[str, MetricFromOutcomes] = {
    "median_km": MetricFromOutcomes("median", "km", lambda o: o["km"]),
    "mean_km": MetricFromOutcomes("mean", "km", lambda o: o["km"]),
    "geoscore": MetricFromOutcomes("mean", "km", lambda o: geoscore(o["km"])),
    **{key: MetricFromOutcomes("pct", "km", _band(km)) for key, km in DISTANCE_BANDS},
    "geocell_accuracy_pct": MetricFromOutcomes("pct", "cell_hit", lambda o: o["cell_hit"]),
    "top5_accuracy_pct": MetricFromOutcomes("pct", "top5_hit", lambda o: o["top5_hit"]),
    "top10_accuracy_pct": MetricFromOutcomes("pct", "top10_hit", lambda o: o["top10_hit"]),
}


# ---------------------------------------------------------------------------- helpers


def _check_outcomes(outcomes: dict) -> tuple[dict, int]:
    if "km" not in outcomes:
        raise ValueError("outcomes need a 'km' array (see metrics.per_image_outcomes)")
    o = {k: np.asarray(v).reshape(-1) for k, v in outcomes.items()}
    o["km"] = o["km"].astype(np.float64)
    n = len(o["km"])
    for k, v in o.items():
        if len(v) != n:
            raise ValueError(f"outcome {k!r} has {len(v)} rows, 'km' has {n}")
    if np.isnan(o["km"]).any():
        raise ValueError("outcome 'km' holds NaN; mark an abstention with +inf")
    return o, n


def _available(o: dict) -> list[str]:
    return [name for name, spec in METRICS_FROM_OUTCOMES.items() if spec.needs in o]


def _group_index(groups, n: int) -> np.ndarray | None:
    if groups is None:
        return None
    g = np.asarray(groups).reshape(-1)
    if len(g) != n:
        raise ValueError(f"groups has {len(g)} entries for {n} rows")
    return np.unique(g, return_inverse=True)[1].reshape(-1)


def _point(o: dict, names: list[str]) -> dict[str, float]:
    """Point estimates on all rows, computed as metrics.evaluate_predictions does."""
    out = {}
    for name in names:
        spec = METRICS_FROM_OUTCOMES[name]
        v = np.asarray(spec.row_value(o), dtype=np.float64)
        if len(v) == 0:
            out[name] = NAN
        elif spec.kind == "median":
            out[name] = float(np.median(v))
        elif spec.kind == "mean":
            out[name] = float(np.mean(v))  # +inf if any row is +inf, by design
        else:
            out[name] = float(100.0 * np.mean(v))
    return out


class _Prepared:
    """Per-row columns of one outcome set, laid out for the count-matrix formulas."""

    def __init__(self, o: dict, names: list[str]):
        self.names = names
        cols, infs, self.col_of, self.median_of = [], [], {}, {}
        for name in names:
            spec = METRICS_FROM_OUTCOMES[name]
            v = np.asarray(spec.row_value(o), dtype=np.float64)
            if spec.kind == "median":
                order = np.argsort(v, kind="stable")
                self.median_of[name] = (order, v[order])
            else:
                self.col_of[name] = len(cols)
                inf = np.isposinf(v)
                cols.append(np.where(inf, 0.0, v))  # 0 * inf would be NaN in the matmul
                infs.append(inf.astype(np.float64))
        n = len(o["km"])
        self.values = np.stack(cols, axis=1) if cols else np.zeros((n, 0))
        self.infs = np.stack(infs, axis=1) if infs else np.zeros((n, 0))
        self.any_inf = bool(self.infs.any())

    def stats(self, counts: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric for each draw; counts is (draws, rows), rows drawn per draw."""
        total = counts.sum(axis=1)
        cf = counts.astype(np.float64)
        sums = cf @ self.values
        inf_drawn = (cf @ self.infs) > 0 if self.any_inf else None
        out = {}
        for name in self.names:
            spec = METRICS_FROM_OUTCOMES[name]
            if spec.kind == "median":
                order, sorted_v = self.median_of[name]
                out[name] = _multiset_median(counts[:, order], sorted_v, total)
                continue
            j = self.col_of[name]
            m = sums[:, j] / total
            if spec.kind == "pct":
                m = 100.0 * m
            elif inf_drawn is not None:
                m = np.where(inf_drawn[:, j], np.inf, m)
            out[name] = m
        return out


def _multiset_median(sorted_counts: np.ndarray, sorted_v: np.ndarray, total: np.ndarray) -> np.ndarray:
    """np.median of each draw's multiset, given per-row counts in ascending value order."""
    cum = np.cumsum(sorted_counts, axis=1)
    lo_pos, hi_pos = (total - 1) // 2, total // 2  # 0-based middle positions
    # the element at position p is the first row whose cumulative count exceeds p
    i_lo = (cum <= lo_pos[:, None]).sum(axis=1)
    i_hi = (cum <= hi_pos[:, None]).sum(axis=1)
    return (sorted_v[i_lo] + sorted_v[i_hi]) / 2.0


def _count_draws(rng: np.random.Generator, n_draws: int, n_units: int) -> np.ndarray:
    """(n_draws, n_units) counts of n_units draws with replacement from n_units units."""
    idx = rng.integers(0, n_units, size=(n_draws, n_units))
    idx += np.arange(n_draws)[:, None] * n_units
    return np.bincount(idx.ravel(), minlength=n_draws * n_units).reshape(n_draws, n_units)


def _draw_chunks(n: int, group_idx: np.ndarray | None, n_boot: int, seed):
    """Yield row-count matrices (chunk of draws, n), all from one seeded generator.

    Chunk sizes depend only on n, so a seed always gives the same numbers."""
    rng = np.random.default_rng(seed)
    n_groups = n if group_idx is None else int(group_idx.max()) + 1
    per_chunk = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < n_boot:
        b = min(per_chunk, n_boot - done)
        counts = _count_draws(rng, b, n_groups)
        # cluster bootstrap: a row is drawn as often as its group is
        yield counts if group_idx is None else counts[:, group_idx]
        done += b


def _quantiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval (linear interpolation, as np.percentile), tolerant of +/-inf.

    np.percentile interpolates inf - inf into NaN; here an endpoint between two equal
    values is that value. Any NaN draw (an undefined difference) makes the interval NaN.
    """
    s = np.sort(samples)
    if len(s) == 0 or np.isnan(s).any():
        return NAN, NAN
    out = []
    for q in ((1.0 - level) / 2.0, (1.0 + level) / 2.0):
        h = q * (len(s) - 1)
        lo, hi = int(math.floor(h)), int(math.ceil(h))
        a, b, t = s[lo], s[hi], h - lo
        out.append(float(a) if (a == b or t == 0.0) else float(a + t * (b - a)))
    return out[0], out[1]


def _check_args(n_boot: int, level: float):
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    if not 0.0 < level < 1.0:
        raise ValueError("level must be in (0, 1)")


# ---------------------------------------------------------------------------- public


def point_metrics(outcomes: dict) -> dict[str, float]:
    """Every metric of METRICS_FROM_OUTCOMES the outcomes allow, on all rows (no interval)."""
    o, _ = _check_outcomes(outcomes)
    return _point(o, _available(o))


def bootstrap_metrics(outcomes: dict, groups=None, n_boot: int = 1000, level: float = 0.95,
                      seed=0) -> dict[str, dict]:
    """Percentile-bootstrap interval of every metric the outcomes allow.

    outcomes: per-row arrays as from metrics.per_image_outcomes ("km" required).
    groups: optional key per row (e.g. sequence id); whole groups are resampled with
    replacement, so correlated rows widen the interval as they should.
    Returns {metric: {"value": estimate on all rows, "low": ..., "high": ...}}, with
    the interval at `level` (0.95 -> 2.5th and 97.5th percentiles of n_boot draws).
    Deterministic for a given seed. No rows: every value and bound is NaN.
    """
    _check_args(n_boot, level)
    o, n = _check_outcomes(outcomes)
    names = _available(o)
    point = _point(o, names)
    if n == 0:
        return {k: {"value": NAN, "low": NAN, "high": NAN} for k in names}
    gidx = _group_index(groups, n)
    prep = _Prepared(o, names)
    parts: dict[str, list] = {k: [] for k in names}
    for counts in _draw_chunks(n, gidx, n_boot, seed):
        for k, v in prep.stats(counts).items():
            parts[k].append(v)
    out = {}
    for k in names:
        low, high = _quantiles(np.concatenate(parts[k]), level)
        out[k] = {"value": point[k], "low": low, "high": high}
    return out


def paired_difference(outcomes_a: dict, outcomes_b: dict, groups=None, n_boot: int = 1000,
                      level: float = 0.95, seed=0) -> dict[str, dict]:
    """Difference b - a of every metric both outcome sets allow, on the same rows.

    Row i of a and row i of b must be the same image (same length, same order); each
    draw resamples the same rows (or groups) for both, so the interval is that of
    the paired difference. Returns {metric: {"a", "b", "diff", "low", "high",
    "significant", "level"}}; significant is True when the interval excludes 0.
    Infinite values can make a difference undefined (inf - inf): its interval is NaN.
    """
    _check_args(n_boot, level)
    oa, na = _check_outcomes(outcomes_a)
    ob, nb = _check_outcomes(outcomes_b)
    if na != nb:
        raise ValueError(f"paired outcomes must have the same rows: a has {na}, b has {nb}")
    names = [k for k in _available(oa) if k in set(_available(ob))]
    pa, pb = _point(oa, names), _point(ob, names)
    out = {}
    if na == 0:
        for k in names:
            out[k] = {"a": NAN, "b": NAN, "diff": NAN, "low": NAN, "high": NAN, "significant": False,
                      "level": level}
        return out
    gidx = _group_index(groups, na)
    prep_a, prep_b = _Prepared(oa, names), _Prepared(ob, names)
    parts: dict[str, list] = {k: [] for k in names}
    with np.errstate(invalid="ignore"):  # inf - inf -> NaN is handled by _quantiles
        for counts in _draw_chunks(na, gidx, n_boot, seed):
            sa, sb = prep_a.stats(counts), prep_b.stats(counts)
            for k in names:
                parts[k].append(sb[k] - sa[k])
        for k in names:
            low, high = _quantiles(np.concatenate(parts[k]), level)
            diff = pb[k] - pa[k]
            out[k] = {"a": pa[k], "b": pb[k], "diff": diff, "low": low, "high": high,
                      "significant": bool(low > 0.0 or high < 0.0), "level": level}
    return out


def _fmt(v: float, unit: str, signed: bool = False, decimals: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if math.isinf(v):
        s = ("+" if signed and v > 0 else "-" if v < 0 else "") + "inf"
    else:
        s = f"{v:+.{decimals}f}" if signed else f"{v:.{decimals}f}"
    if unit == "%":
        return s + "%"
    return f"{s} {unit}" if unit else s


def describe_difference(label: str, metric_label: str, d: dict, unit: str, decimals: int = 1) -> str:
    """One English sentence for a paired_difference entry.

    unit "%" reads the difference in percentage points; any other unit ("km", or ""
    for GeoScore) is appended to values and difference. E.g.
    "Blurring lowers within 10 km from 31.0% to 12.0% (-19.0 points, 95% CI -25.1 to
    -12.9): significant."
    """
    a, b, diff = d.get("a"), d.get("b"), d.get("diff")
    low, high = d.get("low"), d.get("high")
    pct = f"{100 * d.get('level', 0.95):g}%"
    a_s, b_s = _fmt(a, unit, False, decimals), _fmt(b, unit, False, decimals)
    diff_s = (_fmt(diff, "", True, decimals) + " points") if unit == "%" else _fmt(diff, unit, True, decimals)
    if diff is None or math.isnan(diff):
        head = f"{label} changes {metric_label} from {a_s} to {b_s}"
    elif diff == 0:
        head = f"{label} leaves {metric_label} unchanged at {a_s}"
    else:
        head = f"{label} {'raises' if diff > 0 else 'lowers'} {metric_label} from {a_s} to {b_s}"
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return f"{head} ({diff_s}, {pct} CI not computable): significance unknown."
    ci = f"{pct} CI {_fmt(low, '', True, decimals)} to {_fmt(high, '', True, decimals)}"
    if d.get("significant", bool(low > 0 or high < 0)):
        return f"{head} ({diff_s}, {ci}): significant."
    return f"{head} ({diff_s}, {ci}): not significant (the interval includes zero)."


def json_safe(x):
    """x with inf/NaN floats turned into None, recursively (dicts, lists, tuples, numpy),
    and numpy scalars/arrays into plain Python, so json.dumps gives strict JSON."""
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
