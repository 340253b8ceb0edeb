"""
### Evaluate audiences as of a date (and backfill their history)

Evaluates audiences as of each run's logical date, using only what was known by
then: events up to that instant, profile attributes as the records stood. What it
finds is slotted into `marts.fct_audience_membership_history` between the
evaluations already there, so dates can be filled in any order; re-running a date
changes nothing.

- **Backfill a date range:** the Backfill form of this DAG in the UI, or
  `airflow backfill create --dag-id evaluate_audiences --from-date 2026-11-01
  --to-date 2026-11-30`. Each run evaluates every audience as of its logical date.
- **Trigger with a form:** `audiences` (empty for all), `from_date` and `to_date`
  evaluate the named audiences as of midnight UTC of every day in the range, oldest
  first, in one run.
- **Daily:** at midnight UTC it records each audience as of that midnight, a fixed
  daily point in the history next to the builds' own evaluations.

Runs one at a time: evaluations of the same audience must not interleave.
"""

import pendulum
from airflow.sdk import CronTriggerTimetable, Param, dag, get_current_context, task


@dag(
    schedule=CronTriggerTimetable("0 0 * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cdp", "audiences"],
    doc_md=__doc__,
    params={
        "audiences": Param(
            [],
            type="array",
            items={"type": "string"},
            description="Audience ids to evaluate; empty evaluates every audience.",
        ),
        "from_date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="First day to evaluate (midnight UTC). Empty: the run's logical date.",
        ),
        "to_date": Param(
            None,
            type=["null", "string"],
            format="date",
            description="Last day to evaluate, included. Empty: same as from_date.",
        ),
    },
)
def evaluate_audiences():
    @task
    def list_evaluation_instants() -> list[str]:
        from datetime import date

        from cdp.audience_backfill import instants_between

        context = get_current_context()
        params = context["params"]
        if not params.get("from_date"):
            # A manual trigger without dates has no logical date: evaluate as of now.
            as_of = context["logical_date"] or context["dag_run"].run_after
            return [as_of.isoformat()]

        first_day = date.fromisoformat(params["from_date"])
        last_day = date.fromisoformat(params.get("to_date") or params["from_date"])
        return [instant.isoformat() for instant in instants_between(first_day, last_day)]

    @task
    def evaluate_as_of_each_instant(instants: list[str]) -> dict:
        from datetime import datetime

        from cdp.audience_backfill import evaluate_as_of

        audience_ids = get_current_context()["params"].get("audiences") or None
        for instant in instants:
            evaluate_as_of(datetime.fromisoformat(instant), audience_ids)
        return {"instants": len(instants), "audiences": audience_ids or "all"}

    evaluate_as_of_each_instant(list_evaluation_instants())


evaluate_audiences()
