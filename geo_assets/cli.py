"""`geo-assets`: run the whole graph, serve the synthetic API, predict, manage geocell sizes, vary the text assumption."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _cmd_run(args) -> int:
    from geo_assets.defs.partitions import tile_keys
    from geo_assets.run.instance import get_instance
    from geo_assets.config.settings import GeoSettings

    if args.images_per_tile is not None:  # the code server and run workers read it from the environment
        os.environ["GEO_ASSETS_IMAGES_PER_TILE"] = str(args.images_per_tile)
    settings = GeoSettings.from_env()
    instance = get_instance()
    tiles = tile_keys(settings)
    if args.tiles:
        tiles = tiles[: args.tiles]
    mode = "in this process" if args.in_process else "as one backfill run by the Dagster daemon"
    print(f"main job {mode}: {len(tiles)} tiles of {settings.images_per_tile} images"
          + ("" if args.skip_models else ", then every model partition and the report")
          + f"; Dagster's event log is in the instance ({instance.root_directory}) and the UI")
    try:
        steps, failed = (_run_in_process if args.in_process else _run_backfill)(args, instance, tiles)
    except ValueError as exc:  # a refused geocell list
        return _fail(str(exc))
    except (RuntimeError, TimeoutError) as exc:  # the daemon would not start, or the backfill stalled
        return _fail(str(exc), 1)
    from geo_assets.run.stats import stage_table, stage_totals

    print(f"done: {len(steps)} runs, {len(failed)} failed")
    print("\ntime per asset (all runs; computed = images, captions or rows this run actually computed):\n")
    print(stage_table(stage_totals(steps)) + "\n")
    report_md = settings.storage_dir / "reports" / "privacy_report.md"
    if report_md.exists() and not args.skip_models:
        print(report_md.read_text())
    if failed:
        print("failed: " + ", ".join(failed) + "; open the run in the UI for its event log", file=sys.stderr)
        return 1
    return 0


def _run_in_process(args, instance, tiles) -> tuple[list, list[str]]:
    from geo_assets.run.in_process import run_in_process

    overrides = {"max_epochs": args.max_epochs} if args.max_epochs else None
    report = run_in_process(instance, tiles=tiles, train_overrides=overrides, skip_models=args.skip_models)
    print(f"{len(report.steps)} runs in {report.seconds:.0f}s")
    return ([(s.steps, s.counts) for s in report.steps],
            [f"{s.name} (run {s.run_id})" for s in report.steps if not s.ok])


def _run_backfill(args, instance, tiles) -> tuple[list, list[str]]:
    from geo_assets.run import backfill, execution
    from geo_assets.defs.resources import build_resources
    from geo_assets.run.stats import counts_from_log, step_seconds

    if args.max_epochs:
        os.environ["GEO_ASSETS_MAX_EPOCHS"] = str(args.max_epochs)
    if not args.skip_models:
        execution.sync_geocells(instance, build_resources())  # the model partitions exist before planning
    backfill_id = backfill.submit_graph_backfill(instance, execution.load_definitions(), tiles,
                                                 models=not args.skip_models)
    print(f"backfill {backfill_id} submitted (the UI's Backfills page shows it per partition)")
    with backfill.daemon_for(instance) as daemon:
        if daemon is None:
            print("a Dagster daemon is already running on this instance: it runs the backfill")
        outcome = backfill.follow(instance, backfill_id, tiles=len(tiles), daemon=daemon)
    print(f"backfill {backfill_id}: {outcome.status} in {outcome.seconds:.0f}s")
    steps = [(step_seconds(instance, rid), counts_from_log(instance, rid)) for rid in outcome.runs]
    failed = [f"{', '.join(assets)} [{part}] (run {rid})" for rid, (status, part, assets) in outcome.runs.items()
              if status not in ("SUCCESS", "RETRIED")]
    if not outcome.ok and not failed:
        failed = [f"backfill {backfill_id} ended {outcome.status}"]
    return steps, failed


def _cmd_serve(args) -> int:
    from geo_assets.synthetic.server import main as serve_main

    argv = ["--port", str(args.port), "--seed", str(args.seed)]
    if args.token_env:
        argv += ["--token-env", args.token_env]
    return serve_main(argv) or 0


def _cmd_geocell(args) -> int:
    from geo_assets.run import execution
    from geo_assets.defs.resources import build_resources
    from geo_assets.config.geocell_sizes import add_geocell, read_geocells, remove_geocell
    from geo_assets.run.instance import get_instance
    from geo_assets.config.settings import GeoSettings

    storage = GeoSettings.from_env().storage_dir
    if args.action == "list":
        instance = get_instance()
        try:
            print("configured:", ", ".join(read_geocells(storage)))
        except ValueError as exc:  # a size past the cap (or garbled) in geocells.txt: say which line
            print(f"configured: refused: {exc}")
        from geo_assets.defs.sensors import refused_geocell_keys

        existing = execution.existing_geocells(instance)
        refused = set(refused_geocell_keys(existing))
        print("partitions:", ", ".join(k for k in existing if k not in refused) or "(none)")
        for key in sorted(refused):
            print(f"refused partition {key[:60]!r}: not a geocell size; never trained, and removed by the geocell "
                  "sensor (`geo-assets geocell add` or `dagster dev` applies it)")
        return 0
    if args.size is None:
        print(f"geocell {args.action} needs a SIZE in degrees, e.g. 0.2", file=sys.stderr)
        return 2
    try:
        if args.action == "add":
            sizes, changed = add_geocell(storage, args.size)
        else:
            sizes, changed = remove_geocell(storage, args.size)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"configured geocell sizes: {', '.join(sizes)}" + ("" if changed else " (unchanged)"))
    if args.no_run:
        print("not applied now: the geocell sensor adds or removes the partition and trains it under `dagster dev`")
        return 0
    # The same path as the daemon: evaluate the geocell sensor, apply its partition
    # changes, and run what it requests (here, in this process).
    instance = get_instance()
    resources = build_resources()
    before = set(execution.existing_geocells(instance))
    try:
        requests = execution.sync_geocells(instance, resources)
    except ValueError as exc:
        return _fail(str(exc))
    after = set(execution.existing_geocells(instance))
    for g in sorted(after - before, key=float):
        print(f"added partition {g}")
    for g in sorted(before - after, key=float):
        print(f"removed partition {g} (artifacts under models/*/{g} are kept)")
    failed = 0
    for request, result in zip(requests, execution.run_requested(instance, resources, requests)):
        print(f"  train {request.partition_key}: {'ok' if result.success else 'FAILED'} (run {result.run_id})")
        failed += not result.success
    return 1 if failed else 0


def _cmd_predict(args) -> int:
    from geo_assets.model.predict import PredictionError, predict_images

    try:
        results = predict_images([Path(p) for p in args.images], models_dir=args.models_dir)
    except PredictionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(results, indent=2))
        return 0 if all(not r.get("error") for r in results) else 1
    for r in results:
        print(f"{r['image']}")
        if r.get("error"):
            print(f"  error: {r['error']}")
            continue
        truth = r.get("truth")
        if truth:
            print(f"  true location: {truth['lat']:.5f}, {truth['lon']:.5f} ({truth['source']})")
        if r.get("warning"):
            print(f"  warning: {r['warning']}")
        if r.get("ood_warning"):
            print(f"  WARNING: {r['ood_warning']}")
        for p in r["predictions"]:
            dist = f", {p['distance_km']:.2f} km off" if p.get("distance_km") is not None else ""
            if p.get("unlike_training"):
                # No number that looks exact: the guess is shown only as what the model said.
                print(f"  {p['model']:<16} {p['lat']:.5f}, {p['lon']:.5f}  (not meaningful: unlike the training images, "
                      f"score {p['ood_score']:.3f} > {p['ood_threshold']:.3f})  privacy: not meaningful{dist}")
            else:
                print(f"  {p['model']:<16} {p['lat']:.5f}, {p['lon']:.5f}  conf {p['confidence']:.3f}  "
                      f"privacy {p['privacy_score']:.3f}{dist}")
    return 0 if all(not r.get("error") for r in results) else 1


def _cmd_query(args) -> int:
    from geo_assets.config.settings import GeoSettings
    from geo_assets.store.catalog import QueryRefused, query_connection, refuse_writes
    from geo_assets.store.layout import StorageLayout

    import duckdb

    s = GeoSettings.from_env()
    try:
        refuse_writes(args.sql)  # before anything is opened: a refused statement never runs
        with query_connection(StorageLayout(s.storage_dir, s.models_dir)) as con:
            tables = [r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
            try:
                print(con.sql(args.sql))
            except duckdb.CatalogException as exc:
                hint = f" (tables: {', '.join(tables)})" if tables else " (no tables yet: run `geo-assets run` first)"
                return _fail(f"query failed: {_first_line(exc)}{hint}")
    except QueryRefused as exc:
        return _fail(f"query refused: {exc}")
    except duckdb.PermissionException as exc:
        # "Permission Error: Cannot access file "x" - file system operations are disabled by configuration"
        what = _first_line(exc).removeprefix("Permission Error: ").split(" - ")[0]
        return _fail(f"query refused: {what[:1].lower()}{what[1:]}: queries read only the project's tables")
    except (duckdb.Error, OSError) as exc:
        return _fail(f"query failed: {_first_line(exc)}")
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _cmd_sensitivity(args) -> int:
    from geo_assets.run.sensitivity import run_command

    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geo-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialize the whole asset graph (the main job)")
    run.add_argument("--images-per-tile", type=int, default=None, help="data-set size (default GEO_ASSETS_IMAGES_PER_TILE or 90)")
    run.add_argument("--tiles", type=int, default=0, help="only the first N tiles (0: all)")
    run.add_argument("--max-epochs", type=int, default=0, help="override training epochs")
    run.add_argument("--skip-models", action="store_true", help="stop after the tile assets")
    run.add_argument("--in-process", action="store_true",
                     help="run every step in this process, one Dagster run after another (tests, debugging); "
                          "default: one backfill launched by the Dagster daemon, runs in their own processes")
    run.set_defaults(func=_cmd_run)

    serve = sub.add_parser("serve", help="serve the synthetic UK over the Mapillary API contract on 127.0.0.1")
    serve.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    serve.add_argument("--seed", type=int, default=0, help="synthetic world seed (default 0, the main job's)")
    serve.add_argument("--token-env", default=None, help="require the token held in this environment variable")
    serve.set_defaults(func=_cmd_serve)

    geocell = sub.add_parser("geocell", help="add, remove or list geocell sizes (model partitions)")
    geocell.add_argument("action", choices=["add", "remove", "list"])
    geocell.add_argument("size", nargs="?", help="size in degrees, e.g. 0.2")
    geocell.add_argument("--no-run", action="store_true", help="only edit storage/geocells.txt; the geocell sensor applies it (partition and training) under `dagster dev`")
    geocell.set_defaults(func=_cmd_geocell)

    predict = sub.add_parser("predict", help="ask every trained model where images are")
    predict.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    predict.add_argument("--models-dir", default=None, help="trained models (default GEO_ASSETS_MODELS or models/)")
    predict.add_argument("--json", action="store_true", help="print the results as JSON")
    predict.set_defaults(func=_cmd_predict)

    query = sub.add_parser("query", help="run SQL over the tables (DuckDB)")
    query.add_argument("sql", help="one read-only query over the tables, e.g. \"SELECT count(*) FROM raw_images\"")
    query.set_defaults(func=_cmd_query)

    sensitivity = sub.add_parser("sensitivity", help="blur effect at several place-text shares of the synthetic world "
                                                     "(small worlds of their own, ~10-15 min), then the report")
    from geo_assets.run.sensitivity import add_arguments as _sensitivity_arguments

    _sensitivity_arguments(sensitivity)
    sensitivity.set_defaults(func=_cmd_sensitivity)

    # Listed for --help only: main() hands everything after "bench" to the bench's own
    # parser, because an argparse.REMAINDER positional rejects a leading option.
    bench = sub.add_parser("bench", help="stage throughput and incremental-cost benchmark (options: geo-assets bench --help)",
                           add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every `with` block (the daemon, the code server, the
    temporary workspace) cleans up on the way out instead of the process just dying."""


def _on_signal(signum, frame) -> None:
    import signal

    # One interruption is enough: a second signal during the cleanup would cut it short and
    # leave the children behind (each is stopped within its bounded wait; SIGKILL still works).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise Terminated(signal.Signals(signum).name) if signum == signal.SIGTERM else KeyboardInterrupt("SIGINT")


def _install_signal_handlers() -> dict:
    """Our handlers for SIGTERM and SIGINT; the previous ones, to restore (main() called in-process)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():  # handlers live in the main thread only
        return {}
    return {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":
        from geo_assets.bench import main as bench_main

        return bench_main(argv[1:]) or 0
    args = build_parser().parse_args(argv)
    previous = _install_signal_handlers()
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        done = ("; stopped its daemon and code server and removed its temporary workspace (the backfill stays "
                "in the instance: the UI shows it)") if args.command == "run" else ""
        print(f"geo-assets {args.command}: interrupted by {name}{done}", file=sys.stderr)
        return 143 if name == "SIGTERM" else 130
    finally:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
