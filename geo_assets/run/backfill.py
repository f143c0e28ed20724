"""`geo-assets run` (the default): the main job as one Dagster asset backfill, run by the daemon.

`submit_graph_backfill` asks the instance for one backfill over the whole graph:
every tile asset for the chosen tiles, every model partition downstream of them,
and the report. Dagster's backfill daemon launches each (asset, partition) run
as soon as its inputs exist; the run queue (storage/dagster.yaml, or the
deployment's dagster.yaml) decides how many run at once, keeps two runs of one
partition apart (a tag limit on `dagster/partition`), and the run launcher
starts each run in its own process (a pod on Kubernetes). The UI shows one
backfill with per-partition status.

`daemon_for` starts `dagster-daemon` for the duration of a command when none is
heartbeating on this instance, with the graph's own sensors and schedule off (so
they cannot launch runs the backfill already owns), and one code server that the
daemon and the runs it launches share; `follow` draws the progress bar.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.storage.dagster_run import DagsterRunStatus, RunsFilter

from geo_assets.definitions import MODEL_ASSET_NAMES, REPORT_ASSET_NAMES, TILE_ASSET_NAMES
from geo_assets.defs.sensors import AUTOMATION_ENV
from geo_assets.run.progress import ProgressBar
from geo_assets.config.settings import PROJECT_ROOT
from geo_assets.runtime.threads import ENV as THREADS_ENV
from geo_assets.runtime.threads import threads_for

BACKFILL_TAG = "dagster/backfill"
DAEMON_FRESH_S = 60.0
DONE = {BulkActionStatus.COMPLETED, BulkActionStatus.COMPLETED_SUCCESS, BulkActionStatus.COMPLETED_FAILED,
        BulkActionStatus.FAILED, BulkActionStatus.CANCELED}


def submit_graph_backfill(instance: dg.DagsterInstance, defs: dg.Definitions, tiles: list[str], *,
                          models: bool = True, run_config: dict | None = None, title: str = "geo-assets run") -> str:
    """One backfill: the tile assets for `tiles`, then (with `models`) every model partition
    and the report. Returns the backfill id."""
    names = list(TILE_ASSET_NAMES) + (list(MODEL_ASSET_NAMES) + list(REPORT_ASSET_NAMES) if models else [])
    backfill_id = uuid.uuid4().hex[:8]
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id,
        asset_graph=defs.resolve_asset_graph(),
        partition_names=list(tiles),
        asset_selection=[dg.AssetKey(n) for n in names],
        backfill_timestamp=time.time(),
        tags={"geo_assets/step": "main job"},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=title,
        description=f"{len(tiles)} tiles" + (", every model partition and the privacy report" if models else ""),
        run_config=run_config,
    )
    instance.add_backfill(backfill)
    return backfill_id


def daemon_running(instance: dg.DagsterInstance, fresh_s: float = DAEMON_FRESH_S) -> bool:
    """Whether a daemon heartbeated on this instance in the last `fresh_s` seconds."""
    beats = instance.get_daemon_heartbeats()
    now = time.time()
    return any(now - hb.timestamp < fresh_s for hb in beats.values())


def daemon_alive(instance: dg.DagsterInstance, wait_s: float = 45.0) -> bool:
    """Whether a daemon is heartbeating now. A recent heartbeat alone is not enough: a daemon
    that stopped seconds ago (the last `geo-assets run`) left one, and trusting it would leave
    the backfill with nobody to launch its runs. A live daemon beats every 30 s, so wait up to
    `wait_s` for a beat newer than this call."""
    if not daemon_running(instance):
        return False
    since = time.time()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if any(hb.timestamp > since for hb in instance.get_daemon_heartbeats().values()):
            return True
        time.sleep(1.0)
    return False


LOCATION_NAME = "geo_assets.definitions"
"""The code location's name, as workspace.yaml's `python_module` entry names it."""


CODE_SERVER_STOP_S = 5.0
"""Grace given to the code server after SIGTERM, then it is killed: it holds no state once the
daemon is gone (the runs it launched are processes of their own), and after a long main job it
may not exit on SIGTERM at all (PERFORMANCE.md, "Third pass")."""


def _stop(proc: subprocess.Popen, timeout_s: float = 30.0, log=None, name: str = "process") -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            if log is not None:
                log.write(f"geo-assets: the {name} did not exit within {timeout_s:.0f}s of SIGTERM; killed\n".encode())


@contextlib.contextmanager
def code_server(env: dict, log, *, start_timeout_s: float = 120.0):
    """One `dagster api grpc` code server for the block; yields a workspace file pointing at it.

    Why: a daemon given workspace.yaml's `python_module` entry starts its own code server and
    replaces it at every workspace reload (each minute), each new one loading the definitions
    again (~5 s of CPU on 2 cores, in the middle of the tile runs). A daemon pointed at a
    running server only asks it again."""
    from dagster._grpc.client import DagsterGrpcClient

    with tempfile.TemporaryDirectory(prefix="geo-assets-code-") as tmp:
        socket_path = str(Path(tmp) / "grpc.sock")
        cmd = [sys.executable, "-m", "dagster", "api", "grpc", "--module-name", LOCATION_NAME,
               "--working-directory", str(PROJECT_ROOT), "--location-name", LOCATION_NAME, "--socket", socket_path]
        proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            client = DagsterGrpcClient(socket=socket_path)
            deadline = time.monotonic() + start_timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the code server exited with {proc.returncode}; see {log.name}")
                try:
                    client.ping("geo-assets")
                    break
                except Exception:  # not listening yet
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the code server did not answer within {start_timeout_s:.0f}s; "
                                           f"see {log.name}") from None
                    time.sleep(0.5)
            workspace = Path(tmp) / "workspace.yaml"
            workspace.write_text(f"load_from:\n  - grpc_server:\n      socket: {socket_path}\n"
                                 f"      location_name: {LOCATION_NAME}\n")
            yield workspace
        finally:
            _stop(proc, CODE_SERVER_STOP_S, log, "code server")


def run_env(instance: dg.DagsterInstance, env: dict) -> dict:
    """Environment for the runs the daemon launches: with more than one run at once on this
    machine (the instance's `max_concurrent_runs`), each run's models get cores / runs threads
    (``GEO_ASSETS_THREADS``, unless already set) instead of each sizing its pools to every core."""
    if env.get(THREADS_ENV):
        return {}
    runs = instance.get_concurrency_config().run_queue_config.max_concurrent_runs
    return {THREADS_ENV: str(threads_for(runs))} if runs and runs > 1 else {}


@contextlib.contextmanager
def daemon_for(instance: dg.DagsterInstance, *, workspace: Path | None = None, env: dict | None = None,
               log_path: Path | None = None, start_timeout_s: float = 120.0):
    """A `dagster-daemon` for the block (none started when one is heartbeating). Without
    `workspace`, it talks to one code server started for the block (`code_server`)."""
    if daemon_alive(instance):
        yield None
        return
    child_env = {**os.environ, **(env or {}), AUTOMATION_ENV: "off", "DAGSTER_HOME": instance.root_directory}
    child_env.update(run_env(instance, child_env))
    # Not $DAGSTER_HOME/logs: Dagster's telemetry uploader owns that folder, moves it to
    # .logs_queue/ and deletes it, taking the daemon's log with it.
    log_path = Path(log_path or Path(os.environ.get("DAGSTER_HOME") or instance.root_directory) / "geo_assets"
                    / "daemon.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log, contextlib.ExitStack() as stack:
        if workspace is None:
            workspace = stack.enter_context(code_server(child_env, log, start_timeout_s=start_timeout_s))
        workspace = Path(workspace)
        # dagster-daemon, passing over backfills every few seconds (geo_assets/run/daemon.py)
        cmd = [sys.executable, "-m", "geo_assets.run.daemon", "run", "-w", str(workspace)]
        proc = subprocess.Popen(cmd, cwd=str(PROJECT_ROOT), env=child_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + start_timeout_s
            while not daemon_running(instance, fresh_s=start_timeout_s):
                if proc.poll() is not None:
                    raise RuntimeError(f"dagster-daemon exited with {proc.returncode}; see {log_path}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dagster-daemon did not heartbeat within {start_timeout_s:.0f}s; see {log_path}")
                time.sleep(1.0)
            yield proc
        finally:
            _stop(proc)  # the daemon before its code server


@dataclass
class BackfillOutcome:
    backfill_id: str
    status: str
    seconds: float
    runs: dict = field(default_factory=dict)  # run_id -> (status, partition, assets)

    @property
    def failed_runs(self) -> list[str]:
        return [rid for rid, (status, _, _) in self.runs.items() if status == DagsterRunStatus.FAILURE.value]

    @property
    def ok(self) -> bool:
        return self.status in (BulkActionStatus.COMPLETED.value, BulkActionStatus.COMPLETED_SUCCESS.value)


def backfill_runs(instance: dg.DagsterInstance, backfill_id: str) -> list:
    return list(instance.get_runs(filters=RunsFilter(tags={BACKFILL_TAG: backfill_id})))


def follow(instance: dg.DagsterInstance, backfill_id: str, *, tiles: int, stream=None, poll_s: float = 2.0,
           timeout_s: float | None = None, daemon: subprocess.Popen | None = None) -> BackfillOutcome:
    """Wait for the backfill, drawing tile runs done (and images/s) on the progress bar.
    With `daemon` (the one daemon_for started), stop with an error if it exits: nothing
    would launch the remaining runs, and the wait would never end."""
    started = time.perf_counter()
    bar = ProgressBar("tiles", tiles, stream=stream)
    seen: set[str] = set()
    while True:
        backfill = instance.get_backfill(backfill_id)
        if backfill is None:
            raise RuntimeError(f"backfill {backfill_id} is not in this instance")
        for run in backfill_runs(instance, backfill_id):
            if run.run_id in seen or not run.is_finished:
                continue
            seen.add(run.run_id)
            assets = run.asset_selection or set()
            images = _new_images(instance, run) if dg.AssetKey("raw_images") in assets else 0
            # A tile is done when its last stages are (the backfill runs raw_images first).
            done = 1 if dg.AssetKey("embeddings") in assets and run.status == DagsterRunStatus.SUCCESS else 0
            note = "" if run.status == DagsterRunStatus.SUCCESS else \
                f"{run.tags.get('dagster/partition')} {run.status.value} (run {run.run_id[:8]})"
            if done or images or note:
                bar.update(done, images, note=note)
        if backfill.status in DONE:
            break
        if daemon is not None and daemon.poll() is not None:
            raise RuntimeError(f"dagster-daemon exited with {daemon.returncode} while backfill {backfill_id} was "
                               f"{backfill.status.value}; rerun `geo-assets run` to finish it")
        if timeout_s is not None and time.perf_counter() - started > timeout_s:
            raise TimeoutError(f"backfill {backfill_id} still {backfill.status.value} after {timeout_s:.0f}s")
        time.sleep(poll_s)
    bar.close()
    all_runs = backfill_runs(instance, backfill_id)
    # A run whose process died and that run_retries re-ran successfully is not a failure of
    # the backfill: report the retry's status in its place.
    retried_ok = {r.tags.get("dagster/parent_run_id") for r in all_runs if r.status == DagsterRunStatus.SUCCESS}
    runs = {r.run_id: ("RETRIED" if r.run_id in retried_ok and r.status == DagsterRunStatus.FAILURE else r.status.value,
                       r.tags.get("dagster/partition"), sorted(k.to_user_string() for k in (r.asset_selection or [])))
            for r in all_runs}
    return BackfillOutcome(backfill_id, backfill.status.value, time.perf_counter() - started, runs)


def _new_images(instance: dg.DagsterInstance, run) -> int:
    """new_images from the raw_images materialization of a finished run (0 if none)."""
    for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        mat = entry.asset_materialization
        if mat is not None and mat.asset_key == dg.AssetKey("raw_images"):
            value = mat.metadata.get("new_images")
            return int(value.value) if value is not None else 0
    return 0
