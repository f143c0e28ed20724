"""The Dagster UI in a real browser: `dagster dev` on localhost, driven by headless
Debian Chromium through Playwright.

It opens the global asset lineage, expands every group and checks that each asset
of the graph is drawn; then, on the raw_images page, it clicks Materialize, picks
one tile in the partition selector, clicks "Launch 1 run", follows the toast to the
run and waits for the run to succeed (the UI and the UI's GraphQL API must both say
so). A tile is 4 images here (GEO_ASSETS_IMAGES_PER_TILE=4), so the run is quick.

Nothing is downloaded: the browser is /usr/bin/chromium (`scripts/setup.sh
--browser`, which `make test` runs, installs it), and the browser cannot resolve
any host but 127.0.0.1, so only the local webserver is reachable.

The instance is fresh (DAGSTER_HOME, storage and models in the test's tmp dir) and
its storage/geocells.txt lists no size, so the geocell sensor queues no training
runs. Once raw_images succeeds, the automation sensor may queue the downstream tile
stages for that tile; stopping `dagster dev` ends that run, which is expected.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
WORKSPACE = REPO_ROOT / "workspace.yaml"
INSTANCE_YAML = REPO_ROOT / "storage" / "dagster.yaml"
CHROMIUM = Path("/usr/bin/chromium")

EXPECTED_ASSETS = (
    "raw_images", "ocr_text", "blurred_images", "captions", "embeddings", "gazetteer_attack",
    "geolocator_model", "model_evaluation", "privacy_report",
)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",  # CI containers often have a 64 MB /dev/shm
    # Localhost only, direct: no proxy, and every other host fails to resolve.
    "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]

SERVER_START_S = 180      # dagster dev up, code location loaded
RUN_SUCCESS_S = 240       # one raw_images tile run, queued to finished
UI_TIMEOUT_MS = 60_000    # any single wait on the page (2 slow cores)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} not found: install Debian's chromium (scripts/setup.sh --browser, as `make test` does)",
    ),
]


# --------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an *_proxy


def _http(url: str, payload: dict | None = None, timeout: float = 10.0) -> bytes:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with _DIRECT.open(req, timeout=timeout) as resp:
        return resp.read()


def _graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.loads(_http(f"{base}/graphql", {"query": query, "variables": variables or {}}, timeout=30))
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    return body["data"]


_LOCATIONS_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message stack } }
      }
    }
  }
}
"""


class DagsterDev:
    """`dagster dev` in its own process group, on a fresh instance in a temp dir."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "dagster_dev.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def env(self) -> dict:
        home = self.tmp / "dagster_home"
        storage = self.tmp / "storage"
        home.mkdir(parents=True, exist_ok=True)
        storage.mkdir(parents=True, exist_ok=True)
        shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
        # No geocell sizes configured: otherwise the geocell sensor adds the model
        # partitions at startup and queues four training runs ahead of ours.
        (storage / "geocells.txt").write_text("# none: the UI test trains no model\n")
        venv_bin = str(Path(sys.executable).parent)
        env = dict(os.environ)
        env.update({
            "DAGSTER_HOME": str(home),
            "GEO_ASSETS_STORAGE": str(storage),
            "GEO_ASSETS_MODELS": str(self.tmp / "models"),
            "GEO_ASSETS_REGION": "-2.0,51.0,0.0,53.0",
            "GEO_ASSETS_TILE_SIZE": "1.0",
            "GEO_ASSETS_IMAGES_PER_TILE": "4",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
        })
        return env

    def start(self) -> None:
        dagster = Path(sys.executable).parent / "dagster"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(dagster), "dev", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=str(WORKSPACE.parent), env=self.env(), stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + SERVER_START_S
        while True:  # the webserver answers
            self._check_alive()
            try:
                _http(f"{self.base}/server_info", timeout=5)
                break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"dagster dev did not answer /server_info within {SERVER_START_S} s")
            time.sleep(0.5)
        while True:  # and the code location has loaded (or failed to: say why)
            self._check_alive()
            entries = _graphql(self.base, _LOCATIONS_QUERY)["workspaceOrError"].get("locationEntries") or []
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    raise AssertionError("code location failed to load:\n" + "\n".join(
                        f"{e['name']}: {e['locationOrLoadError']['message']}{e['locationOrLoadError']['stack'] and ''.join(e['locationOrLoadError']['stack'])}"
                        for e in errors))
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"code location not loaded within {SERVER_START_S} s: {entries}")
            time.sleep(1)

    def _check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"dagster dev exited early with code {self.proc.returncode}")

    def stop(self) -> None:
        """SIGTERM the whole process group (webserver, daemon, code server, run
        workers), then SIGKILL whatever is left. dagster dev usually exits within a
        few seconds, but one signalled soon after starting can linger for a minute
        or more (SIGINT alike), so the grace period is short."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(pgid, signal.SIGKILL)  # stragglers, or all of it if SIGTERM was ignored
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        if self._log:
            self._log.close()

    def log_tail(self, chars: int = 20_000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return text[-chars:]


@pytest.fixture
def dagster_dev(tmp_path):
    server = DagsterDev(tmp_path)
    try:
        server.start()
    except BaseException:
        server.stop()
        print(f"\n----- dagster dev log ({server.log_path}) -----\n{server.log_tail()}")
        raise
    yield server
    server.stop()


# --------------------------------------------------------------------------- browser

_RUN_QUERY = """
query($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      status
      tags { key value }
      assetSelection { path }
    }
  }
}
"""

_TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}


