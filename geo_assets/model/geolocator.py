"""The seed's geolocation MLP (seed 2.2.3, 3.5), and what this project adds to it.

    x -> Linear(in,1024) GELU -> Linear(1024,512) GELU -> Linear(512,256) GELU -> h
    classification head: Linear(256, n_classes)                    -> logits (one per class)
    regression head:     (sigmoid(Linear(256, 2)(h)) - 0.5) * size -> offset (lat, lon) in degrees

The offset is bounded to +-size/2 around the centre of the *predicted* cell, so
a prediction never leaves its cell. Prediction = centre(argmax logits) + offset
(seed eq. 1).

Options beyond the seed (all off in the seed's exact model):

- `class_cells`: the classes are only these grid cells (the cells that hold
  training data) instead of every cell of the region. At 0.05 degrees the UK
  grid has ~44,000 cells for a few thousand images: most logits could never be
  right, and the head was 11M parameters.
- `gazetteer_prior`: when the OCR text names a place the gazetteer knows, add
  `w * exp(-d / sigma)` to each class's logit, d = km from the class centre to
  that place, w learned. Text the caption encoder buries becomes a direct
  signal the classifier can weigh against the scene.
- `input_norm`: standardise each input feature with the training rows' mean and
  standard deviation (stored as buffers). The encoder blocks differ in scale by
  an order of magnitude; without it the largest block drowns the others.
- `token_dims`: a trainable fusion. The input is split into its encoder blocks
  (caption CLS, image CLS, OCR-text CLS), each projected to a token, and one
  self-attention layer mixes the tokens before the MLP (the seed's fusion is
  frozen and random; this one learns which modality to trust).
- `offset=False`: no regression head; the prediction is the arg-max class centre
  (the hybrid family, model/hybrid.py, as its thesis predicted centroids).
"""

from __future__ import annotations

import math

import torch
from torch import nn

HIDDEN = (1024, 512, 256)
TOKEN_WIDTH = 256
KM_PER_DEG = 111.195
PRIOR_INIT_NATS = 6.0  # starting weight of the gazetteer prior (learned from there); chosen on validation


def prior_sigma_km(geocell_size: float) -> float:
    """Width of the gazetteer prior: about half a cell, at least 3 km."""
    return max(3.0, 0.5 * geocell_size * KM_PER_DEG)


def haversine_matrix_km(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 2) x (M, 2) lat/lon degrees -> (N, M) great-circle km.

    Not `haversine_km_torch`: that one clamps for a finite gradient at distance 0, which
    reads 13 m for coincident points. Nothing differentiates through these distances
    (they build targets and a fixed kernel), so exact zeros are kept."""
    la1, lo1 = torch.deg2rad(a[:, :1]), torch.deg2rad(a[:, 1:2])
    la2, lo2 = torch.deg2rad(b[:, 0])[None], torch.deg2rad(b[:, 1])[None]
    h = torch.sin((la2 - la1) / 2) ** 2 + torch.cos(la1) * torch.cos(la2) * torch.sin((lo2 - lo1) / 2) ** 2
    return 2 * 6371.0088 * torch.asin(torch.sqrt(h.clamp(0, 1)))


class TokenFusion(nn.Module):
    """Encoder blocks -> one token each -> self-attention -> flattened tokens."""

    def __init__(self, token_dims: tuple[int, ...], width: int = TOKEN_WIDTH, heads: int = 4):
        super().__init__()
        self.token_dims = tuple(int(d) for d in token_dims)
        self.proj = nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, width)) for d in self.token_dims)
        self.modality = nn.Parameter(torch.zeros(len(self.token_dims), width))
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm = nn.LayerNorm(width)
        self.out_dim = width * len(self.token_dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = torch.split(x, self.token_dims, dim=1)
        tokens = torch.stack([p(b) for p, b in zip(self.proj, blocks)], dim=1) + self.modality
        mixed, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return self.norm(tokens + mixed).flatten(1)


class ZeroOffset(nn.Module):
    """A regression head that always says 0, so (sigmoid(0) - 0.5) * size is no offset:
    predictions are the class centres, and every caller of `regressor` works unchanged."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.new_zeros(h.shape[0], 2)


