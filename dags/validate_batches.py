"""
### Validate batches

Runs each landed batch through its dataset's Great Expectations suite
(`expectations/<dataset>.json`). Rows with bad values go to `ops.quarantined_rows`
with the file, line, column, value and failed expectation; the rest are promoted,
typed, into `validated.<dataset>`. A batch with more bad rows than its dataset allows
is quarantined whole. Data Docs are rebuilt.

Runs when `cdp_landed_batches` is updated. Announces `cdp_promoted_record_batches`
when CRM or loyalty rows were promoted, which starts **build_profiles**, and
`cdp_promoted_event_batches` when order or clickstream rows were, which starts
**evaluate_streaming_audiences**.
"""

import pendulum
from airflow.sdk import dag, task

from cdp.assets import LANDED_BATCHES, PROMOTED_EVENT_BATCHES, PROMOTED_RECORD_BATCHES


@dag(
    schedule=[LANDED_BATCHES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cdp", "ingest"],
    doc_md=__doc__,
)
def validate_batches():
    @task
    def validate_and_promote() -> dict:
        from cdp import datasets, validation

        results = validation.validate_pending_batches()
        declared = datasets.load_all()
        promoted = {}
        for result in results:
            if result["rows_promoted"]:
                kind = declared[result["dataset"]].kind
                promoted[kind] = promoted.get(kind, 0) + result["rows_promoted"]
        return {
            "batches": len(results),
            "rows_promoted_by_kind": promoted,
            "rows_quarantined": sum(result["rows_quarantined"] for result in results),
        }

    # Skipping emits no asset event, so a stage is not woken for nothing.
    @task(outlets=[PROMOTED_RECORD_BATCHES])
    def announce_promoted_records(outcome: dict) -> int:
        from airflow.sdk.exceptions import AirflowSkipException

        rows = outcome["rows_promoted_by_kind"].get("record", 0)
        if not rows:
            raise AirflowSkipException("no record rows promoted")
        return rows

    @task(outlets=[PROMOTED_EVENT_BATCHES])
    def announce_promoted_events(outcome: dict) -> int:
        from airflow.sdk.exceptions import AirflowSkipException

        rows = outcome["rows_promoted_by_kind"].get("event", 0)
        if not rows:
            raise AirflowSkipException("no event rows promoted")
        return rows

    outcome = validate_and_promote()
    announce_promoted_records(outcome)
    announce_promoted_events(outcome)


validate_batches()
