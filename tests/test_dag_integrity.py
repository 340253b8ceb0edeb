"""The DAG files import cleanly, touch nothing at parse time and chain by Assets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cdp import settings
from cdp.activation.destinations import load_all

DAGS_FOLDER = settings.PROJECT_ROOT / "dags"

# Parses the DAG folder in a fresh interpreter where any database or network
# connection attempt raises, so a DAG file that does I/O at import fails the test.
PARSE_WITHOUT_IO = """
import socket, sys
import psycopg2

def refuse(*args, **kwargs):
    raise RuntimeError("connection attempted while parsing DAG files")

psycopg2.connect = refuse
socket.socket.connect = refuse

from airflow.dag_processing.dagbag import DagBag

bag = DagBag(sys.argv[1])
for path, error in bag.import_errors.items():
    print("IMPORT ERROR", path, error)
for dag_id in sorted(bag.dag_ids):
    dag = bag.dags[dag_id]
    condition = getattr(dag.timetable, "asset_condition", None)
    print("DAG", dag_id, repr(condition), ",".join(sorted(dag.task_ids)))
"""


@pytest.fixture(scope="module")
def parsed(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    }
    completed = subprocess.run(
        [sys.executable, "-c", PARSE_WITHOUT_IO, str(DAGS_FOLDER)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    errors = [line for line in completed.stdout.splitlines() if line.startswith("IMPORT ERROR")]
    assert not errors, "\n".join(errors)
    return {
        line.split()[1]: line for line in completed.stdout.splitlines() if line.startswith("DAG ")
    }


def test_every_dag_file_imports_without_touching_the_network(parsed):
    expected = {
        "land_extracts",
        "validate_batches",
        "build_profiles",
        "evaluate_audiences",
        "evaluate_streaming_audiences",
    }
    expected |= {f"activate_{name}" for name in load_all()}
    assert set(parsed) == expected


def test_each_stage_is_triggered_by_the_asset_of_the_stage_before(parsed):
    assert "cdp_landed_batches" in parsed["validate_batches"]
    assert "cdp_promoted_record_batches" in parsed["build_profiles"]
    assert "cdp_promoted_event_batches" in parsed["evaluate_streaming_audiences"]
    for name, destination in load_all().items():
        if destination.runs_after_each_build:
            assert "cdp_audiences_built" in parsed[f"activate_{name}"]


def test_every_dag_file_has_a_docstring():
    for path in Path(DAGS_FOLDER).glob("*.py"):
        assert path.read_text().lstrip().startswith('"""'), f"{path.name} has no docstring"
