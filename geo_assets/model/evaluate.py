"""Load a variant's embeddings as a training set, and evaluate a trained model on the
validation split (Figure 18 metrics, region-centre baseline, text-reliant subset)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from geo_assets.store.catalog import query_connection
from geo_assets.store.layout import StorageLayout

FEATURES = ("fused", "concat")


@dataclass
class TrainingSet:
    image_ids: list[str]
    features: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    row_keys: list[str]
    encoder_key: str


def _stack(column) -> np.ndarray:
    return np.asarray(column.to_pylist(), dtype=np.float32)


def load_training_set(layout: StorageLayout, variant: str, feature: str = "fused") -> TrainingSet:
    """Every embedded image of one variant, across all tiles, in image-id order."""
    if feature not in FEATURES:
        raise ValueError(f"feature must be one of {FEATURES}, got {feature!r}")
    with query_connection(layout) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "embeddings" not in tables:
            return TrainingSet([], np.zeros((0, 0), np.float32), np.zeros(0), np.zeros(0), [], "")
        table = con.sql(
            "SELECT image_id, lat, lon, encoder_key, image_sha256, caption_sha256, text_emb, image_emb, fused "
            "FROM embeddings WHERE variant = ? ORDER BY image_id",
            params=[variant],
        ).to_arrow_table()
    keys = table["encoder_key"].to_pylist()
    if not keys:
        return TrainingSet([], np.zeros((0, 0), np.float32), np.zeros(0), np.zeros(0), [], "")
    # Tiles embedded by different encoder versions cannot be mixed in one model.
    encoder_key, _ = Counter(keys).most_common(1)[0]
    mask = np.array([k == encoder_key for k in keys])
    if not mask.all():
        table = table.filter(mask)
    if feature == "fused":
        features = _stack(table["fused"])
    else:
        from geo_assets.embed.fusion import concat_features

        features = concat_features(_stack(table["text_emb"]), _stack(table["image_emb"]))
    ids = table["image_id"].to_pylist()
    row_keys = [f"{i}:{a}:{b}" for i, a, b in zip(ids, table["image_sha256"].to_pylist(), table["caption_sha256"].to_pylist())]
    return TrainingSet(ids, features, np.asarray(table["lat"].to_pylist()), np.asarray(table["lon"].to_pylist()),
                       row_keys, encoder_key)


def text_reliant_ids(layout: StorageLayout) -> set[str]:
    """Images whose unblurred OCR text names a place: where blurring should bite."""
    with query_connection(layout) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "captions" not in tables:
            return set()
        rows = con.execute("SELECT image_id FROM captions WHERE variant = 'unblurred' AND has_place_text").fetchall()
    return {r[0] for r in rows}


def infer(model, features: np.ndarray, grid, batch_size: int = 1024) -> dict:
    """Predicted coordinates (centre of the arg-max cell + offset), cells, top-5, confidence."""
    import torch

    device = next(model.parameters()).device
    centres = torch.as_tensor(grid.centres_table(), dtype=torch.float32, device=device)
    out = {"lat": [], "lon": [], "cell": [], "top5": [], "confidence": []}
    model.eval()
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            x = torch.as_tensor(features[start : start + batch_size], dtype=torch.float32, device=device)
            logits, offset = model(x)
            probs = torch.softmax(logits, dim=1)
            conf, cell = probs.max(dim=1)
            top5 = probs.topk(min(5, probs.shape[1]), dim=1).indices
            centre = centres[cell]
            out["lat"].append((centre[:, 0] + offset[:, 0]).cpu().numpy())
            out["lon"].append((centre[:, 1] + offset[:, 1]).cpu().numpy())
            out["cell"].append(cell.cpu().numpy())
            out["top5"].append(top5.cpu().numpy())
            out["confidence"].append(conf.cpu().numpy())
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def evaluate_model_on(layout: StorageLayout, loaded, variant: str) -> dict:
    from geo_assets.model.metrics import evaluate_predictions, region_centre_baseline
    from geo_assets.model.train import validation_mask

    data = load_training_set(layout, variant, loaded.meta.get("feature", "fused"))
    if not data.image_ids:
        raise ValueError(f"no embeddings for variant {variant!r}")
    grid = loaded.grid
    is_val = validation_mask(data.image_ids)
    val = np.flatnonzero(is_val)
    pred = infer(loaded.model, data.features[val], grid)
    true_lat, true_lon = data.lat[val], data.lon[val]
    true_cell = grid.cell_of(true_lat, true_lon)
    metrics = evaluate_predictions(pred["lat"], pred["lon"], true_lat, true_lon, pred["cell"], true_cell, pred["top5"])
    baseline = region_centre_baseline(data.lat[~is_val], data.lon[~is_val], true_lat, true_lon)

    reliant = text_reliant_ids(layout)
    sub = np.array([data.image_ids[i] in reliant for i in val], dtype=bool)
    if sub.any():
        sub_metrics = evaluate_predictions(pred["lat"][sub], pred["lon"][sub], true_lat[sub], true_lon[sub],
                                           pred["cell"][sub], true_cell[sub], pred["top5"][sub])
    else:
        sub_metrics = {"n": 0}
    from geo_assets.geo.haversine import haversine_km

    distances = haversine_km(pred["lat"], pred["lon"], true_lat, true_lon)
    return {
        "metrics": metrics,
        "baseline": baseline,
        "text_reliant": {"metrics": sub_metrics, "n_ids": int(sub.sum())},
        "distances_km": [round(float(d), 4) for d in np.atleast_1d(distances)],
        "training_data_version": loaded.meta.get("training_data_version"),
    }
