"""The seed's geolocation MLP (seed 2.2.3, 3.5).

    x -> Linear(in,1024) GELU -> Linear(1024,512) GELU -> Linear(512,256) GELU -> h
    classification head: Linear(256, n_cells)                      -> logits (one per geocell)
    regression head:     (sigmoid(Linear(256, 2)(h)) - 0.5) * size -> offset (lat, lon) in degrees

The offset is bounded to +-size/2 around the centre of the *predicted* cell, so
a prediction never leaves its cell. Prediction = centre(argmax logits) + offset
(seed eq. 1). This is the only trained part of the pipeline: encoders and
fusion are frozen (see geo_assets.embed.fusion).
"""

from __future__ import annotations

import torch
from torch import nn

HIDDEN = (1024, 512, 256)


class GeolocatorMLP(nn.Module):
    def __init__(self, in_dim: int, n_cells: int, geocell_size: float, hidden: tuple[int, ...] = HIDDEN):
        super().__init__()
        if in_dim < 1 or n_cells < 1:
            raise ValueError(f"in_dim and n_cells must be positive, got {in_dim}, {n_cells}")
        if not geocell_size > 0:
            raise ValueError(f"geocell_size must be positive, got {geocell_size}")
        self.in_dim, self.n_cells, self.geocell_size = int(in_dim), int(n_cells), float(geocell_size)
        self.hidden = tuple(int(h) for h in hidden)
        layers: list[nn.Module] = []
        prev = self.in_dim
        for width in self.hidden:
            layers += [nn.Linear(prev, width), nn.GELU()]
            prev = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev, self.n_cells)
        self.regressor = nn.Linear(prev, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, in_dim) -> logits (B, n_cells), offset (B, 2) = (dlat, dlon) in degrees."""
        h = self.features(x)
        logits = self.classifier(h)
        offset = (torch.sigmoid(self.regressor(h)) - 0.5) * self.geocell_size
        return logits, offset

    def config(self) -> dict:
        """Constructor arguments: enough to rebuild the module for a state_dict."""
        return {"in_dim": self.in_dim, "n_cells": self.n_cells, "geocell_size": self.geocell_size,
                "hidden": list(self.hidden)}


def predict_coords(logits: torch.Tensor, offset: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lat, lon) = centre of the arg-max cell + offset. `centres` is (n_cells, 2) lat/lon
    (GeocellGrid.centres_table()) on the logits' device.

    The arg-max is not differentiable: gradients of anything computed from these
    coordinates reach the network only through `offset` (see losses.py)."""
    cell = logits.argmax(dim=1)
    centre = centres.to(device=offset.device, dtype=offset.dtype)[cell]
    coords = centre + offset
    return coords[:, 0], coords[:, 1]
