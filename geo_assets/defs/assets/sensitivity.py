"""`text_assumption_sensitivity`: the blur effect at several place-text shares of the synthetic
world, each in a small world of its own (`geo_assets/run/sensitivity.py`). Opt-in: not in the
main job's selection and never automated (~10-15 min); `geo-assets sensitivity` materializes it
and then the report, which reads its JSON."""

import json

import dagster as dg

from geo_assets.defs.metadata import OWNERS
from geo_assets.defs.resources import StorageResource
from geo_assets.model import sensitivity
from geo_assets.run.sensitivity import run_sensitivity
from geo_assets.model.text_assumption import sensitivity_lines
from geo_assets.config.settings import GeoSettings
from geo_assets.store.parquet import atomic_write_bytes


class TextAssumptionSensitivityConfig(dg.Config):
    shares: list[float] = list(sensitivity.DEFAULT_SHARES)
    """Place-text shares to compare (share of images whose text names their place)."""
    tiles: int = sensitivity.DEFAULT_TILES
    """Tiles per world: the densest of the configured region."""
    images_per_tile: int = sensitivity.DEFAULT_IMAGES_PER_TILE
    geocell: str = sensitivity.DEFAULT_GEOCELL
    max_epochs: int = 0
    """0: the model's default."""


@dg.asset(
    code_version="text_assumption_sensitivity-v1",
    group_name="reports",
    kinds={"python", "pytorch"},
    owners=OWNERS,
)
def text_assumption_sensitivity(context: dg.AssetExecutionContext, config: TextAssumptionSensitivityConfig,
                                storage: StorageResource) -> dg.MaterializeResult:
    """Blurred minus unblurred within 10 km (paired, 95% interval) at several place-text shares,
    each from a small world built through the same assets and training in
    storage/sensitivity/place-text=<share>/. Writes storage/reports/text_assumption_sensitivity.json."""
    from geo_assets.geo.geocells import geocell_key
    from geo_assets.store.backends import is_local

    if not is_local(storage.layout().root):
        raise dg.Failure("text_assumption_sensitivity builds its worlds in local folders: storage is not local")
    try:
        run = sensitivity.SensitivityConfig(shares=tuple(config.shares), tiles=config.tiles,
                                            images_per_tile=config.images_per_tile, geocell=geocell_key(config.geocell),
                                            max_epochs=config.max_epochs or None)
    except ValueError as exc:
        raise dg.Failure(f"text_assumption_sensitivity config: {exc}") from exc
    settings = GeoSettings.from_env().with_storage(storage.storage_dir, storage.models_dir)
    result = run_sensitivity(settings, run, log=context.log.info)
    out = storage.layout().reports_dir / sensitivity.RESULT_FILE
    text = json.dumps(result, indent=2, allow_nan=False)
    atomic_write_bytes(out, text.encode())
    return dg.MaterializeResult(
        metadata={"table": dg.MetadataValue.md("\n".join(sensitivity_lines(result))),
                  "shares": dg.MetadataValue.json(list(run.shares)), "tiles": dg.MetadataValue.json(result["tiles"]),
                  "seconds": result["seconds"], "path": dg.MetadataValue.path(str(out))},
    )
