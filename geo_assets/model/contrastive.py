"""The contrastive image-location model (seed 001's CLIP idea, in the form GeoCLIP uses).

    image side:    [caption CLS | image CLS | OCR-text CLS] -> standardise -> projection head -> L2 norm
    location side: (lat, lon) -> random Fourier features at several scales -> one MLP per scale,
                   summed -> L2 norm
    training:      symmetric cross entropy over cosine similarities / a learned temperature
                   (InfoNCE), in-batch locations plus a random sample of gallery locations as
                   extra negatives for the image side
    prediction:    the gallery location most similar to the image; the gallery is the training
                   positions plus a regular grid over the region (locations never seen in
                   training can still be predicted)

No pretrained CLIP weights exist offline here: the encoders are the graph's frozen ones and
only the two heads train. Targets are soft by distance (`POSITIVE_KM`): images of one
sequence a few metres apart share a batch, and calling each other's location a negative
would teach the model to separate what cannot be separated.

`ContrastiveGeolocator` offers what the rest of model/ calls on a `GeolocatorMLP`: `embed`
(the image projection: the out-of-distribution space), `classifier` (similarities to the
gallery: one "class" per gallery location), `regressor` (always zero: the prediction is the
gallery location itself), `centres`, `class_cells`, so calibration, evaluation, saving and
the report treat it like the other models. Several gallery locations can share a grid cell:
top-k geocell hits count gallery locations, so they are a little conservative.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geo_assets.geo.geocells import GeocellGrid
from geo_assets.model.geolocator import ZeroOffset, haversine_matrix_km

EMBED_DIM = 128
SIGMAS = (1.0, 8.0, 64.0)  # RFF frequency scales, in cycles per region width (GeoCLIP: 2^0, 2^4, 2^8 worldwide)
N_FREQ = 64  # frequencies per scale
LOCATION_HIDDEN = 256
MAX_GRID = 20_000  # regular grid locations in the gallery at most (the grid step grows beyond)
POSITIVE_KM = 1.0  # width of the soft targets: locations this close count as (almost) the same
EXTRA_NEGATIVES = 512  # gallery locations added to every batch as negatives
INIT_TEMPERATURE = 0.07  # CLIP's
MAX_LOGIT_SCALE = 100.0
# TrainConfig fields the family fixes: in-batch negatives want bigger batches than the seed's 32.
TRAIN_SETTINGS = {"lr": 1e-3, "batch_size": 256}


def fourier_matrix(sigma: float, n_freq: int = N_FREQ, seed: int = 0) -> torch.Tensor:
    """(2, n_freq) frequencies ~ N(0, sigma^2), the same for the same (sigma, n_freq, seed)."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed) * 1_000_003 + int(round(float(sigma) * 1000)))
    return torch.randn(2, int(n_freq), generator=g) * float(sigma)


