"""
### Build profiles and audiences

Runs `dbt build` on `dbt_project/`: staging, the identity graph, stitched profiles,
profile events, audience membership (current and history) and the activation views,
with every test. Runs once a day, so audiences with relative windows ("in the last 7
days") move on even when no file arrives, and whenever CRM or loyalty rows are
promoted, since those change who a profile is. New orders and clickstream move
streaming audiences at once (**evaluate_streaming_audiences**) and reach everything
else at the next build. The build also judges the streaming path's verdicts since
the previous build and logs where it found them wrong
(`marts.fct_audience_streaming_disagreements`; profile ids and counts only).

Announces `cdp_audiences_built`, which starts the destinations that activate after
each build.
"""

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task

from cdp.assets import AUDIENCES_BUILT, PROMOTED_RECORD_BATCHES


@dag(
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 5 * * *", timezone="UTC"),
        assets=PROMOTED_RECORD_BATCHES,
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cdp", "transform"],
    doc_md=__doc__,
)
def build_profiles():
    @task(outlets=[AUDIENCES_BUILT])
    def run_dbt_build() -> dict:
        from cdp import audience_disagreements, transform

        results = transform.run_dbt("build")
        disagreements = audience_disagreements.log_latest_build()
        return {"nodes": len(results), "streaming_disagreements": disagreements.count}

    run_dbt_build()


build_profiles()
