"""`python -m geo_assets.run.daemon run -w WORKSPACE`: `dagster-daemon` as the main job starts it,
looking at backfills every `BACKFILL_POLL_S` seconds instead of Dagster's 30.

Why: the main job is one asset backfill whose phases wait for each other (the tiles, then the
model partitions, then the report). Dagster's backfill daemon requests a phase's runs only
at its next pass over the backfill, and it passes every 30 s: a constant
(`dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS`), not an instance setting, so
each phase boundary and the end of the backfill waited half a pass on average (PERFORMANCE.md).
A pass over a running backfill costs well under a second of CPU, so every few seconds is
cheap. Every other daemon (run queue, monitoring, sensors) keeps its own settings; a daemon
started by hand (`dagster-daemon run`, `dagster dev`) is Dagster's as is."""

from __future__ import annotations

import sys

BACKFILL_POLL_S = 5


def faster_backfill_passes(seconds: int = BACKFILL_POLL_S) -> None:
    """Set the backfill daemon's pass interval for this process (before the daemon starts).
    Fails loudly if a Dagster upgrade moved the constant, rather than silently doing nothing."""
    from dagster._daemon import controller

    if not isinstance(getattr(controller, "DEFAULT_DAEMON_INTERVAL_SECONDS", None), int):
        raise RuntimeError("dagster._daemon.controller.DEFAULT_DAEMON_INTERVAL_SECONDS is gone: "
                           "this Dagster version needs geo_assets.run.daemon updated")
    controller.DEFAULT_DAEMON_INTERVAL_SECONDS = int(seconds)


def main(argv: list[str] | None = None) -> None:
    faster_backfill_passes()
    from dagster._daemon.cli import main as dagster_daemon_main

    sys.argv = ["dagster-daemon", *(sys.argv[1:] if argv is None else argv)]
    dagster_daemon_main()


if __name__ == "__main__":
    main()
