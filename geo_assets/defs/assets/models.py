"""One geolocator per (blur, geocell) partition, and its evaluation (seed 2.2-3.7, ch. 4).

Each partition trains two models on the same data and settings:
- under the grouped split (`split_protocol`, by sequence by default): the model
  everything is reported for, evaluated on its test split;
- under the seed's random per-image 80/20 protocol (`models/<blur>/<geocell>/seed_protocol/`),
  evaluated on its validation split as the seed did, so the report can show how
  much a leaky split flatters the numbers.
"""

import json
import os
import time

import dagster as dg
import pyarrow as pa

from geo_assets.config.pools import gpu_step_kwargs

from geo_assets.defs.automation import EVALUATION_AUTOMATION, MODEL_AUTOMATION
from geo_assets.defs.metadata import OWNERS, PEAK_RSS_KEY, data_version_of, process_peak_mib
from geo_assets.defs.partitions import model_partition_of, model_partitions
from geo_assets.defs.resources import StorageResource
from geo_assets.geo.labels import labels_for
from geo_assets.model.artifacts import load_model, save_model
from geo_assets.model.dataset import load_dataset
from geo_assets.model.evaluate import evaluate
from geo_assets.model.fit import dataset_splits, fit_model
from geo_assets.model.refine import Gallery
from geo_assets.model.spec import ModelSpec, spec_for
from geo_assets.model.splits import PROTOCOLS, SplitConfig, group_keys, split_shortfall
from geo_assets.model.train import TrainConfig
from geo_assets.config.settings import GeoSettings
from geo_assets.store.locks import partition_lock
from geo_assets.store.parquet import atomic_write_bytes, write_table
from geo_assets.store.schemas import PREDICTION_SCHEMA

_TRAIN_DEFAULTS = TrainConfig()
SEED_PROTOCOL_DIR = "seed_protocol"
GALLERY_FILE = "gallery.npz"
FAMILIES_ENV = "GEO_ASSETS_FAMILIES"  # comma-separated presets trained beside the main model

ALL_TILES = dg.AllPartitionMapping()


class TrainingConfig(dg.Config):
    model: str = "default"
    """'default' (this project's model, chosen on validation numbers), 'seed' (seed chapter 3 exactly),
    'hybrid' (seed 004's deeper head) or 'contrastive' (seed 001's CLIP idea as GeoCLIP)."""
    feature: str | None = None
    """Override: 'fused' (seed), 'concat' (seed 004) or 'concat_ocr' (+ the OCR text on its own)."""
    classes: str | None = None
    """Override: 'all' grid cells (seed) or 'with_data'."""
    smoothing_km: float | None = None
    """Override: haversine label smoothing tau in km (0 = one-hot, the seed)."""
    gazetteer_prior: bool | None = None
    token_fusion: bool | None = None
    retrieval: bool | None = None
    split_protocol: str = "sequence"
    """'sequence' (default) or 'block' (whole geographic blocks held out); the seed-protocol twin is always trained too."""
    block_deg: float = 0.5
    validation_fraction: float = 0.15
    """Share of sequences (or blocks) that steer training."""
    test_fraction: float = 0.15
    """Share of sequences (or blocks) held out for every reported number. The attacker's
    table marks its test rows with the default fractions."""
    seed_protocol_twin: bool = True
    """Also train under the seed's random 80/20 per-image split, for the side-by-side table."""
    max_epochs: int | None = None
    """None: GEO_ASSETS_MAX_EPOCHS when set (`geo-assets run --max-epochs`), else TrainConfig's default."""
    early_stopping_patience: int = _TRAIN_DEFAULTS.patience
    batch_size: int = _TRAIN_DEFAULTS.batch_size
    lr: float = _TRAIN_DEFAULTS.lr
    haversine_weight: float = _TRAIN_DEFAULTS.haversine_weight
    seed: int = _TRAIN_DEFAULTS.seed
    families: list[str] | None = None
    """More presets ('seed', 'default', 'hybrid', 'contrastive') trained beside the main model under
    its split, each in models/<blur>/<geocell>/<preset>/, evaluated and reported beside it. None:
    GEO_ASSETS_FAMILIES when set, else none (`make demo` trains only the main model and its twin)."""

    def family_names(self) -> list[str]:
        names = self.families if self.families is not None else os.environ.get(FAMILIES_ENV, "").split(",")
        out = []
        for name in (n.strip() for n in names):
            if not name or name == self.model or name in out:
                continue
            spec_for(name)  # a clear error for an unknown preset
            if name == SEED_PROTOCOL_DIR:
                raise ValueError(f"{name!r} cannot be a family name")
            out.append(name)
        return out

    def spec(self) -> ModelSpec:
        return spec_for(self.model, feature=self.feature, classes=self.classes, smoothing_km=self.smoothing_km,
                        gazetteer_prior=self.gazetteer_prior, token_fusion=self.token_fusion, retrieval=self.retrieval)

    def split_config(self) -> SplitConfig:
        if self.split_protocol not in PROTOCOLS or self.split_protocol == "seed_random":
            raise ValueError(f"split_protocol must be 'sequence' or 'block', got {self.split_protocol!r}")
        return SplitConfig(protocol=self.split_protocol, block_deg=self.block_deg,
                           validation_fraction=self.validation_fraction, test_fraction=self.test_fraction)

    def train_kwargs(self) -> dict:
        max_epochs = self.max_epochs
        if max_epochs is None:
            max_epochs = GeoSettings.from_env().max_epochs or _TRAIN_DEFAULTS.max_epochs
        return {"lr": self.lr, "batch_size": self.batch_size, "max_epochs": max_epochs,
                "patience": self.early_stopping_patience, "haversine_weight": self.haversine_weight, "seed": self.seed}


