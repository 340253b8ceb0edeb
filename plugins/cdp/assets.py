"""The Airflow Assets that chain the DAGs: each stage announces what it produced."""

from airflow.sdk import Asset

# A batch reached raw.<dataset>: validation has work to do.
LANDED_BATCHES = Asset(name="cdp_landed_batches")

# Validated rows reached validated.<dataset>: the dbt build has new input.
PROMOTED_BATCHES = Asset(name="cdp_promoted_batches")

# Profiles, audience membership and activation views were rebuilt.
AUDIENCES_BUILT = Asset(name="cdp_audiences_built")
