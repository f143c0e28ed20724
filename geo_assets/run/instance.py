"""DAGSTER_HOME = storage/ (absolute), with a dagster.yaml, before any instance is made."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from geo_assets.config.settings import PROJECT_ROOT, GeoSettings
from geo_assets.store.backends import is_local


def ensure_dagster_home(settings: GeoSettings | None = None) -> Path:
    settings = settings or GeoSettings.from_env()
    if not os.environ.get("DAGSTER_HOME") and not is_local(settings.storage_dir):
        # The instance (SQLite files or a dagster.yaml pointing at Postgres) is never on S3.
        raise RuntimeError(f"GEO_ASSETS_STORAGE is {settings.storage_dir}: set DAGSTER_HOME to a local folder "
                           "holding dagster.yaml (SQLite there, or Postgres as in deploy/dagster.yaml)")
    home = Path(os.environ.get("DAGSTER_HOME") or settings.storage_dir).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    yaml_path = home / "dagster.yaml"
    template = PROJECT_ROOT / "storage" / "dagster.yaml"
    if not yaml_path.exists() and template.exists() and template.resolve() != yaml_path:
        shutil.copyfile(template, yaml_path)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance():
    import dagster as dg

    ensure_dagster_home()
    return dg.DagsterInstance.get()
