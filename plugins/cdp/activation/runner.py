"""One activation run: plan the changes, deliver them, confirm them in the ledger.

The three steps make delivery exactly-once for file drops:
1. plan: in one transaction, diff the audience against what the destination holds
   and write the changes to the ledger with status `planned`;
2. deliver: write the files, then the manifest that marks them complete;
3. confirm: in one transaction, apply the changes to the destination's state and
   mark the run `sent`.
A run interrupted after planning is finished before any new run is planned, with the
very same files (they are keyed by the run), so nothing is lost or sent twice.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass, field

from cdp import warehouse
from cdp.activation.destinations import Destination
from cdp.activation.file_drop import (
    MANIFEST_NAME,
    FileDrop,
    manifest_bytes,
    open_file_drop,
)
from cdp.activation.ledger import ensure_ledger_tables

log = logging.getLogger(__name__)

MEMBERS_VIEW = "activation.act_audience_members"


@dataclass
class RunSummary:
    destination: str
    audience_id: str
    run_key: str
    outcome: str  # sent | already_sent | dry_run
    is_first_run: bool = False
    rows_added: int = 0
    rows_removed: int = 0
    rows_in_file: int = 0
    members_eligible: int = 0
    excluded_by_reason: dict[str, int] = field(default_factory=dict)
    export_location: str | None = None
    sample_profile_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def activate_audience(
    destination: Destination, audience_id: str, run_key: str, *, dry_run: bool = False
) -> RunSummary:
    """Send one audience's changes to one destination for the run named `run_key`."""
    drop = open_file_drop(destination.resolved_location(), destination.connection_id)

    with warehouse.connect() as conn, conn.cursor() as cursor:
        ensure_ledger_tables(cursor)
        _check_audience_exists(cursor, destination, audience_id)
    _finish_interrupted_runs(destination, audience_id, drop)

    with warehouse.connect() as conn, conn.cursor() as cursor:
        # One planner at a time per destination and audience, even across workers.
        cursor.execute(
            "select pg_advisory_xact_lock(hashtext(%s))",
            (f"{destination.name}/{audience_id}",),
        )
        already = _confirmed_run(cursor, destination, audience_id, run_key)
        if already is not None:
            log.info(
                "destination=%s audience=%s run=%s already sent; sending nothing",
                destination.name, audience_id, run_key,
            )  # fmt: skip
            return already

        summary = _plan(cursor, destination, audience_id, run_key)
        if dry_run:
            summary.outcome = "dry_run"
            conn.rollback()
            return summary

    _deliver(destination, audience_id, run_key, drop)
    _confirm(destination, audience_id, run_key)
    log.info(
        "destination=%s audience=%s run=%s first_run=%s added=%d removed=%d "
        "in_file=%d eligible=%d excluded=%s",
        destination.name, audience_id, run_key, summary.is_first_run, summary.rows_added,
        summary.rows_removed, summary.rows_in_file, summary.members_eligible,
        json.dumps(summary.excluded_by_reason, sort_keys=True),
    )  # fmt: skip
    return summary


def _check_audience_exists(cursor, destination: Destination, audience_id: str) -> None:
    cursor.execute("select 1 from marts.dim_audiences where audience_id = %s", (audience_id,))
    if cursor.fetchone() is None:
        raise ValueError(
            f"{destination.declared_in}: audience {audience_id!r} is not defined in the dbt "
            "project (marts.dim_audiences); fix the id under 'audiences' or define it."
        )


def _confirmed_run(cursor, destination: Destination, audience_id: str, run_key: str):
    cursor.execute(
        """
        select is_first_run, rows_added, rows_removed, rows_in_file, members_eligible,
               excluded_by_reason, export_location
        from ops.activation_runs
        where destination = %s and audience_id = %s and run_key = %s and status = 'sent'
        """,
        (destination.name, audience_id, run_key),
    )
    row = cursor.fetchone()
    if row is None:
        return None
    return RunSummary(
        destination.name, audience_id, run_key, "already_sent", row[0], row[1], row[2],
        row[3], row[4], row[5], row[6],
    )  # fmt: skip


