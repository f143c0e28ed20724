"""How many CPU threads each model in a run may use: ``GEO_ASSETS_THREADS``.

Unset, every library takes its default (all cores), which is right for one run at a time.
With several runs at once on one machine, each run's OpenVINO, onnxruntime and torch
thread pools would otherwise all size themselves to every core and fight over them
(2 runs on 2 cores: 4 busy threads, each model ~3x slower). The main job sets it to
cores / concurrent runs for the runs it launches (``backfill.run_env``).

The thread count changes float rounding only: RapidOCR under OpenVINO with 1 and 2 threads
read the same words, boxes and blur regions on 90 synthetic-world images, confidences
within 1.3e-6. Runs compared row by row must use the same count."""

from __future__ import annotations

import os

ENV = "GEO_ASSETS_THREADS"
MAX_THREADS = 1024


def env_whole_number(name: str, minimum: int, maximum: int, what: str) -> int | None:
    """A whole number from environment variable `name` within [minimum, maximum]; None when
    unset; a ValueError naming the variable otherwise."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of {what}, got {value!r}") from None
    if not minimum <= n <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, got {n}")
    return n


def model_threads() -> int | None:
    """The thread count from the environment; None when unset (the libraries' default)."""
    return env_whole_number(ENV, 1, MAX_THREADS, "threads")


def threads_for(concurrent_runs: int, cpus: int | None = None) -> int:
    """Threads per run when `concurrent_runs` share this machine's cores (at least 1)."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, int(concurrent_runs)))


def apply_to_torch() -> None:
    """torch's intra-op pool to ``model_threads()`` when set (process-wide; torch models call
    it as they are built)."""
    n = model_threads()
    if n is None:
        return
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
