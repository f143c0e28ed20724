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

Haversine label smoothing (PIGEON, Haas et al. 2024), optional: instead of a
one-hot target, class k gets weight exp(-(d_k - d_true) / tau), d_k the km from
the image to class k's centre; a neighbouring cell is then "almost right"
rather than as wrong as the far end of the country, which matters when most
cells hold a handful of images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geo_assets.geo.haversine import haversine_km_torch
from geo_assets.model.geolocator import haversine_matrix_km, predict_coords


def haversine_smoothed_targets(true_latlon: torch.Tensor, centres: torch.Tensor, tau_km: float) -> torch.Tensor:
    """(B, n_classes) target distribution: softmax over classes of -(distance to centre) / tau."""
    d = haversine_matrix_km(true_latlon.to(centres.dtype), centres)
    return torch.softmax(-(d - d.min(dim=1, keepdim=True).values) / float(tau_km), dim=1)


def geolocation_loss(logits: torch.Tensor, offset: torch.Tensor, true_cell: torch.Tensor, true_latlon: torch.Tensor,
                     centres: torch.Tensor, haversine_weight: float = 0.6,
                     smoothing_km: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (total, ce, hav_km_mean), all scalar tensors; `total` is differentiable.

    true_cell (B,) int64 class ids; true_latlon (B, 2) degrees; centres (n_classes, 2).
    `smoothing_km` > 0 replaces the one-hot target by haversine-smoothed targets."""
    if smoothing_km and smoothing_km > 0:
        target = haversine_smoothed_targets(true_latlon, centres.to(logits.device), smoothing_km)
        ce = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    else:
        ce = F.cross_entropy(logits, true_cell.long())
    lat, lon = predict_coords(logits, offset, centres)
    hav = haversine_km_torch(lat, lon, true_latlon[:, 0].to(lat.dtype), true_latlon[:, 1].to(lat.dtype)).mean()
    return ce + haversine_weight * hav, ce, hav
