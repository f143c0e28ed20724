"""Measuring: wall time and peak RSS of a block, and what machine the numbers come from."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

from geo_assets.runtime.memory import status_kib




def rss_kib() -> int:
    """Resident set size of this process in KiB (VmRSS), 0 where /proc is missing."""
    return status_kib("VmRSS")


class Meter:
    """Wall time and peak RSS above the start of a block (sampled every `interval` s)."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.start_kib = 0
        self.peak_kib = 0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            value = rss_kib()
            if value > self.peak_kib:
                self.peak_kib = value

    def __enter__(self) -> "Meter":
        self.start_kib = self.peak_kib = rss_kib()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
        self._thread.start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_kib = max(self.peak_kib, rss_kib())

    @property
    def peak_mib(self) -> float:
        return max(0.0, (self.peak_kib - self.start_kib) / 1024.0)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cuda": bool(torch.cuda.is_available()),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "memory_total_mib": None,
        "loadavg_start": loadavg(),
    }
    if info["cuda"]:
        info["cuda_device"] = torch.cuda.get_device_name(0)
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except Exception:  # pragma: no cover - optional detail
        pass
    try:
        import dagster

        info["dagster"] = dagster.__version__
    except Exception:  # pragma: no cover
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["memory_total_mib"] = int(line.split()[1]) // 1024
                    break
    except OSError:
        pass
    try:
        root = Path(__file__).resolve().parents[2]
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            info["git_commit"] = commit.stdout.strip()
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info

