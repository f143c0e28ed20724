"""The local run launcher: runs in warm worker processes that keep their models loaded.

Dagster's default launcher starts a fresh process for every run, which then imports torch,
loads the code location and loads every model again: about 20-30 s per tile run on 2 cores,
paid 25 times by the main job. `WarmRunLauncher` hands each run to a worker process
(`run/warm_worker.py`) that executes runs one after another and keeps what it loaded.
Every run is still a Dagster run of its own partition, launched by the run queue (which
still decides how many run at once and keeps two runs of one partition apart), with its
own event log, data versions and status; only the process is reused.

A worker retires after `max_runs` runs or once it holds `max_rss_mib` MiB (3,500 by default), and a fresh one
takes the next run. Run monitoring asks `check_run_worker_health`: a run whose worker died
(killed, out of memory) is failed, and run_retries re-runs it. Set in storage/dagster.yaml;
the Kubernetes deployment keeps `K8sRunLauncher` (a pod per run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from dagster._core.launcher.base import CheckRunHealthResult, LaunchRunContext, RunLauncher, WorkerStatus
from dagster._serdes import ConfigurableClass, ConfigurableClassData

from geo_assets.config.settings import PROJECT_ROOT
from geo_assets.run.warm_worker import DEFAULT_MAX_RSS_MIB, DEFAULT_MAX_RUNS, MAX_RSS_ENV, MAX_RUNS_ENV

WORKER_PID_TAG = "geo_assets/run_worker_pid"
READY_TIMEOUT_S = 120.0


@dataclass
class _Worker:
    proc: subprocess.Popen
    ready: threading.Event = field(default_factory=threading.Event)
    run_id: str | None = None

    def alive(self) -> bool:
        return self.proc.poll() is None


def _watch_ready(worker: _Worker, fd: int) -> None:
    """Set `worker.ready` at each line the worker writes; ends when the worker exits."""
    with os.fdopen(fd, "r") as stream:
        for line in stream:
            if line.strip() == "ready":
                worker.ready.set()


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches each run in a warm worker process (see the module docstring)."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, max_runs: int = DEFAULT_MAX_RUNS,
                 max_rss_mib: int = DEFAULT_MAX_RSS_MIB):
        if max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, got {max_runs}")
        if max_rss_mib < 256:
            raise ValueError(f"max_rss_mib must be at least 256, got {max_rss_mib}")
        self._inst_data = inst_data
        self.max_runs = int(max_runs)
        self.max_rss_mib = int(max_rss_mib)
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        from dagster import Field, IntSource

        return {"max_runs": Field(IntSource, is_required=False, default_value=DEFAULT_MAX_RUNS,
                                  description="Runs one worker executes before a fresh one takes over."),
                "max_rss_mib": Field(IntSource, is_required=False, default_value=DEFAULT_MAX_RSS_MIB,
                                     description="A worker holding this much resident memory after a run retires.")}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> "WarmRunLauncher":
        return cls(inst_data=inst_data, **config_value)

    # -- workers

    def _spawn(self) -> _Worker:
        read_fd, write_fd = os.pipe()
        env = {**os.environ, MAX_RUNS_ENV: str(self.max_runs), MAX_RSS_ENV: str(self.max_rss_mib)}
        if self.has_instance:
            env["DAGSTER_HOME"] = self._instance.root_directory
        proc = subprocess.Popen([sys.executable, "-m", "geo_assets.run.warm_worker", str(write_fd)],
                                stdin=subprocess.PIPE, text=True, cwd=str(PROJECT_ROOT), env=env,
                                pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        worker = _Worker(proc)
        threading.Thread(target=_watch_ready, args=(worker, read_fd), daemon=True,
                         name=f"warm-worker-{proc.pid}").start()
        self._workers.append(worker)
        return worker

    def _finishing(self, worker: _Worker) -> bool:
        """Whether `worker`'s run has ended and the worker is only tidying up (the queue may
        launch the next run the moment the last one is marked finished)."""
        if worker.run_id is None or not self.has_instance:
            return False
        run = self._instance.get_run_by_id(worker.run_id)
        return run is None or run.is_finished

    def _ready_worker(self) -> _Worker:
        self._workers = [w for w in self._workers if w.alive()]
        for worker in self._workers:
            if worker.ready.is_set():
                return worker
        for worker in self._workers:
            # Wait for it rather than start a cold one; it either says ready or retires (exits).
            deadline = time.monotonic() + READY_TIMEOUT_S
            while self._finishing(worker) and worker.alive() and time.monotonic() < deadline:
                if worker.ready.wait(0.2):
                    return worker
        worker = self._spawn()
        if not worker.ready.wait(READY_TIMEOUT_S):
            worker.proc.kill()
            raise RuntimeError(f"the warm run worker (pid {worker.proc.pid}) did not start within {READY_TIMEOUT_S:.0f}s")
        return worker

    # -- RunLauncher

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        with self._lock:
            worker = self._ready_worker()
            worker.ready.clear()
            worker.run_id = run.run_id
            self._instance.add_run_tags(run.run_id, {WORKER_PID_TAG: str(worker.proc.pid)})
            worker.proc.stdin.write(run.run_id + "\n")
            worker.proc.stdin.flush()

    def _worker_of(self, run_id: str) -> _Worker | None:
        return next((w for w in self._workers if w.run_id == run_id and w.alive()), None)

    def terminate(self, run_id: str) -> bool:
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        self._instance.report_run_canceling(run)
        with self._lock:
            worker = self._worker_of(run_id)
        pid = worker.proc.pid if worker is not None else _tagged_pid(run)
        if pid is None or not _pid_alive(pid):
            return False
        # The run is executing in the worker's main thread: only the process can be stopped.
        # Its warm models go with it; the next run starts a fresh worker.
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return False
        if worker is not None:
            try:
                worker.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(pid, signal.SIGKILL)
        self._instance.report_run_canceled(run, message=f"run worker {pid} stopped")
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        pid = _tagged_pid(run)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has no worker pid tag")
        if _pid_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker {pid} is not running", run_worker_id=str(pid))

    def dispose(self) -> None:
        """Close the workers' stdin: each exits after its current run."""
        with self._lock:
            for worker in self._workers:
                if worker.alive() and worker.proc.stdin is not None:
                    try:
                        worker.proc.stdin.close()
                    except OSError:
                        pass


def _tagged_pid(run) -> int | None:
    value = (run.tags or {}).get(WORKER_PID_TAG, "")
    return int(value) if value.isdigit() else None


def _pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process that is a warm worker (not a zombie, not a reused pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z" and b"geo_assets.run.warm_worker" in cmdline
