"""How often `geo-assets predict` says a photo is unlike the training images: on real photos
(none in the UK: it should fire for nearly all) and on the synthetic test images (it should
fire for few). Both go through the production path (`predict_images`: OCR, blur,
captions, encoders, every model), so the numbers are what a user gets.

    python -m geo_assets.model.ood_check --models models --real [../shared/data/real] \\
        [--storage storage --synthetic 60] [--limit 200] [--out ood_check.json]

Real sets are the sub-folders of --real (e.g. icdar2015_train, svt_train, lund_exif; --real
with no folder reads `data/real_sets.real_data_dir()`: GEO_ASSETS_REAL_DATA, else ../shared/data/real);
every JPEG/PNG under one is a photo of that set; --limit takes that many evenly spaced
from each set (0 = all). Synthetic test images are the evaluation rows of the models'
predictions.parquet, their files under <storage>/images/raw/. The warning fires for an
image when any model flags it (`ood_warning`); the share every model flags, and each
model's own share, are reported too, with the test share that evaluation.json measured
on the stored embeddings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from geo_assets.data.real_sets import real_data_dir

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def sample_evenly(items: list, limit: int) -> list:
    """`limit` items spread evenly over the sorted list (all when limit is 0 or more than there are)."""
    if limit <= 0 or limit >= len(items):
        return list(items)
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def photo_sets(root: Path, limit: int = 0) -> dict[str, list[Path]]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"real photo folder {root} does not exist")
    sets = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if files:
            sets[folder.name] = sample_evenly(files, limit)
    if not sets:
        raise ValueError(f"no images in any sub-folder of {root}")
    return sets


def synthetic_test_images(models_dir: Path, storage: Path, limit: int) -> list[Path]:
    """Files of the images every model held out (the evaluation rows), evenly sampled."""
    from geo_assets.model.predict import discover_models
    from geo_assets.store.parquet import read_table

    ids: set[str] | None = None
    for d in discover_models(models_dir):
        path = d / "predictions.parquet"
        if path.exists():
            mine = set(read_table(path).column("image_id").to_pylist())
            ids = mine if ids is None else ids & mine
    if not ids:
        raise ValueError(f"no predictions.parquet under {models_dir}: evaluate the models first")
    by_id = {p.stem: p for p in (Path(storage) / "images" / "raw").glob("*/*.jpg")}
    files = sorted(by_id[i] for i in ids if i in by_id)
    return sample_evenly(files, limit)


def summarise(results: list[dict]) -> dict:
    """Shares of images the warning fires for (any model), every model flags, and per model."""
    ok = [r for r in results if not r.get("error") and r.get("predictions")]
    out = {"n": len(ok), "errors": len(results) - len(ok)}
    if not ok:
        return out
    models = sorted({p["model"] for r in ok for p in r["predictions"]})
    out["warned_pct"] = 100.0 * sum(bool(r.get("ood_warning")) for r in ok) / len(ok)
    out["all_models_pct"] = 100.0 * sum(all(p.get("unlike_training") for p in r["predictions"]) for r in ok) / len(ok)
    out["per_model_pct"] = {m: 100.0 * sum(any(p.get("unlike_training") for p in r["predictions"] if p["model"] == m)
                                           for r in ok) / len(ok) for m in models}
    # What the warning would fire for if every model flagged in another space (ood.SPACES).
    spaces = sorted({s for r in ok for p in r["predictions"] for s in p.get("ood_by_space", {})})
    out["warned_pct_by_space"] = {s: 100.0 * sum(any(p.get("ood_by_space", {}).get(s, {}).get("flagged")
                                                     for p in r["predictions"]) for r in ok) / len(ok) for s in spaces}
    return out


def evaluation_shares(models_dir: Path) -> dict:
    from geo_assets.model.predict import discover_models

    out = {}
    for d in discover_models(models_dir):
        path = d / "evaluation.json"
        if path.exists():
            e = json.loads(path.read_text())
            out[f"{e['blur']} {e['geocell']}"] = {"test_flagged_pct": (e.get("ood") or {}).get("flagged_pct"),
                                                  "n": e.get("n"), "calibration": e.get("calibration")}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geo_assets.model.ood_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", required=True, type=Path, help="models folder (GEO_ASSETS_MODELS)")
    parser.add_argument("--real", type=Path, nargs="?", default=None, const=real_data_dir(),
                        help="folder whose sub-folders are real photo sets (no folder: GEO_ASSETS_REAL_DATA, "
                             "else ../shared/data/real)")
    parser.add_argument("--limit", type=int, default=0, help="photos per real set, evenly spaced (0: all)")
    parser.add_argument("--storage", type=Path, default=None, help="storage folder: also predict synthetic test images")
    parser.add_argument("--synthetic", type=int, default=60, help="synthetic test images to predict (0: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    args = parser.parse_args(argv)
    from geo_assets.model.predict import predict_images

    groups: dict[str, list[Path]] = {}
    if args.real is not None:
        groups.update({f"real/{k}": v for k, v in photo_sets(args.real, args.limit).items()})
    if args.storage is not None:
        groups["synthetic/test"] = synthetic_test_images(args.models, args.storage, args.synthetic)
    if not groups:
        parser.error("give --real and/or --storage")
    report: dict = {"models": str(args.models), "limit_per_real_set": args.limit, "sets": {},
                    "evaluation": evaluation_shares(args.models)}
    started = time.perf_counter()
    for name, paths in groups.items():
        done = [0]

        def progress(_entry, name=name, total=len(paths), done=done):
            done[0] += 1
            if done[0] % 25 == 0 or done[0] == total:
                print(f"  {name}: {done[0]}/{total} ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)

        results = predict_images(paths, models_dir=args.models, on_result=progress)
        report["sets"][name] = summarise(results)
        s = report["sets"][name]
        print(f"{name}: warning on {s.get('warned_pct', float('nan')):.1f}% of {s['n']} images "
              f"(every model: {s.get('all_models_pct', float('nan')):.1f}%; per model: "
              + ", ".join(f"{m} {v:.1f}%" for m, v in s.get("per_model_pct", {}).items()) + ")")
    real = [s for k, s in report["sets"].items() if k.startswith("real/") and s["n"]]
    if real:
        n = sum(s["n"] for s in real)
        report["real_all"] = {"n": n, "warned_pct": sum(s["warned_pct"] * s["n"] for s in real) / n}
        print(f"all real photos: warning on {report['real_all']['warned_pct']:.1f}% of {n} (target >= 95%)")
    for model, e in report["evaluation"].items():
        if e["test_flagged_pct"] is not None:
            print(f"evaluation.json {model}: {e['test_flagged_pct']:.1f}% of {e['n']} test images flagged (target <= 5%)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
