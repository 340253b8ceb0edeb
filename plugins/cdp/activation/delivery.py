"""Delivering a planned run, batch by batch, with retries and a confirmation per batch.

Each batch is read back from the ledger, sent with the vendor's rate limit, retried
with exponential back-off on rate limits (honouring Retry-After), server errors,
timeouts and dropped connections, and confirmed in the same transaction that records
the destination now holds its rows. A batch therefore counts as sent exactly when the
vendor said so. A repeat after an unanswered request carries the same idempotency key,
so the vendor applies it once.

Outcomes per batch:
- sent: rows applied to `ops.activation_state`; rows the vendor refused inside the
  batch are kept out of it and go again next run;
- failed: retries ran out; nothing applied; the rows go again next run;
- refused: a removal the vendor will not make (below its minimum audience size); the
  members stay recorded as held and the removal goes again next run;
- a PermanentError (bad request, bad credentials) stops the run at once with the
  vendor's message; the unsent batches stay planned and are finished first next time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass

from cdp import warehouse
from cdp.activation.connectors.base import (
    Audience,
    Batch,
    BatchResult,
    Connector,
    Member,
    PermanentError,
    RemovalRefused,
    RetryableError,
)
from cdp.activation.destinations import Destination

log = logging.getLogger(__name__)


class DeliveryIncomplete(RuntimeError):
    """Some batches could not be delivered; their rows go again on the next run."""


@dataclass
class DeliveryCounts:
    batches_sent: int = 0
    batches_failed: int = 0
    rows_failed: int = 0
    removals_refused: int = 0


class RateLimiter:
    """At most `per_second` requests a second, spaced evenly (a vendor's quota)."""

    def __init__(self, per_second: float | None):
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next_allowed = 0.0

    def wait(self) -> None:
        now = time.monotonic()
        if now < self._next_allowed:
            time.sleep(self._next_allowed - now)
        self._next_allowed = max(now, self._next_allowed) + self._interval


def idempotency_key(destination: str, audience_id: str, run_key: str, batch_number: int) -> str:
    identity = f"{destination}/{audience_id}/{run_key}/{batch_number}"
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def deliver_run(
    destination: Destination,
    connector: Connector,
    audience: Audience,
    run_key: str,
) -> DeliveryCounts:
    """Send every batch of the run still planned; return what happened."""
    keys = {"destination": destination.name, "audience": audience.audience_id, "run": run_key}
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select batch_number, operation from ops.activation_batches"
            " where destination = %(destination)s and audience_id = %(audience)s"
            " and run_key = %(run)s and status = 'planned' order by batch_number",
            keys,
        )
        pending = cursor.fetchall()
        cursor.execute(
            "select count(*) from ops.activation_batches where destination = %(destination)s"
            " and audience_id = %(audience)s and run_key = %(run)s",
            keys,
        )
        total = cursor.fetchone()[0]

    counts = DeliveryCounts()
    limiter = RateLimiter(destination.rate_limit_per_second)
    for number, operation in pending:
        batch = Batch(
            destination=destination.name,
            audience=audience,
            run_key=run_key,
            number=number,
            total=total,
            operation=operation,
            members=_members_of_batch(keys, number),
            idempotency_key=idempotency_key(
                destination.name, audience.audience_id, run_key, number
            ),
        )
        _send_one(destination, connector, batch, limiter, counts)
    return counts


def _members_of_batch(keys: dict, number: int) -> tuple[Member, ...]:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "select profile_id, payload from ops.activation_changes"
            " where destination = %(destination)s and audience_id = %(audience)s"
            " and run_key = %(run)s and batch_number = %(number)s"
            " order by profile_id, identity_value",
            {**keys, "number": number},
        )
        rows = cursor.fetchall()
    return tuple(
        Member(
            profile_id=profile_id,
            identities=payload.get("identities") or {},
            attributes=payload.get("attributes") or {},
            realised_at=payload.get("realised_at"),
            exited_at=payload.get("exited_at"),
        )
        for profile_id, payload in rows
    )


def _send_one(destination, connector, batch: Batch, limiter: RateLimiter, counts) -> None:
    policy = destination.retry
    where = (
        f"destination={destination.name} audience={batch.audience.audience_id} "
        f"run={batch.run_key} batch={batch.number}/{batch.total} {batch.operation}"
    )
    for attempt in range(1, policy.attempts + 1):
        limiter.wait()
        try:
            result = connector.send(batch)
        except RemovalRefused as refusal:
            _record(batch, "refused", attempt, error=str(refusal))
            counts.removals_refused += len(batch.members)
            log.warning("%s rows=%d removal refused by the vendor: %s",
                        where, len(batch.members), refusal)  # fmt: skip
            return
        except PermanentError as error:
            _record(batch, "failed", attempt, error=str(error), keep_planned=True)
            log.error("%s rows=%d failed for good: %s", where, len(batch.members), error)
            raise
        except RetryableError as error:
            if attempt == policy.attempts:
                _record(batch, "failed", attempt, error=str(error))
                counts.batches_failed += 1
                counts.rows_failed += len(batch.members)
                log.error("%s rows=%d failed after %d attempts: %s; the rows go again next run",
                          where, len(batch.members), attempt, error)  # fmt: skip
                return
            pause = _back_off(policy, attempt, error.retry_after)
            log.warning(
                "%s attempt %d failed: %s; retrying in %.2f s", where, attempt, error, pause
            )
            time.sleep(pause)
            continue

        _record(batch, "sent", attempt, result=result)
        counts.batches_sent += 1
        counts.rows_failed += len(result.rejected)
        log.info(
            "%s rows=%d accepted=%d rejected=%d attempts=%d",
            where, len(batch.members), result.accepted, len(result.rejected), attempt,
        )  # fmt: skip
        return


