"""The `cdp` command: what analysts and operators run from a terminal.

cdp generate   write sample extracts into a landing folder
cdp run        land, validate, build and activate once, through the Airflow DAGs
cdp demo       generate (first time only), run, and print the summary
cdp summary    print what the warehouse holds now
cdp explain    why an identity (or profile id) belongs to its profile
cdp backfill   evaluate audiences as of each day of a range, through the audience DAG
cdp audiences list|check|docs|explain|chart   audience definitions, how each is
                                         evaluated (also written for dbt docs), why a
                                         profile is in or out, sizes over time
cdp airflow    Airflow standalone with these DAGs, UI on localhost
cdp warehouse  start/stop the embedded Postgres or print its dbt environment
cdp destinations check   validate the destination files (and their dbt exposures)
cdp destinations runs NAME   a destination's recent runs, from the ledger
cdp suites write|check   regenerate or check the GX suites in expectations/
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shlex
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

from cdp import settings

# Airflow's dependencies warn, on every command, that a headless machine has no
# per-user runtime folder; they fall back to /tmp, which is fine here.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

log = logging.getLogger("cdp")

DEMO_BUCKETS = ("cdp-exports",)


def main(argv: list[str] | None = None) -> int:
    settings.turn_telemetry_off()
    arguments = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if arguments.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return arguments.handler(arguments)
    except Exception as error:  # noqa: BLE001 - the entry point turns errors into messages
        if arguments.verbose:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cdp", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    commands = parser.add_subparsers(required=True, metavar="command")

    generate = commands.add_parser("generate", help="write sample extracts")
    generate.add_argument("--out", type=Path, default=None, help="landing folder to write")
    generate.add_argument("--customers", type=int, default=2000, help="people to simulate")
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--day", type=int, default=1, help="2, 3, ... for later extracts")
    generate.add_argument("--as-of", type=_date, default=None, help="YYYY-MM-DD (default today)")
    generate.set_defaults(handler=_generate)

    run = commands.add_parser("run", help="run the whole flow once through the DAGs")
    run.add_argument(
        "--landing", default=None, help="folder or s3://bucket/prefix (default CDP_LANDING_URL)"
    )
    run.add_argument(
        "--local-vendors",
        action="store_true",
        help="deliver API and SFTP destinations to local stand-ins that live as long as this "
        "command (a demo: the next command starts empty ones; see docs/activation.md)",
    )
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="sample data end to end, with a local S3")
    demo.add_argument("--customers", type=int, default=2000)
    demo.set_defaults(handler=_demo)

    airflow = commands.add_parser("airflow", help="Airflow standalone with these DAGs")
    airflow.add_argument("--port", type=int, default=8080)
    airflow.set_defaults(handler=_airflow)

    summary = commands.add_parser("summary", help="print what the warehouse holds")
    summary.set_defaults(handler=_summary)

    explain = commands.add_parser("explain", help="why an identity belongs to its profile")
    explain.add_argument(
        "value", help="an identity value as typed (email, phone, id) or a profile id"
    )
    explain.add_argument("--namespace", default=None, help="search this namespace only")
    explain.set_defaults(handler=_explain)

    backfill = commands.add_parser(
        "backfill", help="evaluate audiences as of past days (fills their history)"
    )
    backfill.add_argument("--from-date", type=_date, required=True, help="YYYY-MM-DD")
    backfill.add_argument("--to-date", type=_date, default=None, help="YYYY-MM-DD, included")
    backfill.add_argument(
        "--audience", action="append", default=[], help="an audience id (repeat); default all"
    )
    backfill.set_defaults(handler=_backfill)
    _add_audience_commands(commands)

    warehouse = commands.add_parser("warehouse", help="the embedded Postgres")
    warehouse.add_argument("action", choices=("start", "stop", "env"))
    warehouse.set_defaults(handler=_warehouse)

    destinations = commands.add_parser(
        "destinations", help="destination files, their dbt exposures and recent runs"
    )
    destinations.add_argument("action", choices=("check", "exposures", "runs"))
    destinations.add_argument("name", nargs="?", help="the destination, for `runs`")
    destinations.add_argument("--limit", type=int, default=20, help="runs to show")
    destinations.set_defaults(handler=_destinations)

    suites = commands.add_parser("suites", help="Great Expectations suites")
    suites.add_argument("action", choices=("write", "check"))
    suites.set_defaults(handler=_suites)
    return parser


def _add_audience_commands(commands) -> None:
    audiences = commands.add_parser("audiences", help="audience definitions")
    actions = audiences.add_subparsers(required=True, metavar="action")

    listing = actions.add_parser("list", help="each audience, its mode (streaming/batch), why")
    listing.set_defaults(handler=_audiences_list)

    check = actions.add_parser(
        "check", help="validate the definitions through dbt; check the dbt docs table"
    )
    check.set_defaults(handler=_audiences_check)

    docs = actions.add_parser("docs", help="write each audience's mode and reason for dbt docs")
    docs.set_defaults(handler=_audiences_docs)

    explain = actions.add_parser("explain", help="why a profile is in an audience or not")
    explain.add_argument("audience_id", help="the audience's id")
    explain.add_argument(
        "value", help="an identity value as typed (email, phone, id) or a profile id"
    )
    explain.add_argument("--namespace", default=None, help="search this namespace only")
    explain.add_argument(
        "--at", type=_instant, default=None,
        help="evaluate as of this ISO 8601 instant, e.g. 2026-11-30T00:00:00Z (default now)",
    )  # fmt: skip
    explain.set_defaults(handler=_audiences_explain)

    chart = actions.add_parser("chart", help="audience sizes over time as an HTML page")
    chart.add_argument("--audience", action="append", default=[], help="an id (repeat)")
    chart.add_argument("--out", type=Path, default=None, help="default .state/reports/")
    chart.set_defaults(handler=_audiences_chart)


def _audiences_chart(arguments) -> int:
    from cdp import audience_chart

    series = audience_chart.sizes_over_time(arguments.audience)
    out = arguments.out or settings.reports_dir() / "audience_sizes.html"
    audience_chart.write_page(series, out)
    print(f"{len(series)} audiences charted: {out}")
    return 0


def _instant(text: str) -> str:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 instant like 2026-11-30T00:00:00Z"
        ) from None
    return text


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from None


def _generate(arguments) -> int:
    from cdp import samples

    out = arguments.out or Path(settings.landing_url())
    summary = samples.generate(
        out, customers=arguments.customers, seed=arguments.seed, as_of=arguments.as_of,
        day=arguments.day,
    )  # fmt: skip
    print(summary)
    return 0


def _run(arguments) -> int:
    from cdp import orchestration, summary

    landing_url = arguments.landing or settings.landing_url()
    orchestration.prepare_airflow()
    if getattr(arguments, "local_vendors", False):
        from cdp.vendors import sandbox

        sandbox.start_for_destinations()
    log_path = settings.state_dir() / "logs" / f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    if arguments.verbose:
        log_path = "the output above"
        outcomes = orchestration.run_flow(landing_url)
    else:
        print(f"Running the DAGs; their task logs go to {log_path}")
        try:
            with _output_to(log_path):
                outcomes = orchestration.run_flow(landing_url)
        except Exception as error:
            raise RuntimeError(f"{error}\nThe full log is {log_path}") from error
    for dag_id, outcome in outcomes.items():
        print(f"{dag_id:<36} {outcome}")
    print()
    print(summary.render(summary.collect()))

    failed = [dag_id for dag_id, outcome in outcomes.items() if outcome.startswith("FAILED")]
    if failed:
        print(f"\nerror: {', '.join(failed)} failed; the task logs are in {log_path}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _backfill(arguments) -> int:
    """The evaluate_audiences DAG's trigger form, run in-process like `cdp run`."""
    from cdp import orchestration

    to_date = arguments.to_date or arguments.from_date
    conf = {
        "audiences": arguments.audience,
        "from_date": f"{arguments.from_date:%Y-%m-%d}",
        "to_date": f"{to_date:%Y-%m-%d}",
    }
    # Airflow reads its settings when first imported: prepare them before the import.
    orchestration.prepare_airflow()
    from airflow.dag_processing.dagbag import DagBag

    log_path = settings.state_dir() / "logs" / f"backfill-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    with _output_to(log_path):
        bag = DagBag(str(settings.PROJECT_ROOT / "dags"))
        orchestration.run_dag(bag, "evaluate_audiences", conf)
    days = (to_date - arguments.from_date).days + 1
    print(
        f"Evaluated {', '.join(arguments.audience) or 'every audience'} as of {days} days "
        f"({conf['from_date']} to {conf['to_date']}); task log: {log_path}"
    )
    return 0


