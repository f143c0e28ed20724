"""Issue 13 through the real entry points: the `geo-assets` CLI in a subprocess, the
geocell sensor evaluated by Dagster, and the DuckDB catalog with a second process
holding its file."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from geo_assets.geo.bbox import UK_REGION, BBox, region_bounds
from geo_assets.geo.geocells import MAX_GEOCELLS, GeocellGrid
from geo_assets.store import parquet as store
from geo_assets.store.catalog import query_connection, refresh_views
from geo_assets.store.layout import StorageLayout

REPO = Path(__file__).resolve().parent.parent


def _cli(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "GEO_ASSETS_STORAGE": str(tmp_path / "storage"), "GEO_ASSETS_MODELS": str(tmp_path / "models"),
           "DAGSTER_HOME": str(tmp_path / "storage")}
    return subprocess.run([sys.executable, "-m", "geo_assets.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


# -- item 2: geocell cap -----------------------------------------------------------


@pytest.mark.parametrize("size", ["0.0001", "1e-9", "0.001"])
def test_cli_refuses_a_geocell_size_past_the_cap_with_count_and_cap(tmp_path, size):
    # the tests' region is 2 x 2 degrees: 0.001 is 4 million cells, 0.0001 400 million
    proc = _cli(tmp_path, "geocell", "add", size, "--no-run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "cells over the region" in lines[0] and f"the cap is {MAX_GEOCELLS:,} cells" in lines[0]
    assert "use a size of at least" in lines[0]
    assert not (tmp_path / "storage" / "geocells.txt").exists()


def test_grid_refuses_past_the_cap_and_keeps_the_defaults():
    uk = region_bounds(UK_REGION)
    with pytest.raises(ValueError, match=r"1,100,000 cells .*282,700,000-parameter.*cap is 200,000"):
        GeocellGrid(uk, 0.01)
    with pytest.raises(ValueError, match="11,000,000,000 cells"):
        GeocellGrid(uk, 0.0001)
    started = time.perf_counter()
    with pytest.raises(ValueError, match="cells"):
        GeocellGrid(uk, 1e-9)  # refused from the shape alone: no table is built
    assert time.perf_counter() - started < 1
    assert GeocellGrid(uk, 0.05).n_cells == 44_000 and GeocellGrid(uk, 0.025).n_cells <= MAX_GEOCELLS


def test_geocell_sensor_refuses_a_tiny_size_in_the_file(tmp_path):
    from geo_assets.defs.resources import StorageResource
    from geo_assets.run.execution import load_definitions

    geocell_sizes_sensor = load_definitions().resolve_sensor_def("geocell_sizes_sensor")

    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "geocells.txt").write_text("0.1\n0.0001\n")
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources={
            "storage": StorageResource(storage_dir=str(storage), models_dir=str(tmp_path / "models"))})
        result = geocell_sizes_sensor(ctx)
        assert isinstance(result, dg.SkipReason), result
        assert "geocells.txt:2" in result.skip_message and "cap is 200,000" in result.skip_message
        assert instance.get_dynamic_partitions("geocell") == []
        (storage / "geocells.txt").write_text("0.1\n0.5\n")  # fixed: both sizes become partitions
        result = geocell_sizes_sensor(ctx)
        assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 4


def test_remove_still_works_for_a_refused_size(tmp_path):
    from geo_assets.config.geocell_sizes import read_geocells, remove_geocell

    (tmp_path / "geocells.txt").write_text("0.1\n0.0001\n")
    with pytest.raises(ValueError, match="cap"):
        read_geocells(tmp_path)
    sizes, changed = remove_geocell(tmp_path, "0.0001")
    assert changed and sizes == ["0.1"] and read_geocells(tmp_path) == ["0.1"]


# -- item 6: the catalog never fails a step whose data landed ------------------------


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])  # read-write: holds DuckDB's file lock
    print("holding", flush=True)
    sys.stdin.readline()
    con.close()
""")


