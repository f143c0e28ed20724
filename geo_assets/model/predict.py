"""Predictions from feature vectors, and the privacy score (seed 3.7, seed 002).

privacy score (seed 002) = 1 - confidence of the fine geocell prediction, and 1
when a coarse model's confidence is under `cutoff` (the image does not even give
away the coarse area). 0 = the model is certain where the image is; 1 = it
gives nothing away. Turning an image file into features reuses the frozen
encoders and fusion (geo_assets.embed) and lives with the caller.
"""

from __future__ import annotations

import numpy as np
import torch

from geo_assets.model.artifacts import LoadedModel
from geo_assets.model.geolocator import predict_coords


def privacy_score(probs_fine: np.ndarray, coarse_conf: float | None = None, cutoff: float = 0.2) -> float:
    """`probs_fine`: the fine model's probabilities over cells for one image (its max is
    the confidence; a length-1 array holding the confidence also works)."""
    p = np.asarray(probs_fine, dtype=np.float64).reshape(-1)
    if p.size == 0 or not np.all(np.isfinite(p)):
        raise ValueError("probs_fine must be a non-empty array of finite probabilities")
    if coarse_conf is not None and float(coarse_conf) < cutoff:
        return 1.0
    return float(np.clip(1.0 - p.max(), 0.0, 1.0))


@torch.no_grad()
def predict_features(loaded: LoadedModel, features: np.ndarray, coarse_conf=None, cutoff: float = 0.2,
                     batch_size: int = 512) -> list[dict]:
    """One dict per row: lat, lon (centre of the arg-max cell + offset), cell, confidence
    (softmax probability of that cell) and privacy_score. `coarse_conf` is None, one
    float for all rows, or one per row."""
    x_np = np.asarray(features, dtype=np.float32)
    if x_np.ndim == 1:
        x_np = x_np[None]
    model = loaded.model
    if x_np.ndim != 2 or x_np.shape[1] != model.in_dim:
        raise ValueError(f"features must be (N, {model.in_dim}) for this model "
                         f"({loaded.meta.get('feature', 'fused')} features), got {x_np.shape}")
    n = x_np.shape[0]
    if coarse_conf is None or np.ndim(coarse_conf) == 0:
        coarse = [coarse_conf] * n
    else:
        coarse = list(np.asarray(coarse_conf, dtype=np.float64).reshape(-1))
        if len(coarse) != n:
            raise ValueError(f"coarse_conf has {len(coarse)} values for {n} rows")
    device = next(model.parameters()).device
    centres = torch.as_tensor(loaded.grid.centres_table(), dtype=torch.float32, device=device)
    model.eval()
    out: list[dict] = []
    for start in range(0, n, batch_size):
        x = torch.from_numpy(x_np[start : start + batch_size]).to(device)
        logits, offset = model(x)
        lat, lon = predict_coords(logits, offset, centres)
        conf, cell = torch.softmax(logits, dim=1).max(dim=1)
        for i, (la, lo, c, cf) in enumerate(zip(lat.tolist(), lon.tolist(), cell.tolist(), conf.tolist())):
            cc = coarse[start + i]
            out.append({"lat": float(la), "lon": float(lo), "cell": int(c), "confidence": float(cf),
                        "privacy_score": privacy_score(np.array([cf]), None if cc is None else float(cc), cutoff)})
    return out
