"""Train one model on a dataset under a split protocol: the pure core of `geolocator_model`
and of the ablation bench. Test rows never reach training; validation rows only steer it,
and then set the two things fitted after training: the temperature that makes the class
probabilities honest (model/calibration.py) and the out-of-distribution threshold
(model/ood.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from geo_assets.geo.geocells import GeocellGrid
from geo_assets.model.calibration import fit_temperature_top1, nll, top1_nll
from geo_assets.model.dataset import GeoDataset
from geo_assets.model.geolocator import GeolocatorMLP, class_grid_cells
from geo_assets.model.ood import DEFAULT_K, DEFAULT_PERCENTILE, DEFAULT_SPACE, SPACES, fit_threshold, flagged, ood_scores
from geo_assets.model.refine import Gallery, build_gallery, embed_rows, model_logits
from geo_assets.model.spec import ModelSpec
from geo_assets.model.splits import SplitConfig, assign_splits
from geo_assets.model.train import TrainResult, train_geolocator


@dataclass
class FitResult:
    model: GeolocatorMLP
    gallery: Gallery | None
    splits: np.ndarray  # one of SPLITS per dataset row
    result: TrainResult
    spec: ModelSpec
    split_config: SplitConfig
    calibration: dict = field(default_factory=lambda: {"temperature": 1.0})
    ood: dict = field(default_factory=dict)

    @property
    def n(self) -> dict:
        return {s: int(np.count_nonzero(self.splits == s)) for s in ("train", "validation", "test")}


def dataset_splits(ds: GeoDataset, split_config: SplitConfig) -> np.ndarray:
    return assign_splits(ds.image_ids, ds.sequence_ids, ds.lat, ds.lon, split_config)


def fit_model(ds: GeoDataset, grid: GeocellGrid, spec: ModelSpec, split_config: SplitConfig | None = None,
              progress: Callable[[int, dict], None] | None = None, **train_kw) -> FitResult:
    """Train on the train rows, steer on the validation rows; `train_kw` go to TrainConfig."""
    split_config = split_config or SplitConfig()
    splits = dataset_splits(ds, split_config)
    use = np.flatnonzero(splits != "test")
    if np.count_nonzero(splits == "train") == 0:
        raise ValueError(f"no training rows under split protocol {split_config.protocol!r} ({len(ds)} rows)")
    sub = ds.subset(use)
    is_val = splits[use] == "validation"
    config = spec.train_config(**train_kw)
    token_dims = ds.block_dims(spec.feature) if spec.token_fusion else None
    if spec.family == "contrastive":
        from geo_assets.model.contrastive import train_contrastive

        result = train_contrastive(sub.features(spec.feature), sub.lat, sub.lon, is_val, grid, config, progress)
    else:
        result = train_geolocator(sub.features(spec.feature), sub.lat, sub.lon, is_val, grid, config, progress,
                                  gaz=sub.gaz if spec.gazetteer_prior else None, token_dims=token_dims)
    tr = ~is_val
    # Always kept (retrieval uses it only when spec.retrieval): the training rows are the
    # out-of-distribution score's reference set.
    gallery = build_gallery(result.model, sub.features(spec.feature)[tr], sub.lat[tr], sub.lon[tr], grid,
                            image_features=sub.image_emb[tr])
    val = sub.subset(np.flatnonzero(is_val))
    calibration = calibrate(result.model, spec, val, grid)
    ood = fit_ood(result.model, spec, val, gallery)
    return FitResult(result.model, gallery, splits, result, spec, split_config, calibration, ood)


def class_labels(model: GeolocatorMLP, grid: GeocellGrid, lat, lon) -> np.ndarray:
    """Class index of each true location, -1 where its cell is no class of the model."""
    cells = np.asarray(grid.cell_of(np.asarray(lat), np.asarray(lon)), dtype=np.int64).reshape(-1)
    lookup = np.full(grid.n_cells, -1, dtype=np.int64)
    lookup[class_grid_cells(model)] = np.arange(model.n_cells)
    return lookup[cells]


def calibrate(model: GeolocatorMLP, spec: ModelSpec, val: GeoDataset, grid: GeocellGrid) -> dict:
    """The temperature that minimises the validation NLL of the top-1 guess being right
    (calibration.fit_temperature_top1; 1.0 without validation rows), and the class NLL
    before and after it on the rows whose cell is a class."""
    if not len(val):
        return {"temperature": 1.0, "fitted_on": "validation", "n": 0,
                "note": "no validation rows: the model's own probabilities are used"}
    labels = class_labels(model, grid, val.lat, val.lon)
    logits = model_logits(model, val.features(spec.feature), val.gaz if spec.gazetteer_prior else None)
    cells = class_grid_cells(model)
    # By grid cell, not class index: a contrastive model's gallery holds several locations per cell.
    hit = cells[logits.argmax(axis=1)] == np.asarray(grid.cell_of(val.lat, val.lon), dtype=np.int64).reshape(-1)
    t = fit_temperature_top1(logits, hit)
    # The class NLL needs one class per cell (not so for a contrastive model's gallery).
    has = (labels >= 0) & (np.unique(cells).size == cells.size)
    out = {"temperature": t, "fitted_on": "validation", "objective": "top-1 NLL", "n": len(val),
           "n_without_class": int((~has).sum()), "val_top1_nll_before": top1_nll(logits, hit),
           "val_top1_nll_after": top1_nll(logits, hit, t)}
    if not hit.any():
        out["note"] = "no validation image's arg-max cell was its true cell: the temperature is as flat as allowed"
    if has.any():
        out.update({"val_class_nll_before": nll(logits[has], labels[has]), "val_class_nll_after": nll(logits[has], labels[has], t)})
    return out


def ood_vectors(model: GeolocatorMLP, spec: ModelSpec, ds: GeoDataset, space: str) -> np.ndarray:
    """The rows' vectors in an out-of-distribution space (ood.SPACES)."""
    if space == "image":
        return ds.image_emb
    if space == "hidden":
        return embed_rows(model, ds.features(spec.feature))
    raise ValueError(f"unknown out-of-distribution space {space!r}; known: {SPACES}")


def fit_ood(model: GeolocatorMLP, spec: ModelSpec, val: GeoDataset, gallery: Gallery, space: str = DEFAULT_SPACE,
            k: int = DEFAULT_K, percentile: float = DEFAULT_PERCENTILE) -> dict:
    """The threshold of every space on the validation scores; `space` is the one that flags."""
    out = {"space": space, "k": k, "percentile": percentile, "fitted_on": "validation", "n": len(val), "spaces": {}}
    for name in SPACES:
        threshold = None
        if len(val):
            scores = ood_scores(gallery.vectors(name), ood_vectors(model, spec, val, name), k)
            threshold = fit_threshold(scores, percentile)
        out["spaces"][name] = {"threshold": threshold,
                               "val_flagged_pct": 100.0 * float(flagged(scores, threshold).mean()) if len(val) else None}
    out["threshold"] = out["spaces"][space]["threshold"]
    if not len(val):
        out["note"] = "no validation rows: no threshold, nothing is flagged"
    return out
