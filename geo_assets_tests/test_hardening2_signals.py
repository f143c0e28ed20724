"""Issue 22 (low): `kill -TERM` or Ctrl-C on `geo-assets run` stops the daemon and the code server
it started and removes their temporary workspace, with one line and no traceback. The real CLI in a
subprocess, the real dagster-daemon and code server; the children are found through /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")]


def _children(pid: int) -> dict[int, str]:
    """pid -> command line of the direct children of `pid`."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_daemon_and_code_server_and_removes_the_workspace(tmp_path, sig):
    env = {**os.environ, "GEO_ASSETS_STORAGE": str(tmp_path / "storage"), "GEO_ASSETS_MODELS": str(tmp_path / "models"),
           "DAGSTER_HOME": str(tmp_path / "storage"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "geo_assets.cli", "run", "--tiles", "1", "--images-per-tile", "2",
                             "--skip-models"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        children: dict[int, str] = {}
        while time.monotonic() < deadline and proc.poll() is None:
            children = _children(proc.pid)
            if any("geo_assets.run.daemon" in c for c in children.values()) and any("api grpc" in c for c in children.values()):
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        assert len(children) >= 2, children
        socket_arg = next(c for c in children.values() if "api grpc" in c).split("--socket ", 1)[1].split()[0]
        workspace_dir = Path(socket_arg).parent
        assert workspace_dir.is_dir()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(1.0)
    left = [pid for pid in children if _alive(pid)]
    for pid in left:  # never leave them running past the test, whatever it found
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running: {[children[p][:120] for p in left]}"
    assert not workspace_dir.exists(), f"temporary workspace {workspace_dir} left behind"
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert f"interrupted by {sig.name}" in last and "stopped its daemon and code server" in last, last
