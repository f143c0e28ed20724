"""One geolocator per (blur, geocell) partition, and its evaluation (seed 2.2-3.7, ch. 4)."""

import json
import time

import dagster as dg
import numpy as np

from geo_assets.defs.automation import EVALUATION_AUTOMATION, MODEL_AUTOMATION
from geo_assets.defs.metadata import data_version_of
from geo_assets.defs.partitions import SETTINGS, model_partitions, split_model_partition_key
from geo_assets.defs.resources import StorageResource
from geo_assets.geo.bbox import region_bounds
from geo_assets.geo.geocells import GeocellGrid, parse_geocell_size
from geo_assets.model.artifacts import load_model, save_model
from geo_assets.model.train import TrainConfig, train_geolocator, validation_mask
from geo_assets.model.evaluate import evaluate_model_on, load_training_set
from geo_assets.store.parquet import atomic_write_bytes

class TrainingConfig(dg.Config):
    feature: str = "fused"
    """'fused' (cross-attention, the seed) or 'concat' (text + image CLS, seed 004)."""
    max_epochs: int = 40
    early_stopping_patience: int = 8
    batch_size: int = 32
    lr: float = 1e-3
    haversine_weight: float = 0.6
    seed: int = 0


@dg.asset(
    partitions_def=model_partitions,
    deps=[dg.AssetDep("embeddings", partition_mapping=dg.AllPartitionMapping())],
    code_version="geolocator_model-v1",
    group_name="models",
    kinds={"pytorch"},
    pool="gpu",
    automation_condition=MODEL_AUTOMATION,
)
def geolocator_model(context: dg.AssetExecutionContext, config: TrainingConfig, storage: StorageResource) -> dg.MaterializeResult:
    """Train the seed's MLP on every tile's embeddings of one variant, for one geocell size.
    Writes models/<blur>/<geocell>/ (weights + JSON with config, data version, metrics)."""
    blur, geocell = split_model_partition_key(context.partition_key)
    layout = storage.layout()
    data = load_training_set(layout, blur, config.feature)
    if len(data.image_ids) < 10:
        raise dg.Failure(f"only {len(data.image_ids)} embedded images for variant {blur}: materialize embeddings first")
    grid = GeocellGrid(region_bounds(SETTINGS.region), parse_geocell_size(geocell))
    is_val = validation_mask(data.image_ids)
    train_config = TrainConfig(
        lr=config.lr, batch_size=config.batch_size, max_epochs=config.max_epochs,
        patience=config.early_stopping_patience, haversine_weight=config.haversine_weight, seed=config.seed,
    )

    def progress(epoch: int, metrics: dict) -> None:
        context.log.info(f"epoch {epoch}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))

    started = time.perf_counter()
    result = train_geolocator(data.features, data.lat, data.lon, is_val, grid, train_config, progress=progress)
    seconds = time.perf_counter() - started
    version = data_version_of(data.row_keys)
    model_dir = layout.model_dir(blur, geocell)
    best = result.history[result.best_epoch] if result.history else {}
    save_model(model_dir, result.model, {
        "blur": blur, "geocell": geocell, "feature": config.feature, "encoder_key": data.encoder_key,
        "training_data_version": version.value, "n_train": int((~is_val).sum()), "n_val": int(is_val.sum()),
        "train_config": train_config.__dict__, "history": result.history, "best_epoch": result.best_epoch,
        "train_seconds": seconds, "device": result.device,
    }, grid=grid)
    return dg.MaterializeResult(
        metadata={
            "model_dir": dg.MetadataValue.path(str(model_dir)),
            "train_rows": int((~is_val).sum()),
            "val_rows": int(is_val.sum()),
            "geocells": grid.n_cells,
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "best_val_median_km": float(best.get("val_median_km", float("nan"))),
            "train_seconds": round(seconds, 2),
            "training_data_version": version.value,
        },
        data_version=dg.DataVersion(f"{version.value}-{config.feature}-{train_config.seed}"),
    )


@dg.asset(
    partitions_def=model_partitions,
    deps=["geolocator_model"],
    code_version="model_evaluation-v1",
    group_name="models",
    kinds={"python"},
    automation_condition=EVALUATION_AUTOMATION,
    check_specs=[dg.AssetCheckSpec("beats_region_centre_baseline", asset="model_evaluation",
                                   description="median km on validation below always-predict-the-centre")],
)
def model_evaluation(context: dg.AssetExecutionContext, storage: StorageResource):
    """The seed's Figure 18 metrics on the validation split, plus top-5, more distance
    bands, the region-centre baseline and the text-reliant subset."""
    blur, geocell = split_model_partition_key(context.partition_key)
    layout = storage.layout()
    model_dir = layout.model_dir(blur, geocell)
    loaded = load_model(model_dir)
    report = evaluate_model_on(layout, loaded, blur)
    report.update({"blur": blur, "geocell": geocell, "model_dir": str(model_dir)})
    atomic_write_bytes(model_dir / "evaluation.json", json.dumps(report, indent=2).encode())
    m, base = report["metrics"], report["baseline"]
    yield dg.AssetCheckResult(
        check_name="beats_region_centre_baseline", passed=m["median_km"] < base["median_km"],
        metadata={"median_km": m["median_km"], "baseline_median_km": base["median_km"]},
    )
    yield dg.MaterializeResult(
        metadata={
            **{k: float(v) for k, v in m.items() if isinstance(v, (int, float))},
            "baseline_median_km": float(base["median_km"]),
            "text_reliant_n": int(report["text_reliant"]["metrics"].get("n", 0)),
            "text_reliant_within_1km_pct": float(report["text_reliant"]["metrics"].get("within_1km_pct", float("nan"))),
        },
        data_version=data_version_of([json.dumps(m, sort_keys=True), loaded.meta.get("training_data_version", "")]),
    )
