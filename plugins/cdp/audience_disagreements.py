"""Where the streaming path and the daily build judged a profile differently.

Each build checks the streaming verdicts recorded since the previous build against its
own judgement of the same profile, on the same data, at the streaming instant, and
records the differences in `marts.fct_audience_streaming_disagreements` (the rule is in
docs/audiences.md). This module reads back what the latest build found, for the build
task's log and `cdp summary`: audience ids, profile ids and counts, never a value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from cdp import warehouse

log = logging.getLogger(__name__)

DISAGREEMENTS = "marts.fct_audience_streaming_disagreements"
EVALUATIONS = "marts.fct_audience_evaluations"
# Enough profile ids to start an investigation without flooding a task log.
PROFILE_IDS_LOGGED = 10


@dataclass(frozen=True)
class BuildDisagreements:
    """What one build found: its instant and the disagreeing profiles per audience."""

    build_evaluated_at: datetime | None
    profiles_by_audience: dict[str, list[str]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return sum(len(profile_ids) for profile_ids in self.profiles_by_audience.values())


def latest_build() -> BuildDisagreements:
    """The disagreements the latest build recorded; none before the first build."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select to_regclass(%s) is not null and to_regclass(%s) is not null",
            (DISAGREEMENTS, EVALUATIONS),
        )
        if not cursor.fetchone()[0]:
            return BuildDisagreements(None)

        cursor.execute(
            f"select max(evaluated_at) from {EVALUATIONS} where evaluation_kind = 'build'"
        )
        (built_at,) = cursor.fetchone()
        cursor.execute(
            f"""
            select audience_id, profile_id
            from {DISAGREEMENTS}
            where build_evaluated_at = %s
            order by audience_id, profile_id
            """,
            (built_at,),
        )
        found: dict[str, list[str]] = {}
        for audience_id, profile_id in cursor.fetchall():
            found.setdefault(audience_id, []).append(profile_id)
    return BuildDisagreements(built_at, found)


def log_latest_build() -> BuildDisagreements:
    """One log line per audience with disagreements (a warning), or one saying none."""
    found = latest_build()
    if not found.count:
        log.info("streaming and the build agree on every streaming verdict checked")
        return found
    for audience_id, profile_ids in found.profiles_by_audience.items():
        log.warning(
            "streaming and the build disagree on %d profiles of audience %s "
            "(build at %s; see %s), e.g. %s",
            len(profile_ids),
            audience_id,
            found.build_evaluated_at.isoformat(),
            DISAGREEMENTS,
            ", ".join(profile_ids[:PROFILE_IDS_LOGGED]),
        )
    return found
