"""What to train: the seed's exact model, or this project's default, one config value apart.

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

    def __post_init__(self) -> None:
        if self.feature not in FEATURES:
            raise ValueError(f"feature must be one of {FEATURES}, got {self.feature!r}")
        if self.token_fusion and self.feature == "fused":
            raise ValueError("token_fusion needs the separate encoder blocks: feature 'concat' or 'concat_ocr'")
        TrainConfig(classes=self.classes, smoothing_km=self.smoothing_km)  # validates those two

    def train_config(self, **kw) -> TrainConfig:
        return TrainConfig(classes=self.classes, smoothing_km=self.smoothing_km, gazetteer_prior=self.gazetteer_prior,
                           token_fusion=self.token_fusion, input_norm=self.input_norm, **kw)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, ModelSpec] = {
    # Seed chapter 3 exactly: frozen cross-attention fusion, one class per grid cell,
    # CE + 0.6 haversine, centre + offset.
    "seed": ModelSpec(),
    # Chosen on validation (PERFORMANCE.md, "Model choices"): retrieval refinement tied
    # on three partitions and lost 8 km on the fourth, so it is an option, not the default.
    "default": ModelSpec(feature="concat_ocr", classes="with_data", smoothing_km=75.0, gazetteer_prior=True,
                         token_fusion=False, retrieval=False, input_norm=True),
}


def spec_for(preset: str = "default", **overrides) -> ModelSpec:
    if preset not in PRESETS:
        raise ValueError(f"model must be one of {sorted(PRESETS)}, got {preset!r}")
    names = {f.name for f in fields(ModelSpec)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown model options {sorted(unknown)}; known: {sorted(names)}")
    return replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
