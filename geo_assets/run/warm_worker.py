"""A run worker that stays: `python -m geo_assets.run.warm_worker READY_FD`.

It executes the runs whose ids arrive on stdin one after another, in this process, the way
`dagster api execute_run` executes one, so the models each run loads (OCR engines, the
captioner, the encoders: cached per process) are loaded once for many runs. After each run
it returns freed memory to the OS and restarts the peak-memory counter, so each run's
recorded peak (``process_peak_rss_mib``) is its own, and writes ``ready`` to the file
descriptor READY_FD, unless it has grown past its memory
limit or run count, in which case it exits and the launcher starts a fresh one
(``run/warm_launcher.py``). When the daemon that started it is gone, it exits at once.
"""

from __future__ import annotations

import os
import sys

MAX_RSS_ENV = "GEO_ASSETS_WORKER_MAX_RSS_MIB"
MAX_RUNS_ENV = "GEO_ASSETS_WORKER_MAX_RUNS"
DEFAULT_MAX_RUNS = 100
DEFAULT_MAX_RSS_MIB = 3500


def release_memory() -> None:
    """Give what the last run freed back to the OS (glibc keeps freed heap pages otherwise, and
    the worker's resident size would climb run after run), then restart the peak counter
    (VmHWM) so the next run's recorded peak is its own."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def should_retire(runs_done: int, rss: float, max_runs: int, max_rss_mib: float) -> bool:
    """Whether a worker that has executed `runs_done` runs and holds `rss` MiB stops here."""
    return runs_done >= max_runs or rss >= max_rss_mib


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m geo_assets.run.warm_worker READY_FD", file=sys.stderr)
        return 2
    ready = os.fdopen(int(argv[0]), "w", buffering=1)
    max_runs = int(os.environ.get(MAX_RUNS_ENV) or DEFAULT_MAX_RUNS)
    max_rss = float(os.environ.get(MAX_RSS_ENV) or DEFAULT_MAX_RSS_MIB)

    from dagster import DagsterInstance

    from geo_assets.runtime.memory import rss_mib
    from dagster._cli.api import _execute_run_command_body

    _exit_with_parent()
    runs_done = 0
    with DagsterInstance.get() as instance:
        ready.write("ready\n")
        for line in sys.stdin:
            run_id = line.strip()
            if not run_id:
                continue
            try:
                # Failures are in the run's event log (core_execute_run reports them); the
                # worker goes on with the next run.
                _execute_run_command_body(run_id, instance, lambda event: None, set_exit_code_on_failure=False)
            except Exception as exc:  # the run could not even be loaded: logged, the run marked failed
                print(f"warm worker {os.getpid()}: run {run_id} raised {exc!r}", file=sys.stderr, flush=True)
                _mark_failed(instance, run_id, exc)
            runs_done += 1
            release_memory()
            if should_retire(runs_done, rss_mib(), max_runs, max_rss):
                return 0
            ready.write("ready\n")
    return 0


def _exit_with_parent(poll_s: float = 0.5) -> None:
    """Exit as soon as the daemon that started this worker is gone, even mid-run, as Dagster's
    own run processes do when their code server goes: `geo-assets run` stopped (Ctrl-C, a
    signal) leaves nothing running. A run cut short stays STARTED until run monitoring finds
    its worker dead and fails it (and run_retries re-runs it)."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="warm-worker-parent-watch", daemon=True).start()


def _mark_failed(instance, run_id: str, exc: Exception) -> None:
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        instance.report_run_failed(run, f"the warm run worker could not execute this run: {exc!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