@contextlib.contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr, down to the file descriptors, to a file.

    Airflow's in-process DAG runs print every task log line; the summary is what a
    person wants to read, and the file keeps the rest for when something fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _demo(arguments) -> int:
    from cdp import local_s3, samples
    from cdp.vendors import sandbox

    landing = Path(settings.landing_url())
    if not any(landing.glob("*/*")):
        print(samples.generate(landing, customers=arguments.customers))
    else:
        print(f"Sample extracts already in {landing}; landing only what is new.")

    # The S3 destination writes to a local S3 protocol server for the demo.
    local_s3.use_for_demo_destinations(local_s3.start_local_s3(DEMO_BUCKETS))
    # Every other destination type delivers to a local stand-in of its vendor.
    sandbox.start_for_destinations()
    arguments.landing = str(landing)
    return _run(arguments)


def _airflow(arguments) -> int:
    import json
    import subprocess
    import time

    from cdp import local_s3, orchestration, warehouse
    from cdp.vendors import sandbox

    orchestration.prepare_airflow()
    os.environ["AIRFLOW__API__PORT"] = str(arguments.port)
    os.environ.setdefault("AIRFLOW__API__HOST", "127.0.0.1")
    os.environ["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = (
        f"http://localhost:{arguments.port}/execution/"
    )
    os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "admin:admin")
    # Standalone starts its components as `airflow ...` commands found on PATH.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    print(f"warehouse: {warehouse.address().describe()}")
    local_s3.use_for_demo_destinations(local_s3.start_local_s3(DEMO_BUCKETS))
    # Every other destination type delivers to a local stand-in of its vendor.
    sandbox.start_for_destinations()

    standalone = subprocess.Popen([sys.executable, "-m", "airflow", "standalone"])
    passwords = Path(os.environ["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    for _ in range(180):
        if passwords.exists() or standalone.poll() is not None:
            break
        time.sleep(1)
    if passwords.exists():
        login = json.loads(passwords.read_text())
        print(f"\nAirflow UI: http://localhost:{arguments.port}  login: admin / {login['admin']}")
        print("DAGs start paused: unpause land_extracts and the chain follows its Assets.\n")
    try:
        return standalone.wait()
    except KeyboardInterrupt:
        standalone.terminate()
        return standalone.wait()


def _summary(arguments) -> int:
    from cdp import summary

    print(summary.render(summary.collect()))
    return 0


def _explain(arguments) -> int:
    from cdp import explain

    explanation = explain.explain(arguments.value, arguments.namespace)
    if not explanation.found:
        print(explain.render_not_found(explanation), file=sys.stderr)
        return 1
    print(explain.render(explanation))
    return 0


def _audiences_list(arguments) -> int:
    from cdp import audiences

    print(audiences.render_list(audiences.catalog()))
    return 0


def _audiences_check(arguments) -> int:
    from cdp import audience_docs, audiences

    if not audience_docs.doc_path().exists():
        print(f"error: {audience_docs.stale_problem([])}", file=sys.stderr)
        return 1
    try:
        listed = audiences.catalog()
    except audiences.AudienceDefinitionError as error:
        print(error, file=sys.stderr)
        return 1
    print(audiences.render_check(listed))

    stale = audience_docs.stale_problem(listed)
    if stale:
        print(f"error: {stale}", file=sys.stderr)
        return 1
    return 0


def _audiences_docs(arguments) -> int:
    from cdp import audience_docs, audiences

    audience_docs.ensure_exists()
    listed = audiences.catalog()
    path = audience_docs.write(listed)
    print(f"wrote the evaluation modes of {len(listed)} audiences to {path}")
    print("`dbt docs generate` shows them in dim_audiences' description")
    return 0


def _audiences_explain(arguments) -> int:
    from cdp import audience_explain

    explanation = audience_explain.explain_audience(
        arguments.audience_id, arguments.value, arguments.namespace, arguments.at
    )
    if not explanation.found:
        print(audience_explain.render_not_found(explanation), file=sys.stderr)
        return 1
    print(audience_explain.render(explanation))
    return 0


def _warehouse(arguments) -> int:
    from cdp import warehouse

    if arguments.action == "stop":
        warehouse.stop_embedded()
        return 0
    address = warehouse.address()
    if arguments.action == "start":
        print(f"warehouse running: {address.describe()}")
    else:
        for key, value in address.dbt_env().items():
            print(f"export {key}={shlex.quote(value)}")
        print("export DBT_SEND_ANONYMOUS_USAGE_STATS=False DO_NOT_TRACK=1")
    return 0


def _destinations(arguments) -> int:
    from cdp.activation import catalog

    if arguments.action == "runs":
        if not arguments.name:
            print("name the destination: cdp destinations runs NAME", file=sys.stderr)
            return 2
        print(
            catalog.render_runs(
                arguments.name, catalog.recent_runs(arguments.name, arguments.limit)
            )
        )
        return 0

    destinations, problems = catalog.check_all()
    if arguments.action == "exposures":
        print(f"wrote {catalog.write_exposures(destinations)}")
        return 0
    for destination in destinations.values():
        print(
            f"{destination.name}: {destination.type}, {destination.marketing_action}, "
            f"{len(destination.audiences)} audiences, schedule {destination.schedule}"
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def _suites(arguments) -> int:
    from cdp import validation

    if arguments.action == "write":
        for path in validation.write_suites():
            print(f"wrote {path}")
        return 0
    stale = validation.stale_suites()
    for dataset, problems in stale.items():
        print(f"{dataset}: " + "; ".join(problems))
    if stale:
        print("run `cdp suites write` to bring the suites up to date", file=sys.stderr)
        return 1
    print("every suite matches its declaration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