def _save(model_dir, fit, spec: ModelSpec, meta: dict, grid) -> None:
    result = fit.result
    best = result.history[result.best_epoch] if result.history else {}
    save_model(model_dir, fit.model, {
        **meta, "spec": spec.to_dict(),
        "split": {"protocol": fit.split_config.protocol, "key": fit.split_config.key(), "block_deg": fit.split_config.block_deg,
                  "validation_fraction": fit.split_config.validation_fraction,
                  "test_fraction": fit.split_config.test_fraction, "rows": fit.n},
        "history": result.history, "best_epoch": result.best_epoch, "best_val_median_km": best.get("val_median_km"),
        "train_seconds": result.seconds, "device": result.device,
        "calibration": fit.calibration, "ood": fit.ood,
        "seconds_per_epoch": (sum(h["seconds"] for h in result.history) / len(result.history)) if result.history else None,
    }, grid=grid)
    # The retrieval gallery is also the out-of-distribution reference: always written.
    fit.gallery.save(model_dir / GALLERY_FILE)


def materialize_geolocator_model(context: dg.AssetExecutionContext, config: TrainingConfig, storage: StorageResource) -> dg.MaterializeResult:
    blur, geocell = model_partition_of(context)
    layout = storage.layout()
    # Two runs of one partition take turns: the model folder is written in place.
    with partition_lock(layout.root, "geolocator_model", f"{blur}_{geocell}"):
        return _train_partition(context, config, layout, blur, geocell)


