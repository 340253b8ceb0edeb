"""`make bench`: identity stitching at 1M and 5M source records, and a long chain.

Prints, per size: the dbt build of the identity models (all linking rules) and,
inside it, the stitching step's wall time and rounds; then the same edges through
the in-process union-find floor and through full-table label propagation. Runs in
its own database, `cdp_bench`, on the server WAREHOUSE_URL names (default: the
embedded one); it never touches the project's data.

    python -m bench.identity                 # 1M and 5M records, and the chain
    python -m bench.identity --records 100000 --chain 2000   # a quick look
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2

from bench import baselines, synthetic
from cdp import settings, warehouse

log = logging.getLogger(__name__)

BENCH_DATABASE = "cdp_bench"
COMPONENTS_PROJECT = Path(__file__).parents[1] / "tests" / "dbt_components_project"
# Full-table propagation needs one round per hop of the longest path; on the chain
# it would run for hours, so it stops here and the figure says so.
FULL_TABLE_MAX_ROUNDS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--chain", type=int, default=20_000)
    parser.add_argument(
        "--derived-edges",
        action="store_true",
        help="skip the dbt identity models; stitch pairs of identifiers seen on one record",
    )
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings.turn_telemetry_off()

    use_bench_database()
    for records in options.records:
        report_records(records, options.derived_edges)
    report_chain(options.chain)


def use_bench_database(fresh: bool = True) -> None:
    """Point WAREHOUSE_URL at the bench database on the configured server, new if fresh."""
    server_url = settings.warehouse_url() or warehouse.start_embedded()
    admin = psycopg2.connect(**warehouse.WarehouseAddress.from_url(server_url).connect_kwargs())
    admin.autocommit = True
    with closing(admin), admin.cursor() as cursor:
        if fresh:
            cursor.execute(f"drop database if exists {BENCH_DATABASE} with (force)")
            cursor.execute(f"create database {BENCH_DATABASE}")
    os.environ["WAREHOUSE_URL"] = urlunparse(
        urlparse(server_url)._replace(path=f"/{BENCH_DATABASE}")
    )
    print(f"benchmark database: {warehouse.address().describe()}")


def report_records(records: int, derived_edges: bool) -> None:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        started = time.perf_counter()
        synthetic.create_sources(cursor, records)
    print(f"\n== {records:,} source records (generated in {time.perf_counter() - started:.1f} s)")

    if derived_edges:
        edges_table, runs_table, build_seconds = build_on_derived_edges()
    else:
        edges_table, runs_table, build_seconds = build_identity_models()

    with warehouse.connect() as conn, conn.cursor() as cursor:
        print_stitching(cursor, runs_table, build_seconds)
        print_baselines(cursor, edges_table)


# Every linking rule, from raw identity values to the profile each record belongs to.
IDENTITY_MODELS = "+int_records_resolved +int_identity_conflicts +bdg_profile_identities"


def build_identity_models() -> tuple[str, str, float]:
    """The real identity models when they build; else the engine on derived edges."""
    from cdp.transform import DbtRunFailed, run_dbt

    run_dbt("seed")
    started = time.perf_counter()
    try:
        results = run_dbt("run", "--select", IDENTITY_MODELS, "--full-refresh")
    except DbtRunFailed as failure:
        print(f"identity models did not build ({failure}); timing the engine on derived edges")
        return build_on_derived_edges()
    build_seconds = time.perf_counter() - started

    print("identity models, seconds each (two run at a time where the DAG allows):")
    for row in sorted(results, key=lambda row: -row["seconds"]):
        print(f"  {row['node'].rsplit('.', 1)[-1]:<42} {row['seconds']:7.1f}")
    print(f"  {'sum':<42} {sum(row['seconds'] for row in results):7.1f}")
    return (
        "intermediate.int_identity_edges",
        "intermediate.int_identity_components__runs",
        build_seconds,
    )


def build_on_derived_edges() -> tuple[str, str, float]:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        derive_edges(cursor)

    started = time.perf_counter()
    run_components_project("--full-refresh")
    return "graph.test_edges", "analytics.graph_components__runs", time.perf_counter() - started


def derive_edges(cursor) -> None:
    """Identifier pairs seen on one record, without any linking rule."""
    cursor.execute("create schema if not exists graph")
    cursor.execute("drop table if exists graph.test_edges")
    cursor.execute(
        """
        create table graph.test_edges as
        with pairs as (
            select 'crm_id' as ns_a, customer_id as value_a, 'email' as ns_b, email as value_b
            from validated.crm_customers
            union all
            select 'loyalty_id', loyalty_id, 'crm_id', coalesce(customer_id, loyalty_id)
            from validated.loyalty_members
            union all
            select 'ecid', ecid, 'crm_id', coalesce(customer_id, ecid)
            from validated.web_events
        )
        select distinct
            ('x' || substr(md5(ns_a || ':' || value_a), 1, 15))::bit(60)::bigint as node_a,
            ('x' || substr(md5(ns_b || ':' || value_b), 1, 15))::bit(60)::bigint as node_b
        from pairs
        """
    )


def run_components_project(*args: str) -> None:
    from dbt.cli.main import dbtRunner

    os.environ.update(warehouse.address().dbt_env())
    outcome = dbtRunner().invoke(
        [
            "run",
            *args,
            "--project-dir",
            str(COMPONENTS_PROJECT),
            "--profiles-dir",
            str(settings.DBT_PROJECT_DIR),
            "--quiet",
        ]
    )
    if not outcome.success:
        raise RuntimeError(f"connected_components build failed: {outcome.exception}")


def print_stitching(cursor, runs_table: str, build_seconds: float) -> None:
    cursor.execute(
        f"select mode, rounds, edge_count, nodes_recomputed, seconds from {runs_table} "
        "order by built_at desc limit 1"
    )
    mode, rounds, edges, nodes, seconds = cursor.fetchone()
    print(f"dbt run (build wall time):        {build_seconds:7.1f} s")
    print(
        f"stitching ({mode}):            {float(seconds):7.1f} s, {rounds} rounds, "
        f"{edges:,} edges, {nodes:,} nodes"
    )


def print_baselines(cursor, edges_table: str) -> None:
    floor = baselines.union_find_floor(cursor, edges_table)
    print(
        f"union-find floor (COPY+scipy):    {floor['seconds']:7.1f} s, "
        f"{floor['components']:,} components"
    )
    full = baselines.full_table_propagation(cursor, edges_table, FULL_TABLE_MAX_ROUNDS)
    state = "converged" if full["converged"] else "NOT converged, stopped"
    print(
        f"full-table label propagation:     {full['seconds']:7.1f} s, "
        f"{full['rounds']} rounds ({state})"
    )


def report_chain(length: int) -> None:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        synthetic.create_chain(cursor, "graph", length)
    print(f"\n== a chain of {length:,} nodes")

    started = time.perf_counter()
    run_components_project("--full-refresh")
    build_seconds = time.perf_counter() - started

    with warehouse.connect() as conn, conn.cursor() as cursor:
        print_stitching(cursor, "analytics.graph_components__runs", build_seconds)
        print_baselines(cursor, "graph.test_edges")


if __name__ == "__main__":
    main()