def test_refresh_views_warns_and_catches_up_when_another_process_holds_the_file(tmp_path, caplog):
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    store.write_table(layout.table_path("raw_images", "t1"), pa.table({"image_id": ["a", "b"]}))
    layout.root.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(layout.duckdb_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        caplog.set_level(logging.WARNING)
        started = time.perf_counter()
        assert refresh_views(layout, ("raw_images",), wait_s=1.0) == []  # no exception
        assert time.perf_counter() - started < 10
        assert "views not refreshed" in caplog.text and "next refresh" in caplog.text
        # queries do not need the file
        with query_connection(layout) as con:
            assert con.execute("SELECT count(*) FROM raw_images").fetchone()[0] == 2
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    # a later refresh for another table also creates the view left pending
    store.write_table(layout.table_path("captions", "t1", "blurred"), pa.table({"image_id": ["a"]}))
    assert refresh_views(layout, ("captions",)) == ["raw_images", "captions"]
    import duckdb

    con = duckdb.connect(str(layout.duckdb_path), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM raw_images").fetchone()[0] == 2
    finally:
        con.close()


# -- low: `geo-assets query` errors ------------------------------------------------


def test_query_errors_are_one_clear_line(tmp_path):
    for sql, expected in [("SELEC 1", "syntax error"), ("SELECT * FROM nope", "no tables yet")]:
        proc = _cli(tmp_path, "query", sql)
        assert proc.returncode == 2
        assert proc.stderr.strip().startswith("error: query failed:") and expected in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    ok = _cli(tmp_path, "query", "SELECT 42 AS answer")
    assert ok.returncode == 0 and "42" in ok.stdout


# -- item 5: predict checks inputs first ---------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A 68-byte PNG (signature, IHDR, empty IDAT, IEND) that claims width x height."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def _bad_inputs(tmp_path: Path) -> list[Path]:
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(50_000, 50_000))
    big = tmp_path / "big.png"  # 49 M pixels: over the ingest cap, small on disk
    Image.new("L", (7000, 7000)).save(big)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    return [bomb, big, text, folder, tmp_path / "missing.jpg"]


def test_predict_reports_every_bad_input_without_loading_models(tmp_path):
    bad = _bad_inputs(tmp_path)
    (tmp_path / "models").mkdir()
    started = time.perf_counter()
    proc = _cli(tmp_path, "predict", *map(str, bad), "--models-dir", str(tmp_path / "models"))
    seconds = time.perf_counter() - started
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "no trained models" not in proc.stderr + proc.stdout
    out = proc.stdout
    assert "bomb.png: image is over the 40,000,000 pixel limit" in out and "7000x7000 is over the 40,000,000" in out
    assert "notes.jpg: not a readable image" in out and "folder.jpg: not a file" in out
    assert "missing.jpg: no such file" in out
    assert out.count("  error: ") == len(bad)
    assert seconds < 30  # loading the models alone took 12 s


def test_predict_input_check_and_region_warning(tmp_path):
    import numpy as np
    from PIL import Image

    from geo_assets.model.predict import _truth, load_input, region_warning
    from geo_assets.config.settings import GeoSettings

    region = GeoSettings.from_env().region
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    paris = tmp_path / "paris.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 0.0)})
    img.save(paris, exif=exif)
    image, error = load_input(paris)
    assert error is None and image.shape == (240, 320, 3)
    truth = _truth(paris, None)
    assert truth["source"] == "exif" and abs(truth["lat"] - 48.8567) < 1e-3
    assert "outside the region" in region_warning(truth, region)
    # a sidecar inside the region: no warning
    inside = tmp_path / "inside.jpg"
    img.save(inside)
    (tmp_path / "inside.jpg.json").write_text('{"lat": 52.0, "lon": -1.0}')
    truth = _truth(inside, None)
    assert truth == {"lat": 52.0, "lon": -1.0, "source": "sidecar"} and region_warning(truth, region) is None
    for path in _bad_inputs(tmp_path):
        image, error = load_input(path)
        assert image is None and error.startswith(str(path)) and "\n" not in error
