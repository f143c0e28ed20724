"""Issue 13, storage: file modes follow the umask, orphan temp files go in every folder,
geocells.txt edits take a lock."""

from __future__ import annotations

import os
import stat
import time

import pyarrow as pa

from geo_assets.store import parquet as store
from geo_assets.store.layout import StorageLayout


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_take_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        store.write_table(tmp_path / "t" / "data.parquet", pa.table({"a": [1]}))
        store.atomic_write_bytes(tmp_path / "img" / "1.jpg", b"x")
        assert _mode(tmp_path / "t" / "data.parquet") == 0o644
        assert _mode(tmp_path / "img" / "1.jpg") == 0o644
        os.umask(0o077)
        store.atomic_write_bytes(tmp_path / "img" / "2.jpg", b"x")
        assert _mode(tmp_path / "img" / "2.jpg") == 0o600
    finally:
        os.umask(old)


def test_orphan_temp_files_are_removed_in_every_folder_that_gets_them(tmp_path):
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    targets = [layout.table_path("captions", "t1", "blurred"), layout.cache_path("captions", "t1"),
               layout.root / "geocells.txt", layout.model_dir("blurred", "0.1") / "model.json"]
    old = time.time() - 3600
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        orphan = target.parent / f".{target.name}.killed.tmp"
        fresh = target.parent / f".{target.name}.writing.tmp"  # another writer, right now
        orphan.write_bytes(b"half")
        fresh.write_bytes(b"half")
        os.utime(orphan, (old, old))
        if target.suffix == ".parquet":
            store.write_table(target, pa.table({"a": [1]}))
        else:
            store.atomic_write_bytes(target, b"{}")
        assert not orphan.exists() and fresh.exists(), target
        assert sorted(p.name for p in target.parent.glob(".*.tmp")) == [fresh.name] and target.exists()


ADDER = """
import sys
from geo_assets.config.geocell_sizes import add_geocell
for size in sys.argv[2:]:
    add_geocell(sys.argv[1], size)
"""


def test_concurrent_geocell_adds_lose_nothing(tmp_path):
    import subprocess
    import sys

    sizes = [[f"{0.1 + 0.01 * (5 * w + i):.2f}" for i in range(5)] for w in range(4)]
    env = {**os.environ, "GEO_ASSETS_GEOCELLS": "0.5"}
    procs = [subprocess.Popen([sys.executable, "-c", ADDER, str(tmp_path), *group], env=env) for group in sizes]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    from geo_assets.config.geocell_sizes import read_geocells

    expected = sorted({"0.5", *(str(float(s)) for g in sizes for s in g)}, key=float)
    assert read_geocells(tmp_path) == [f"{float(s):g}" for s in expected]