def _plan(cursor, destination: Destination, audience_id: str, run_key: str) -> RunSummary:
    identity, consent = destination.identity, destination.consent_column
    keys = (destination.name, audience_id)

    cursor.execute(
        "select not exists (select 1 from ops.activation_runs"
        " where destination = %s and audience_id = %s and status = 'sent')",
        keys,
    )
    is_first_run = cursor.fetchone()[0]

    # Who is in the audience now, and why anyone in it cannot be sent. Consent is
    # checked before identity: a profile without consent is never counted as sendable.
    cursor.execute(
        f"""
        create temporary table current_members on commit drop as
        select
            profile_id,
            {identity} as identity_value,
            case
                when not coalesce({consent}, false) then 'no_{destination.marketing_action}_consent'
                when {identity} is null then 'missing_{identity}'
            end as excluded_reason
        from {MEMBERS_VIEW}
        where audience_id = %s
        """,
        (audience_id,),
    )
    cursor.execute(
        "select excluded_reason, count(*) from current_members"
        " where excluded_reason is not null group by 1 order by 1"
    )
    excluded = {reason: count for reason, count in cursor.fetchall()}

    # The difference between who should be there and what the destination holds.
    keep_unchanged = destination.export_mode == "full_file"
    cursor.execute(
        """
        insert into ops.activation_changes
            (destination, audience_id, run_key, profile_id, identity_value, change)
        select %(destination)s, %(audience)s, %(run)s, member.profile_id, member.identity_value,
               case when held.profile_id is null then 'add' else 'keep' end
        from current_members as member
        left join ops.activation_state as held
            on held.destination = %(destination)s
            and held.audience_id = %(audience)s
            and held.profile_id = member.profile_id
            and held.identity_value = member.identity_value
            and held.is_member
        where member.excluded_reason is null
            and (held.profile_id is null or %(keep_unchanged)s)
        union all
        select %(destination)s, %(audience)s, %(run)s, held.profile_id, held.identity_value,
               'remove'
        from ops.activation_state as held
        left join current_members as member
            on member.profile_id = held.profile_id
            and member.identity_value = held.identity_value
            and member.excluded_reason is null
        where held.destination = %(destination)s
            and held.audience_id = %(audience)s
            and held.is_member
            and member.profile_id is null
        """,
        {
            "destination": destination.name,
            "audience": audience_id,
            "run": run_key,
            "keep_unchanged": keep_unchanged,
        },
    )
    cursor.execute(
        """
        select
            count(*) filter (where change = 'add'),
            count(*) filter (where change = 'remove'),
            count(*) filter (where change in ('add', 'keep'))
        from ops.activation_changes
        where destination = %s and audience_id = %s and run_key = %s
        """,
        (*keys, run_key),
    )
    added, removed, in_full_file = cursor.fetchone()
    cursor.execute("select count(*) from current_members where excluded_reason is null")
    eligible = cursor.fetchone()[0]
    cursor.execute(
        "select profile_id from current_members where excluded_reason is null"
        " order by profile_id limit 5"
    )
    sample = [row[0] for row in cursor.fetchall()]

    summary = RunSummary(
        destination=destination.name,
        audience_id=audience_id,
        run_key=run_key,
        outcome="sent",
        is_first_run=is_first_run,
        rows_added=added,
        rows_removed=removed,
        rows_in_file=in_full_file if keep_unchanged else added + removed,
        members_eligible=eligible,
        excluded_by_reason=excluded,
        export_location=destination.resolved_location(),
        sample_profile_ids=sample,
    )
    cursor.execute(
        """
        insert into ops.activation_runs
            (destination, audience_id, run_key, status, is_first_run, export_mode,
             rows_added, rows_removed, rows_in_file, members_eligible,
             excluded_by_reason, export_location)
        values (%s, %s, %s, 'planned', %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            *keys, run_key, is_first_run, destination.export_mode, added, removed,
            summary.rows_in_file, eligible, json.dumps(excluded), summary.export_location,
        ),
    )  # fmt: skip
    return summary


def _finish_interrupted_runs(destination: Destination, audience_id: str, drop: FileDrop) -> None:
    """Complete any run that was planned but never confirmed, before planning anew."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select run_key from ops.activation_runs"
            " where destination = %s and audience_id = %s and status = 'planned'"
            " order by planned_at",
            (destination.name, audience_id),
        )
        interrupted = [row[0] for row in cursor.fetchall()]

    for run_key in interrupted:
        log.warning(
            "destination=%s audience=%s run=%s was interrupted; finishing it first",
            destination.name, audience_id, run_key,
        )  # fmt: skip
        if not drop.exists(_run_folder(audience_id, run_key) + MANIFEST_NAME):
            _deliver(destination, audience_id, run_key, drop)
        _confirm(destination, audience_id, run_key)


