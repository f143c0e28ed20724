"""Is this photo like the images the model was trained on? An out-of-distribution score.

A classifier always spreads its probability over the classes it knows, so a
photo from another country, or one unlike anything the training images hold,
still gets a confident guess and a privacy score that looks exact. The score
here says how far the photo is from the training images: the mean cosine
distance from its vector to its `k` nearest training vectors
(`embed.neighbours.knn_cosine_distance`), over the training rows the model's
retrieval gallery keeps (`refine.Gallery`: one index of training embeddings,
not two). The threshold is the `percentile` of the same score on the
validation split, so by construction about (100 - percentile)% of images like
the training set are flagged, and the share flagged on test says whether that
held.

The vector space is one of SPACES, chosen on validation and the real photos
(PERFORMANCE.md): `image` = the image encoder's pooled features, `hidden` =
the model's last hidden layer h.
"""

from __future__ import annotations

import numpy as np

from geo_assets.embed.neighbours import knn_cosine_distance

SPACES = ("image", "hidden")
DEFAULT_SPACE = "image"
DEFAULT_K = 5
DEFAULT_PERCENTILE = 99.0


def ood_scores(reference: np.ndarray, vectors: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """One score per row of `vectors`: mean cosine distance to its k nearest reference rows."""
    return knn_cosine_distance(reference, vectors, k=k)


def fit_threshold(validation_scores, percentile: float = DEFAULT_PERCENTILE) -> float | None:
    """The `percentile` of the validation scores (None when there are none: nothing can be flagged)."""
    s = np.asarray(validation_scores, dtype=np.float64).reshape(-1)
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    s = s[np.isfinite(s)]
    return float(np.percentile(s, percentile)) if s.size else None


def flagged(scores, threshold: float | None) -> np.ndarray:
    """True where the score is above the threshold (never, without a threshold)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if threshold is None:
        return np.zeros(s.size, dtype=bool)
    return s > threshold


def warning_text(score: float, threshold: float) -> str:
    """What `geo-assets predict` says about a flagged photo."""
    return (f"this photo is unlike the images the model was trained on (out-of-distribution score {score:.3f} "
            f"> threshold {threshold:.3f}): its guess, confidence and privacy score are not meaningful")
