"""Issue 22, item 1: `geo-assets query` is read-only. The real CLI in a subprocess, on local
storage and on s3:// storage (moto): it reads the project's tables and nothing else, writes
nothing, attaches nothing, installs nothing; each refusal is one line naming what was refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from geo_assets.store import parquet as store
from geo_assets.store.layout import StorageLayout
from geo_assets_tests.services import moto_server, s3_env, s3_root  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parent.parent


def _cli(env_extra: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "geo_assets.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def local_env(tmp_path) -> dict:
    layout = StorageLayout(tmp_path / "storage", tmp_path / "models")
    store.write_table(layout.table_path("raw_images", "t1"), pa.table({"image_id": ["a", "b"]}))
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("top-secret-line\n")
    return {"GEO_ASSETS_STORAGE": str(tmp_path / "storage"), "GEO_ASSETS_MODELS": str(tmp_path / "models"),
            "DAGSTER_HOME": str(tmp_path / "storage"), "_secret": str(secret), "_tmp": str(tmp_path)}


def _refused(proc: subprocess.CompletedProcess, word: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out, out
    assert lines[0].startswith("error: query refused:") and word in lines[0], lines[0]


def test_query_reads_the_tables(local_env):
    proc = _cli(local_env, "query", "SELECT count(*) AS n, min(tile) AS t FROM raw_images")
    assert proc.returncode == 0, proc.stderr
    assert "2" in proc.stdout and "t1" in proc.stdout
    # read-only statements other than SELECT still work
    assert _cli(local_env, "query", "DESCRIBE raw_images").returncode == 0
    assert _cli(local_env, "query", "WITH x AS (SELECT 1 AS a) SELECT a FROM x").returncode == 0


def test_query_cannot_read_files_outside_the_tables(local_env):
    for sql in (f"SELECT * FROM read_text('{local_env['_secret']}')",
                "SELECT * FROM read_text('/etc/passwd')",
                f"SELECT * FROM glob('{local_env['_tmp']}/*')",
                f"SELECT * FROM read_csv('{local_env['_secret']}')",
                # a path that starts inside the tables and climbs out
                f"SELECT * FROM read_text('{local_env['GEO_ASSETS_STORAGE']}/tables/../../outside/secret.txt')"):
        proc = _cli(local_env, "query", sql)
        assert "top-secret-line" not in proc.stdout and "root:" not in proc.stdout, sql
        assert "outside" not in proc.stdout, sql
        _refused(proc, "file")


def test_query_refuses_statements_that_write(local_env, tmp_path):
    target = tmp_path / "written.csv"
    db = tmp_path / "attached.db"
    inside = Path(local_env["GEO_ASSETS_STORAGE"]) / "tables" / "raw_images" / "dump.csv"
    cases = [(f"COPY (SELECT 1) TO '{target}'", "COPY"),
             (f"COPY raw_images TO '{inside}'", "COPY"),
             (f"ATTACH '{db}' AS x", "ATTACH"),
             ("INSTALL httpfs", "INSTALL"),
             ("LOAD httpfs", "LOAD"),
             ("SET enable_external_access = true", "SET"),
             ("CREATE TABLE t AS SELECT 1", "CREATE"),
             ("SELECT 1; COPY (SELECT 1) TO '" + str(target) + "'", "COPY"),
             ("DROP VIEW raw_images", "DROP")]
    for sql, word in cases:
        _refused(_cli(local_env, "query", sql), word)
    assert not target.exists() and not db.exists() and not inside.exists()
    assert not (Path.home() / ".duckdb" / "extensions" / "v" / "httpfs").exists()


def test_query_on_s3_reads_its_tables_but_not_other_buckets(s3_root, tmp_path):
    import boto3

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket="victim-bucket")
    s3.put_object(Bucket="victim-bucket", Key="secret.txt", Body=b"top-secret-object")
    layout = StorageLayout(s3_root + "/storage", s3_root + "/models")
    store.write_table(layout.table_path("raw_images", "t1"), pa.table({"image_id": ["a", "b", "c"]}))
    env = {"GEO_ASSETS_STORAGE": s3_root + "/storage", "GEO_ASSETS_MODELS": s3_root + "/models",
           "DAGSTER_HOME": str(tmp_path / "home")}
    ok = _cli(env, "query", "SELECT count(*) AS n FROM raw_images")
    assert ok.returncode == 0 and "3" in ok.stdout, ok.stderr
    proc = _cli(env, "query", "SELECT * FROM read_text('s3://victim-bucket/secret.txt')")
    assert "top-secret-object" not in proc.stdout
    _refused(proc, "file")
    proc = _cli(env, "query", "COPY (SELECT 'pwned') TO 's3://victim-bucket/pwned.csv'")
    _refused(proc, "COPY")
    assert "Contents" not in s3.list_objects_v2(Bucket="victim-bucket", Prefix="pwned")
