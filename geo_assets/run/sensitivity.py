"""The text-assumption sensitivity run: one small world per place-text share, built through
the production code (`execution.materialize_tile` / `materialize_model`: the same assets,
resources and training), the unblurred and the blurred model at one geocell size, paired on
the same test images with the report's paired bootstrap (`report.paired_blur_effects`).

    geo-assets sensitivity                        # defaults: shares 0.35, 0.07, 0; 8 tiles x 60 images
    python -m geo_assets.run.sensitivity --shares 0.35,0 --tiles 2 --images-per-tile 30

The sizes, folders and stored result are `geo_assets/model/sensitivity.py`. Each world has
its own data, models and Dagster instance; the folders are kept, so a second call with the
same sizes reuses the tile work (the assets are incremental); delete
`<storage>/sensitivity/` to start again.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from geo_assets.model.sensitivity import (DEFAULT_GEOCELL, DEFAULT_IMAGES_PER_TILE, DEFAULT_PLACE_TEXT_SHARE,
                                          DEFAULT_SHARES, DEFAULT_TILES, FORMAT_VERSION, RESULT_FILE, SPLIT,
                                          SensitivityConfig, command_line, pick_tiles, place_text_rates,
                                          share_folder)


def _pulled_ids(layout, tiles: list[str]) -> list[str]:
    from geo_assets.store.parquet import read_table

    ids: list[str] = []
    for tile in tiles:
        path = layout.table_path("raw_images", tile)
        if path.exists():
            ids += read_table(path).column("image_id").to_pylist()
    return ids


def run_share(settings, share: float, tiles: list[str], config: SensitivityConfig, log=print) -> dict:
    """One share: its tiles and two models in its own folders; the paired blur effect on test."""
    import dagster as dg

    from geo_assets.run import execution
    from geo_assets.defs.partitions import GEOCELL_PARTITIONS_NAME, model_partition_key
    from geo_assets.defs.resources import build_resources
    from geo_assets.synthetic.world import synthetic_world
    from geo_assets.model.report import paired_blur_effects
    from geo_assets.store.parquet import read_table

    folder = share_folder(settings.storage_dir, share)
    sub = replace(settings.with_storage(folder / "storage", folder / "models"), place_text_share=share, source="synthetic")
    resources = build_resources(sub)
    layout = resources["storage"].layout()
    started = time.perf_counter()
    home = folder / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():  # its own SQLite instance; nothing sent anywhere
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.local_temp(tempdir=str(home)) as instance:
        for k, tile in enumerate(tiles):
            log(f"place-text share {share:g}: tile {k + 1}/{len(tiles)} {tile}")
            result = execution.materialize_tile(instance, resources, tile, images_per_tile=config.images_per_tile,
                                                check_sample=0, easyocr_test_images=0)
            if not result.success:
                raise RuntimeError(f"place-text share {share:g}: tile {tile} failed (run {result.run_id})")
        if config.geocell not in instance.get_dynamic_partitions(GEOCELL_PARTITIONS_NAME):
            instance.add_dynamic_partitions(GEOCELL_PARTITIONS_NAME, [config.geocell])
        train = {**SPLIT, "seed_protocol_twin": False}
        if config.max_epochs:
            train["max_epochs"] = config.max_epochs
        predictions = {}
        for blur in ("unblurred", "blurred"):
            log(f"place-text share {share:g}: model {blur} {config.geocell}")
            result = execution.materialize_model(instance, resources, model_partition_key(blur, config.geocell),
                                                 train_config=train)
            if not result.success:
                raise RuntimeError(f"place-text share {share:g}: model {blur} {config.geocell} failed (run {result.run_id})")
            predictions[blur] = read_table(layout.model_dir(blur, config.geocell) / "predictions.parquet").to_pydict()
    effects = paired_blur_effects(predictions["unblurred"], predictions["blurred"], n_boot=config.n_boot)
    ids = _pulled_ids(layout, tiles)
    rate, sign_rate = place_text_rates(synthetic_world(0, share), ids)
    return {
        "place_text_share": share,
        "place_text_rate": rate,  # as drawn, over the images this world's run stored
        "sign_rate": sign_rate,
        "n_images": len(ids),
        "n": effects.get("n", 0),
        "n_text_reliant": effects.get("n_text_reliant", 0),
        "all": {k: effects["all"][k] for k in ("within_10km_pct", "within_1km_pct", "median_km") if k in effects.get("all", {})},
        "seconds": round(time.perf_counter() - started, 1),
    }


def run_sensitivity(settings, config: SensitivityConfig | None = None, log=print) -> dict:
    """Every share in turn; the result dict that `text_assumption_sensitivity` writes."""
    from geo_assets.defs.partitions import tile_keys
    from geo_assets.synthetic.world import synthetic_world

    config = config or SensitivityConfig()
    started = time.perf_counter()
    tiles = pick_tiles(tile_keys(settings), synthetic_world(0), config.tiles)
    rows = [run_share(settings, share, tiles, config, log=log) for share in config.shares]
    return {
        "format": FORMAT_VERSION,
        "default_share": DEFAULT_PLACE_TEXT_SHARE,
        "geocell": config.geocell,
        "tiles": tiles,
        "images_per_tile": config.images_per_tile,
        "split": SPLIT,
        "metric": "within_10km_pct",
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "command": command_line(config),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shares", default=",".join(f"{s:g}" for s in DEFAULT_SHARES),
                        help="place-text shares to compare, comma-separated (default: today's, a fifth of it, zero)")
    parser.add_argument("--tiles", type=int, default=DEFAULT_TILES, help="tiles per world (the densest)")
    parser.add_argument("--images-per-tile", type=int, default=DEFAULT_IMAGES_PER_TILE)
    parser.add_argument("--geocell", default=DEFAULT_GEOCELL, help="geocell size of the two models per share")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--no-report", action="store_true", help="do not re-materialize privacy_report afterwards")


def config_from_args(args) -> SensitivityConfig:
    from geo_assets.geo.geocells import geocell_key

    try:
        shares = tuple(float(s) for s in str(args.shares).split(",") if s.strip())
    except ValueError:
        raise ValueError(f"--shares must be numbers between 0 and 1 separated by commas, got {args.shares!r}") from None
    return SensitivityConfig(shares=shares, tiles=args.tiles, images_per_tile=args.images_per_tile,
                             geocell=geocell_key(args.geocell), max_epochs=args.max_epochs)


def run_command(args) -> int:
    """Materialize `text_assumption_sensitivity` in the project's instance, then the report."""
    import sys

    import dagster as dg

    from geo_assets.run import execution
    from geo_assets.defs.resources import build_resources
    from geo_assets.run.instance import get_instance

    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    instance = get_instance()
    resources = build_resources()
    run_config = {"ops": {"text_assumption_sensitivity": {"config": {
        "shares": list(config.shares), "tiles": config.tiles, "images_per_tile": config.images_per_tile,
        "geocell": config.geocell, "max_epochs": config.max_epochs or 0}}}}
    result = execution.materialize(["text_assumption_sensitivity"], instance=instance, resources=resources,
                                   run_config=run_config, quiet=False)
    if not result.success:
        print(f"text_assumption_sensitivity failed (run {result.run_id}); its event log is in the UI", file=sys.stderr)
        return 1
    storage = resources["storage"].layout()
    print((storage.reports_dir / RESULT_FILE).read_text())
    if not args.no_report and instance.get_materialized_partitions(dg.AssetKey("model_evaluation")):
        report = execution.materialize_report(instance, resources)
        print("privacy_report " + ("updated: " + str(storage.reports_dir / "privacy_report.md") if report.success
                                   else f"failed (run {report.run_id})"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
