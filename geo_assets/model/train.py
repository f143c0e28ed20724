"""The seed's training loop (seed 3.6), on pre-computed (frozen) feature vectors.

- Loss: cross entropy + 0.6 * mean haversine km of centre(argmax) + offset (losses.py).
- Adam (lr 1e-3), gradient-norm clip 1.0, batch 32, shuffled every epoch.
- ReduceLROnPlateau(factor 0.5, patience 3) on the validation mean haversine km
  (the seed's "validation loss": the weighted loss is not used for validation).
- Early stopping after `patience` epochs without a better validation mean km; the
  best epoch's weights are kept (the seed reported its final epoch; keeping the
  best is the same when training ends on a plateau, and never worse).
- CUDA when present, CPU otherwise (`TrainConfig.device`).

Split: decided by the caller (`geo_assets.model.splits`): `is_val` marks the
validation rows, which only steer training (LR schedule, early stopping, best
epoch). Test rows must not be passed in at all.

Options beyond the seed (TrainConfig; all off for the seed's exact model):
`classes="with_data"` (one class per cell that holds training rows),
`smoothing_km` (haversine label smoothing), `gazetteer_prior` (needs `gaz`),
`token_fusion` (needs `token_dims`). See geolocator.py and losses.py.

Epochs are numbered from 0: `history[i]["epoch"] == i` and `best_epoch` indexes
`history`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from geo_assets.geo.geocells import GeocellGrid
from geo_assets.model.geolocator import HIDDEN, GeolocatorMLP, predict_coords
from geo_assets.model.losses import geolocation_loss
from geo_assets.runtime.threads import model_threads


@dataclass
class TrainConfig:
    lr: float = 1e-3
    batch_size: int = 32
    max_epochs: int = 30
    patience: int = 6  # early stopping, epochs without a better validation mean km
    clip: float = 1.0  # gradient-norm clip
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    haversine_weight: float = 0.6
    seed: int = 0
    device: str = "auto"
    eval_batch_size: int = 512
    cpu_threads: int = 0  # >0: torch intra-op threads while training on CPU (restored after); 0: GEO_ASSETS_THREADS, else as is
    classes: str = "all"  # "all" cells of the grid (seed) or "with_data": cells holding training rows
    smoothing_km: float = 0.0  # haversine label smoothing tau (PIGEON ~75 km); 0 = one-hot (seed)
    gazetteer_prior: bool = False  # add the gazetteer guess as a per-class logit bonus
    token_fusion: bool = False  # trainable self-attention over the encoder blocks
    input_norm: bool = False  # standardise features with the training rows' statistics
    optimizer: str = "adam"  # "adam" (seed) or "sgd" (the hybrid family, model/hybrid.py)
    momentum: float = 0.9  # SGD only
    offset: bool = True  # False: no regression head, predict the class centre (hybrid)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.classes not in ("all", "with_data"):
            raise ValueError(f"classes must be 'all' or 'with_data', got {self.classes!r}")
        if not (0 <= float(self.smoothing_km) <= 5000):
            raise ValueError(f"smoothing_km must be in [0, 5000], got {self.smoothing_km}")
        if not (0 < float(self.lr) < 1) and self.lr != 0:
            raise ValueError(f"lr must be in [0, 1), got {self.lr}")
        if int(self.batch_size) < 1 or int(self.max_epochs) < 0 or int(self.patience) < 1:
            raise ValueError("batch_size and patience must be >= 1 and max_epochs >= 0")


@dataclass
class ValPredictions:
    """Predictions of the best-epoch model on the validation rows."""

    index: np.ndarray  # (M,) positions of the validation rows in the input arrays
    lat: np.ndarray
    lon: np.ndarray
    cell: np.ndarray  # arg-max cell
    confidence: np.ndarray  # softmax probability of the arg-max cell
    topk: np.ndarray  # (M, k<=5) best cells, best first
    true_lat: np.ndarray
    true_lon: np.ndarray
    true_cell: np.ndarray


@dataclass
class TrainResult:
    model: GeolocatorMLP  # best-epoch weights, on the CPU, eval mode
    history: list[dict]
    best_epoch: int  # index into history
    val_predictions: ValPredictions
    device: str = "cpu"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _device(name: str | None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def _predict(model, x: torch.Tensor, centres: torch.Tensor, batch_size: int, k: int = 0, y_cell=None, gaz=None):
    """Batched inference -> lat, lon, class, confidence, top-k (or None), summed NLL of y_cell (or
    None; rows whose true cell is no class (-1) add nothing)."""
    lats, lons, cells, confs, tops = [], [], [], [], []
    nll = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], batch_size):
        g = gaz[start : start + batch_size] if gaz is not None else None
        logits, offset = model(x[start : start + batch_size], g)
        lat, lon = predict_coords(logits, offset, centres)
        logp = torch.log_softmax(logits, dim=1)
        conf, cell = logp.max(dim=1)
        lats.append(lat), lons.append(lon), cells.append(cell), confs.append(conf.exp())
        if y_cell is not None:
            yc = y_cell[start : start + batch_size]
            ok = yc >= 0
            if ok.any():
                nll -= logp[ok].gather(1, yc[ok, None]).double().sum()
        if k:
            tops.append(logp.topk(min(k, logp.shape[1]), dim=1).indices)
    cat = lambda v: torch.cat(v) if v else torch.zeros(0, device=x.device)  # noqa: E731
    return cat(lats), cat(lons), cat(cells), cat(confs), (cat(tops) if k else None), (nll if y_cell is not None else None)


def _validate(model, x, y_cell, y_ll, centres, batch_size, gaz=None) -> dict:
    from geo_assets.geo.haversine import haversine_km_torch

    model.eval()
    lat, lon, cell, _, _, nll = _predict(model, x, centres, batch_size, y_cell=y_cell, gaz=gaz)
    d = haversine_km_torch(lat.double(), lon.double(), y_ll[:, 0].double(), y_ll[:, 1].double())
    return {
        "val_mean_km": float(d.mean()),
        "val_median_km": float(np.median(d.cpu().numpy())),  # numpy: mean of the middle two, like metrics.py
        "val_geocell_accuracy": float((cell == y_cell).float().mean()),
        "val_ce": float(nll / max(1, int((y_cell >= 0).sum()))),
    }


def _adam(model, lr: float) -> torch.optim.Adam:
    """Adam; the fused kernel when this torch has it for the device (same maths, much
    faster on CPU for a large head; PERFORMANCE.md)."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def split_indices(is_val: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Training and validation row indices. With too little data for a split, scheduling and
    selection use the training rows, and the returned notes say so."""
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    if len(train_idx) == 0:
        raise ValueError("no training rows (is_val is all True)")
    notes: list[str] = []
    if len(val_idx) == 0:
        val_idx = train_idx
        notes.append("no validation rows: the scheduler, early stopping and val_* metrics use the training rows")
    return train_idx, val_idx, notes


class EarlyStopping:
    """Keeps the weights of the epoch with the lowest validation mean km and says when
    `patience` epochs in a row have not improved on it."""

    def __init__(self, patience: int):
        self.patience, self.best_km, self.best_epoch, self.best_state, self.bad_epochs = patience, float("inf"), 0, None, 0

    def update(self, epoch: int, val_km: float, model) -> bool:
        """Record one epoch; True when training should stop."""
        if val_km < self.best_km:
            self.best_km, self.best_epoch, self.bad_epochs = val_km, epoch, 0
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def end_epoch(self, row: dict, model, history: list[dict], progress=None) -> bool:
        """Append the epoch's `row` to `history`, report it, record it; True when training should stop."""
        history.append(row)
        stop = self.update(row["epoch"], row["val_mean_km"], model)
        if progress is not None:
            progress(row["epoch"], dict(row))
        return stop

    def restore(self, model, history: list[dict]) -> bool:
        """The best weights back into `model` (on CPU), `best` marked in the history; False when no epoch ran."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        for h in history:
            h["best"] = h["epoch"] == self.best_epoch
        return self.best_state is not None


def train_geolocator(features: np.ndarray, lat: np.ndarray, lon: np.ndarray, is_val: np.ndarray, grid: GeocellGrid,
                     config: TrainConfig | None = None,
                     progress: Callable[[int, dict], None] | None = None, *,
                     gaz: np.ndarray | None = None, token_dims: tuple[int, ...] | None = None) -> TrainResult:
    """Train one GeolocatorMLP on (N, D) features; `is_val` marks the validation rows.

    `gaz` (N, 2): the gazetteer guess per row (NaN = none), used when config.gazetteer_prior.
    `token_dims`: widths of the encoder blocks in `features`, used when config.token_fusion.
    `progress(epoch, metrics)` is called after every epoch with that epoch's history row."""
    config = config or TrainConfig()
    threads_before = torch.get_num_threads()
    threads = config.cpu_threads or model_threads() or 0
    if threads > 0 and _device(config.device).type == "cpu":
        # OpenMP threads spin at barriers: on a busy machine (other Dagster steps running)
        # fewer threads than cores is faster (PERFORMANCE.md).
        torch.set_num_threads(threads)
    try:
        return _train(features, lat, lon, is_val, grid, config, progress, gaz, token_dims)
    finally:
        if torch.get_num_threads() != threads_before:
            torch.set_num_threads(threads_before)


