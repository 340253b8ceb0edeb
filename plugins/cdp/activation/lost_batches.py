"""What the ledger does when batches a destination had taken are lost before the run ends.

A file export confirms each part as it is written, and the part's content leaves the
ledger with that confirmation. If the part is then deleted at the destination before
the manifest goes (by someone on the SFTP or S3 side, or while an interrupted run
waited to be finished), it cannot be written again. Failing the run for ever would
leave the destination stuck, so the run is finished without the part instead:

- the lost batches are recorded as failed, with what became of their file, and so
  are their rows in `ops.activation_changes`: the run ends `partial`;
- members the lost batches added are no longer recorded as held, so the next run,
  diffing the audience against `ops.activation_state`, sends them again if they are
  still members;
- removals cannot be planned again: the identities they named were cleared from the
  state when they were confirmed (decision 6). Their rows stay failed, with the reason,
  so `ops.activation_changes` says which profiles the consumer may still hold.

Full files need nothing more: the next full file sends every member again.
"""

from __future__ import annotations

import logging

from cdp import warehouse
from cdp.activation.connectors.base import SentBatchesLost
from cdp.activation.ledger import stop_holding

log = logging.getLogger(__name__)


def forget_lost_batches(destination: str, audience_id: str, run_key: str,
                        lost: SentBatchesLost) -> None:  # fmt: skip
    """Record the lost batches as failed and their additions as not held, in one transaction."""
    keys = {
        "destination": destination,
        "audience": audience_id,
        "run": run_key,
        "numbers": sorted(lost.lost),
    }
    with warehouse.connect() as conn, conn.cursor() as cursor:
        released = stop_holding(
            cursor,
            keys,
            """
            select profile_id, identity_value from ops.activation_changes
            where destination = %(destination)s and audience_id = %(audience)s
                and run_key = %(run)s and batch_number = any(%(numbers)s)
                and change = 'add' and status = 'sent'
            """,
            only_added_by_run=True,
        )
        for number, what_happened in sorted(lost.lost.items()):
            cursor.execute(
                """
                update ops.activation_changes
                set status = 'failed', reason = %(reason)s
                where destination = %(destination)s and audience_id = %(audience)s
                    and run_key = %(run)s and batch_number = %(number)s and status = 'sent'
                """,
                {**keys, "number": number, "reason": f"lost at the destination: {what_happened}"},
            )
            cursor.execute(
                """
                update ops.activation_batches
                set status = 'failed', error = %(error)s, finished_at = now()
                where destination = %(destination)s and audience_id = %(audience)s
                    and run_key = %(run)s and batch_number = %(number)s
                """,
                {**keys, "number": number, "error": f"lost at the destination: {what_happened}"},
            )

    log.error(
        "destination=%s audience=%s run=%s batches=%s lost at the destination; "
        "%d added identities go again next run: %s",
        destination, audience_id, run_key, keys["numbers"], released, lost,
    )  # fmt: skip
