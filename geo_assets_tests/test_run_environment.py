"""What the main job's runs are started with: threads per run (GEO_ASSETS_THREADS) and the
daemon that passes over its backfill every few seconds (geo_assets/run/daemon.py)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap

import dagster as dg
import pytest

from geo_assets.run import backfill
from geo_assets.runtime import threads


def test_model_threads_reads_the_environment(monkeypatch):
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.model_threads() is None
    monkeypatch.setenv(threads.ENV, " 3 ")
    assert threads.model_threads() == 3
    for bad in ("0", "-2", "two", "1.5", "100000"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(ValueError, match=threads.ENV):
            threads.model_threads()


def test_threads_for_shares_the_cores():
    assert threads.threads_for(1, cpus=2) == 2
    assert threads.threads_for(2, cpus=2) == 1
    assert threads.threads_for(3, cpus=2) == 1  # never 0
    assert threads.threads_for(4, cpus=16) == 4


def _instance(tmp_path, runs: int) -> dg.DagsterInstance:
    home = tmp_path / f"home{runs}"
    home.mkdir()
    (home / "dagster.yaml").write_text(f"telemetry:\n  enabled: false\nconcurrency:\n  runs:\n    max_concurrent_runs: {runs}\n")
    return dg.DagsterInstance.from_config(str(home))


def test_run_env_splits_cores_between_concurrent_runs(tmp_path):
    one, two = _instance(tmp_path, 1), _instance(tmp_path, 2)
    assert backfill.run_env(one, {}) == {}  # one run at a time: the libraries' default
    assert backfill.run_env(two, {}) == {threads.ENV: str(threads.threads_for(2))}
    assert backfill.run_env(two, {threads.ENV: "7"}) == {}  # the user's own setting wins


def test_models_built_in_a_run_use_the_thread_setting():
    """OpenVINO models (RapidOCR's) and torch get GEO_ASSETS_THREADS; in a fresh process,
    since torch's pool is process-wide."""
    code = textwrap.dedent("""
        import torch
        from geo_assets.embed.encoders import pick_device
        from geo_assets.preprocess.ocr import RapidOcrEngine
        engine = RapidOcrEngine(runtime="openvino")
        compiled = engine._ocr.text_det.infer._compiled
        pick_device("cpu")
        print(compiled.get_property("INFERENCE_NUM_THREADS"), torch.get_num_threads())
    """)
    env = {**os.environ, threads.ENV: "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["1", "1"]


def test_openvino_shape_cache_comes_from_the_environment(monkeypatch):
    from geo_assets.runtime import openvino

    monkeypatch.delenv(openvino.SHAPE_CACHE_ENV, raising=False)
    assert openvino.shape_cache_capacity() == openvino.DEFAULT_SHAPE_CACHE
    for bad in ("-1", "many", "1e9", "100001"):
        monkeypatch.setenv(openvino.SHAPE_CACHE_ENV, bad)
        with pytest.raises(ValueError, match=openvino.SHAPE_CACHE_ENV):
            openvino.shape_cache_capacity()
    monkeypatch.setenv(openvino.SHAPE_CACHE_ENV, "64")
    from geo_assets.preprocess.ocr import RapidOcrEngine

    # The CPU plugin refuses a property it does not know when compiling (it cannot report
    # this one back): a fresh engine compiled with it, reading, shows it was accepted.
    import numpy as np

    engine = RapidOcrEngine(runtime="openvino")
    assert engine.detect(np.full((64, 96, 3), 255, dtype=np.uint8)) == []


def test_main_job_daemon_passes_over_backfills_every_few_seconds():
    from dagster._daemon import backfill as dagster_backfill_daemon

    # the patched constant is the one the backfill loop sleeps on (fails if Dagster moves it)
    assert "DEFAULT_DAEMON_INTERVAL_SECONDS" in inspect.getsource(dagster_backfill_daemon.execute_backfill_iteration_loop)
    code = ("from geo_assets.run.daemon import faster_backfill_passes, BACKFILL_POLL_S\n"
            "from dagster._daemon import controller\n"
            "faster_backfill_passes(); print(controller.DEFAULT_DAEMON_INTERVAL_SECONDS == BACKFILL_POLL_S < 30)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr[-2000:]
    help_text = subprocess.run([sys.executable, "-m", "geo_assets.run.daemon", "run", "--help"],
                               capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "--workspace" in help_text.stdout, help_text.stderr[-2000:]


def test_a_process_deaf_to_sigterm_is_killed_after_its_grace(tmp_path):
    """The code server sometimes outlives SIGTERM by half a minute; `geo-assets run` waits
    only CODE_SERVER_STOP_S for it, then kills it and says so in the daemon log."""
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    log_path = tmp_path / "daemon.log"
    with open(log_path, "ab") as log:
        backfill._stop(proc, 0.5, log, "code server")
    assert proc.returncode == -9
    assert "the code server did not exit within" in log_path.read_text()
    assert backfill.CODE_SERVER_STOP_S < 30
