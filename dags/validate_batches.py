"""
### Validate batches

Runs each landed batch through its dataset's Great Expectations suite
(`expectations/<dataset>.json`). Rows with bad values go to `ops.quarantined_rows`
with the file, line, column, value and failed expectation; the rest are promoted,
typed, into `validated.<dataset>`. A batch with more bad rows than its dataset allows
is quarantined whole. Data Docs are rebuilt.

Runs when `cdp_landed_batches` is updated; announces `cdp_promoted_batches`, which
starts **build_profiles**.
"""

import pendulum
from airflow.sdk import dag, task

from cdp.assets import LANDED_BATCHES, PROMOTED_BATCHES


@dag(
    schedule=[LANDED_BATCHES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cdp", "ingest"],
    doc_md=__doc__,
)
def validate_batches():
    @task(outlets=[PROMOTED_BATCHES])
    def validate_and_promote() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from cdp import validation

        results = validation.validate_pending_batches()
        promoted = sum(result["rows_promoted"] for result in results)
        if promoted == 0:
            raise AirflowSkipException(f"{len(results)} batches validated, no rows promoted")
        return {
            "batches": len(results),
            "rows_promoted": promoted,
            "rows_quarantined": sum(result["rows_quarantined"] for result in results),
        }

    validate_and_promote()


validate_batches()