def rff_features(xy: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 2) coordinates, (2, F) frequencies -> (N, 2F) [cos(2 pi xy B) | sin(2 pi xy B)]."""
    proj = 2 * math.pi * xy @ b.to(xy.dtype)
    return torch.cat([torch.cos(proj), torch.sin(proj)], dim=1)


class LocationEncoder(nn.Module):
    """(lat, lon) -> (dim,): random Fourier features at each scale of `sigmas`, one MLP each, summed.

    Coordinates are first made roughly isotropic and region-relative: y = lat / S,
    x = lon * cos(mid latitude) / S from the region's south-west corner, S the region's
    larger side in degrees of latitude."""

    def __init__(self, bounds: tuple[float, float, float, float], dim: int = EMBED_DIM, sigmas=SIGMAS,
                 n_freq: int = N_FREQ, seed: int = 0, hidden: int = LOCATION_HIDDEN):
        super().__init__()
        min_lat, min_lon, max_lat, max_lon = (float(v) for v in bounds)
        if not (max_lat > min_lat and max_lon > min_lon):
            raise ValueError(f"bounds must be (min_lat, min_lon, max_lat, max_lon) with max > min, got {bounds}")
        self.bounds = (min_lat, min_lon, max_lat, max_lon)
        self.sigmas, self.n_freq, self.seed = tuple(float(s) for s in sigmas), int(n_freq), int(seed)
        coslat = math.cos(math.radians((min_lat + max_lat) / 2))
        side = max(max_lat - min_lat, (max_lon - min_lon) * coslat)
        self.register_buffer("origin", torch.tensor([min_lat, min_lon], dtype=torch.float32), persistent=False)
        self.register_buffer("scale", torch.tensor([1.0 / side, coslat / side], dtype=torch.float32), persistent=False)
        for i, s in enumerate(self.sigmas):
            self.register_buffer(f"b{i}", fourier_matrix(s, self.n_freq, self.seed), persistent=False)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(2 * self.n_freq, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                          nn.Linear(hidden, dim)) for _ in self.sigmas)

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        xy = ((latlon.float() - self.origin) * self.scale).flip(1)  # (x, y)
        return sum(mlp(rff_features(xy, getattr(self, f"b{i}"))) for i, mlp in enumerate(self.mlps))


class ProjectionHead(nn.Module):
    """The seed's (and CLIP's) projection head: linear, GELU, linear, dropout, residual, LayerNorm."""

    def __init__(self, in_dim: int, dim: int = EMBED_DIM, dropout: float = 0.1):
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.fc = nn.Sequential(nn.GELU(), nn.Linear(dim, dim), nn.Dropout(dropout))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.proj(x)
        return self.norm(p + self.fc(p))


class GallerySimilarity(nn.Module):
    """Image embedding -> logits over the gallery: scale * cosine similarity. The gallery's
    location embeddings are a buffer (`ContrastiveGeolocator.refresh_gallery` fills it)."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.register_buffer("gallery_emb", torch.zeros(int(n), int(dim)))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / INIT_TEMPERATURE)))

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale() * h @ self.gallery_emb.T


