"""One activation run of one audience to one destination: plan, deliver, finish.

1. plan: in one transaction, diff the audience against what the destination holds
   and write every change, cut into numbered batches, to the ledger;
2. deliver: send the batches, each confirmed in the ledger as the vendor answers
   (see delivery.py for retries and what each outcome means);
3. finish: write the manifest (file exports), settle the run's counts and status.

A run interrupted anywhere is finished, from the ledger and with the very same
batches, before the next run plans; a run already finished sends nothing again. One
run at a time per destination and audience holds an advisory lock, across workers.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import replace

from cdp import warehouse
from cdp.activation.connectors.base import Audience, Connector, PermanentError, SentBatchesLost
from cdp.activation.connectors.registry import open_connector
from cdp.activation.delivery import DeliveryCounts, DeliveryIncomplete, deliver_run
from cdp.activation.destinations import Destination
from cdp.activation.ledger import ensure_ledger_tables, refresh_statistics, stop_holding
from cdp.activation.lost_batches import forget_lost_batches
from cdp.activation.planning import RunSummary, plan

log = logging.getLogger(__name__)


def activate_audience(
    destination: Destination, audience_id: str, run_key: str, *, dry_run: bool = False
) -> RunSummary:
    """Send one audience's changes to one destination for the run named `run_key`."""
    with warehouse.connect() as conn, conn.cursor() as cursor:
        ensure_ledger_tables(cursor)
        audience = _audience(cursor, destination, audience_id)

    if dry_run:
        return _dry_run(destination, audience, run_key)

    connector = open_connector(destination)
    try:
        with _one_run_at_a_time(destination, audience_id):
            audience = _open_audience(connector, destination, audience)
            for interrupted in _unfinished_runs(destination, audience_id):
                log.warning(
                    "destination=%s audience=%s run=%s was interrupted; finishing it first",
                    destination.name, audience_id, interrupted,
                )  # fmt: skip
                _deliver_and_finish(destination, connector, audience, interrupted)

            finished = _finished_run(destination, audience_id, run_key)
            if finished is not None:
                log.info(
                    "destination=%s audience=%s run=%s already finished; sending nothing",
                    destination.name, audience_id, run_key,
                )  # fmt: skip
                finished.outcome = "already_sent"
                return finished

            with warehouse.connect() as conn, conn.cursor() as cursor:
                refresh_statistics(cursor)
            with warehouse.connect() as conn, conn.cursor() as cursor:
                plan(cursor, destination, audience_id, run_key, _batch_size(destination, connector),
                     share_history=_shares_history(cursor, destination, audience_id))  # fmt: skip
            summary = _deliver_and_finish(destination, connector, audience, run_key)
    finally:
        connector.close()

    log.info(
        "destination=%s audience=%s run=%s first_run=%s added=%d removed=%d history=%d "
        "eligible=%d excluded=%s batches=%d failed=%d removals_refused=%d",
        destination.name, audience_id, run_key, summary.is_first_run, summary.rows_added,
        summary.rows_removed, summary.history_rows, summary.members_eligible,
        json.dumps(summary.excluded_by_reason, sort_keys=True), summary.batch_count,
        summary.rows_failed, summary.removals_refused,
    )  # fmt: skip
    if summary.outcome == "partial" and _has_failed_batches(destination, audience_id, run_key):
        raise DeliveryIncomplete(
            f"{destination.name}/{audience_id}: {summary.rows_failed} rows could not be "
            f"delivered ({_run_error(destination, audience_id, run_key) or 'retries ran out'});"
            " see ops.activation_batches"
        )
    return summary


def _audience(cursor, destination: Destination, audience_id: str) -> Audience:
    cursor.execute(
        "select audience_name, coalesce(description, ''), coalesce(owner, ''), evaluation_mode"
        " from marts.dim_audiences where audience_id = %s",
        (audience_id,),
    )
    row = cursor.fetchone()
    if row is None:
        raise ValueError(
            f"{destination.declared_in}: audience {audience_id!r} is not defined in the dbt "
            "project (marts.dim_audiences); fix the id under 'audiences' or define it."
        )
    return Audience(audience_id, *row)


def _dry_run(destination: Destination, audience: Audience, run_key: str) -> RunSummary:
    """Plan as a real run would, report it, and roll it all back: nothing is sent."""
    type_limit = _batch_size(destination, None)
    with warehouse.connect() as conn, conn.cursor() as cursor:
        shares_history = _shares_history(cursor, destination, audience.audience_id)
        summary = plan(
            cursor, destination, audience.audience_id, run_key, type_limit,
            share_history=shares_history,
        )  # fmt: skip
        conn.rollback()
    summary.outcome = "dry_run"
    return summary


@contextlib.contextmanager
def _one_run_at_a_time(destination: Destination, audience_id: str):
    with warehouse.connect() as conn, conn.cursor() as cursor:
        # A session lock, outside any transaction: the run's own work commits as it goes.
        conn.autocommit = True
        key = f"cdp_activation/{destination.name}/{audience_id}"
        cursor.execute("select pg_advisory_lock(hashtext(%s))", (key,))
        try:
            yield
        finally:
            cursor.execute("select pg_advisory_unlock(hashtext(%s))", (key,))


def _batch_size(destination: Destination, connector: Connector | None) -> int:
    vendor_limit = connector.max_batch_size if connector is not None else destination.batch_size
    return max(1, min(destination.batch_size, vendor_limit))


