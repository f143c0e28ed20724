"""What to train: the seed's exact model, or this project's default, one config value apart;
or another model family (`family`: the hybrid head, model/hybrid.py, or the contrastive
image-location model, model/contrastive.py).

`ModelSpec` names every choice that differs between them; `spec_for(preset,
**overrides)` gives a preset with some choices changed (the ablation table in
PERFORMANCE.md changes one at a time). The default preset was chosen by
validation numbers on the default data (see PERFORMANCE.md, "Model choices").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from geo_assets.model.dataset import FEATURES
from geo_assets.model.train import TrainConfig


@dataclass(frozen=True)
class ModelSpec:
    feature: str = "fused"  # dataset.FEATURES
    classes: str = "all"  # "all" grid cells (seed) or "with_data"
    smoothing_km: float = 0.0  # haversine label smoothing tau; 0 = one-hot
    gazetteer_prior: bool = False  # the OCR text's gazetteer guess as a logit bonus
    token_fusion: bool = False  # trainable attention over the encoder blocks
    retrieval: bool = False  # refine within the top-k cells by nearest training images
    input_norm: bool = False  # standardise input features (training-row statistics)
    family: str = "geolocator"  # FAMILIES: the classifier above, "hybrid" or "contrastive"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.family != "geolocator" and (self.gazetteer_prior or self.token_fusion or self.retrieval):
            raise ValueError(f"the {self.family} family takes no gazetteer_prior, token_fusion or retrieval")
        if self.feature not in FEATURES:
            raise ValueError(f"feature must be one of {FEATURES}, got {self.feature!r}")
        if self.token_fusion and self.feature == "fused":
            raise ValueError("token_fusion needs the separate encoder blocks: feature 'concat' or 'concat_ocr'")
        TrainConfig(classes=self.classes, smoothing_km=self.smoothing_km)  # validates those two

    def train_config(self, **kw) -> TrainConfig:
        kw.update(family_train_settings(self.family))
        return TrainConfig(classes=self.classes, smoothing_km=self.smoothing_km, gazetteer_prior=self.gazetteer_prior,
                           token_fusion=self.token_fusion, input_norm=self.input_norm, **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["family"] == "geolocator":
            del d["family"]  # the seed's and default's specs (and so their data versions) stay as they were
        return d


FAMILIES = ("geolocator", "hybrid", "contrastive")


def family_train_settings(family: str) -> dict:
    """TrainConfig fields a family fixes whatever the run config says (its optimiser and batch)."""
    if family == "hybrid":
        from geo_assets.model.hybrid import TRAIN_SETTINGS
    elif family == "contrastive":
        from geo_assets.model.contrastive import TRAIN_SETTINGS
    else:
        return {}
    return dict(TRAIN_SETTINGS)


PRESETS: dict[str, ModelSpec] = {
    # Seed chapter 3 exactly: frozen cross-attention fusion, one class per grid cell,
    # CE + 0.6 haversine, centre + offset.
    "seed": ModelSpec(),
    # Chosen on validation (PERFORMANCE.md, "Model choices"): retrieval refinement tied
    # on three partitions and lost 8 km on the fourth, so it is an option, not the default.
    "default": ModelSpec(feature="concat_ocr", classes="with_data", smoothing_km=75.0, gazetteer_prior=True,
                         token_fusion=False, retrieval=False, input_norm=True),
    # Opt-in families, trained beside the main model when asked for (TrainingConfig.families).
    # Seed 004's deeper hybrid head: [caption | image] -> 1024-512-256 -> softmax, SGD, batch 128.
    "hybrid": ModelSpec(feature="concat", classes="with_data", input_norm=True, family="hybrid"),
    # Seed 001's CLIP idea as GeoCLIP: image (+ caption and OCR text) projection vs a location encoder.
    "contrastive": ModelSpec(feature="concat_ocr", input_norm=True, family="contrastive"),
}


def spec_for(preset: str = "default", **overrides) -> ModelSpec:
    if preset not in PRESETS:
        raise ValueError(f"model must be one of {sorted(PRESETS)}, got {preset!r}")
    names = {f.name for f in fields(ModelSpec)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown model options {sorted(unknown)}; known: {sorted(names)}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