def class_mapping(grid: GeocellGrid, train_cells: np.ndarray, classes: str) -> tuple[list[int] | None, np.ndarray]:
    """(class cells or None for the whole grid, lookup grid cell -> class index or -1)."""
    if classes == "all":
        return None, np.arange(grid.n_cells, dtype=np.int64)
    cells = np.unique(np.asarray(train_cells, dtype=np.int64))
    lookup = np.full(grid.n_cells, -1, dtype=np.int64)
    lookup[cells] = np.arange(cells.size)
    return cells.tolist(), lookup


def _train(features, lat, lon, is_val, grid: GeocellGrid, config: TrainConfig, progress, gaz_in, token_dims) -> TrainResult:
    started = time.perf_counter()
    x_np = np.asarray(features, dtype=np.float32)
    lat_np = np.asarray(lat, dtype=np.float64).reshape(-1)
    lon_np = np.asarray(lon, dtype=np.float64).reshape(-1)
    val_np = np.asarray(is_val, dtype=bool).reshape(-1)
    if x_np.ndim != 2 or x_np.shape[1] < 1:
        raise ValueError(f"features must be (N, D), got {x_np.shape}")
    n = x_np.shape[0]
    if not (len(lat_np) == len(lon_np) == len(val_np) == n):
        raise ValueError(f"features has {n} rows but lat/lon/is_val have {len(lat_np)}/{len(lon_np)}/{len(val_np)}")
    if not np.all(np.isfinite(x_np)):
        raise ValueError(f"features contain {int((~np.isfinite(x_np)).any(axis=1).sum())} rows with NaN/inf")
    b = grid.bounds
    outside = (lat_np < b.min_lat) | (lat_np > b.max_lat) | (lon_np < b.min_lon) | (lon_np > b.max_lon) | ~np.isfinite(lat_np) | ~np.isfinite(lon_np)
    if outside.any():
        raise ValueError(f"{int(outside.sum())} of {n} rows lie outside the geocell grid {b}; filter them first")
    if config.gazetteer_prior:
        if gaz_in is None:
            raise ValueError("config.gazetteer_prior needs gaz= (N, 2) gazetteer guesses, NaN where none")
        gaz_np = np.asarray(gaz_in, dtype=np.float32).reshape(n, 2)
    else:
        gaz_np = None
    if config.token_fusion and not token_dims:
        raise ValueError("config.token_fusion needs token_dims= (the widths of the encoder blocks)")
    train_idx, val_idx, notes = split_indices(val_np)

    device = _device(config.device)
    cells_np = np.asarray(grid.cell_of(lat_np, lon_np), dtype=np.int64).reshape(-1)
    class_cells, lookup = class_mapping(grid, cells_np[train_idx], config.classes)
    classes_np = lookup[cells_np]
    x = torch.from_numpy(x_np).to(device)
    y_cell = torch.as_tensor(classes_np, device=device)
    y_ll = torch.as_tensor(np.stack([lat_np, lon_np], axis=1), dtype=torch.float32, device=device)
    gaz = torch.from_numpy(gaz_np).to(device) if gaz_np is not None else None
    if class_cells is not None:
        c_lat, c_lon = grid.centre_of(np.asarray(class_cells))
        centres_np = np.stack([np.atleast_1d(c_lat), np.atleast_1d(c_lon)], axis=1)
    else:
        centres_np = grid.centres_table()
    centres = torch.as_tensor(centres_np, dtype=torch.float32, device=device)
    tr = torch.as_tensor(train_idx, device=device)
    va = torch.as_tensor(val_idx, device=device)

    # Initialise and shuffle from `seed` without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = GeolocatorMLP(
            x_np.shape[1], len(centres_np), grid.size, HIDDEN, class_cells=class_cells,
            centres=centres_np if (class_cells is not None or config.gazetteer_prior) else None,
            gazetteer_prior=config.gazetteer_prior, token_dims=token_dims if config.token_fusion else None,
            input_norm=config.input_norm, offset=config.offset)
    model.to(device)
    if config.input_norm:
        model.set_input_stats(x[tr])
    shuffle = torch.Generator(device="cpu")
    shuffle.manual_seed(config.seed)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    else:
        optimizer = _adam(model, config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=config.plateau_factor,
                                                           patience=config.plateau_patience)

    history: list[dict] = []
    stopping = EarlyStopping(config.patience)
    bs = max(1, int(config.batch_size))
    for epoch in range(int(config.max_epochs)):
        t0 = time.perf_counter()
        model.train()
        order = tr[torch.randperm(len(tr), generator=shuffle).to(device)]
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            logits, offset = model(x[idx], gaz[idx] if gaz is not None else None)
            total, ce, hav = geolocation_loss(logits, offset, y_cell[idx], y_ll[idx], centres, config.haversine_weight,
                                              smoothing_km=config.smoothing_km)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if config.clip and config.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            sums += torch.stack([total.detach(), ce.detach(), hav.detach()]).double() * len(idx)
        train_loss, train_ce, train_hav = (sums / len(order)).tolist()
        if not np.isfinite(train_loss):
            raise FloatingPointError(f"training loss became {train_loss} at epoch {epoch}; lower the learning rate")
        val = _validate(model, x[va], y_cell[va], y_ll[va], centres, config.eval_batch_size,
                        gaz[va] if gaz is not None else None)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step(val["val_mean_km"])
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_ce": train_ce, "train_hav_km": train_hav,
               **val, "seconds": time.perf_counter() - t0}
        if stopping.end_epoch(row, model, history, progress):
            break

    model = model.to("cpu")
    stopping.restore(model, history)
    model.eval()

    cpu_centres = centres.cpu()
    lat_p, lon_p, cell_p, conf_p, top_p, _ = _predict(model, x[va].cpu(), cpu_centres, config.eval_batch_size, k=5,
                                                      gaz=gaz[va].cpu() if gaz is not None else None)
    val_pred = ValPredictions(
        index=val_idx.copy(), lat=lat_p.numpy().astype(np.float64), lon=lon_p.numpy().astype(np.float64),
        cell=cell_p.numpy(), confidence=conf_p.numpy(), topk=top_p.numpy(),
        true_lat=lat_np[val_idx], true_lon=lon_np[val_idx], true_cell=classes_np[val_idx],
    )
    return TrainResult(model=model, history=history, best_epoch=stopping.best_epoch, val_predictions=val_pred,
                       device=str(device), seconds=time.perf_counter() - started, notes=notes)
