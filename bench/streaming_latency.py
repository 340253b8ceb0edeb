"""Streaming audience latency under the real Airflow scheduler (`airflow standalone`).

Builds a warehouse from sample extracts, starts `cdp airflow` (standalone: scheduler,
API server, triggerer, dag processor), unpauses the chain, then drops fresh clickstream
files one at a time and triggers `land_extracts` for each, as its schedule would. For
every file it reads from the warehouse when the file was landed, when its rows were
promoted and when the streaming evaluation recorded memberships, and prints p50/p95.

    python -m bench.streaming_latency [--files 12] [--customers 500]

Runs in its own state folder and database (`cdp_latency` on the server WAREHOUSE_URL
names, else the embedded Postgres); it never touches the project's data.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import httpx
import psycopg2

from cdp import settings, warehouse

BENCH_DATABASE = "cdp_latency"
PORT = 8095
UNPAUSED = (
    "land_extracts",
    "validate_batches",
    "evaluate_streaming_audiences",
    "build_profiles",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--customers", type=int, default=500)
    options = parser.parse_args()
    settings.turn_telemetry_off()

    state = Path(tempfile.mkdtemp(prefix="cdp-latency-"))
    os.environ["CDP_STATE_DIR"] = str(state)
    use_bench_database()
    landing = state / "landing"

    print(f"state in {state}; building the warehouse from {options.customers} customers")
    run_cdp("generate", "--out", str(landing), "--customers", str(options.customers))
    # The S3 destination has no server here; only the build matters for the benchmark.
    run_cdp("run", "--landing", str(landing), check=False)

    airflow = start_airflow(state)
    try:
        client = api_client(state)
        for dag_id in UNPAUSED:
            client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        customers = known_customers(20)
        assert customers, "the build made no profiles with a customer id"

        samples = []
        for number in range(options.files):
            file_name = f"fresh-{number:03d}.jsonl"
            dropped_at = datetime.now(UTC)
            write_clickstream(landing / "web_events" / file_name, customers, number)
            client.post(
                "/api/v2/dags/land_extracts/dagRuns", json={"logical_date": None}
            ).raise_for_status()
            sample = wait_for_membership(file_name, dropped_at)
            samples.append(sample)
            print(
                f"  {file_name}: landed {sample['landed']:5.1f} s after the trigger, "
                f"memberships {sample['promoted_to_membership']:5.1f} s after promotion, "
                f"{sample['landed_to_membership']:5.1f} s after landing"
            )
    finally:
        os.killpg(airflow.pid, signal.SIGTERM)
        airflow.wait(timeout=60)

    print("\nlatency over", len(samples), "files (seconds)")
    for key in ("landed_to_membership", "promoted_to_membership", "trigger_to_membership"):
        values = sorted(sample[key] for sample in samples)
        print(f"  {key:<26} p50 {percentile(values, 50):6.1f}   p95 {percentile(values, 95):6.1f}")


def use_bench_database() -> None:
    server_url = settings.warehouse_url() or warehouse.start_embedded()
    kwargs = warehouse.WarehouseAddress.from_url(server_url).connect_kwargs()
    with closing(psycopg2.connect(**kwargs)) as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"drop database if exists {BENCH_DATABASE} with (force)")
            cursor.execute(f"create database {BENCH_DATABASE}")
    url = urlunparse(urlparse(server_url)._replace(path=f"/{BENCH_DATABASE}"))
    os.environ["WAREHOUSE_URL"] = url


def run_cdp(*args: str, check: bool = True) -> None:
    command = [sys.executable, "-m", "cdp.cli", *args]
    subprocess.run(command, check=check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_airflow(state: Path) -> subprocess.Popen:
    log = open(state / "airflow-standalone.log", "w")  # noqa: SIM115 - lives as long as Airflow
    process = subprocess.Popen(
        [sys.executable, "-m", "cdp.cli", "airflow", "--port", str(PORT)],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Its own process group, so stopping it stops the scheduler and servers it started.
        start_new_session=True,
    )
    for _ in range(240):
        try:
            if httpx.get(f"http://localhost:{PORT}/api/v2/monitor/health").status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"Airflow did not start; see {state / 'airflow-standalone.log'}")


def api_client(state: Path) -> httpx.Client:
    passwords = state / "airflow" / "simple_auth_manager_passwords.json.generated"
    password = json.loads(passwords.read_text())["admin"]
    token = httpx.post(
        f"http://localhost:{PORT}/auth/token", json={"username": "admin", "password": password}
    ).json()["access_token"]
    return httpx.Client(
        base_url=f"http://localhost:{PORT}", headers={"Authorization": f"Bearer {token}"}
    )


def known_customers(count: int) -> list[str]:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select customer_id from marts.dim_profiles where customer_id is not null"
            " order by customer_id limit %s",
            (count,),
        )
        return [customer_id for (customer_id,) in cursor.fetchall()]


def write_clickstream(path: Path, customers: list[str], number: int) -> None:
    """Every customer views three products and adds one to the cart, just now."""
    now = datetime.now(UTC)
    lines = []
    for index, customer_id in enumerate(customers):
        for step, event_type in enumerate(["product_view"] * 3 + ["add_to_cart"]):
            lines.append({
                "event_id": f"latency-{number}-{index}-{step}",
                "ecid": f"{index + 1:038d}",
                "event_type": event_type,
                "occurred_at": (now - timedelta(seconds=60 - step)).isoformat(),
                "customer_id": customer_id,
                "page_url": "https://shop.example/p/1",
                "product_sku": f"SKU-{step}",
            })  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def wait_for_membership(file_name: str, dropped_at: datetime, timeout: float = 300) -> dict:
    """Poll the ledgers until the file's batch was evaluated by the streaming path."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with warehouse.connect() as conn, conn.cursor() as cursor:
            cursor.execute(
                """
                select landed.landed_at, landed.validated_at, streamed.streamed_at
                from ops.landed_files as landed
                inner join ops.streamed_batches as streamed
                    on streamed.batch_id = landed.batch_id
                where landed.file_name = %s
                """,
                (file_name,),
            )
            row = cursor.fetchone()
        if row:
            landed_at, promoted_at, evaluated_at = row
            return {
                "landed": (landed_at - dropped_at).total_seconds(),
                "landed_to_membership": (evaluated_at - landed_at).total_seconds(),
                "promoted_to_membership": (evaluated_at - promoted_at).total_seconds(),
                "trigger_to_membership": (evaluated_at - dropped_at).total_seconds(),
            }
        time.sleep(0.5)
    raise TimeoutError(f"{file_name} was not evaluated within {timeout} s")


def percentile(values: list[float], share: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[share - 1]


if __name__ == "__main__":
    main()
