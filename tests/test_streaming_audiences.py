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

from cdp import audience_disagreements, samples, streaming, transform, warehouse
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

    # Every verdict is kept, unchanged ones too, for the build to check.
    verdicts = query(
        "select audience_id, profile_id, is_member from marts.fct_audience_streaming_results"
        " where evaluated_at = %s",
        (streamed_at,),
    )
    assert len(verdicts) == len(customers) * len(streaming_audiences)
    assert len([row for row in verdicts if row[2]]) == len(streamed)

    transform.run_dbt("build")
    built_at = query(
        "select max(evaluated_at) from marts.fct_audience_evaluations"
        " where evaluation_kind = 'build'"
    )[0][0]
    assert memberships_at(built_at, customers, streaming_audiences) == streamed
    assert query("select count(*) from marts.fct_audience_streaming_disagreements") == [(0,)]
    assert audience_disagreements.latest_build().count == 0


def write_fresh_clickstream(path: Path, customer_ids: list[str], purchase: bool = False) -> None:
    """Each customer views three products, adds one to the cart and logs in, just now;
    with purchase, each then buys it."""
    now = datetime.now(UTC)
    steps = ["login", "product_view", "product_view", "product_view", "add_to_cart"]
    lines = []
    for number, customer_id in enumerate(customer_ids):
        for step, event_type in enumerate(steps + ["purchase"] * purchase):
            lines.append({
                "event_id": f"fresh-{number}-{step}",
                "ecid": f"{number + 1:038d}",
                "event_type": event_type,
                "occurred_at": (now - timedelta(minutes=30 - step)).isoformat(),
                "customer_id": customer_id,
                "email": None,
                "page_url": "https://shop.example/p/1",
                "product_sku": "SKU-1",
                "revenue": 25.0 if event_type == "purchase" else None,
                "currency": "USD" if event_type == "purchase" else None,
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


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_the_build_reports_where_streaming_judged_wrong_but_not_where_data_changed(
    warehouse_env, tmp_path, caplog
):
    landing_dir = tmp_path / "landing"
    samples.generate(landing_dir, customers=CUSTOMERS, seed=9)
    land_and_promote(str(landing_dir))
    transform.run_dbt("build")
    streaming.evaluate_new_event_batches()

    # A stale input: the profiles streaming reads say one gold member is bronze and one
    # bronze member is gold, as if the last build had gone wrong.
    gold, bronze = (
        query(
            "select profile_id, customer_id from marts.dim_profiles"
            " where tier = %s and customer_id is not null order by profile_id limit 1",
            (tier,),
        )[0]
        for tier in ("gold", "bronze")
    )
    with warehouse.connect() as conn, conn.cursor() as cursor:
        for profile_id, tier in ((gold[0], "bronze"), (bronze[0], "gold")):
            cursor.execute(
                "update marts.dim_profiles set tier = %s where profile_id = %s", (tier, profile_id)
            )
    # And a buyer whose data really changes after streaming judged them.
    buyer = query(
        "select profile_id, customer_id from marts.dim_profiles"
        " where email_opt_in and customer_id is not null and profile_id not in (%s, %s)"
        " order by profile_id limit 1",
        (gold[0], bronze[0]),
    )[0]

    write_fresh_clickstream(
        landing_dir / "web_events" / "fresh.jsonl", [gold[1], bronze[1], buyer[1]], purchase=True
    )
    land_and_promote(str(landing_dir))
    streaming.evaluate_new_event_batches()
    streamed_at = latest_evaluation("streaming")
    assert said_in("subscribed_web_buyers", buyer[0], streamed_at)
    assert not said_in("gold_loyalty_members", gold[0], streamed_at)
    assert said_in("gold_loyalty_members", bronze[0], streamed_at)

    # The buyer withdraws email consent in a CRM export promoted after streaming ran.
    write_consent_withdrawal(landing_dir / "crm_customers" / "withdrawal.csv", buyer[1])
    land_and_promote(str(landing_dir))

    results = transform.run_dbt("build")
    built_at = latest_evaluation("build")
    found = query(
        "select audience_id, profile_id, streaming_said, build_found, streaming_evaluated_at,"
        " build_evaluated_at from marts.fct_audience_streaming_disagreements"
    )
    assert {row[4:] for row in found} == {(streamed_at, built_at)}
    by_audience = {(row[0], row[1]): row[2:4] for row in found}
    gold_audience = {
        profile_id: said_and_found
        for (audience_id, profile_id), said_and_found in by_audience.items()
        if audience_id == "gold_loyalty_members"
    }
    assert gold_audience == {gold[0]: ("out", "in"), bronze[0]: ("in", "out")}
    # Audiences that use the tier may follow; nothing else, and never the buyer.
    assert {profile_id for _, profile_id in by_audience} == {gold[0], bronze[0]}
    assert {audience_id for audience_id, _ in by_audience} <= {
        "gold_loyalty_members", "gold_members_reachable_by_sms", "recently_enrolled_members"
    }  # fmt: skip
    assert not said_in("subscribed_web_buyers", buyer[0], built_at), "the withdrawal counts"

    warned = [row for row in results if row["node"].endswith("assert_streaming_and_build_agree")]
    assert [row["status"] for row in warned] == ["warn"]
    check_the_count_is_logged_and_summarised(len(found), gold, caplog)


def check_the_count_is_logged_and_summarised(count: int, gold: tuple, caplog) -> None:
    from cdp import summary

    with caplog.at_level("INFO", logger="cdp.audience_disagreements"):
        assert audience_disagreements.log_latest_build().count == count
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "disagree on 1 profiles of audience gold_loyalty_members" not in logged
    assert "disagree on 2 profiles of audience gold_loyalty_members" in logged
    assert gold[0] in logged
    emails = [email for (email,) in query("select email from marts.dim_profiles") if email]
    assert not any(email in logged for email in emails)

    rendered = summary.render(summary.collect())
    assert f"Streaming and build disagreements at the last build: {count}" in rendered
    assert any(
        line.split() == ["gold_loyalty_members", "2", "profiles"] for line in rendered.splitlines()
    )


def latest_evaluation(kind: str) -> datetime:
    return query(
        "select max(evaluated_at) from marts.fct_audience_evaluations where evaluation_kind = %s",
        (kind,),
    )[0][0]


def said_in(audience_id: str, profile_id: str, instant: datetime) -> bool:
    """Whether the history has the profile in the audience at an instant."""
    return query(
        "select count(*) > 0 from marts.fct_audience_membership_history"
        " where audience_id = %s and profile_id = %s and valid_from <= %s"
        " and (valid_to is null or valid_to > %s)",
        (audience_id, profile_id, instant, instant),
    )[0][0]


def write_consent_withdrawal(path: Path, customer_id: str) -> None:
    """A CRM export of one customer, just updated, now refusing email."""
    from cdp import datasets

    row = dict.fromkeys(datasets.get("crm_customers").column_names, "")
    row.update({
        "customer_id": customer_id, "country": "US", "email_opt_in": "false",
        "sms_opt_in": "false", "ads_opt_in": "false",
        "updated_at": datetime.now(UTC).isoformat(),
    })  # fmt: skip
    path.write_text(",".join(row) + "\n" + ",".join(row.values()) + "\n")
