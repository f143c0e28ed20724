"""Which stored data is read: the table reader, the image reader and the query
connection report every read here, and `recording()` collects them.

It exists so a test can check, on a real materialization, that every table an asset
reads comes from an asset upstream of it: a read the graph does not declare would
let Dagster run the reader before (or without) the writer. Recording is process-wide,
not per thread, because steps read on worker threads; the recorder is told nothing
about which asset reads, so a caller records one asset's run at a time. With no
recorder active, `note` costs one truthiness test.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

_recorders: list[list[str]] = []
_guard = threading.Lock()


def note(path) -> None:
    """Report a read of `path` (a stored file, or a table's folder for a query)."""
    if _recorders:
        with _guard:
            for seen in _recorders:
                seen.append(str(path))


def active() -> bool:
    return bool(_recorders)


@contextmanager
def recording() -> Iterator[list[str]]:
    """The paths read (as strings, in order, repeats kept) while the block runs."""
    seen: list[str] = []
    with _guard:
        _recorders.append(seen)
    try:
        yield seen
    finally:
        with _guard:
            _recorders[:] = [r for r in _recorders if r is not seen]
