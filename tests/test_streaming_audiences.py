"""The streaming path: new event batches move memberships at once, and agree with a build.

Builds generated extracts, then lands a clickstream file of fresh events for known
customers. The streaming evaluation must attribute those events to the customers'
profiles through the existing graph, record entries in the membership history at its
own instant, evaluate nothing twice, and agree with what a full build then finds for
the same profiles, for every audience classified streaming.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdp import samples, streaming, transform
from tests.conftest import land_and_promote, query, warehouse_kinds

CUSTOMERS = 150


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_new_events_move_streaming_memberships_and_a_build_agrees(warehouse_env, tmp_path):
    landing_dir = tmp_path / "landing"
    samples.generate(landing_dir, customers=CUSTOMERS, seed=9)
    land_and_promote(str(landing_dir))
    transform.run_dbt("build")
    assert streaming.evaluate_new_event_batches()["batches"] > 0, "day one's events are new"

    customers = [row[0] for row in query(
        "select customer_id from marts.dim_profiles where customer_id is not null"
        " order by customer_id limit 20"
    )]  # fmt: skip
    write_fresh_clickstream(landing_dir / "web_events" / "fresh.jsonl", customers)
    land_and_promote(str(landing_dir))

    outcome = streaming.evaluate_new_event_batches()
    assert outcome == {"batches": 1, "profiles_evaluated": len(customers)}
    assert streaming.evaluate_new_event_batches() == {"batches": 0}, "evaluated twice"

    streamed_at = query(
        "select max(evaluated_at) from marts.fct_audience_evaluations"
        " where evaluation_kind = 'streaming'"
    )[0][0]
    streaming_audiences = {
        audience_id
        for (audience_id,) in query(
            "select audience_id from marts.dim_audiences where evaluation_mode = 'streaming'"
        )
    }
    streamed = memberships_at(streamed_at, customers, streaming_audiences)
    assert {"hot_shoppers_today"} <= {audience for audience, _ in streamed}, (
        "three product views in the last hour did not make anyone a hot shopper"
    )
    evaluated = query(
        "select distinct audience_id from marts.fct_audience_evaluations where evaluated_at = %s",
        (streamed_at,),
    )
    assert {audience_id for (audience_id,) in evaluated} == streaming_audiences

    transform.run_dbt("build")
    built_at = query(
        "select max(evaluated_at) from marts.fct_audience_evaluations"
        " where evaluation_kind = 'build'"
    )[0][0]
    assert memberships_at(built_at, customers, streaming_audiences) == streamed


def write_fresh_clickstream(path: Path, customer_ids: list[str]) -> None:
    """Each customer views three products, adds one to the cart and logs in, just now."""
    now = datetime.now(UTC)
    lines = []
    for number, customer_id in enumerate(customer_ids):
        for step, event_type in enumerate(
            ["login", "product_view", "product_view", "product_view", "add_to_cart"]
        ):
            lines.append({
                "event_id": f"fresh-{number}-{step}",
                "ecid": f"{number + 1:038d}",
                "event_type": event_type,
                "occurred_at": (now - timedelta(minutes=30 - step)).isoformat(),
                "customer_id": customer_id,
                "email": None,
                "page_url": "https://shop.example/p/1",
                "product_sku": "SKU-1",
                "revenue": None,
                "currency": None,
            })  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def memberships_at(
    instant: datetime, customer_ids: list[str], audience_ids: set[str]
) -> set[tuple[str, str]]:
    """(audience, customer) pairs in the history at an instant, for these customers."""
    rows = query(
        """
        select history.audience_id, profiles.customer_id
        from marts.fct_audience_membership_history as history
        inner join marts.dim_profiles as profiles
            on profiles.profile_id = history.profile_id
        where profiles.customer_id = any(%s)
            and history.audience_id = any(%s)
            and history.valid_from <= %s
            and (history.valid_to is null or history.valid_to > %s)
        """,
        (customer_ids, list(audience_ids), instant, instant),
    )
    return set(rows)
