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


# Switches that keep dbt, Great Expectations and Airflow from phoning home.
TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
    "GX_ANALYTICS_ENABLED": "false",
    "SCARF_ANALYTICS": "false",
    "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
}


def turn_telemetry_off() -> None:
    for key, value in TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)


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


def destinations_dir() -> Path:
    """The destination files; CDP_DESTINATIONS_DIR points a run at another set of them."""
    return Path(os.environ.get("CDP_DESTINATIONS_DIR", DESTINATIONS_DIR))
