"""Model choices, measured: the seed's exact model and each addition, on the same split.

    python -m geo_assets.model.ablation [--geocell 0.05] [--variants unblurred,blurred] [--out FILE.json]

Trains every row of ABLATION on the main job's embeddings (storage/ must hold
them), under the default grouped split. Validation numbers choose the default
(`spec.PRESETS["default"]`); test numbers are what the closing note reports.
Prints a table per variant and writes JSON. `--epoch-bench` also times one
training epoch on 32,000 rows (features tiled from the real ones) for the seed
model, the default and the other families, the issue's speed target.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

ABLATION: list[tuple[str, str, dict]] = [
    ("seed", "seed", {}),
    ("+ classes with data", "seed", {"classes": "with_data"}),
    ("+ label smoothing 75 km", "seed", {"classes": "with_data", "smoothing_km": 75.0}),
    ("+ concat features", "seed", {"classes": "with_data", "smoothing_km": 75.0, "feature": "concat"}),
    ("+ OCR text encoded alone", "seed", {"classes": "with_data", "smoothing_km": 75.0, "feature": "concat_ocr"}),
    ("+ gazetteer prior and snap", "seed", {"classes": "with_data", "smoothing_km": 75.0, "feature": "concat_ocr",
                                            "gazetteer_prior": True}),
    ("+ input standardisation (= default)", "default", {}),
    ("default + retrieval", "default", {"retrieval": True}),
    ("default + trainable fusion", "default", {"token_fusion": True}),
    ("default without OCR vector", "default", {"feature": "concat"}),
    ("default without gazetteer prior", "default", {"gazetteer_prior": False}),
    ("default without label smoothing", "default", {"smoothing_km": 0.0}),
    # Other model families, each its own preset.
    ("hybrid head (seed 004)", "hybrid", {}),
    ("contrastive image-location (seed 001 / GeoCLIP)", "contrastive", {}),
]
REPORTED = ("median_km", "geocell_accuracy_pct", "within_1km_pct", "within_10km_pct", "within_100km_pct", "geoscore")


def _fmt(m: dict) -> str:
    v, lo, hi = m.get("value"), m.get("low"), m.get("high")
    if v is None:
        return "-"
    return f"{v:.1f} [{lo:.1f}, {hi:.1f}]" if lo is not None and hi is not None else f"{v:.1f}"


def run_ablation(layout, geocell: str, variants: list[str], max_epochs: int, rows=ABLATION, n_boot: int = 1000,
                 echo=print, split_config=None) -> dict:
    from geo_assets.config.settings import GeoSettings
    from geo_assets.geo.bbox import region_bounds
    from geo_assets.geo.geocells import GeocellGrid, parse_geocell_size
    from geo_assets.model.dataset import load_dataset
    from geo_assets.model.evaluate import evaluate
    from geo_assets.model.fit import fit_model
    from geo_assets.model.spec import spec_for

    grid = GeocellGrid(region_bounds(GeoSettings.from_env().region), parse_geocell_size(geocell))
    results: dict = {"geocell": geocell, "variants": {}}
    for variant in variants:
        ds = load_dataset(layout, variant)
        if len(ds) < 50:
            raise SystemExit(f"only {len(ds)} embedded {variant} images in {layout.root}: run the main job first")
        out = []
        for name, preset, overrides in rows:
            spec = spec_for(preset, **overrides)
            started = time.perf_counter()
            fit = fit_model(ds, grid, spec, split_config, max_epochs=max_epochs)
            seconds = time.perf_counter() - started
            val = evaluate(fit.model, fit.gallery, spec, ds, grid, fit.splits, "validation", n_boot=n_boot)
            test = evaluate(fit.model, fit.gallery, spec, ds, grid, fit.splits, "test", n_boot=n_boot)
            h = fit.result.history
            row = {"name": name, "spec": spec.to_dict(), "seconds": round(seconds, 1), "epochs": len(h),
                   "seconds_per_epoch": round(float(np.mean([r["seconds"] for r in h])), 3) if h else None,
                   "classes": fit.model.n_cells, "n": fit.n,
                   "validation": {k: val["metrics"][k] for k in REPORTED},
                   "validation_text_reliant": {k: val["text_reliant"]["metrics"].get(k, {}) for k in REPORTED},
                   "test": {k: test["metrics"][k] for k in REPORTED},
                   "test_text_reliant": {k: test["text_reliant"]["metrics"].get(k, {}) for k in REPORTED},
                   "test_baseline_median_km": test["baseline"]["median_km"], "n_test_text_reliant": test["text_reliant"]["n"]}
            out.append(row)
            echo(f"{variant} {geocell} {name}: val median {_fmt(row['validation']['median_km'])} km, "
                 f"val <=10 km {_fmt(row['validation']['within_10km_pct'])}%, test median {_fmt(row['test']['median_km'])} km "
                 f"({row['epochs']} epochs, {row['seconds_per_epoch']} s/epoch, {row['classes']} classes)")
        results["variants"][variant] = out
    return results


def markdown(results: dict) -> str:
    lines = []
    for variant, rows in results["variants"].items():
        lines += [f"### {variant}, geocell {results['geocell']}", "",
                  "| Model | classes | s/epoch | val median km | val <=10 km % | val text-reliant <=10 km % | "
                  "test median km | test <=1 km % | test <=10 km % | test text-reliant <=10 km % |",
                  "|---|---:|---:|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['name']} | {r['classes']} | {r['seconds_per_epoch']} | {_fmt(r['validation']['median_km'])} | "
                         f"{_fmt(r['validation']['within_10km_pct'])} | {_fmt(r['validation_text_reliant']['within_10km_pct'])} | "
                         f"{_fmt(r['test']['median_km'])} | {_fmt(r['test']['within_1km_pct'])} | "
                         f"{_fmt(r['test']['within_10km_pct'])} | {_fmt(r['test_text_reliant']['within_10km_pct'])} |")
        if rows:
            lines += ["", f"Region-centre baseline on test: median {_fmt(rows[0]['test_baseline_median_km'])} km; "
                          f"test images {rows[0]['n']['test']}, text-reliant {rows[0]['n_test_text_reliant']}.", ""]
    return "\n".join(lines)


def epoch_bench(layout, geocell: str, rows: int = 32_000, echo=print,
                names: tuple[str, ...] = ("seed", "default", "hybrid", "contrastive")) -> dict:
    """Seconds for one training epoch on `rows` rows (the real features tiled), per preset, in one process."""
    import torch

    from geo_assets.config.settings import GeoSettings
    from geo_assets.geo.bbox import region_bounds
    from geo_assets.geo.geocells import GeocellGrid, parse_geocell_size
    from geo_assets.model.dataset import load_dataset
    from geo_assets.model.spec import spec_for
    from geo_assets.model.train import train_geolocator

    grid = GeocellGrid(region_bounds(GeoSettings.from_env().region), parse_geocell_size(geocell))
    ds = load_dataset(layout, "unblurred")
    reps = int(np.ceil(rows / max(1, len(ds))))
    idx = np.tile(np.arange(len(ds)), reps)[:rows]
    big = ds.subset(idx)
    out = {"rows": rows, "geocell": geocell, "threads": torch.get_num_threads()}
    for name in names:
        spec = spec_for(name)
        config = spec.train_config(max_epochs=1, patience=1)
        started = time.perf_counter()
        if spec.family == "contrastive":
            from geo_assets.model.contrastive import train_contrastive

            res = train_contrastive(big.features(spec.feature), big.lat, big.lon, np.zeros(rows, bool), grid, config)
        else:
            res = train_geolocator(big.features(spec.feature), big.lat, big.lon, np.zeros(rows, bool), grid, config,
                                   gaz=big.gaz if spec.gazetteer_prior else None)
        out[name] = {"epoch_seconds": round(res.history[0]["seconds"], 2), "total_seconds": round(time.perf_counter() - started, 2),
                     "classes": res.model.n_cells,
                     "parameters": int(sum(p.numel() for p in res.model.parameters()))}
        echo(f"{name}: one epoch on {rows} rows: {out[name]['epoch_seconds']} s ({out[name]['classes']} classes, "
             f"{out[name]['parameters']:,} parameters)")
    return out


def main(argv=None) -> None:
    from geo_assets.config.settings import GeoSettings
    from geo_assets.store.layout import StorageLayout

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geocell", default="0.05")
    ap.add_argument("--variants", default="unblurred,blurred")
    ap.add_argument("--max-epochs", type=int, default=30)
    ap.add_argument("--only", default="", help="comma-separated row names to run (default: all)")
    ap.add_argument("--epoch-bench", action="store_true")
    ap.add_argument("--out", default="")
    ap.add_argument("--validation-fraction", type=float, default=None, help="default: SplitConfig's")
    ap.add_argument("--test-fraction", type=float, default=None,
                    help="default: SplitConfig's; a small run needs more to hold more than a few sequences")
    args = ap.parse_args(argv)
    settings = GeoSettings.from_env()
    layout = StorageLayout(settings.storage_dir, settings.models_dir)
    rows = [r for r in ABLATION if not args.only or r[0] in args.only.split(",")]
    from geo_assets.model.splits import SplitConfig

    fractions = {k: v for k, v in (("validation_fraction", args.validation_fraction),
                                   ("test_fraction", args.test_fraction)) if v is not None}
    results = run_ablation(layout, args.geocell, [v for v in args.variants.split(",") if v], args.max_epochs, rows,
                           split_config=SplitConfig(**fractions))
    if args.epoch_bench:
        results["epoch_bench"] = epoch_bench(layout, args.geocell)
    print(markdown(results))
    if args.out:
        from geo_assets.model.uncertainty import json_safe

        with open(args.out, "w") as fh:
            json.dump(json_safe(results), fh, indent=2)


if __name__ == "__main__":
    main()
