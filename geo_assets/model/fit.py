"""Train one model on a dataset under a split protocol: the pure core of `geolocator_model`
and of the ablation bench. Test rows never reach training; validation rows only steer it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from geo_assets.geo.geocells import GeocellGrid
from geo_assets.model.dataset import GeoDataset
from geo_assets.model.geolocator import GeolocatorMLP
from geo_assets.model.refine import Gallery, build_gallery
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
    result = train_geolocator(sub.features(spec.feature), sub.lat, sub.lon, is_val, grid, config, progress,
                              gaz=sub.gaz if spec.gazetteer_prior else None, token_dims=token_dims)
    gallery = None
    if spec.retrieval:
        tr = ~is_val
        gallery = build_gallery(result.model, sub.features(spec.feature)[tr], sub.lat[tr], sub.lon[tr], grid)
    return FitResult(result.model, gallery, splits, result, spec, split_config)
