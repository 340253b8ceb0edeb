"""Streaming audiences: evaluated for the profiles of each newly promoted event batch.

The daily build evaluates every audience over every profile; between builds, the
streaming path takes the event batches promoted since it last ran, attributes their
records to profiles through the identity graph the last build made, evaluates the
streaming audiences for those profiles only, and records who entered or left in the
membership history, in seconds rather than the minutes a full build takes. It runs
the dbt project's own models (`int_streaming_*` and the audience models), so the
rules are the ones the build applies.
"""

from __future__ import annotations

import logging

from cdp import datasets, warehouse
from cdp.ledger_schema import OPS_SCHEMA

log = logging.getLogger(__name__)

STREAMING_MODELS = (
    "int_streaming_records_resolved",
    "int_streaming_events",
    "int_audience_members_evaluated+",
)


def pending_event_batches() -> list[dict]:
    """Promoted batches of event datasets the streaming path has not evaluated yet."""
    event_datasets = [
        dataset.name
        for dataset in datasets.load_all().values()
        if dataset.kind == "event" and dataset.profile_enabled
    ]
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            f"""
            select landed.batch_id, landed.dataset
            from {OPS_SCHEMA}.landed_files as landed
            left join {OPS_SCHEMA}.streamed_batches as streamed
                on streamed.batch_id = landed.batch_id
            where landed.status = 'promoted'
                and landed.dataset = any(%s)
                and streamed.batch_id is null
            order by landed.batch_id
            """,
            (event_datasets,),
        )
        return [{"batch_id": batch_id, "dataset": name} for batch_id, name in cursor.fetchall()]


def evaluate_new_event_batches() -> dict:
    """Evaluate streaming audiences for the profiles of every pending event batch."""
    from cdp import transform

    batches = pending_event_batches()
    if not batches:
        return {"batches": 0}
    if not _profiles_built():
        # Nothing to attribute events to yet; they stay pending until a build exists.
        log.info("%d event batches wait for the first build of profiles", len(batches))
        return {"batches": 0, "waiting_for_first_build": len(batches)}

    batch_ids = [batch["batch_id"] for batch in batches]
    _set_pending(batch_ids)
    # Unit tests check the code, not the batch: the daily build runs them. The var is
    # the same every run, so dbt's partial parsing keeps each run to seconds.
    transform.run_dbt(
        "build",
        "--select",
        *STREAMING_MODELS,
        "--exclude",
        "test_type:unit",
        dbt_vars={"streaming_evaluation": True},
    )
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"delete from {OPS_SCHEMA}.streaming_pending")
        cursor.executemany(
            f"insert into {OPS_SCHEMA}.streamed_batches (batch_id, dataset) values (%s, %s)"
            " on conflict (batch_id) do nothing",
            [(batch["batch_id"], batch["dataset"]) for batch in batches],
        )
        cursor.execute(
            "select count(distinct profile_id) from intermediate.int_streaming_events"
            " where profile_id is not null"
        )
        (profiles,) = cursor.fetchone()
    log.info("streamed %d event batches: %d profiles evaluated", len(batch_ids), profiles)
    return {"batches": len(batch_ids), "profiles_evaluated": profiles}


def _profiles_built() -> bool:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute("select to_regclass('marts.bdg_profile_identities') is not null")
        return cursor.fetchone()[0]


def _set_pending(batch_ids: list[int]) -> None:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"delete from {OPS_SCHEMA}.streaming_pending")
        cursor.executemany(
            f"insert into {OPS_SCHEMA}.streaming_pending (batch_id) values (%s)",
            [(batch_id,) for batch_id in batch_ids],
        )
