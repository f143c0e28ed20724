"""This process's resident memory from /proc/self/status (Linux): now (VmRSS) and its peak
(VmHWM, which a warm run worker resets between runs)."""

from __future__ import annotations


def status_kib(field: str) -> int:
    """`field` of /proc/self/status ("VmRSS", "VmHWM") in KiB; 0 where /proc is missing."""
    prefix = field.encode() + b":"
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(prefix):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_mib() -> float:
    """Resident set size now, MiB."""
    return status_kib("VmRSS") / 1024


def peak_rss_mib() -> float:
    """Peak resident set size (VmHWM), MiB; getrusage's lifetime peak where /proc is missing."""
    kib = status_kib("VmHWM")
    if not kib:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kib = peak // 1024 if sys.platform == "darwin" else peak
    return round(kib / 1024, 1)
