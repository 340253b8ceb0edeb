"""Where things live, read from the environment with project-local defaults.

Every value is read when it is asked for, never at import time, so DAG files that
import this module stay free of side effects while Airflow parses them.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
DESTINATIONS_DIR = PROJECT_ROOT / "destinations"


def state_dir() -> Path:
    """Project-local folder for everything a run creates (git ignores it)."""
    return Path(os.environ.get("CDP_STATE_DIR", PROJECT_ROOT / ".state"))


def landing_url() -> str:
    """The landing area: a folder path or an ``s3://bucket/prefix`` URL."""
    return os.environ.get("CDP_LANDING_URL", str(state_dir() / "landing"))


def warehouse_url() -> str | None:
    """An explicit Postgres URL, or None to use the embedded server."""
    return os.environ.get("WAREHOUSE_URL") or None


def embedded_pgdata_dir() -> Path:
    return Path(os.environ.get("CDP_EMBEDDED_PGDATA", state_dir() / "warehouse"))


def reports_dir() -> Path:
    return state_dir() / "reports"


def exports_dir() -> Path:
    """Default root for the local-folder file export destination."""
    return Path(os.environ.get("CDP_EXPORTS_DIR", state_dir() / "exports"))
