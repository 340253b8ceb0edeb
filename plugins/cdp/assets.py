"""The Airflow Assets that chain the DAGs: each stage announces what it produced."""

from airflow.sdk import Asset

# A batch reached raw.<dataset>: validation has work to do.
LANDED_BATCHES = Asset(name="cdp_landed_batches")

# Validated rows of a record dataset (CRM, loyalty) reached validated.<dataset>:
# profiles change, so the dbt build has new input.
PROMOTED_RECORD_BATCHES = Asset(name="cdp_promoted_record_batches")

# Validated rows of an event dataset (orders, clickstream) reached
# validated.<dataset>: streaming audiences are evaluated for their profiles at once;
# the daily build takes them into everything else.
PROMOTED_EVENT_BATCHES = Asset(name="cdp_promoted_event_batches")

# Profiles, audience membership and activation views were rebuilt.
AUDIENCES_BUILT = Asset(name="cdp_audiences_built")