def _run_folder(audience_id: str, run_key: str) -> str:
    safe_run = re.sub(r"[^A-Za-z0-9_.-]", "_", run_key)
    return f"{audience_id}/{safe_run}/"


def _deliver(destination: Destination, audience_id: str, run_key: str, drop: FileDrop) -> None:
    """Write the run's files from the ledger, then the manifest that completes them."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select profile_id, identity_value, change from ops.activation_changes"
            " where destination = %s and audience_id = %s and run_key = %s"
            " order by change, identity_value, profile_id",
            (destination.name, audience_id, run_key),
        )
        changes = cursor.fetchall()

    if destination.export_mode == "full_file":
        files = {"members.csv": [row for row in changes if row[2] in ("add", "keep")]}
    else:
        files = {
            "additions.csv": [row for row in changes if row[2] == "add"],
            "removals.csv": [row for row in changes if row[2] == "remove"],
        }

    if destination.export_mode != "full_file" and not changes:
        # Nothing changed: an empty pair of files would only be noise for the consumer.
        return

    folder = _run_folder(audience_id, run_key)
    written = {}
    for file_name, rows in files.items():
        written[file_name] = {
            "rows": len(rows),
            "location": drop.write(folder + file_name, _csv_bytes(destination.identity, rows)),
        }
    manifest = {
        "destination": destination.name,
        "audience_id": audience_id,
        "run_key": run_key,
        "identity": destination.identity,
        "export_mode": destination.export_mode,
        "files": written,
    }
    drop.write(folder + MANIFEST_NAME, manifest_bytes(manifest))


def _csv_bytes(identity: str, rows: list[tuple]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([identity])
    writer.writerows([identity_value] for _, identity_value, _ in rows)
    return buffer.getvalue().encode()


def _confirm(destination: Destination, audience_id: str, run_key: str) -> None:
    params = {"destination": destination.name, "audience": audience_id, "run": run_key}
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            """
            insert into ops.activation_state
                (destination, audience_id, profile_id, identity_value, is_member, added_run_key)
            select destination, audience_id, profile_id, identity_value, true, run_key
            from ops.activation_changes
            where destination = %(destination)s and audience_id = %(audience)s
                and run_key = %(run)s and change = 'add'
            on conflict (destination, audience_id, profile_id, identity_value) do update
                set is_member = true, added_run_key = excluded.added_run_key,
                    removed_run_key = null, updated_at = now()
            """,
            params,
        )
        cursor.execute(
            """
            update ops.activation_state as held
            set is_member = false, removed_run_key = %(run)s, updated_at = now()
            from ops.activation_changes as sent
            where sent.destination = %(destination)s and sent.audience_id = %(audience)s
                and sent.run_key = %(run)s and sent.change = 'remove'
                and held.destination = sent.destination and held.audience_id = sent.audience_id
                and held.profile_id = sent.profile_id
                and held.identity_value = sent.identity_value
            """,
            params,
        )
        cursor.execute(
            "update ops.activation_runs set status = 'sent', sent_at = now()"
            " where destination = %(destination)s and audience_id = %(audience)s"
            " and run_key = %(run)s",
            params,
        )
