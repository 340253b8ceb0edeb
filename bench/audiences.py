"""Batch evaluation of 100 audiences over a million profiles.

Generates synthetic sources (`bench.synthetic`, 5M records by default: about a million
profiles and 3.5M clickstream events over the last six weeks), builds profiles and events with
the real dbt project, then evaluates 100 audiences: the shipped definitions and
variants of them with other windows and thresholds, written into a copy of the dbt
project so the repository is untouched. Prints the seconds of the evaluation model
and of the history that records it. Not a test.

    python -m bench.audiences [--records 5000000] [--audiences 100] [--reuse-warehouse]
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from bench import synthetic
from bench.identity import use_bench_database
from cdp import landing, settings, warehouse

DEFINITIONS = Path("models/intermediate/audiences/audiences.yml")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--audiences", type=int, default=100)
    parser.add_argument(
        "--reuse-warehouse",
        action="store_true",
        help="keep the profiles and events of the last run; time the audiences only",
    )
    options = parser.parse_args()
    settings.turn_telemetry_off()

    project = copy_project_with_audiences(options.audiences)
    if options.reuse_warehouse:
        use_bench_database(fresh=False)
    else:
        use_bench_database()
        with warehouse.connect() as conn, conn.cursor() as cursor:
            synthetic.create_sources(cursor, options.records)
        landing.ensure_tables()
        started = time.perf_counter()
        run_dbt_in(project, "seed")
        run_dbt_in(project, "run", "--select", "+dim_profiles", "+fct_profile_events")
        print(f"profiles and events built in {time.perf_counter() - started:.1f} s")
    # The evaluation's other inputs: as-of profiles and (empty) streaming events.
    run_dbt_in(
        project, "run", "--select",
        "int_audience_profiles", "int_streaming_records_resolved", "int_streaming_events",
    )  # fmt: skip

    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute("select count(*) from marts.dim_profiles")
        (profiles,) = cursor.fetchone()
        cursor.execute("select count(*) from marts.fct_profile_events")
        (events,) = cursor.fetchone()
    print(f"{profiles:,} profiles, {events:,} events, {options.audiences} audiences")

    # Evaluated now, as the daily build does; the synthetic events end about now.
    for label, selection in (
        ("evaluation (int_audience_members_evaluated)", "int_audience_members_evaluated"),
        ("first history write and marts", "int_audience_members_evaluated+"),
        ("the same again (nothing changed)", "int_audience_members_evaluated+"),
    ):
        seconds = run_dbt_in(project, "run", "--select", selection)
        print(f"  {label:<48} {seconds:7.1f} s")


def copy_project_with_audiences(count: int) -> Path:
    """A copy of the dbt project whose audiences.yml holds `count` audiences."""
    project = Path(tempfile.mkdtemp(prefix="cdp-audience-bench-")) / "dbt_project"
    shutil.copytree(
        settings.DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs")
    )
    path = project / DEFINITIONS
    document = yaml.safe_load(path.read_text())
    model = document["models"][0]
    shipped = model["config"]["meta"]["audiences"]

    audiences = list(shipped)
    variant = 1
    while len(audiences) < count:
        for audience in shipped:
            if len(audiences) >= count:
                break
            audiences.append(_variant(audience, variant))
        variant += 1
    model["config"]["meta"]["audiences"] = audiences
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return project


def _variant(audience: dict, number: int) -> dict:
    """The audience under a new id, with every window and threshold scaled."""
    changed = copy.deepcopy(audience)
    changed["id"] = f"{audience['id']}_v{number}"
    changed["name"] = f"{audience['name']} (variant {number})"
    _scale(changed["rule"], number + 1)
    return changed


def _scale(node, factor: int) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("days", "hours", "gte", "gt") and isinstance(value, int):
                node[key] = value * factor
            else:
                _scale(value, factor)
    elif isinstance(node, list):
        for item in node:
            _scale(item, factor)


def run_dbt_in(project: Path, *arguments: str) -> float:
    from dbt.cli.main import dbtRunner

    os.environ.update(warehouse.address().dbt_env())
    started = time.perf_counter()
    outcome = dbtRunner().invoke(
        [*arguments, "--project-dir", str(project), "--profiles-dir", str(project), "--quiet"]
    )
    if not outcome.success:
        raise RuntimeError(f"dbt {' '.join(arguments)} failed in {project}")
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
