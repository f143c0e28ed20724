"""Nearest neighbours in embedding space, measured in km on the ground: a sanity check
that the vectors carry location. If the embeddings know nothing about place, an
image's nearest neighbour is as far away as a random image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geo_assets.geo.haversine import haversine_km


@dataclass(frozen=True)
class Neighbour:
    query: int
    neighbour: int
    cosine: float
    km: float


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"vectors must be 2-D (rows x dims), got shape {v.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1.0)


def nearest_neighbours(vectors, lat, lon, queries, k: int = 3) -> list[Neighbour]:
    """For every row index in ``queries``, its ``k`` most cosine-similar other rows and
    their ground distance in km, most similar first."""
    unit = _unit_rows(vectors)
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    if not (len(lat) == len(lon) == len(unit)):
        raise ValueError("vectors, lat and lon must have the same number of rows")
    out = []
    for q in queries:
        sims = unit @ unit[q]
        sims[q] = -np.inf  # never the image itself
        order = np.argsort(-sims, kind="stable")[: min(k, len(unit) - 1)]
        for j in order:
            out.append(Neighbour(int(q), int(j), float(sims[j]), float(haversine_km(lat[q], lon[q], lat[j], lon[j]))))
    return out


def neighbour_distance_summary(vectors, lat, lon, seed: int = 0) -> dict:
    """Median km from each row to its nearest neighbour in embedding space, against the
    median km to a random other row (same seed, same rows): the ratio is < 1 when
    the vectors carry location."""
    unit = _unit_rows(vectors)
    n = len(unit)
    if n < 2:
        return {"rows": n, "median_nn_km": None, "median_random_km": None, "ratio": None}
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    nn = np.argmax(sims, axis=1)
    rng = np.random.default_rng(seed)
    other = (np.arange(n) + rng.integers(1, n, size=n)) % n  # a random row that is not itself
    nn_km = float(np.median(haversine_km(lat, lon, lat[nn], lon[nn])))
    random_km = float(np.median(haversine_km(lat, lon, lat[other], lon[other])))
    return {"rows": n, "median_nn_km": round(nn_km, 2), "median_random_km": round(random_km, 2),
            "ratio": round(nn_km / random_km, 3) if random_km > 0 else None}


def knn_cosine_distance(reference, queries, k: int = 5, batch_size: int = 1024) -> np.ndarray:
    """Mean cosine distance (1 - cosine similarity) from each query row to its `k` most
    similar `reference` rows: small where the reference set holds images like it.
    Rows of `reference` may be given unit-normalised or not; zero rows count as orthogonal."""
    ref = _unit_rows(reference)
    q = _unit_rows(np.atleast_2d(np.asarray(queries, dtype=np.float64)))
    if ref.shape[0] == 0:
        raise ValueError("the reference set is empty")
    if q.shape[1] != ref.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} dims but the reference {ref.shape[1]}")
    if k < 1:
        raise ValueError("k must be >= 1")
    k = min(k, ref.shape[0])
    out = np.empty(q.shape[0])
    for start in range(0, q.shape[0], batch_size):
        sims = q[start : start + batch_size] @ ref.T
        top = -np.partition(-sims, k - 1, axis=1)[:, :k]  # the k largest similarities
        out[start : start + batch_size] = 1.0 - top.mean(axis=1)
    return out
