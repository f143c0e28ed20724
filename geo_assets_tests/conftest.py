"""Test settings: offline models, and a small 4-tile region around the Midlands and
London. Settings are read when definitions are built, so these could be set later;
setting them first keeps every test on the same region."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GEO_ASSETS_REGION"] = "-2.0,51.0,0.0,53.0"
os.environ["GEO_ASSETS_TILE_SIZE"] = "1.0"
_session_dir = tempfile.mkdtemp(prefix="geo_assets_tests_")
# Nothing a test does by accident lands in the repository's storage/ or models/.
os.environ["GEO_ASSETS_STORAGE"] = os.path.join(_session_dir, "storage")
os.environ["GEO_ASSETS_MODELS"] = os.path.join(_session_dir, "models")
os.environ["GEO_ASSETS_GEOCELLS"] = "0.05,0.1"

import pytest  # noqa: E402


@pytest.fixture
def dagster_resources(tmp_path):
    from geo_assets.defs.resources import build_resources
    from geo_assets.config.settings import GeoSettings

    return build_resources(GeoSettings.from_env().with_storage(tmp_path / "storage", tmp_path / "models"))
