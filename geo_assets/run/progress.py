"""A one-line progress bar for the main job: tiles done, images per second, time left."""

from __future__ import annotations

import sys
import time


def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def progress_line(label: str, done: int, total: int, items: int, elapsed: float, width: int = 24,
                  unit: str = "img") -> str:
    """`tiles [#####-----] 12/29  3.4 img/s  elapsed 5m10s  left ~7m20s` (left: from the pace so far)."""
    total = max(total, 1)
    filled = int(width * min(done, total) / total)
    rate = items / elapsed if elapsed > 0 else 0.0
    left = elapsed / done * (total - done) if done else None
    return (f"{label} [{'#' * filled}{'-' * (width - filled)}] {done}/{total}  {rate:.1f} {unit}/s  "
            f"elapsed {format_duration(elapsed)}  left ~{format_duration(left)}")


class ProgressBar:
    """Redraws one line on a terminal; prints one line per update otherwise (CI logs, pipes)."""

    def __init__(self, label: str, total: int, stream=None, unit: str = "img"):
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self.done = 0
        self.items = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done_delta: int = 1, items_delta: int = 0, note: str = "") -> str:
        self.done += done_delta
        self.items += items_delta
        line = progress_line(self.label, self.done, self.total, self.items, time.perf_counter() - self.started,
                             unit=self.unit)
        if note:
            line += f"  {note}"
        self.stream.write(("\r\x1b[2K" + line) if self.tty else line + "\n")
        self.stream.flush()
        return line

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