class ContrastiveGeolocator(nn.Module):
    gazetteer_prior = False
    token_dims = None

    def __init__(self, in_dim: int, gallery, class_cells, geocell_size: float, bounds, *, dim: int = EMBED_DIM,
                 sigmas=SIGMAS, n_freq: int = N_FREQ, seed: int = 0, input_norm: bool = True):
        """`gallery` (G, 2) lat/lon of the locations it can predict, `class_cells` their grid cells,
        `bounds` (min_lat, min_lon, max_lat, max_lon) the region's."""
        super().__init__()
        gallery = torch.as_tensor(np.asarray(gallery, dtype=np.float32)).reshape(-1, 2)
        if in_dim < 1 or gallery.shape[0] < 1:
            raise ValueError(f"in_dim and the gallery must be non-empty, got {in_dim}, {gallery.shape[0]} locations")
        if len(class_cells) != gallery.shape[0]:
            raise ValueError(f"{len(class_cells)} class cells for {gallery.shape[0]} gallery locations")
        self.in_dim, self.n_cells, self.geocell_size = int(in_dim), int(gallery.shape[0]), float(geocell_size)
        self.hidden = (int(dim),)
        self.class_cells = [int(c) for c in class_cells]
        self.input_norm = bool(input_norm)
        self.register_buffer("centres", gallery)
        self.register_buffer("x_mean", torch.zeros(self.in_dim))
        self.register_buffer("x_std", torch.ones(self.in_dim))
        self.head = ProjectionHead(self.in_dim, dim)
        self.location = LocationEncoder(bounds, dim, sigmas, n_freq, seed)
        self.classifier = GallerySimilarity(self.n_cells, dim)
        self.regressor = ZeroOffset()

    def set_input_stats(self, x: torch.Tensor) -> None:
        with torch.no_grad():
            self.x_mean.copy_(x.mean(dim=0))
            self.x_std.copy_(x.std(dim=0).clamp_min(1e-3) if x.shape[0] > 1 else torch.ones_like(self.x_std))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) features -> (B, dim) unit image embeddings."""
        if self.input_norm:
            x = (x - self.x_mean) / self.x_std
        return F.normalize(self.head(x), dim=1)

    def encode_locations(self, latlon: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.location(latlon), dim=1)

    @torch.no_grad()
    def refresh_gallery(self, batch_size: int = 8192) -> None:
        """Recompute the gallery's location embeddings (after the location encoder changed)."""
        parts = [self.encode_locations(self.centres[s : s + batch_size]) for s in range(0, self.n_cells, batch_size)]
        self.classifier.gallery_emb.copy_(torch.cat(parts))

    def forward(self, x: torch.Tensor, gaz: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(x)
        return self.classifier(h), self.regressor(h)

    def config(self) -> dict:
        loc = self.location
        return {"kind": "contrastive", "in_dim": self.in_dim, "n_cells": self.n_cells, "geocell_size": self.geocell_size,
                "hidden": list(self.hidden), "class_cells": self.class_cells, "bounds": list(loc.bounds),
                "sigmas": list(loc.sigmas), "n_freq": loc.n_freq, "seed": loc.seed, "input_norm": self.input_norm}

    @classmethod
    def from_config(cls, arch: dict) -> "ContrastiveGeolocator":
        """The architecture of `config()`; the gallery locations and weights come with the state_dict."""
        return cls(int(arch["in_dim"]), np.zeros((int(arch["n_cells"]), 2), np.float32), arch["class_cells"],
                   float(arch["geocell_size"]), tuple(arch["bounds"]), dim=int(arch["hidden"][0]),
                   sigmas=tuple(arch["sigmas"]), n_freq=int(arch["n_freq"]), seed=int(arch["seed"]),
                   input_norm=bool(arch.get("input_norm", True)))


def regular_grid(grid: GeocellGrid, max_points: int = MAX_GRID) -> np.ndarray:
    """(M, 2) lat/lon of a regular grid over the region: the geocell centres, or every k-th
    step when there are more than `max_points` of them."""
    b = grid.bounds
    step = grid.size * max(1, math.ceil(math.sqrt(grid.n_cells / max_points)))
    lats = np.arange(b.min_lat + step / 2, b.max_lat, step)
    lons = np.arange(b.min_lon + step / 2, b.max_lon, step)
    lat, lon = np.meshgrid(lats, lons, indexing="ij")
    return np.stack([lat.ravel(), lon.ravel()], axis=1)


def gallery_locations(lat: np.ndarray, lon: np.ndarray, grid: GeocellGrid, max_grid: int = MAX_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(G, 2) gallery = the distinct training positions then the regular grid, and their grid cells."""
    train = np.unique(np.round(np.stack([np.asarray(lat, np.float64), np.asarray(lon, np.float64)], axis=1), 6), axis=0)
    points = np.concatenate([train, regular_grid(grid, max_grid)])
    cells = np.asarray(grid.cell_of(points[:, 0], points[:, 1]), dtype=np.int64).reshape(-1)
    return points, cells


def contrastive_loss(img: torch.Tensor, loc: torch.Tensor, latlon: torch.Tensor, scale: torch.Tensor,
                     extra_loc: torch.Tensor | None = None, extra_latlon: torch.Tensor | None = None,
                     positive_km: float = POSITIVE_KM) -> torch.Tensor:
    """Symmetric InfoNCE with targets soft by distance.

    img, loc (B, d) unit embeddings of the same B rows, latlon (B, 2) their positions;
    extra_loc (K, d) / extra_latlon (K, 2) more candidate locations for the image side.
    Image -> location: cross entropy over the B (+K) locations, the target spread over
    locations within about `positive_km` of the true one; location -> image likewise over
    the B images."""
    cand_loc, cand_ll = loc, latlon
    if extra_loc is not None:
        cand_loc, cand_ll = torch.cat([loc, extra_loc]), torch.cat([latlon, extra_latlon])
    d = haversine_matrix_km(latlon.float(), cand_ll.float())
    target = torch.softmax(-d / float(positive_km), dim=1)
    logits = scale * img @ cand_loc.T
    i2l = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    n = img.shape[0]
    l2i = -(torch.softmax(-d[:, :n] / float(positive_km), dim=1) * F.log_softmax(scale * loc @ img.T, dim=1)).sum(dim=1).mean()
    return (i2l + l2i) / 2


@torch.no_grad()
def retrieve(model: ContrastiveGeolocator, x: torch.Tensor, batch_size: int = 1024, k: int = 5):
    """-> (lat, lon, index, confidence, top-k indices) of the most similar gallery location per row."""
    model.eval()
    lats, lons, idxs, confs, tops = [], [], [], [], []
    for s in range(0, x.shape[0], batch_size):
        logits, _ = model(x[s : s + batch_size])
        p = torch.softmax(logits, dim=1)
        top_p, top = p.topk(min(k, p.shape[1]), dim=1)
        ll = model.centres[top[:, 0]]
        lats.append(ll[:, 0]), lons.append(ll[:, 1]), idxs.append(top[:, 0]), confs.append(top_p[:, 0]), tops.append(top)
    if not lats:
        z = torch.zeros(0)
        return z, z, z.long(), z, torch.zeros(0, k, dtype=torch.long)
    return torch.cat(lats), torch.cat(lons), torch.cat(idxs), torch.cat(confs), torch.cat(tops)


def train_contrastive(features: np.ndarray, lat: np.ndarray, lon: np.ndarray, is_val: np.ndarray, grid: GeocellGrid,
                      config, progress: Callable[[int, dict], None] | None = None):
    """Train a ContrastiveGeolocator; the same contract as train.train_geolocator (TrainConfig's
    lr, batch_size, max_epochs, patience, plateau_*, seed, device; selection on the validation
    mean km of the retrieved location)."""
    from geo_assets.model.train import _device, split_indices
    from geo_assets.runtime.threads import model_threads

    started = time.perf_counter()
    x_np = np.asarray(features, dtype=np.float32)
    lat_np, lon_np = np.asarray(lat, np.float64).reshape(-1), np.asarray(lon, np.float64).reshape(-1)
    val_np = np.asarray(is_val, dtype=bool).reshape(-1)
    if x_np.ndim != 2 or not (len(lat_np) == len(lon_np) == len(val_np) == x_np.shape[0]):
        raise ValueError(f"features {x_np.shape} and lat/lon/is_val {len(lat_np)}/{len(lon_np)}/{len(val_np)} do not match")
    if not np.all(np.isfinite(x_np)):
        raise ValueError("features contain NaN/inf")
    b = grid.bounds
    outside = (lat_np < b.min_lat) | (lat_np > b.max_lat) | (lon_np < b.min_lon) | (lon_np > b.max_lon)
    if outside.any():
        raise ValueError(f"{int(outside.sum())} rows lie outside the geocell grid {b}; filter them first")
    train_idx, val_idx, notes = split_indices(val_np)

    threads_before = torch.get_num_threads()
    threads = config.cpu_threads or model_threads() or 0
    device = _device(config.device)
    if threads > 0 and device.type == "cpu":
        torch.set_num_threads(threads)
    # Initialisation and the projection head's dropout draw from the global RNG: seeded here,
    # and the caller's RNG left as it was, so one seed trains one model.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        return _train_contrastive(x_np, lat_np, lon_np, train_idx, val_idx, notes, grid, config, progress, device,
                                  threads_before, started)


def _train_contrastive(x_np, lat_np, lon_np, train_idx, val_idx, notes, grid, config, progress, device,
                       threads_before, started):
    from geo_assets.geo.haversine import haversine_km
    from geo_assets.model.train import EarlyStopping, TrainResult, ValPredictions

    b = grid.bounds
    try:
        gallery, cells = gallery_locations(lat_np[train_idx], lon_np[train_idx], grid)
        model = ContrastiveGeolocator(x_np.shape[1], gallery, cells, grid.size,
                                      (b.min_lat, b.min_lon, b.max_lat, b.max_lon), seed=config.seed,
                                      input_norm=config.input_norm)
        model.to(device)
        x = torch.from_numpy(x_np).to(device)
        y_ll = torch.as_tensor(np.stack([lat_np, lon_np], axis=1), dtype=torch.float32, device=device)
        tr = torch.as_tensor(train_idx, device=device)
        if config.input_norm:
            model.set_input_stats(x[tr])
        gen = torch.Generator(device="cpu")
        gen.manual_seed(config.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.plateau_factor,
                                                               patience=config.plateau_patience)
        true_cells = np.asarray(grid.cell_of(lat_np[val_idx], lon_np[val_idx]), dtype=np.int64).reshape(-1)
        cells_t = np.asarray(cells, dtype=np.int64)
        history: list[dict] = []
        stopping = EarlyStopping(config.patience)
        bs = max(2, int(config.batch_size))
        n_extra = min(EXTRA_NEGATIVES, model.n_cells)
        for epoch in range(int(config.max_epochs)):
            t0 = time.perf_counter()
            model.train()
            order = tr[torch.randperm(len(tr), generator=gen).to(device)]
            total, seen = 0.0, 0
            for start in range(0, len(order), bs):
                idx = order[start : start + bs]
                extra = torch.randint(model.n_cells, (n_extra,), generator=gen).to(device)
                ll = torch.cat([y_ll[idx], model.centres[extra]])
                loc = model.encode_locations(ll)
                img = model.embed(x[idx])
                loss = contrastive_loss(img, loc[: len(idx)], y_ll[idx], model.classifier.scale(),
                                        loc[len(idx):], model.centres[extra])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.clip and config.clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
                optimizer.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            train_loss = total / max(1, seen)
            if not np.isfinite(train_loss):
                raise FloatingPointError(f"training loss became {train_loss} at epoch {epoch}; lower the learning rate")
            model.refresh_gallery()
            p_lat, p_lon, p_idx, _, _ = retrieve(model, x[torch.as_tensor(val_idx, device=device)])
            km = np.atleast_1d(haversine_km(p_lat.cpu().numpy(), p_lon.cpu().numpy(), lat_np[val_idx], lon_np[val_idx]))
            val = {"val_mean_km": float(km.mean()), "val_median_km": float(np.median(km)),
                   "val_geocell_accuracy": float((cells_t[p_idx.cpu().numpy()] == true_cells).mean())}
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step(val["val_mean_km"])
            row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, **val,
                   "temperature": float(1 / model.classifier.scale().detach()), "seconds": time.perf_counter() - t0}
            if stopping.end_epoch(row, model, history, progress):
                break
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)

    model = model.to("cpu")
    if not stopping.restore(model, history):
        model.refresh_gallery()
    model.eval()
    p_lat, p_lon, p_idx, conf, top = retrieve(model, torch.from_numpy(x_np[val_idx]))
    val_pred = ValPredictions(index=val_idx.copy(), lat=p_lat.numpy().astype(np.float64), lon=p_lon.numpy().astype(np.float64),
                              cell=p_idx.numpy(), confidence=conf.numpy(), topk=top.numpy(),
                              true_lat=lat_np[val_idx], true_lon=lon_np[val_idx], true_cell=true_cells)
    return TrainResult(model=model, history=history, best_epoch=stopping.best_epoch, val_predictions=val_pred,
                       device=str(device), seconds=time.perf_counter() - started, notes=notes)
