"""The seed's training loss (seed 3.6.1, eq. 2): CE + 0.6 * mean haversine km.

    total = CrossEntropy(logits, true_cell) + w * mean_i haversine(pred_i, truth_i)
    pred_i = centre(argmax logits_i) + offset_i

Exactly as the seed: the haversine term uses the *predicted* cell's centre plus
the offset, not the true cell's. The arg-max has no gradient, so the haversine
term trains the regression head (and, through it, the shared hidden layers)
only via the offset; the classification head learns from the cross entropy
alone. When the predicted cell is wrong the haversine term is large (tens to
hundreds of km) yet can only move the prediction by at most size/2 within the
wrong cell: it still pushes the offset towards the true location's side. The
mean km is returned so the training loop can log it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geo_assets.geo.haversine import haversine_km_torch
from geo_assets.model.geolocator import predict_coords


def geolocation_loss(logits: torch.Tensor, offset: torch.Tensor, true_cell: torch.Tensor, true_latlon: torch.Tensor,
                     centres: torch.Tensor, haversine_weight: float = 0.6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (total, ce, hav_km_mean), all scalar tensors; `total` is differentiable.

    true_cell (B,) int64 cell ids; true_latlon (B, 2) degrees; centres (n_cells, 2)."""
    ce = F.cross_entropy(logits, true_cell.long())
    lat, lon = predict_coords(logits, offset, centres)
    hav = haversine_km_torch(lat, lon, true_latlon[:, 0].to(lat.dtype), true_latlon[:, 1].to(lat.dtype)).mean()
    return ce + haversine_weight * hav, ce, hav