def _train_partition(context, config: TrainingConfig, layout, blur: str, geocell: str) -> dg.MaterializeResult:
    spec = config.spec()
    ds = load_dataset(layout, blur)
    if len(ds) < 10:
        raise dg.Failure(f"only {len(ds)} embedded images for variant {blur}: materialize embeddings first")
    try:  # square cells, or one class per UK city (city50): geo/labels.py
        grid = labels_for(geocell, GeoSettings.from_env().region)
    except ValueError as exc:  # e.g. city150 over a region that holds fewer cities
        raise dg.Failure(description=f"{blur} {geocell}: {exc}") from None
    version = data_version_of(ds.row_keys + [f"gaz:{a}:{b}" for a, b in zip(ds.gaz_lat.tolist(), ds.gaz_lon.tolist())])
    meta = {"blur": blur, "geocell": geocell, "feature": spec.feature, "encoder_key": ds.encoder_key,
            "training_data_version": version.value}

    def progress(epoch: int, metrics: dict) -> None:
        context.log.info(f"epoch {epoch}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))

    # A small data set (a folder of one drive is one sequence) may leave a split empty: say so.
    splits = dataset_splits(ds, config.split_config())
    error, warning = split_shortfall(splits, group_keys(ds.image_ids, ds.sequence_ids, ds.lat, ds.lon,
                                                        config.split_config()), config.split_protocol)
    if error:
        raise dg.Failure(description=f"{blur} {geocell}: {error}")
    if warning:
        context.log.warning(f"{blur} {geocell}: {warning}")
    model_dir = layout.model_dir(blur, geocell)
    protocols = [(config.split_config(), model_dir)]
    if config.seed_protocol_twin:
        protocols.append((SplitConfig(protocol="seed_random"), model_dir / SEED_PROTOCOL_DIR))
    summary = {}
    started = time.perf_counter()
    for split_config, out_dir in protocols:
        context.log.info(f"training under split protocol {split_config.protocol}")
        fit = fit_model(ds, grid, spec, split_config, progress=progress, **config.train_kwargs())
        _save(out_dir, fit, spec, meta, grid)
        best = fit.result.history[fit.result.best_epoch] if fit.result.history else {}
        summary[split_config.protocol] = {**fit.n, "epochs": len(fit.result.history), "best_epoch": fit.result.best_epoch,
                                          "best_val_median_km": best.get("val_median_km"),
                                          "seconds": round(fit.result.seconds, 2), "classes": fit.model.n_cells}
    families = config.family_names()
    family_summary = {}
    for name in families:
        context.log.info(f"training family {name} under split protocol {config.split_protocol}")
        family_spec = spec_for(name)
        fit = fit_model(ds, grid, family_spec, config.split_config(), progress=progress, **config.train_kwargs())
        _save(model_dir / name, fit, family_spec, {**meta, "feature": family_spec.feature, "family": name}, grid)
        h = fit.result.history
        best = h[fit.result.best_epoch] if h else {}
        family_summary[name] = {"epochs": len(h), "best_val_median_km": best.get("val_median_km"),
                                "seconds": round(fit.result.seconds, 2),
                                "seconds_per_epoch": round(sum(r["seconds"] for r in h) / len(h), 4) if h else None}
    main = summary[config.split_config().protocol]
    return dg.MaterializeResult(
        metadata={
            "model_dir": dg.MetadataValue.path(str(model_dir)),
            "spec": dg.MetadataValue.json(spec.to_dict()),
            "train_rows": main["train"], "val_rows": main["validation"], "test_rows": main["test"],
            "classes": main["classes"], "grid_cells": grid.n_cells,
            "epochs": main["epochs"], "best_epoch": main["best_epoch"],
            "best_val_median_km": float(main["best_val_median_km"] or float("nan")),
            "train_seconds": round(time.perf_counter() - started, 2),
            PEAK_RSS_KEY: process_peak_mib(),
            "protocols": dg.MetadataValue.json(summary),
            "training_data_version": version.value,
            **({"split_warning": warning} if warning else {}),
            **({"families": dg.MetadataValue.json(family_summary)} if families else {}),
        },
        # Families only enter the version when trained: without them it is what it always was.
        data_version=dg.DataVersion(f"{version.value}-{json.dumps(spec.to_dict(), sort_keys=True)}-{config.seed}"
                                    + (f"-families:{','.join(families)}" if families else "")),
    )


def evaluate_model_dir(ds, model_dir) -> dict:
    """Load a saved model (and gallery) and evaluate it on `ds` (its variant's dataset) under
    its protocol's evaluation split."""
    loaded = load_model(model_dir, device="cpu")
    meta = loaded.meta
    spec = ModelSpec(**meta["spec"])
    split = meta["split"]
    split_config = SplitConfig(protocol=split["protocol"], block_deg=split.get("block_deg", 0.5),
                               validation_fraction=split.get("validation_fraction", 0.15),
                               test_fraction=split.get("test_fraction", 0.15))
    gallery = Gallery.load(model_dir / GALLERY_FILE) if (model_dir / GALLERY_FILE).exists() else None
    splits = dataset_splits(ds, split_config)
    report = evaluate(loaded.model, gallery, spec, ds, loaded.grid, splits, split_config.evaluation_split,
                      calibration=meta.get("calibration"), ood=meta.get("ood"))
    rows = report.pop("rows")
    write_table(model_dir / "predictions.parquet", pa.Table.from_pydict(rows, schema=PREDICTION_SCHEMA))
    report.update({"protocol": split_config.protocol, "spec": spec.to_dict(),
                   "training_data_version": meta.get("training_data_version"),
                   "seconds_per_epoch": meta.get("seconds_per_epoch"), "classes": loaded.model.n_cells})
    return report


def trained_families(model_dir, training_data_version) -> list[str]:
    """The family folders under `model_dir` trained on the same data as the main model (a
    family left from an earlier run on other data is not evaluated beside it)."""
    from geo_assets.model.artifacts import ModelArtifactError, read_meta
    from geo_assets.model.spec import PRESETS

    out = []
    for name in sorted(PRESETS):
        try:
            meta = read_meta(model_dir / name)
        except ModelArtifactError:
            continue
        if meta.get("training_data_version") == training_data_version:
            out.append(name)
    return out


def _num(v) -> float:
    """JSON None (an undefined metric, e.g. no test rows) -> NaN for Dagster metadata."""
    return float("nan") if v is None else float(v)


def materialize_model_evaluation(context: dg.AssetExecutionContext, storage: StorageResource):
    blur, geocell = model_partition_of(context)
    layout = storage.layout()
    model_dir = layout.model_dir(blur, geocell)
    report = {"blur": blur, "geocell": geocell, "model_dir": str(model_dir)}
    with partition_lock(layout.root, "geolocator_model", f"{blur}_{geocell}"):
        ds = load_dataset(layout, blur)
        report.update(evaluate_model_dir(ds, model_dir))
        twin_dir = model_dir / SEED_PROTOCOL_DIR
        if (twin_dir / "model.json").exists():
            report["seed_protocol"] = evaluate_model_dir(ds, twin_dir)
        families = trained_families(model_dir, report["training_data_version"])
        if families:
            report["families"] = {name: evaluate_model_dir(ds, model_dir / name) for name in families}
        atomic_write_bytes(model_dir / "evaluation.json", json.dumps(report, indent=2, allow_nan=False).encode())
    m, base = report["metrics"], report["baseline"]
    median, base_median = m["median_km"], base["median_km"]
    yield dg.AssetCheckResult(
        check_name="beats_region_centre_baseline",
        passed=bool(median["high"] is not None and base_median["low"] is not None and median["high"] < base_median["low"]),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"median_km": _num(median["value"]), "median_km_low": _num(median["low"]),
                  "median_km_high": _num(median["high"]), "baseline_median_km": _num(base_median["value"]),
                  "baseline_median_km_low": _num(base_median["low"])},
    )

    def num(d: dict, key: str) -> float:
        return _num(d.get(key, {}).get("value"))

    version_parts = [json.dumps(m, sort_keys=True), str(report.get("training_data_version"))]
    if report.get("families"):  # absent: the version it always had
        version_parts.append(json.dumps({k: f["metrics"] for k, f in report["families"].items()}, sort_keys=True))

    yield dg.MaterializeResult(
        metadata={
            "test_rows": report["n"],
            **{f"test_{k}": num(m, k) for k in ("median_km", "geocell_accuracy_pct", "within_1km_pct",
                                                "within_10km_pct", "within_100km_pct", "geoscore")},
            **({"test_city_accuracy_pct": num(m, "city_accuracy_pct")} if "city_accuracy_pct" in m else {}),
            "baseline_median_km": num(base, "median_km"),
            "text_reliant_n": int(report["text_reliant"]["n"]),
            "text_reliant_within_10km_pct": num(report["text_reliant"]["metrics"], "within_10km_pct"),
            "seed_protocol_median_km": num(report.get("seed_protocol", {}).get("metrics", {}), "median_km"),
            **{f"{name}_test_median_km": num(f["metrics"], "median_km") for name, f in report.get("families", {}).items()},
            PEAK_RSS_KEY: process_peak_mib(),
        },
        data_version=data_version_of(version_parts),
    )


