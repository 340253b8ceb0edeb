"""Runs the project's Airflow DAGs in-process, in the order their Assets chain them.

The command line uses this to run the whole flow once without a scheduler: each DAG
runs through `DAG.test()`, the same task code the scheduler would run, and a DAG
only runs when the one before it announced its Asset, as under the scheduler.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

from cdp import settings

log = logging.getLogger(__name__)

# The tasks whose success announces each DAG's Asset: a later DAG runs only after one.
ANNOUNCING_TASKS = {
    "land_extracts": ("announce_landed_batches",),
    "validate_batches": ("announce_promoted_records", "announce_promoted_events"),
    "evaluate_streaming_audiences": (),
    "build_profiles": ("run_dbt_build",),
}


class DagRunFailed(RuntimeError):
    """A DAG run ended in failure; the message names the DAG and failed tasks."""


def airflow_environment() -> dict[str, str]:
    """Settings that point Airflow at this project, unless the caller set them."""
    home = settings.state_dir() / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(settings.PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(settings.PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        **settings.TELEMETRY_OFF,
    }


def prepare_airflow() -> None:
    """Apply the environment and create or upgrade the metadata database."""
    for key, value in airflow_environment().items():
        os.environ.setdefault(key, value)
    settings.state_dir().mkdir(parents=True, exist_ok=True)

    completed = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    if completed.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{completed.stderr[-2000:]}")


def run_flow(landing_url: str) -> dict[str, str]:
    """Land, validate, evaluate streaming audiences, build and activate once.

    Returns each DAG's outcome. A failure while landing, validating or building stops
    the flow with DagRunFailed; a failing destination is reported in its outcome and
    the others still run. Under the scheduler the build waits for CRM or loyalty rows
    or its daily time; a run of the whole flow builds after any promotion, as a day's
    cycle would.
    """
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(settings.PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise DagRunFailed(f"DAG files failed to import: {bag.import_errors}")

    outcomes: dict[str, str] = {}
    landed = run_dag(bag, "land_extracts", {"landing_url": landing_url})
    outcomes["land_extracts"] = "ran" if landed else "ran, nothing new"

    promoted: set[str] = set()
    if landed:
        promoted = run_dag(bag, "validate_batches", {})
        outcomes["validate_batches"] = "ran" if promoted else "ran, nothing promoted"
    else:
        outcomes["validate_batches"] = "not triggered"

    if "announce_promoted_events" in promoted:
        run_dag(bag, "evaluate_streaming_audiences", {})
        outcomes["evaluate_streaming_audiences"] = "ran"
    else:
        outcomes["evaluate_streaming_audiences"] = "not triggered"

    built: set[str] = set()
    if promoted:
        built = run_dag(bag, "build_profiles", {})
        outcomes["build_profiles"] = "ran"
    else:
        outcomes["build_profiles"] = "not triggered"

    # Destinations are independent: one failing must not keep the others from running.
    for dag_id in sorted(bag.dag_ids):
        if not dag_id.startswith("activate_"):
            continue
        if not built:
            outcomes[dag_id] = "not triggered"
            continue
        try:
            run_dag(bag, dag_id, {"dry_run": False})
            outcomes[dag_id] = "ran"
        except DagRunFailed as failure:
            outcomes[dag_id] = f"FAILED: {failure}"
    return outcomes


def run_dag(bag, dag_id: str, conf: dict) -> set[str]:
    """Run one DAG in-process with `conf`; returns its tasks that announced an Asset."""
    dag = bag.get_dag(dag_id)
    log.info("running DAG %s", dag_id)
    dag_run = dag.test(run_conf=conf)

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    failed = sorted(
        task for task, state in states.items() if state in ("failed", "upstream_failed")
    )
    if str(dag_run.state) != "success" or failed:
        raise DagRunFailed(
            f"DAG {dag_id} run {dag_run.run_id} ended {dag_run.state}; failed tasks: "
            f"{', '.join(failed) or 'none recorded'}."
        )
    # The tasks that announced an Asset, so the caller knows which DAGs to run next.
    return {task for task in ANNOUNCING_TASKS.get(dag_id, ()) if states.get(task) == "success"}
