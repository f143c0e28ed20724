"""Throughput of the tile stages with 1 and with 2 runs at once, on this machine.

`python -m geo_assets.bench.concurrency [--images 12] [--repeats 3] [--out FILE.json]`

Two long-lived worker processes (as the run queue's run workers would be) load the
models once (a 2-image warm-up tile), then take turns: each trial materializes every
tile asset of one tile into a fresh storage folder, so every image is really pulled,
OCRed, blurred, captioned and embedded. A trial is either one worker alone (1 run at
once) or both together on different tiles (2 at once); trials alternate 1, 2, 2, 1, ...
so the machine's background load falls on both. Throughput = images / wall seconds of
the trial; the ratio (2 at once / 1 at once) is reported per pair with its spread.
Writes JSON and prints a table; per-stage seconds per image (from the event log) feed the
projection in PERFORMANCE.md ("Past one machine").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT = "@@RESULT "  # worker replies: one line, so library prints on stdout cannot be mistaken for one


def _worker() -> int:
    import dagster as dg

    from geo_assets.run import execution
    from geo_assets.defs.resources import build_resources
    from geo_assets.run.stats import step_seconds
    from geo_assets.config.settings import GeoSettings

    instance = dg.DagsterInstance.ephemeral()
    for line in sys.stdin:
        cmd = json.loads(line)
        settings = GeoSettings.from_env().with_storage(cmd["storage"], Path(cmd["storage"]) / "models")
        started = time.perf_counter()
        result = execution.materialize_tile(instance, build_resources(settings), cmd["tile"],
                                            images_per_tile=cmd["images"])
        seconds = time.perf_counter() - started
        reply = {"ok": result.success, "seconds": seconds, "steps": step_seconds(instance, result.run_id)}
        print(RESULT + json.dumps(reply), flush=True)
    return 0


class Worker:
    def __init__(self, log: Path):
        self.log = open(log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "geo_assets.bench.concurrency", "--worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)

    def send(self, storage: Path, tile: str, images: int) -> None:
        self.proc.stdin.write(json.dumps({"storage": str(storage), "tile": tile, "images": images}) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        raise RuntimeError(f"bench worker exited ({self.proc.wait()}); see {self.log.name}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.log.close()


def _trial(workers: list[Worker], tiles: list[str], images: int, work: Path, n: int) -> dict:
    started = time.perf_counter()
    for i, (w, tile) in enumerate(zip(workers, tiles)):
        w.send(work / f"trial{n}-{i}", tile, images)
    replies = [w.receive() for w in workers]
    wall = time.perf_counter() - started
    if not all(r["ok"] for r in replies):
        raise RuntimeError(f"a tile run failed in trial {n}")
    return {"runs": len(workers), "tiles": tiles, "wall_s": wall, "images": images * len(workers),
            "images_per_s": images * len(workers) / wall, "steps": [r["steps"] for r in replies]}


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def project(per_image_s: float, images: int, parallel_runs: int, speedup: float) -> float:
    """Wall hours for `images` with `parallel_runs` tile runs whose combined throughput is
    `speedup` x one run's (speedup = parallel_runs when runs do not contend)."""
    del parallel_runs  # kept for the caller's table: the speedup already says what they give
    return images * per_image_s / speedup / 3600


def run(images: int, repeats: int, out: Path | None, workdir: Path | None = None) -> dict:
    from geo_assets.defs.partitions import tile_keys

    tiles = tile_keys()[:2]
    work = Path(workdir or tempfile.mkdtemp(prefix="geo_assets_concurrency_"))
    workers = [Worker(work / f"worker{i}.log") for i in range(2)]
    trials, n = [], 0
    try:
        # Warm-up: every model loaded in both workers before anything is timed.
        for w, t in zip(workers, tiles):
            w.send(work / f"warmup-{t}", t, 2)
        for w in workers:
            w.receive()
        for r in range(repeats):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            for c in order:
                ws = workers[:c] if c == 2 else [workers[r % 2]]
                ts = tiles[:c] if c == 2 else [tiles[r % 2]]
                trials.append({**_trial(ws, ts, images, work, n), "repeat": r})
                n += 1
    finally:
        for w in workers:
            w.close()
    one = [t for t in trials if t["runs"] == 1]
    two = [t for t in trials if t["runs"] == 2]
    ratios = [b["images_per_s"] / a["images_per_s"] for a, b in
              zip(sorted(one, key=lambda t: t["repeat"]), sorted(two, key=lambda t: t["repeat"]))]
    stage: dict[str, list[float]] = {}
    for t in one:
        for name, s in t["steps"][0].items():
            stage.setdefault(name, []).append(s / images)
    summary = {
        "images_per_run": images, "repeats": repeats, "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "one_run_images_per_s": _spread([t["images_per_s"] for t in one]),
        "two_runs_images_per_s": _spread([t["images_per_s"] for t in two]),
        "ratio_two_over_one": _spread(ratios),
        "stage_seconds_per_image_one_run": {k: statistics.median(v) for k, v in sorted(stage.items())},
        "trials": trials,
    }
    if out:
        Path(out).write_text(json.dumps(summary, indent=2))
    print(table(summary))
    return summary


def table(s: dict) -> str:
    def row(name, d, fmt="{:.3f}"):
        return f"| {name} | {fmt.format(d['median'])} | {fmt.format(d['min'])} - {fmt.format(d['max'])} | {d['n']} |"

    lines = ["| runs at once | images/s (median) | range | trials |", "| --- | --- | --- | --- |",
             row("1", s["one_run_images_per_s"]), row("2", s["two_runs_images_per_s"]),
             row("ratio 2/1", s["ratio_two_over_one"], "{:.2f}"), "",
             "| stage (1 run) | s/image |", "| --- | --- |"]
    lines += [f"| {k} | {v:.3f} |" for k, v in s["stage_seconds_per_image_one_run"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geo_assets.bench.concurrency", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12, help="images per tile run")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of (1 run, 2 runs) trials")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker()
    run(args.images, args.repeats, args.out, args.workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
