"""Real services for tests: a PostgreSQL server and an S3-compatible server (moto), both on loopback.

Import the fixtures into a test module (`from geo_assets_tests.services import postgres_server, s3_root`).
Nothing here mocks a client library: Dagster talks to a real PostgreSQL through psycopg2, and
s3fs/boto talk HTTP to moto's server, the same code path as AWS S3.

PostgreSQL: the Debian binaries (`initdb`, `pg_ctl`, from PATH or /usr/lib/postgresql/<v>/bin).
The server refuses to run as root, so as root they run as the `postgres` user (`runuser`), in a
temp folder that user owns. Password authentication (scram) with a random password per session,
so the instance config's `password: {env: DAGSTER_PG_PASSWORD}` path is exercised. Tests skip
only when the binaries are missing (CI has them).
"""

from __future__ import annotations

import glob
import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_postgres_bin() -> Path | None:
    """Folder holding initdb and pg_ctl (PATH first, then the newest Debian install)."""
    on_path = shutil.which("initdb"), shutil.which("pg_ctl")
    if all(on_path):
        return Path(os.path.realpath(on_path[0])).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    password: str
    bin_dir: Path

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{db}"

    def connect(self, db: str = "postgres"):
        import psycopg2

        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=db)


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb/postgres exit with "cannot be run as root": drop to the postgres account.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="session")
def postgres_server():
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql")
    if os.geteuid() == 0:
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
    # Not under pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="geo_assets_pg_"))
    data, pwfile, log = base / "data", base / "pwfile", base / "server.log"
    user, password = "geo_test", secrets.token_urlsafe(18)
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        for p in (base, pwfile):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(pwfile, 0o600)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(_as_postgres_user([str(bin_dir / "initdb"), "-D", str(data), "-U", user, f"--pwfile={pwfile}",
                                      "-A", "scram-sha-256", "-E", "UTF8", "--no-sync"]),
                   check=True, capture_output=True, env=env, timeout=120)
    pwfile.unlink()
    port = None
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        port = free_port()
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {data} -c fsync=off -c max_connections=50"
        proc = subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log),
                                                 "-o", opts, "-w", "-t", "60", "start"]),
                              capture_output=True, env=env, timeout=90)
        if proc.returncode == 0:
            break
    else:
        tail = log.read_text()[-2000:] if log.exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {proc.stderr.decode()[-500:]}\n{tail}")
    server = PostgresServer("127.0.0.1", port, user, password, bin_dir)
    try:
        yield server
    finally:
        subprocess.run(_as_postgres_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, env=env, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_db(postgres_server):
    """A fresh, empty database on the session's server: (server, database name); dropped after."""
    name = "t_" + uuid.uuid4().hex[:12]
    con = postgres_server.connect()
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server, name
    finally:
        with con.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        con.close()


@pytest.fixture(scope="session")
def moto_server():
    """A moto S3 server on a free loopback port: its endpoint URL. No credentials are set here."""
    from moto.server import ThreadedMotoServer

    # One access-log line per request on stderr drowns test output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    for _attempt in range(3):
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        try:
            server.start()
            break
        except OSError:
            continue
    else:
        raise RuntimeError("could not start the moto S3 server on loopback")
    endpoint = f"http://127.0.0.1:{port}"
    _wait_http(endpoint)
    try:
        yield endpoint
    finally:
        server.stop()


def _wait_http(endpoint: str, timeout_s: float = 10.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def s3_env(moto_server, monkeypatch):
    """AWS_* variables pointing at moto, set for this test only (monkeypatch undoes them)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "geo-assets-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets.token_hex(16))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    return moto_server


@pytest.fixture
def s3_root(s3_env):
    """`s3://<fresh bucket>/geo_assets` on the moto server."""
    import boto3

    bucket = "geo-assets-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=s3_env).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/geo_assets"


class FaultyS3Proxy:
    """An HTTP proxy in front of the moto server that forwards every request, except those a
    test chooses to fail: while `fail_leases` is set, a PUT of a lease object (a key under
    `.leases/`) gets 403 AccessDenied, as from an expired credential or a bucket policy, so a
    heartbeat's renewals fail while data writes still go through. Real HTTP both ways."""

    def __init__(self, upstream: str) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.fail_leases = threading.Event()
        self.refused: list[str] = []
        up = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and "/.leases/" in self.path and proxy.fail_leases.is_set():
                    proxy.refused.append(self.path)
                    error = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                             b"<Message>Access Denied</Message></Error>")
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    self.wfile.write(error)
                    return
                con = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                    con.request(self.command, self.path, body=body, headers=headers)
                    resp = con.getresponse()
                    data = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                            self.send_header(k, v)
                    # HEAD keeps the object's length (no body follows); others send what was read.
                    self.send_header("Content-Length", resp.getheader("Content-Length", "0") if self.command == "HEAD"
                                     else str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    con.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FaultyS3Proxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