# Everything load_dataset reads: every tile of these tables.
TRAINING_INPUTS = [dg.AssetDep(name, partition_mapping=ALL_TILES) for name in ("embeddings", "captions", "gazetteer_attack")]


@dg.asset(
    partitions_def=model_partitions,
    deps=TRAINING_INPUTS,
    code_version="geolocator_model-v3",
    group_name="models",
    kinds={"pytorch"},
    owners=OWNERS,
    **gpu_step_kwargs(),
    automation_condition=MODEL_AUTOMATION,
)
def geolocator_model(context: dg.AssetExecutionContext, config: TrainingConfig, storage: StorageResource) -> dg.MaterializeResult:
    """Train the geolocator for one (blur, geocell) partition on every tile's embeddings of that
    variant: train split to learn, validation split to steer; the test split is never seen.
    Writes models/<blur>/<geocell>/ (weights, JSON with spec, split and history, retrieval
    gallery) and the seed-protocol twin under seed_protocol/."""
    return materialize_geolocator_model(context, config, storage)


@dg.asset(
    partitions_def=model_partitions,
    deps=["geolocator_model", *TRAINING_INPUTS],
    code_version="model_evaluation-v3",
    group_name="models",
    kinds={"python", "parquet"},
    owners=OWNERS,
    automation_condition=EVALUATION_AUTOMATION,
    check_specs=[dg.AssetCheckSpec("beats_region_centre_baseline", asset="model_evaluation",
                                   description="test median km below always-predicting-the-training-centre, "
                                               "with the intervals apart")],
)
def model_evaluation(context: dg.AssetExecutionContext, storage: StorageResource):
    """Test-split metrics with 95% bootstrap intervals (median km, geocell accuracy, top-5/10,
    within 100 m .. 2500 km, GeoScore), the region-centre baseline and the text-reliant subset;
    the seed-protocol twin on its validation split beside it. Writes evaluation.json and
    predictions.parquet next to each model."""
    yield from materialize_model_evaluation(context, storage)
