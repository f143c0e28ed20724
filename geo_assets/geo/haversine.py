"""Great-circle distance (seed eq. 3-5) for floats, numpy arrays and torch tensors."""

from __future__ import annotations

import math

import numpy as np

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1, lon1, lat2, lon2):
    """Distance in km; works element-wise on floats or numpy arrays (degrees)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    d = 2 * EARTH_RADIUS_KM * np.arctan2(np.sqrt(a), np.sqrt(np.clip(1 - a, 0.0, 1.0)))
    return float(d) if d.ndim == 0 else d


def haversine_km_torch(lat1, lon1, lat2, lon2):
    """Differentiable haversine for torch tensors in degrees (used as a loss)."""
    import torch

    to_rad = math.pi / 180.0
    lat1, lon1, lat2, lon2 = (t * to_rad for t in (lat1, lon1, lat2, lon2))
    a = torch.sin((lat2 - lat1) / 2) ** 2 + torch.cos(lat1) * torch.cos(lat2) * torch.sin((lon2 - lon1) / 2) ** 2
    # Clamp keeps sqrt's gradient finite when prediction == truth exactly.
    a = a.clamp(1e-12, 1 - 1e-12)
    return 2 * EARTH_RADIUS_KM * torch.atan2(torch.sqrt(a), torch.sqrt(1 - a))
