"""Shared fixtures: an isolated state folder and a real warehouse per test session.

Tests that need a warehouse run against the embedded Postgres and, when
WAREHOUSE_URL is set (CI sets it to the machine's PostgreSQL), against a fresh
database created on that server and dropped afterwards.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg2
import pytest

from cdp import settings

settings.turn_telemetry_off()

# Importing Airflow configures its logging, which replaces the root logger's handlers.
# Done here, once, before any test: otherwise the first test to look up an Airflow
# connection loses pytest's log capture, and its "no personal data in the log" checks
# would pass on an empty log. Its home is a scratch folder, not the user's ~/airflow;
# the DAG runs under test get their own through cdp.orchestration.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="cdp-tests-airflow-")
import airflow  # noqa: E402, F401

# The embedded server's library logs from an atexit hook, after pytest has closed
# the streams it captured; without this each run ends in a logging traceback.
logging.raiseExceptions = False

# Read before any fixture rewrites it for a scratch database.
SERVER_URL = os.environ.get("WAREHOUSE_URL")


def warehouse_kinds() -> list:
    kinds = [pytest.param("embedded", id="embedded-postgres")]
    if SERVER_URL:
        kinds.append(pytest.param("server", id="warehouse-url-postgres"))
    return kinds


def _admin_connection(url: str):
    from cdp.warehouse import WarehouseAddress

    connection = psycopg2.connect(**WarehouseAddress.from_url(url).connect_kwargs())
    connection.autocommit = True
    return connection


@pytest.fixture(scope="session")
def embedded_pgdata(tmp_path_factory) -> Iterator[Path]:
    """One embedded server for the session, stopped at the end."""
    pgdata = tmp_path_factory.mktemp("embedded-pg")
    yield pgdata

    from cdp import settings, warehouse

    previous = os.environ.get("CDP_EMBEDDED_PGDATA")
    os.environ["CDP_EMBEDDED_PGDATA"] = str(pgdata)
    try:
        if settings.embedded_pgdata_dir() == pgdata:
            warehouse.stop_embedded()
    finally:
        if previous is not None:
            os.environ["CDP_EMBEDDED_PGDATA"] = previous


@pytest.fixture(params=warehouse_kinds())
def warehouse_env(request, embedded_pgdata, tmp_path, monkeypatch) -> Iterator[dict[str, str]]:
    """Environment naming a new, empty database and a fresh state folder.

    A test using it runs once per warehouse kind; to run on the embedded one only,
    `@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)`.
    """
    kind = request.param
    env = {"CDP_STATE_DIR": str(tmp_path / "state")}
    monkeypatch.setenv("CDP_STATE_DIR", env["CDP_STATE_DIR"])

    if kind == "embedded":
        # A database of its own inside the shared embedded server keeps tests apart.
        from cdp import warehouse

        monkeypatch.delenv("WAREHOUSE_URL", raising=False)
        monkeypatch.setenv("CDP_EMBEDDED_PGDATA", str(embedded_pgdata))
        base_url = warehouse.start_embedded()
    else:
        base_url = SERVER_URL

    database = f"cdp_test_{uuid.uuid4().hex[:10]}"
    with closing(_admin_connection(base_url)) as admin, admin.cursor() as cursor:
        cursor.execute(f'create database "{database}"')
    url = _with_database(base_url, database)
    env["WAREHOUSE_URL"] = url
    monkeypatch.setenv("WAREHOUSE_URL", url)

    yield env

    with closing(_admin_connection(base_url)) as admin, admin.cursor() as cursor:
        cursor.execute(f'drop database if exists "{database}" with (force)')


@pytest.fixture
def project_env(warehouse_env, tmp_path) -> Path:
    """A warehouse with the landing tables created; returns the test's own folder."""
    from cdp import landing

    landing.ensure_tables()
    return tmp_path


@pytest.fixture
def landing_dir(project_env: Path) -> Path:
    path = project_env / "landing"
    path.mkdir()
    return path


def query(sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of a query against the warehouse the current test points at."""
    from cdp import warehouse

    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _with_database(url: str, database: str) -> str:
    from urllib.parse import urlparse, urlunparse

    return urlunparse(urlparse(url)._replace(path=f"/{database}"))


def land_and_promote(landing_url: str) -> None:
    """Land every new file of a landing area and validate it, as the first two DAGs do."""
    from cdp import landing, validation

    landing.ensure_tables()
    for found in landing.discover_new_files(landing_url):
        landing.land_file(found)
    validation.validate_pending_batches()
