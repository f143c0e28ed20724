"""Save and load a trained geolocator: `<dir>/model.pt` + `<dir>/model.json` (seed 3.4.6).

model.pt    the state_dict only (torch.save; loaded with weights_only=True).
model.json  everything else, JSON:
              format            "geo_assets.geolocator/1"
              architecture      GeolocatorMLP args: in_dim, n_cells, geocell_size, hidden
              grid              {"bounds": [min_lon, min_lat, max_lon, max_lat], "size", "n_cells"}, or for
                                a city label scheme also "scheme": "cities", "key" and "cities"
                                (name, lat, lon, population, geonameid per class; geo/labels.py)
              weights_sha256    SHA-256 of model.pt's bytes (pairs the two files)
              saved_at          UTC ISO time
              ...               every key of the caller's `meta` (feature kind, encoder ids,
                                fusion_id, training data version, metrics, history, ...)

Both files are written to temp files and renamed (model.pt first, then model.json).
A reader that catches the folder between the two renames, or a folder whose files
do not belong together, gets a clear ModelArtifactError from the checksum, never a
silently wrong model. Loading needs only torch and the model class, no training code.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from geo_assets.geo.bbox import BBox
from geo_assets.geo.geocells import GeocellGrid
from geo_assets.geo.labels import CityLabels
from geo_assets.model.geolocator import GeolocatorMLP, build_from_config
from geo_assets.store.parquet import atomic_write_bytes
from geo_assets.store.backends import as_path

FORMAT = "geo_assets.geolocator/1"
WEIGHTS_FILE = "model.pt"
META_FILE = "model.json"
RESERVED_KEYS = ("format", "architecture", "grid", "weights_sha256", "saved_at")


class ModelArtifactError(RuntimeError):
    """A model folder is missing, incomplete or corrupted."""


@dataclass
class LoadedModel:
    model: GeolocatorMLP  # eval mode, no grad
    meta: dict
    grid: GeocellGrid
    path: Path = field(default_factory=Path)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def grid_to_json(grid: GeocellGrid | CityLabels) -> dict:
    if isinstance(grid, CityLabels):
        return grid.to_json()
    b = grid.bounds
    return {"bounds": [b.min_lon, b.min_lat, b.max_lon, b.max_lat], "bounds_order": "min_lon,min_lat,max_lon,max_lat",
            "size": grid.size, "n_cells": grid.n_cells}


def grid_from_json(data) -> GeocellGrid | CityLabels:
    if isinstance(data, (GeocellGrid, CityLabels)):
        return data
    if isinstance(data, dict) and data.get("scheme") == "cities":
        return CityLabels.from_json(data)
    if not isinstance(data, dict) or "bounds" not in data or "size" not in data:
        raise ValueError(f"grid must be a GeocellGrid or {{'bounds': [...], 'size': ...}}, got {data!r}")
    bounds = data["bounds"]
    if isinstance(bounds, dict):
        bbox = BBox(bounds["min_lon"], bounds["min_lat"], bounds["max_lon"], bounds["max_lat"])
    elif isinstance(bounds, BBox):
        bbox = bounds
    else:
        bbox = BBox(*(float(v) for v in bounds))
    return GeocellGrid(bbox, float(data["size"]))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, (GeocellGrid, CityLabels)):
        return grid_to_json(value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    raise TypeError(f"model meta value of type {type(value).__name__} is not JSON-serialisable")


def _clean_nan(value):
    """NaN/inf -> None so model.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_nan(v) for v in value]
    return value


def save_model(directory: str | Path, model: GeolocatorMLP, meta: dict | None = None,
               grid: GeocellGrid | None = None) -> Path:
    """Write model.pt + model.json under `directory` (created if needed); returns the folder.

    The grid comes from `grid` or `meta["grid"]` (a GeocellGrid or {"bounds": [min_lon,
    min_lat, max_lon, max_lat], "size": s}) and must match the model's cells and size."""
    directory = as_path(directory)
    meta = dict(meta or {})
    grid_src = grid if grid is not None else meta.get("grid")
    if grid_src is None:
        raise ValueError("save_model needs the geocell grid (grid= or meta['grid'])")
    grid = grid_from_json(grid_src)
    from geo_assets.model.contrastive import ContrastiveGeolocator

    if not isinstance(model, (GeolocatorMLP, ContrastiveGeolocator)):
        raise TypeError(f"save_model expects a GeolocatorMLP or ContrastiveGeolocator, got {type(model).__name__}")
    if not _grid_matches(grid, model):
        raise ValueError(f"grid ({grid.n_cells} cells of {grid.size}) does not match the model "
                         f"({model.n_cells} classes of {model.geocell_size})")

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    weights = buf.getvalue()
    doc = {k: v for k, v in meta.items() if k not in RESERVED_KEYS}
    doc.update({
        "format": FORMAT,
        "architecture": model.config(),
        "grid": grid_to_json(grid),
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "saved_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    text = json.dumps(_clean_nan(json.loads(json.dumps(doc, default=_json_default))), indent=2, allow_nan=False)
    atomic_write_bytes(directory / WEIGHTS_FILE, weights)
    atomic_write_bytes(directory / META_FILE, text.encode())
    return directory


def _grid_matches(grid: GeocellGrid, model: GeolocatorMLP) -> bool:
    if not math.isclose(grid.size, model.geocell_size, rel_tol=1e-9):
        return False
    if model.class_cells is None:
        return grid.n_cells == model.n_cells
    return len(model.class_cells) == model.n_cells and 0 <= min(model.class_cells) and max(model.class_cells) < grid.n_cells


def read_meta(directory: str | Path) -> dict:
    """model.json only (cheap: no weights)."""
    directory = as_path(directory)
    if not directory.is_dir():
        raise ModelArtifactError(f"model folder {directory} does not exist")
    path = directory / META_FILE
    if not path.is_file():
        raise ModelArtifactError(f"{path} is missing: {directory} is not a saved model (or saving did not finish)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelArtifactError(f"{path} is corrupted (not valid JSON): {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelArtifactError(f"{path} is corrupted: expected a JSON object")
    missing = [k for k in ("format", "architecture", "grid", "weights_sha256") if k not in doc]
    if missing:
        raise ModelArtifactError(f"{path} lacks {missing}: not written by save_model")
    if doc["format"] != FORMAT:
        raise ModelArtifactError(f"{path} has format {doc['format']!r}, this code reads {FORMAT!r}")
    return doc


def load_model(directory: str | Path, device: str | None = "auto") -> LoadedModel:
    """Rebuild the model in eval mode on `device` ('auto' = CUDA when present)."""
    directory = as_path(directory)
    meta = read_meta(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelArtifactError(f"{weights_path} is missing (model.json is there): the model folder is incomplete")
    data = weights_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["weights_sha256"]:
        raise ModelArtifactError(f"{weights_path} does not match {directory / META_FILE} (checksum differs): "
                                 "the weights are corrupted or a save was interrupted; retrain this model")
    try:
        grid = grid_from_json(meta["grid"])
        model = build_from_config(meta["architecture"], grid)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelArtifactError(f"{directory / META_FILE}: bad architecture or grid: {exc}") from exc
    if not _grid_matches(grid, model):
        raise ModelArtifactError(f"{directory}: grid has {grid.n_cells} cells but the model {model.n_cells} classes")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ModelArtifactError(f"{weights_path} cannot be loaded into the saved architecture: {exc}") from exc
    if device in (None, "", "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model=model, meta=meta, grid=grid, path=directory)
