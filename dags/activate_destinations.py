"""
One activation DAG per destination file in `destinations/`.

Each DAG sends its destination's audiences, one mapped task per audience: the first
run sends the full membership, later runs only additions and removals, in batches the
vendor's size, retried inside the task on rate limits, 5xx and lost connections. The
ledger (`ops.activation_runs`, `ops.activation_batches`) makes a re-run send nothing
twice and sends a failed batch's rows on the next run. Destinations with
`schedule: after_each_build` run whenever `cdp_audiences_built` is updated; the
others run on their cron schedule. A dry run (trigger form) reports counts by reason
and sample profile ids without sending; `cdp destinations runs NAME` shows the runs.

Reading the destination files is the only work done at parse time: they are small
local YAML files, and no warehouse or connection is touched until a task runs. A file
that breaks the data-usage policy fails this import, so no DAG can send it.
"""

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

from cdp.activation.destinations import load_all
from cdp.assets import AUDIENCES_BUILT


@task(map_index_template="{{ audience_id }}")
def activate_audience(destination_name: str, audience_id: str) -> dict:
    from cdp.activation.runner import activate_audience as send

    context = get_current_context()
    destination = load_all()[destination_name]
    summary = send(
        destination, audience_id, context["run_id"], dry_run=context["params"]["dry_run"]
    )
    return summary.as_dict()


for destination in load_all().values():
    with DAG(
        dag_id=f"activate_{destination.name}",
        description=destination.description,
        schedule=[AUDIENCES_BUILT] if destination.runs_after_each_build else destination.schedule,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["cdp", "activation", destination.type],
        params={
            "dry_run": Param(
                False,
                type="boolean",
                description="Count what would be sent, with a sample of profile ids; send nothing.",
            ),
        },
        doc_md=f"Activates {', '.join(destination.audiences)} to **{destination.name}** "
        f"({destination.type}, {destination.marketing_action}).\n\n{__doc__}",
    ):
        activate_audience.partial(destination_name=destination.name).expand(
            audience_id=list(destination.audiences)
        )
