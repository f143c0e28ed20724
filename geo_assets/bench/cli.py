"""`geo-assets bench`: options, the run, the printed report and the JSON file."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

from geo_assets.bench.incremental import (
    DEFAULT_NEW_FRACTION, DEFAULT_SIZES, DEFAULT_TILES, Echo, bench_incremental, growth, new_images_for, warm_up,
)
from geo_assets.bench.meter import loadavg, machine_info, now
from geo_assets.bench.stages import (
    DEFAULT_EASYOCR_IMAGES, DEFAULT_EPOCHS, DEFAULT_IMAGES, DEFAULT_TRAIN_ROWS, bench_stages, pick_tiles,
)
from geo_assets.bench.tables import (
    blur_quality_table, encoder_table, format_table, growth_table, incremental_table, per_image_table, stage_table,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="geo-assets bench", description="Stage throughput, incremental cost and scaling.")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES, help=f"images for the stage throughput (default {DEFAULT_IMAGES})")
    p.add_argument("--easyocr-images", type=int, default=DEFAULT_EASYOCR_IMAGES,
                   help=f"EasyOCR subset (default {DEFAULT_EASYOCR_IMAGES}; about 1 s or more per image on CPU)")
    p.add_argument("--train-rows", type=int, default=DEFAULT_TRAIN_ROWS,
                   help=f"rows per training epoch: the fused vectors repeated to this many (default {DEFAULT_TRAIN_ROWS})")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs timed per model (default {DEFAULT_EPOCHS})")
    p.add_argument("--tiles", type=int, default=DEFAULT_TILES, help=f"tiles K for the incremental runs (default {DEFAULT_TILES})")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help=f"images per tile for the incremental runs, comma-separated (default {','.join(map(str, DEFAULT_SIZES))})")
    p.add_argument("--new-fraction", type=float, default=DEFAULT_NEW_FRACTION,
                   help="new images added for run (c), as a fraction of images per tile (at least 1; default 0.05)")
    p.add_argument("--check-sample", type=int, default=None,
                   help="blurred_images check_sample (EasyOCR re-reads per run; default: the asset's default)")
    p.add_argument("--per-image", type=int, default=0,
                   help="images for the per-image cost of the tile stages, today's code against the previous path "
                        "(default 0: not run)")
    p.add_argument("--per-image-rounds", type=int, default=2, help="interleaved rounds of --per-image (default 2)")
    p.add_argument("--skip-stages", action="store_true", help="only the incremental and scaling part")
    p.add_argument("--skip-incremental", action="store_true", help="only the stage throughput part")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench-<timestamp>.json)")
    p.add_argument("--workdir", default=None, help="temp folder for storage and models (default: a new temp folder)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    return p


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--sizes must be integers separated by commas, got {text!r}") from exc
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes must be positive integers, got {text!r}")
    return sorted(set(sizes))


def default_out() -> Path:
    from geo_assets.config.settings import PROJECT_ROOT

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return PROJECT_ROOT / "benchmarks" / "results" / f"bench-{stamp}.json"


def run_bench(args: argparse.Namespace, echo: Echo = print) -> dict:
    started = time.perf_counter()
    sizes = parse_sizes(args.sizes)
    report: dict = {"started_at": now(), "machine": machine_info(), "settings": {
        "images": args.images, "easyocr_images": args.easyocr_images, "train_rows": args.train_rows,
        "epochs": args.epochs, "tiles": args.tiles, "sizes": sizes, "new_fraction": args.new_fraction,
        "check_sample": args.check_sample, "per_image": args.per_image, "per_image_rounds": args.per_image_rounds,
    }}
    m = report["machine"]
    echo(f"geo_assets bench: {m['cpu_count']} CPUs, torch threads {m['torch_threads']}, device {m['device']}, "
         f"load average {m['loadavg_start']}")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="geo_assets_bench_"))
    workdir.mkdir(parents=True, exist_ok=True)
    report["workdir"] = str(workdir)
    try:
        if not args.skip_stages:
            echo(f"\n1. stage throughput on {args.images} synthetic images")
            t0 = time.perf_counter()
            report["stage_throughput"] = bench_stages(workdir, images=args.images, easyocr_images=args.easyocr_images,
                                                      train_rows=args.train_rows, epochs=args.epochs, echo=echo)
            report["stage_throughput"]["seconds"] = round(time.perf_counter() - t0, 2)
            report["stage_throughput"]["loadavg_end"] = loadavg()
        if args.per_image:
            from geo_assets.bench.per_image import bench_per_image

            echo(f"\nper-image cost of the tile stages on {args.per_image} synthetic images, previous vs current path")
            t0 = time.perf_counter()
            report["per_image"] = bench_per_image(args.per_image, rounds=args.per_image_rounds,
                                                  easyocr_images=args.easyocr_images, echo=echo)
            report["per_image"]["seconds"] = round(time.perf_counter() - t0, 2)
            report["per_image"]["loadavg_end"] = loadavg()
        if not args.skip_incremental:
            echo(f"\n2-3. incremental cost through Dagster, {args.tiles} tile(s), sizes {sizes} images per tile")
            t0 = time.perf_counter()
            from geo_assets.defs.resources import synthetic_world

            warm = warm_up(echo)
            need = int(math.ceil((max(sizes) + new_images_for(max(sizes), args.new_fraction)) * 1.2)) + 2
            tiles = pick_tiles(synthetic_world(0), need=need, count=args.tiles)
            results = [bench_incremental(workdir, s, tiles, new_fraction=args.new_fraction,
                                         check_sample=args.check_sample, echo=echo) for s in sizes]
            report["incremental"] = {"tiles": tiles, "warm_up_seconds": round(warm, 2), "sizes": results,
                                     "growth": growth(results), "seconds": round(time.perf_counter() - t0, 2),
                                     "loadavg_end": loadavg()}
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    report["finished_at"] = now()
    report["seconds"] = round(time.perf_counter() - started, 2)
    report["machine"]["loadavg_end"] = loadavg()
    return report


def print_report(report: dict, echo: Echo = print) -> None:
    m = report["machine"]
    echo("\n" + "=" * 100)
    echo(f"geo_assets bench, {report['started_at']} .. {report['finished_at']} ({report['seconds']:.0f} s); "
         f"{m['cpu_count']} CPUs, torch threads {m['torch_threads']}, device {m['device']}; "
         f"load average {m['loadavg_start']} -> {m.get('loadavg_end')}")
    st = report.get("stage_throughput")
    if st:
        echo(f"\nStage throughput ({st['images']} synthetic images; models loaded once per process, load time "
             f"not in 'seconds'; peak MiB = peak RSS above the stage's start, a model load included where "
             f"the stage loads its model)\n")
        echo(stage_table(st["stages"]))
    per = report.get("per_image")
    if per:
        echo(f"\nPer-image cost of the tile stages ({per['images']} synthetic images, {per['rounds']} interleaved "
             f"rounds; medians; the ratio is the median of the per-round ratios)\n")
        echo(per_image_table(per))
        if per.get("encoders"):
            echo("\nEncoder throughput (same process, interleaved rounds; medians)\n")
            echo(encoder_table(per))
        echo("\nBlur quality on the same images (synthetic-world ground truth)\n")
        echo(blur_quality_table(per))
        echo(f"\nunblurred outputs unchanged: OCR words {per['same_ocr_words']}, generated captions "
             f"{per['same_unblurred_captions']}, max |fused difference| {per['max_abs_unblurred_fused_difference']:.2e}")
    inc = report.get("incremental")
    if inc:
        echo(f"\nIncremental cost (Dagster materializations of the tile assets, {len(inc['tiles'])} tile(s): "
             f"{', '.join(inc['tiles'])})\n")
        echo(incremental_table(inc["sizes"]))
        echo("")
        echo(format_table(["images/tile", "new in (c)", "b/a", "c/a", "d/a", "c/d", "(c)-(b) s per new image",
                           "(a) s per image"],
                          [[r["images_per_tile"], r["c_new"]["new_images"], r["ratios"]["b_over_a"], r["ratios"]["c_over_a"],
                            r["ratios"]["d_over_a"], r["ratios"]["c_over_d"],
                            r["marginal_seconds_per_new_image"] if r["marginal_seconds_per_new_image"] is not None else "n/a",
                            r["full_seconds_per_image"]] for r in inc["sizes"]]))
        if inc["growth"]:
            echo("\nGrowth between sizes (cost at the larger size / cost at the smaller)\n")
            echo(growth_table(inc["growth"]))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\..*")
    if argv and argv[0] == "--":  # `geo-assets bench -- --images 8`
        argv = argv[1:]
    if argv and argv[0] == "blur-real":  # the blur on real photos with word boxes
        from geo_assets.bench.blur_real import main as blur_real_main

        return blur_real_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        parse_sizes(args.sizes)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.per_image < 0 or args.per_image_rounds < 1:
        parser.error("--per-image must be >= 0 and --per-image-rounds >= 1")
    if args.images < 1 or args.tiles < 1 or args.epochs < 1 or args.train_rows < 1 or args.easyocr_images < 1:
        parser.error("--images, --tiles, --epochs, --train-rows and --easyocr-images must be >= 1")
    if args.skip_stages and args.skip_incremental and not args.per_image:
        parser.error("nothing to do: --skip-stages and --skip-incremental together, without --per-image")
    report = run_bench(args)
    out = Path(args.out) if args.out else default_out()
    out.parent.mkdir(parents=True, exist_ok=True)
    report["out"] = str(out)
    out.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
