"""
### Evaluate streaming audiences

Runs each time order or clickstream rows are promoted
(`cdp_promoted_event_batches`). Takes the event
batches (orders, clickstream) promoted since its last run, finds the profiles their
records belong to in the identity graph of the last build, evaluates the audiences
classified as streaming for those profiles only, and records who entered or left in
`marts.fct_audience_membership_history` (evaluation kind `streaming`). Batch
audiences wait for **build_profiles**, which evaluates everything and settles any
difference.

The batches evaluated are kept in `ops.streamed_batches`, so a re-run evaluates
nothing twice.
"""

import pendulum
from airflow.sdk import dag, task

from cdp.assets import PROMOTED_EVENT_BATCHES


@dag(
    schedule=[PROMOTED_EVENT_BATCHES],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["cdp", "audiences", "streaming"],
    doc_md=__doc__,
)
def evaluate_streaming_audiences():
    @task
    def evaluate_new_event_batches() -> dict:
        from cdp import streaming

        return streaming.evaluate_new_event_batches()

    evaluate_new_event_batches()


evaluate_streaming_audiences()
