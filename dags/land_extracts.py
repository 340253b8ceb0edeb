"""
### Land extracts

Finds files in the landing area (`<landing>/<dataset>/<file>`, a folder or an
`s3://` prefix) that have not been landed yet, records each in `ops.landed_files` by
path and checksum, and copies every row into `raw.<dataset>` with its batch, file and
line number. A file landed before is skipped; a changed file is a new batch.

Announces `cdp_landed_batches`, which starts **validate_batches**.
"""

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from cdp.assets import LANDED_BATCHES


@dag(
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cdp", "ingest"],
    params={
        "landing_url": Param(
            None,
            type=["null", "string"],
            description="Folder or s3:// prefix to read; empty means CDP_LANDING_URL.",
        ),
    },
    doc_md=__doc__,
)
def land_extracts():
    @task
    def find_new_files() -> list[dict]:
        from cdp import landing, settings

        landing_url = get_current_context()["params"]["landing_url"] or settings.landing_url()
        return landing.discover_new_files(landing_url)

    @task(max_active_tis_per_dagrun=2)
    def land_file(found: dict) -> dict:
        from cdp import landing

        return landing.land_file(found)

    @task(outlets=[LANDED_BATCHES])
    def announce_landed_batches(batches: list[dict]) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        batches = list(batches)
        if not batches:
            # Skipping emits no asset event, so validation is not woken for nothing.
            raise AirflowSkipException("no new files in the landing area")
        statuses: dict[str, int] = {}
        for batch in batches:
            statuses[batch["status"]] = statuses.get(batch["status"], 0) + 1
        return {"files": len(batches), "by_status": statuses}

    announce_landed_batches(land_file.expand(found=find_new_files()))


land_extracts()
