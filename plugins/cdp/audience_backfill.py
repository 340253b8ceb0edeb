"""Evaluates audiences as of past instants, filling their membership history.

The evaluation is the dbt project's own: `dbt build` of the audience models with
`evaluation_time` set, so a backfilled date is judged by exactly the rules the daily
build uses, on the data known by then (events up to the instant, attributes as the
records stood). The history model slots each instant in between the evaluations it
already holds, so dates may be run in any order and re-running one changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta

log = logging.getLogger(__name__)

# The audience models from evaluation to the marts that read the history.
AUDIENCE_MODELS = "int_audience_members_evaluated+"


class BackfillRangeError(ValueError):
    """A backfill was asked for an empty or reversed range of dates."""


def instants_between(first_day: date, last_day: date) -> list[datetime]:
    """Midnight UTC of every day from first_day to last_day, both included."""
    if last_day < first_day:
        raise BackfillRangeError(
            f"the range {first_day} to {last_day} ends before it starts; "
            "give from_date on or before to_date"
        )
    days = (last_day - first_day).days + 1
    return [
        datetime.combine(first_day + timedelta(days=offset), time(0), tzinfo=UTC)
        for offset in range(days)
    ]


def evaluate_as_of(instant: datetime, audience_ids: list[str] | None = None) -> int:
    """Evaluate the audiences (all when none are named) as of one instant."""
    from cdp import transform

    if instant.tzinfo is None:
        raise ValueError(f"evaluation instant {instant} has no time zone; give it in UTC")
    if instant > datetime.now(UTC):
        raise ValueError(f"evaluation instant {instant.isoformat()} is in the future")

    dbt_vars = {"evaluation_time": instant.astimezone(UTC).isoformat()}
    if audience_ids:
        dbt_vars["audience_ids"] = ",".join(audience_ids)

    # Unit tests check the code, not the date: the daily build runs them.
    results = transform.run_dbt(
        "build", "--select", AUDIENCE_MODELS, "--exclude", "test_type:unit", dbt_vars=dbt_vars
    )
    log.info(
        "evaluated %s audiences as of %s: %d dbt nodes",
        len(audience_ids) if audience_ids else "all",
        instant.isoformat(),
        len(results),
    )
    return len(results)