def _back_off(policy, attempt: int, retry_after: float | None) -> float:
    """The vendor's Retry-After when it gave one, else exponential with jitter."""
    if retry_after is not None:
        return min(retry_after, policy.max_backoff_seconds)
    exponential = policy.initial_backoff_seconds * 2 ** (attempt - 1)
    return min(policy.max_backoff_seconds, exponential * random.uniform(0.5, 1.0))


def _record(batch: Batch, status: str, attempts: int, *, result: BatchResult | None = None,
            error: str | None = None, keep_planned: bool = False) -> None:  # fmt: skip
    """One transaction: the batch's outcome, its rows' outcomes, and what the vendor holds."""
    params = {
        "destination": batch.destination,
        "audience": batch.audience.audience_id,
        "run": batch.run_key,
        "number": batch.number,
        "status": "planned" if keep_planned else status,
        "attempts": attempts,
        "accepted": result.accepted if result else 0,
        "rejected": len(result.rejected) if result else 0,
        "response": json.dumps(result.vendor_response) if result else None,
        "error": error,
    }
    with warehouse.connect() as conn, conn.cursor() as cursor:
        if status != "sent":
            cursor.execute(
                """
                update ops.activation_changes set status = %(status)s, reason = %(error)s
                where destination = %(destination)s and audience_id = %(audience)s
                    and run_key = %(run)s and batch_number = %(number)s
                """,
                {**params, "status": status},
            )
            _record_batch(cursor, params)
            return

        cursor.execute(
            """
            update ops.activation_changes set status = 'sent'
            where destination = %(destination)s and audience_id = %(audience)s
                and run_key = %(run)s and batch_number = %(number)s
            """,
            params,
        )
        cursor.execute(
            """
            update ops.activation_changes as changed
            set status = 'rejected', reason = rejected.reason
            from jsonb_each_text(%(rejected)s::jsonb) as rejected(profile_id, reason)
            where changed.destination = %(destination)s and changed.audience_id = %(audience)s
                and changed.run_key = %(run)s and changed.batch_number = %(number)s
                and changed.profile_id = rejected.profile_id
            """,
            {**params, "rejected": json.dumps(result.rejected)},
        )
        # Counted in rows, not profiles: a profile shared with its history has a row per
        # past membership besides its current one, and a refusal covers them all.
        params["rejected"] = cursor.rowcount
        _record_batch(cursor, params)
        _apply_to_state(cursor, params)


def _record_batch(cursor, params: dict) -> None:
    cursor.execute(
        """
        update ops.activation_batches
        set status = %(status)s, attempts = attempts + %(attempts)s,
            rows_accepted = %(accepted)s, rows_rejected = %(rejected)s,
            vendor_response = %(response)s, error = %(error)s, finished_at = now()
        where destination = %(destination)s and audience_id = %(audience)s
            and run_key = %(run)s and batch_number = %(number)s
        """,
        params,
    )


def _apply_to_state(cursor, params: dict) -> None:
    """What the destination holds now; the payload is no longer needed in the ledger."""
    cursor.execute(
        """
        insert into ops.activation_state as held
            (destination, audience_id, profile_id, identity_value, is_member, added_run_key,
             sent_identities)
        select destination, audience_id, profile_id, identity_value, true, run_key,
               payload -> 'identities'
        from ops.activation_changes
        where destination = %(destination)s and audience_id = %(audience)s
            and run_key = %(run)s and batch_number = %(number)s
            and change in ('add', 'keep') and status = 'sent'
        on conflict (destination, audience_id, profile_id, identity_value) do update
            set is_member = true, added_run_key = excluded.added_run_key,
                sent_identities = excluded.sent_identities,
                removed_run_key = null, updated_at = now()
        """,
        params,
    )
    cursor.execute(
        """
        update ops.activation_state as held
        set is_member = false, removed_run_key = %(run)s, sent_identities = null,
            updated_at = now()
        from ops.activation_changes as sent
        where sent.destination = %(destination)s and sent.audience_id = %(audience)s
            and sent.run_key = %(run)s and sent.batch_number = %(number)s
            and sent.change = 'remove' and sent.status = 'sent'
            and held.destination = sent.destination and held.audience_id = sent.audience_id
            and held.profile_id = sent.profile_id and held.identity_value = sent.identity_value
        """,
        params,
    )
    cursor.execute(
        """
        update ops.activation_changes set payload = null
        where destination = %(destination)s and audience_id = %(audience)s
            and run_key = %(run)s and batch_number = %(number)s and status = 'sent'
        """,
        params,
    )
