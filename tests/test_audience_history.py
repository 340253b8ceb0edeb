"""Audience history filled by backfills, checked against a computation of its own.

One landing and build of generated extracts, then evaluations as of past dates in a
shuffled order, through the code the backfill DAG runs. For every evaluated instant
(and instants between them) the history's as-of answer must equal what Python
computes straight from the order extracts: the profiles with an order in a store
(not the call centre) in the 30 days up to that instant. Re-running a date must
change nothing, the backfill DAG's trigger form must record its dates, and the chart
must plot the history's sizes.
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cdp import audience_backfill, samples, transform
from tests.conftest import land_and_promote, query, warehouse_kinds

CUSTOMERS = 200
AS_OF = datetime(2026, 10, 1, tzinfo=UTC)
# "Bought in a store (not the call centre) in the last 30 days" (audiences.yml).
AUDIENCE = "recent_store_buyers"
WINDOW = timedelta(days=30)


@pytest.mark.parametrize("warehouse_env", warehouse_kinds()[:1], indirect=True)
def test_backfilled_dates_in_any_order_give_the_independent_as_of_answer(warehouse_env, tmp_path):
    samples.generate(tmp_path / "landing", customers=CUSTOMERS, seed=3, as_of=AS_OF)
    land_and_build(str(tmp_path / "landing"))
    orders = orders_by_profile(tmp_path / "landing")

    # Every fifth day over the extracts' ninety days, evaluated newest-last or not.
    instants = [AS_OF - timedelta(days=days) for days in range(5, 90, 5)]
    random.Random(4).shuffle(instants)
    for instant in instants:
        audience_backfill.evaluate_as_of(instant, [AUDIENCE])

    for instant in sorted(instants):
        expected = buyers_within_window(orders, instant)
        assert members_as_of(instant) == expected, instant
        # Between two evaluations the history holds what the earlier one found.
        assert members_as_of(instant + timedelta(days=2)) == expected, instant

    check_ranges_neither_overlap_nor_touch()

    history_before = history_rows()
    audience_backfill.evaluate_as_of(instants[3], [AUDIENCE])
    assert history_rows() == history_before, "re-running a date changed the history"

    check_the_backfill_dag_evaluates_each_day_of_its_form(orders, warehouse_env)
    check_the_chart_plots_each_evaluation(orders, tmp_path)


def check_the_backfill_dag_evaluates_each_day_of_its_form(orders, env: dict) -> None:
    """`cdp backfill` runs the DAG's trigger form: each day as of midnight UTC."""
    completed = subprocess.run(
        [sys.executable, "-m", "cdp.cli", "backfill", "--from-date", "2026-09-02",
         "--to-date", "2026-09-04", "--audience", AUDIENCE],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "as of 3 days" in completed.stdout

    days = [datetime(2026, 9, day, tzinfo=UTC) for day in (2, 3, 4)]
    recorded = query(
        "select evaluated_at, evaluation_kind from marts.fct_audience_evaluations"
        " where audience_id = %s and evaluated_at = any(%s) order by 1",
        (AUDIENCE, days),
    )
    assert recorded == [(day, "as_of") for day in days]
    for day in days:
        assert members_as_of(day) == buyers_within_window(orders, day), day


def check_the_chart_plots_each_evaluation(orders, tmp_path: Path) -> None:
    """The sizes charted are the history's, one point per evaluation of everyone."""
    from cdp import audience_chart

    series = audience_chart.sizes_over_time([AUDIENCE])
    assert list(series) == [AUDIENCE]
    backfilled = [(instant, size) for instant, size in series[AUDIENCE] if instant < AS_OF]
    assert backfilled == [
        (instant, len(buyers_within_window(orders, instant))) for instant, _ in backfilled
    ]
    assert len(backfilled) == 17 + 3, "every backfilled day is a point"

    page = audience_chart.write_page(series, tmp_path / "sizes.html")
    assert page.read_text().count("<circle") == len(series[AUDIENCE])


def land_and_build(landing_url: str) -> None:
    land_and_promote(landing_url)
    transform.run_dbt("build")


def orders_by_profile(landing_dir: Path) -> dict[str, list[datetime]]:
    """Order times per profile, read from the extract files themselves.

    Only the profile an order belongs to comes from the warehouse (identity is not
    what this test checks); orders the validation quarantined are not there and so
    are left out, as the audience leaves them out.
    """
    profile_of_order = dict(
        query(
            "select event_id, profile_id from marts.fct_profile_events"
            " where dataset = 'offline_orders' and profile_id is not null"
        )
    )
    orders: dict[str, list[datetime]] = {}
    for path in sorted((landing_dir / "offline_orders").glob("*.csv")):
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                profile_id = profile_of_order.get((row.get("order_id") or "").strip())
                if profile_id is None or row["channel"] != "store":
                    continue
                ordered_at = datetime.fromisoformat(row["ordered_at"].strip())
                orders.setdefault(profile_id, []).append(ordered_at)
    assert orders, "no order of the extracts reached a profile"
    return orders


def buyers_within_window(orders: dict[str, list[datetime]], instant: datetime) -> set[str]:
    return {
        profile_id
        for profile_id, times in orders.items()
        if any(instant - WINDOW < ordered_at <= instant for ordered_at in times)
    }


def members_as_of(instant: datetime) -> set[str]:
    rows = query(
        """
        select profile_id from marts.fct_audience_membership_history
        where audience_id = %s and valid_from <= %s and (valid_to is null or valid_to > %s)
        """,
        (AUDIENCE, instant, instant),
    )
    return {profile_id for (profile_id,) in rows}


def check_ranges_neither_overlap_nor_touch() -> None:
    """Two ranges of one pair never share an instant, nor meet end to start."""
    clashes = query(
        """
        select earlier.audience_id, earlier.profile_id
        from marts.fct_audience_membership_history as earlier
        inner join marts.fct_audience_membership_history as later
            on later.audience_id = earlier.audience_id
            and later.profile_id = earlier.profile_id
            and later.valid_from > earlier.valid_from
        where earlier.valid_to is null or earlier.valid_to >= later.valid_from
        """
    )
    assert clashes == []
    empty = query(
        "select count(*) from marts.fct_audience_membership_history where valid_to <= valid_from"
    )
    assert empty == [(0,)]


def history_rows() -> list[tuple]:
    return query(
        "select audience_id, profile_id, valid_from, valid_to"
        " from marts.fct_audience_membership_history order by 1, 2, 3"
    )