def _open_lineage_and_check_assets(page, base: str, shots: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect

    page.goto(f"{base}/asset-groups")
    graph = page.locator("svg[class*='svgContainer']")
    expect(graph.locator("foreignObject").first).to_be_visible()
    # Groups start collapsed: right-click the canvas (near its bottom-left corner,
    # away from the nodes, the toolbar and the zoom controls) and pick "Expand all
    # groups" from the context menu.
    canvas = graph.locator("xpath=..").locator("xpath=..")
    expand = page.get_by_role("menuitem", name="Expand all groups")
    for attempt in range(3):  # a re-render can close the menu under the click: open it again
        box = canvas.bounding_box()
        canvas.click(button="right", position={"x": 16, "y": box["height"] - 16})
        try:
            expand.click(timeout=10_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 2:
                raise
    for name in EXPECTED_ASSETS:
        expect(graph.locator("foreignObject").get_by_text(name, exact=True).first).to_be_visible()
    page.screenshot(path=str(shots / "asset_graph.png"))


def _launch_one_tile(page, base: str) -> tuple[str, str]:
    """Materialize one raw_images partition through the launch dialog; returns
    (tile key, run id)."""
    from playwright.sync_api import expect

    page.goto(f"{base}/assets/raw_images")
    page.get_by_role("button").filter(has_text=re.compile(r"^Materialize…$")).click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize raw_images")
    expect(dialog).to_be_visible()
    dialog.get_by_text("Select a partition or create one").click()
    items = page.locator(".dagster-popover").get_by_role("menuitem")
    expect(items).to_have_count(5)  # "Select all (4)" and the 4 tiles of the test region
    labels = [t.strip().splitlines()[0] for t in items.all_inner_texts()]
    tiles = [t for t in labels if re.fullmatch(r"-?\d+\.\d\d_-?\d+\.\d\d_-?\d+\.\d\d_-?\d+\.\d\d", t)]
    assert len(tiles) == 4, f"expected the 4 tiles of the test region in the partition list, got {labels}"
    tile = tiles[0]
    # An item's text is its label twice (label + tooltip): match exactly that.
    items.filter(has_text=re.compile(rf"^(?:{re.escape(tile)})+$")).click()
    dialog.get_by_text("Launch runs to materialize raw_images").click()  # close the picker
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Launch 1 run").click()
    # The toast ("Launched run 1a2b3c4d  View") links to the new run.
    toast = page.get_by_role("region", name=re.compile("Notifications")).filter(has_text=re.compile(r"Launched run [0-9a-f]{8}"))
    view = toast.locator("a[href*='/runs/']").filter(has_text="View").first
    expect(view).to_be_visible()
    run_id = view.get_attribute("href").rstrip("/").split("/runs/")[-1]
    assert re.fullmatch(r"[0-9a-f-]{36}", run_id), run_id
    view.click()
    page.wait_for_url(re.compile(re.escape(run_id)))
    return tile, run_id


def _wait_for_run(base: str, run_id: str) -> dict:
    deadline = time.monotonic() + RUN_SUCCESS_S
    while True:
        run = _graphql(base, _RUN_QUERY, {"runId": run_id})["runOrError"]
        assert run["__typename"] == "Run", run
        if run["status"] in _TERMINAL:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']} after {RUN_SUCCESS_S} s")
        time.sleep(2)


def test_ui_shows_graph_and_materializes_one_tile(dagster_dev, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base = dagster_dev.base
    started = time.monotonic()
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            # A fresh instance greets localhost users with a "Join the Dagster community"
            # dialog, a second after the first page renders, on top of whatever is
            # being clicked: mark it seen, as its Skip button does.
            assert _graphql(base, "mutation { setNuxSeen }")["setNuxSeen"] is not None
            page = context.new_page()
            page.on("request", lambda r: None if r.url.startswith((base, "data:", "blob:")) else outside.append(r.url))
            # Should it show anyway, skip it.
            welcome = page.get_by_role("dialog").filter(has_text="Join the Dagster community")
            page.add_locator_handler(welcome, lambda d: d.get_by_role("button", name="Skip").click())
            try:
                _open_lineage_and_check_assets(page, base, tmp_path)
                tile, run_id = _launch_one_tile(page, base)

                run = _wait_for_run(base, run_id)
                tags = {t["key"]: t["value"] for t in run["tags"]}
                assert run["status"] == "SUCCESS", (
                    f"run {run_id} ended {run['status']}\n----- dagster dev log -----\n{dagster_dev.log_tail()}")
                assert tags.get("dagster/partition") == tile, tags
                assert tags.get("dagster/from_ui") == "true", tags
                assert [a["path"] for a in run["assetSelection"]] == [["raw_images"]], run["assetSelection"]

                # The run page and the runs list show it too.
                expect(page.get_by_text("Success", exact=True).first).to_be_visible()
                expect(page.get_by_text(f"partition: {tile}").first).to_be_visible()
                page.screenshot(path=str(tmp_path / "run.png"))
                page.goto(f"{base}/runs")
                row = page.locator("[class*='RunsFeedRow_rowGrid']").filter(has=page.locator(f"a[href='/runs/{run_id}']"))
                expect(row).to_contain_text("Success")
                expect(row).to_contain_text(tile)
                page.screenshot(path=str(tmp_path / "runs.png"))
            except BaseException:
                try:
                    page.screenshot(path=str(tmp_path / "failure.png"))
                except Exception:  # noqa: BLE001 - the page may be gone
                    pass
                print(f"\nscreenshots in {tmp_path}\n----- dagster dev log ({dagster_dev.log_path}) -----\n"
                      f"{dagster_dev.log_tail()}")
                raise
        finally:
            browser.close()
    print(f"\nUI test: tile {tile} run {run_id} succeeded; {time.monotonic() - started:.1f} s in the browser; "
          f"screenshots in {tmp_path}; requests outside localhost (blocked): {sorted(set(outside)) or 'none'}")
