"""The warm run launcher (storage/dagster.yaml's run launcher): real worker processes, real
runs launched by a real daemon through `geo-assets run`, run-worker health from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest
import yaml

from geo_assets.config.settings import PROJECT_ROOT
from geo_assets.run.warm_launcher import WORKER_PID_TAG, WarmRunLauncher
from geo_assets.run.warm_worker import should_retire


def test_retire_after_max_runs_or_at_the_memory_limit():
    assert not should_retire(1, 900.0, max_runs=100, max_rss_mib=1700)
    assert should_retire(100, 900.0, max_runs=100, max_rss_mib=1700)
    assert should_retire(1, 1700.0, max_runs=100, max_rss_mib=1700)


def test_absurd_limits_are_refused():
    with pytest.raises(ValueError, match="max_runs"):
        WarmRunLauncher(max_runs=0)
    with pytest.raises(ValueError, match="max_rss_mib"):
        WarmRunLauncher(max_rss_mib=10)


def test_worker_without_its_ready_pipe_says_how_to_call_it():
    done = subprocess.run([sys.executable, "-m", "geo_assets.run.warm_worker"], capture_output=True, text=True,
                          cwd=str(PROJECT_ROOT), timeout=60)
    assert done.returncode == 2 and "READY_FD" in done.stderr


def test_health_follows_the_worker_process(tmp_path):
    from dagster._core.launcher.base import WorkerStatus
    from dagster._core.storage.dagster_run import DagsterRun

    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        launcher = WarmRunLauncher()
        launcher.register_instance(instance)
        worker = launcher._ready_worker()  # a real worker process, waiting on its stdin
        run = DagsterRun(job_name="j", run_id="r1", tags={WORKER_PID_TAG: str(worker.proc.pid)})
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        assert launcher.check_run_worker_health(DagsterRun(job_name="j", run_id="r2")).status == WorkerStatus.UNKNOWN
        os.killpg(worker.proc.pid, signal.SIGKILL)  # what the OOM killer would do
        worker.proc.wait(timeout=30)
        assert launcher.check_run_worker_health(run).status == WorkerStatus.FAILED
        # A pid that is alive but not a worker (reused by another program) is not the run's worker.
        other = DagsterRun(job_name="j", run_id="r3", tags={WORKER_PID_TAG: str(os.getpid())})
        assert launcher.check_run_worker_health(other).status == WorkerStatus.FAILED


@pytest.mark.slow
def test_main_job_runs_every_tile_in_one_warm_worker(tmp_path):
    """Three tile runs through the real daemon and the template instance: each its own run
    (own partition, own event log), all executed by one worker process that loaded the
    models once."""
    from dagster._core.storage.dagster_run import DagsterRunStatus

    home = tmp_path / "storage"
    home.mkdir()
    config = yaml.safe_load((PROJECT_ROOT / "storage" / "dagster.yaml").read_text())
    assert config["run_launcher"]["class"] == "WarmRunLauncher"
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE": str(home),
           "GEO_ASSETS_MODELS": str(tmp_path / "models"), "GEO_ASSETS_IMAGES_PER_TILE": "6",
           "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "geo_assets.cli", "run", "--tiles", "3", "--skip-models"],
                          cwd=str(PROJECT_ROOT), env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 3 and {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
        assert len({r.tags.get("dagster/partition") for r in runs}) == 3
        pids = {r.tags.get(WORKER_PID_TAG) for r in runs}
        assert len(pids) == 1, [r.tags for r in runs]
        pid = pids.pop()
        assert pid.isdigit()
        # Dagster's own record of the process that executed each run says the same.
        started = set()
        for r in runs:
            for entry in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                message = entry.dagster_event.message if entry.dagster_event else ""
                if "Started process for run (pid:" in (message or ""):
                    started.add(message)
        assert started == {f"Started process for run (pid: {pid})."}, started
    # The worker exits with the daemon (its stdin closes): nothing is left running.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _workers_of(home):
        time.sleep(1)
    assert not _workers_of(home)


def _workers_of(home) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            continue
        if b"geo_assets.run.warm_worker" in cmd and f"DAGSTER_HOME={home}".encode() in environ:
            found.append(int(pid))
    return found
