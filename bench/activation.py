"""Activation throughput: identities hashed and delivered per second to a local vendor.

Fills a scratch warehouse with one audience of N members (email and phone each, all
consenting), starts the Google Customer Match stand-in on localhost in a process of
its own, and runs the real activation path: planning (hashing in the warehouse, the
diff, the ledger), then 10,000-member requests over HTTP, each confirmed in the
ledger. A second run, with nothing changed, shows the cost of a run that sends nothing.

    python -m bench.activation [--members 1000000] [--destination google_customer_match]

Runs in its own database (`cdp_bench_activation` on the server WAREHOUSE_URL names,
else the embedded Postgres); it never touches the project's data.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import resource
import time
from contextlib import closing
from urllib.parse import urlparse, urlunparse

import psycopg2

from cdp import settings, warehouse
from tests.activation_fixtures import AUDIENCE, make_destination, set_audience

BENCH_DATABASE = "cdp_bench_activation"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument(
        "--destination",
        default="google_customer_match",
        choices=("google_customer_match", "meta_custom_audiences"),
    )
    options = parser.parse_args()
    settings.turn_telemetry_off()
    use_bench_database()

    print(f"filling one audience with {options.members:,} members")
    fill_audience(options.members)

    from cdp.activation import runner

    vendor = StandInProcess(options.destination)
    destination = make_destination(options.destination, timeout_seconds=60.0)
    os.environ[f"AIRFLOW_CONN_{destination.connection_id.upper()}"] = json.dumps(vendor.connection)
    # Quiet per-batch lines: a hundred of them would drown the figures.
    logging.getLogger("cdp.activation").setLevel(logging.WARNING)

    started = time.perf_counter()
    first = runner.activate_audience(destination, AUDIENCE, "bench-1")
    first_seconds = time.perf_counter() - started
    planned, delivered = phase_seconds("bench-1")

    identities = identities_held(destination.name)
    started = time.perf_counter()
    runner.activate_audience(destination, AUDIENCE, "bench-2")
    idle_seconds = time.perf_counter() - started

    print(
        f"\n{options.destination}: {first.rows_added:,} members, {identities:,} identities "
        f"hashed and delivered in {first_seconds:.1f} s, in {first.batch_count} requests"
    )
    print(f"  {identities / first_seconds:,.0f} identities/s end to end "
          f"({first.rows_added / first_seconds:,.0f} members/s)")  # fmt: skip
    print(f"  planning (hashing, diff, ledger) {planned:.1f} s; delivery and confirmation "
          f"{delivered:.1f} s")  # fmt: skip
    print(f"  a second run with nothing to send: {idle_seconds:.1f} s")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  sender's peak memory: {peak_mb:,.0f} MB")
    print(f"  warehouse: {warehouse.address().describe()}")

    held, most_applied = vendor.report()
    vendor.stop()
    print(f"  the vendor holds {held:,} identities; the most any was applied: {most_applied}")
    if held != identities or most_applied != 1:
        raise SystemExit("the vendor does not hold exactly what the ledger says was sent once")


class StandInProcess:
    """The vendor stand-in in a process of its own, as a real vendor would be.

    In this process it would share the interpreter lock with the sender and make
    activation look slower than it is.
    """

    def __init__(self, destination_type: str):
        context = multiprocessing.get_context("fork")
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve_stand_in, args=(destination_type, child_end), daemon=True
        )
        self._process.start()
        self.connection = self._pipe.recv()

    def report(self) -> tuple[int, int]:
        self._pipe.send("report")
        return self._pipe.recv()

    def stop(self) -> None:
        self._pipe.send("stop")
        self._process.join(timeout=10)


def _serve_stand_in(destination_type: str, pipe) -> None:
    import gc

    from cdp.vendors.sandbox import start_stand_in

    # A real vendor answers from its own machines. This one shares two cores with the
    # sender and the warehouse, and Python's cyclic collector, walking the millions of
    # values it holds after every few thousand parsed, would bill its slowness to us.
    gc.disable()
    vendor, connection = start_stand_in(destination_type)
    pipe.send(connection)
    while pipe.recv() == "report":
        held = sum(len(values) for values in vendor.members.values())
        pipe.send((held, max(vendor.applied_adds.values(), default=0)))
    vendor.stop()


def use_bench_database() -> None:
    server_url = settings.warehouse_url() or warehouse.start_embedded()
    kwargs = warehouse.WarehouseAddress.from_url(server_url).connect_kwargs()
    with closing(psycopg2.connect(**kwargs)) as admin:
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"drop database if exists {BENCH_DATABASE} with (force)")
            cursor.execute(f"create database {BENCH_DATABASE}")
    os.environ["WAREHOUSE_URL"] = urlunparse(
        urlparse(server_url)._replace(path=f"/{BENCH_DATABASE}")
    )


def fill_audience(members: int) -> None:
    set_audience([])  # creates the relations activation reads
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            """
            insert into activation.act_audience_members
            select %(audience)s, 'p' || n, 'c' || n, null, 'person' || n || '@example.com',
                   encode(sha256(convert_to('person' || n || '@example.com', 'UTF8')), 'hex'),
                   '+4477' || lpad(n::text, 8, '0'), true, true, true, %(audience)s, now()
            from generate_series(1, %(members)s) as n
            """,
            {"audience": AUDIENCE, "members": members},
        )
        cursor.execute("analyze activation.act_audience_members")


def phase_seconds(run_key: str) -> tuple[float, float]:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            """
            select extract(epoch from min(batch.finished_at) - run.planned_at),
                   extract(epoch from max(batch.finished_at) - min(batch.finished_at))
            from ops.activation_runs as run
            join ops.activation_batches as batch using (destination, audience_id, run_key)
            where run.run_key = %s
            group by run.planned_at
            """,
            (run_key,),
        )
        planned, delivered = cursor.fetchone()
    return float(planned), float(delivered)


def identities_held(destination: str) -> int:
    """Identity values the destination confirmed holding, from the ledger's state."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            """
            select coalesce(sum(jsonb_array_length(held.values)), 0)
            from ops.activation_state as state
            cross join lateral jsonb_each(state.sent_identities) as held(kind, values)
            where state.destination = %s and state.is_member
            """,
            (destination,),
        )
        return int(cursor.fetchone()[0])


if __name__ == "__main__":
    main()
