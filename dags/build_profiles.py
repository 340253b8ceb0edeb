"""
### Build profiles and audiences

Runs `dbt build` on `dbt_project/`: staging, the identity graph, stitched profiles,
profile events, audience membership (current and history) and the activation views,
with every test. Runs once a day, so audiences with relative windows ("in the last 7
days") move on even when no file arrives, and whenever CRM or loyalty rows are
promoted, since those change who a profile is. New orders and clickstream move
streaming audiences at once (**evaluate_streaming_audiences**) and reach everything
else at the next build.

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
        from cdp import transform

        results = transform.run_dbt("build")
        return {"nodes": len(results)}

    run_dbt_build()


build_profiles()