class GeolocatorMLP(nn.Module):
    def __init__(self, in_dim: int, n_cells: int, geocell_size: float, hidden: tuple[int, ...] = HIDDEN, *,
                 class_cells=None, centres=None, gazetteer_prior: bool = False, token_dims=None,
                 input_norm: bool = False, offset: bool = True):
        """`n_cells` is the number of classes. With `class_cells` (grid ids of the classes)
        `centres` must give their (n, 2) lat/lon; without, class k is grid cell k and the
        caller decodes with the grid's centres table."""
        super().__init__()
        if in_dim < 1 or n_cells < 1:
            raise ValueError(f"in_dim and n_cells must be positive, got {in_dim}, {n_cells}")
        if not geocell_size > 0:
            raise ValueError(f"geocell_size must be positive, got {geocell_size}")
        self.in_dim, self.n_cells, self.geocell_size = int(in_dim), int(n_cells), float(geocell_size)
        self.hidden = tuple(int(h) for h in hidden)
        self.class_cells = None if class_cells is None else [int(c) for c in class_cells]
        if self.class_cells is not None and len(self.class_cells) != self.n_cells:
            raise ValueError(f"{len(self.class_cells)} class cells for {self.n_cells} classes")
        self.gazetteer_prior = bool(gazetteer_prior)
        self.token_dims = None if token_dims is None else [int(d) for d in token_dims]
        if self.token_dims is not None and sum(self.token_dims) != self.in_dim:
            raise ValueError(f"token_dims {self.token_dims} do not add up to in_dim {self.in_dim}")
        if centres is not None:
            self.register_buffer("centres", torch.as_tensor(centres, dtype=torch.float32).reshape(-1, 2))
            if self.centres.shape[0] != self.n_cells:
                raise ValueError(f"centres has {self.centres.shape[0]} rows for {self.n_cells} classes")
        else:
            self.centres = None
        if self.gazetteer_prior and self.centres is None:
            raise ValueError("gazetteer_prior needs the class centres")
        self.input_norm = bool(input_norm)
        if self.input_norm:
            self.register_buffer("x_mean", torch.zeros(self.in_dim))
            self.register_buffer("x_std", torch.ones(self.in_dim))
        self.fusion = TokenFusion(tuple(self.token_dims)) if self.token_dims else None
        layers: list[nn.Module] = []
        prev = self.fusion.out_dim if self.fusion is not None else self.in_dim
        for width in self.hidden:
            layers += [nn.Linear(prev, width), nn.GELU()]
            prev = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(prev, self.n_cells)
        self.offset = bool(offset)
        self.regressor = nn.Linear(prev, 2) if self.offset else ZeroOffset()
        if self.gazetteer_prior:
            # softplus(raw) = weight of the prior, in nats for the named place's cell.
            self.prior_weight_raw = nn.Parameter(torch.tensor(math.log(math.expm1(PRIOR_INIT_NATS))))
            self.prior_sigma_km = prior_sigma_km(self.geocell_size)

    def set_input_stats(self, x: torch.Tensor) -> None:
        """Mean and std of the training rows for `input_norm` (std floored: constant features stay 0)."""
        with torch.no_grad():
            self.x_mean.copy_(x.mean(dim=0))
            self.x_std.copy_(x.std(dim=0).clamp_min(1e-3))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The last hidden layer h (B, 256): the space retrieval refinement searches."""
        if self.input_norm:
            x = (x - self.x_mean) / self.x_std
        return self.features(self.fusion(x) if self.fusion is not None else x)

    def prior(self, gaz: torch.Tensor) -> torch.Tensor:
        """(B, 2) gazetteer lat/lon (NaN = none) -> (B, n_classes) logit bonus."""
        have = torch.isfinite(gaz).all(dim=1)
        bonus = torch.zeros(gaz.shape[0], self.n_cells, dtype=self.centres.dtype, device=gaz.device)
        if have.any():
            d = haversine_matrix_km(gaz[have].to(self.centres.dtype), self.centres)
            bonus[have] = nn.functional.softplus(self.prior_weight_raw) * torch.exp(-d / self.prior_sigma_km)
        return bonus

    def forward(self, x: torch.Tensor, gaz: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, in_dim) [, gaz (B, 2)] -> logits (B, n_classes), offset (B, 2) = (dlat, dlon) in degrees."""
        h = self.embed(x)
        logits = self.classifier(h)
        if self.gazetteer_prior and gaz is not None:
            logits = logits + self.prior(gaz)
        offset = (torch.sigmoid(self.regressor(h)) - 0.5) * self.geocell_size
        return logits, offset

    def config(self) -> dict:
        """Constructor arguments: enough to rebuild the module for a state_dict."""
        cfg = {"in_dim": self.in_dim, "n_cells": self.n_cells, "geocell_size": self.geocell_size,
               "hidden": list(self.hidden)}
        if self.class_cells is not None:
            cfg["class_cells"] = self.class_cells
        if self.gazetteer_prior:
            cfg["gazetteer_prior"] = True
        if self.token_dims:
            cfg["token_dims"] = self.token_dims
        if self.input_norm:
            cfg["input_norm"] = True
        if not self.offset:
            cfg["offset"] = False
        return cfg


def build_from_config(arch: dict, grid) -> GeolocatorMLP:
    """Rebuild a GeolocatorMLP (or a ContrastiveGeolocator) from `config()` output and its geocell grid."""
    if arch.get("kind") == "contrastive":
        from geo_assets.model.contrastive import ContrastiveGeolocator

        return ContrastiveGeolocator.from_config(arch)
    class_cells = arch.get("class_cells")
    centres = None
    if class_cells is not None:
        lat, lon = grid.centre_of(list(class_cells))
        centres = torch.stack([torch.as_tensor(lat, dtype=torch.float32).reshape(-1),
                               torch.as_tensor(lon, dtype=torch.float32).reshape(-1)], dim=1)
    return GeolocatorMLP(int(arch["in_dim"]), int(arch["n_cells"]), float(arch["geocell_size"]),
                         tuple(arch.get("hidden", HIDDEN)), class_cells=class_cells, centres=centres,
                         gazetteer_prior=bool(arch.get("gazetteer_prior", False)), token_dims=arch.get("token_dims"),
                         input_norm=bool(arch.get("input_norm", False)), offset=bool(arch.get("offset", True)))


def class_centres(model: GeolocatorMLP, grid) -> torch.Tensor:
    """(n_classes, 2) lat/lon centre of every class."""
    if model.centres is not None:
        return model.centres
    return torch.as_tensor(grid.centres_table(), dtype=torch.float32)


def class_grid_cells(model: GeolocatorMLP):
    """Grid cell id of every class (a numpy array)."""
    import numpy as np

    return np.asarray(model.class_cells if model.class_cells is not None else np.arange(model.n_cells), dtype=np.int64)


def predict_coords(logits: torch.Tensor, offset: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lat, lon) = centre of the arg-max cell + offset. `centres` is (n_classes, 2) lat/lon
    (`class_centres`) on the logits' device.

    The arg-max is not differentiable: gradients of anything computed from these
    coordinates reach the network only through `offset` (see losses.py)."""
    cell = logits.argmax(dim=1)
    centre = centres.to(device=offset.device, dtype=offset.dtype)[cell]
    coords = centre + offset
    return coords[:, 0], coords[:, 1]
