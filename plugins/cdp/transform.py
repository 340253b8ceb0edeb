"""Runs the dbt project in-process against the warehouse."""

from __future__ import annotations

import logging
import os

from cdp import settings, warehouse

log = logging.getLogger(__name__)


class DbtRunFailed(RuntimeError):
    """dbt finished with errors; the message lists the failing nodes."""


class DbtCompileFailed(RuntimeError):
    """dbt could not compile a snippet; the message is dbt's, e.g. a compiler error."""


def dbt_environment() -> dict[str, str]:
    """What profiles.yml reads, plus switches that keep dbt off the network."""
    return {**warehouse.address().dbt_env(), **settings.TELEMETRY_OFF}


def run_dbt(*args: str, dbt_vars: dict[str, str] | None = None) -> list[dict]:
    """Invoke `dbt <args>` on the project and return one summary per node run."""
    from dbt.cli.main import dbtRunner

    os.environ.update(dbt_environment())
    command = [
        *args,
        "--project-dir",
        str(settings.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(settings.DBT_PROJECT_DIR),
    ]
    if dbt_vars:
        import json

        command += ["--vars", json.dumps(dbt_vars)]

    # One dbt run at a time per warehouse: the daily build and a backfill both rebuild
    # the audience evaluation tables, and interleaved they would read each other's.
    with warehouse.exclusive("cdp dbt run"):
        log.info("running dbt %s", " ".join(args))
        outcome = dbtRunner().invoke(command)

    results = _node_results(outcome.result)
    failed = [row for row in results if row["status"] in ("error", "fail", "runtime error")]
    if failed or not outcome.success:
        names = ", ".join(f"{row['node']} ({row['status']})" for row in failed) or "see dbt log"
        raise DbtRunFailed(f"dbt {' '.join(args)} failed: {names}") from outcome.exception
    log.info("dbt %s finished: %d nodes", args[0], len(results))
    return results


def _node_results(result: object) -> list[dict]:
    rows = []
    for node_result in getattr(result, "results", None) or []:
        rows.append(
            {
                "node": node_result.node.unique_id,
                "status": str(node_result.status),
                "seconds": round(node_result.execution_time or 0.0, 2),
            }
        )
    return rows


def compile_inline(sql: str, dbt_vars: dict | None = None) -> str:
    """Compile a Jinja/SQL snippet with the project's macros and refs; return the SQL.

    The same compiler as `dbt build`, so a question about the build (is this definition
    valid? how is this audience evaluated?) gets the build's answer. The snippet
    compiles into a target folder of its own so that it never rewrites the manifest a
    running build reads; dbt's console output is silenced, its log file still written.
    """
    from dbt.cli.main import dbtRunner

    os.environ.update(dbt_environment())
    command = [
        "compile",
        "--inline",
        sql,
        "--log-level",
        "none",
        "--project-dir",
        str(settings.DBT_PROJECT_DIR),
        "--profiles-dir",
        str(settings.DBT_PROJECT_DIR),
        "--target-path",
        str(settings.state_dir() / "dbt-inline-target"),
    ]
    if dbt_vars:
        import json

        command += ["--vars", json.dumps(dbt_vars)]

    log.info("compiling an inline snippet of %d characters", len(sql))
    outcome = dbtRunner().invoke(command)
    if not outcome.success:
        raise DbtCompileFailed(str(outcome.exception or "dbt compile --inline failed"))
    return outcome.result.results[0].node.compiled_code