def _open_audience(connector: Connector, destination: Destination, audience: Audience) -> Audience:
    """The vendor learns the audience (metadata first, for audience sharing)."""
    vendor_id = connector.open_audience(audience)
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            """
            insert into ops.activation_audiences (destination, audience_id, vendor_audience_id)
            values (%s, %s, %s)
            on conflict (destination, audience_id) do update
                set vendor_audience_id = excluded.vendor_audience_id
            """,
            (destination.name, audience.audience_id, vendor_id),
        )
    return replace(audience, vendor_audience_id=vendor_id)


def _shares_history(cursor, destination: Destination, audience_id: str) -> bool:
    """Audience sharing sends past memberships once, on the audience's first run."""
    if destination.type != "audience_sharing":
        return False
    cursor.execute(
        "select 1 from ops.activation_runs where destination = %s and audience_id = %s"
        " and status in ('sent', 'partial')",
        (destination.name, audience_id),
    )
    return cursor.fetchone() is None


def _unfinished_runs(destination: Destination, audience_id: str) -> list[str]:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select run_key from ops.activation_runs where destination = %s and audience_id = %s"
            " and status = 'planned' order by planned_at",
            (destination.name, audience_id),
        )
        return [row[0] for row in cursor.fetchall()]


def _deliver_and_finish(
    destination: Destination, connector: Connector, audience: Audience, run_key: str
) -> RunSummary:
    try:
        counts = deliver_run(destination, connector, audience, run_key)
    except PermanentError as error:
        # The run stays planned and is finished first next time; until then its row
        # says why it stopped, in the vendor's words.
        _record_stop(destination, audience.audience_id, run_key, str(error))
        raise
    return _finish(destination, connector, audience, run_key, counts)


def _record_stop(destination: Destination, audience_id: str, run_key: str, error: str) -> None:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "update ops.activation_runs set error = %s"
            " where destination = %s and audience_id = %s and run_key = %s",
            (error, destination.name, audience_id, run_key),
        )


def _finish(destination, connector, audience: Audience, run_key: str, counts: DeliveryCounts):
    keys = {"destination": destination.name, "audience": audience.audience_id, "run": run_key}
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select batch_number, operation, row_count, status, rows_rejected"
            " from ops.activation_batches where destination = %(destination)s"
            " and audience_id = %(audience)s and run_key = %(run)s order by batch_number",
            keys,
        )
        batches = [
            dict(zip(("number", "operation", "rows", "status", "rows_rejected"), row, strict=True))
            for row in cursor.fetchall()
        ]

    all_sent = all(batch["status"] == "sent" for batch in batches)
    error = None
    if all_sent and hasattr(connector, "finish_run"):
        if batches or destination.export_mode == "full_file":
            try:
                connector.finish_run(audience, run_key, batches)
            except SentBatchesLost as lost:
                # Gone for good: finish without them rather than fail on them for ever.
                forget_lost_batches(destination.name, audience.audience_id, run_key, lost)
                batches = [{**batch, "status": "failed"} if batch["number"] in lost.lost
                           else batch for batch in batches]  # fmt: skip
                all_sent, error = False, str(lost)

    rows_failed = sum(
        batch["rows"] if batch["status"] == "failed" else batch["rows_rejected"]
        for batch in batches
    )
    removals_refused = sum(batch["rows"] for batch in batches if batch["status"] == "refused")
    status = "sent" if all_sent and rows_failed == 0 else "partial"

    with warehouse.connect() as conn, conn.cursor() as cursor:
        if destination.export_mode == "full_file" and all_sent:
            # A full file replaces what the consumer held: removals need no batch.
            stop_holding(
                cursor,
                keys,
                """
                select profile_id, identity_value from ops.activation_changes
                where destination = %(destination)s and audience_id = %(audience)s
                    and run_key = %(run)s and change = 'remove'
                """,
            )
            cursor.execute(
                """
                update ops.activation_changes set status = 'sent'
                where destination = %(destination)s and audience_id = %(audience)s
                    and run_key = %(run)s and change = 'remove' and batch_number is null
                """,
                keys,
            )
        cursor.execute(
            """
            update ops.activation_runs
            set status = %(status)s, sent_at = now(), rows_failed = %(failed)s,
                removals_refused = %(refused)s, error = %(error)s
            where destination = %(destination)s and audience_id = %(audience)s
                and run_key = %(run)s
            """,
            {**keys, "status": status, "failed": rows_failed, "refused": removals_refused,
             "error": error},
        )  # fmt: skip
    return _finished_run(destination, audience.audience_id, run_key)


def _finished_run(destination: Destination, audience_id: str, run_key: str) -> RunSummary | None:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            """
            select status, is_first_run, rows_added, rows_removed, rows_in_file, history_rows,
                   members_eligible, excluded_by_reason, batch_count, rows_failed,
                   removals_refused, export_location
            from ops.activation_runs
            where destination = %s and audience_id = %s and run_key = %s
                and status in ('sent', 'partial')
            """,
            (destination.name, audience_id, run_key),
        )
        row = cursor.fetchone()
    if row is None:
        return None
    return RunSummary(destination.name, audience_id, run_key, *row)


def _has_failed_batches(destination: Destination, audience_id: str, run_key: str) -> bool:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select 1 from ops.activation_batches where destination = %s and audience_id = %s"
            " and run_key = %s and status = 'failed'",
            (destination.name, audience_id, run_key),
        )
        return cursor.fetchone() is not None


def _run_error(destination: Destination, audience_id: str, run_key: str) -> str | None:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select error from ops.activation_runs where destination = %s and audience_id = %s"
            " and run_key = %s",
            (destination.name, audience_id, run_key),
        )
        row = cursor.fetchone()
    return row[0] if row else None
