"""The activation ledger: every run, batch and change sent, and what each destination holds.

- `ops.activation_runs`: one row per destination, audience and run: status, counts,
  exclusions by reason, failures, refused removals.
- `ops.activation_batches`: one row per request-sized batch of a run: its operation,
  rows, attempts, the vendor's answer (request ids, counts) or error.
- `ops.activation_payloads`: one row per batch not yet answered, holding exactly what
  it sends (identities, attributes). Written at planning, before anything is sent, so
  an interrupted run is finished with the same content; deleted once the vendor
  answered, so the ledger keeps hashes and ids forever, never addresses.
- `ops.activation_changes`: one row per profile an answered batch added, removed,
  kept (full files) or shared from history, with its outcome (sent, rejected, failed,
  refused) and the vendor's reason. Written once, when the vendor answered; a full
  file's removals, which travel in no batch, are written at planning and settled
  with the manifest, and so are removals with nothing left to send (`skipped`: every
  value is still another member's).
- `ops.activation_state`: one row per destination, audience and profile identity key:
  what the destination holds after the last confirmed batch, and the identities it
  holds them under (needed to remove them later; cleared once removed).
- `ops.activation_audiences`: each audience a destination knows, with the vendor's id
  for it and when its history was first shared.

Nothing here is ever purged.
"""

from __future__ import annotations

LEDGER_DDL = """
create schema if not exists ops;

create table if not exists ops.activation_runs (
    destination text not null,
    audience_id text not null,
    run_key text not null,
    status text not null,
    is_first_run boolean not null,
    export_mode text not null,
    rows_added integer not null default 0,
    rows_removed integer not null default 0,
    rows_in_file integer not null default 0,
    members_eligible integer not null default 0,
    excluded_by_reason jsonb not null default '{}'::jsonb,
    export_location text,
    planned_at timestamptz not null default now(),
    sent_at timestamptz,
    primary key (destination, audience_id, run_key)
);
alter table ops.activation_runs
    add column if not exists rows_failed integer not null default 0,
    add column if not exists removals_refused integer not null default 0,
    add column if not exists batch_count integer not null default 0,
    add column if not exists history_rows integer not null default 0,
    add column if not exists error text;
alter table ops.activation_runs drop constraint if exists activation_runs_status_check;
alter table ops.activation_runs add constraint activation_runs_status_check
    check (status in ('planned', 'sent', 'partial'));

create table if not exists ops.activation_batches (
    destination text not null,
    audience_id text not null,
    run_key text not null,
    batch_number integer not null,
    operation text not null check (operation in ('add', 'remove')),
    row_count integer not null,
    status text not null check (status in ('planned', 'sent', 'failed', 'refused')),
    attempts integer not null default 0,
    rows_accepted integer not null default 0,
    rows_rejected integer not null default 0,
    vendor_response jsonb,
    error text,
    finished_at timestamptz,
    primary key (destination, audience_id, run_key, batch_number)
);

create table if not exists ops.activation_changes (
    destination text not null,
    audience_id text not null,
    run_key text not null,
    profile_id text not null,
    identity_value text not null,
    change text not null,
    primary key (destination, audience_id, run_key, profile_id, identity_value)
);
alter table ops.activation_changes
    add column if not exists batch_number integer,
    add column if not exists status text not null default 'planned',
    add column if not exists reason text;
alter table ops.activation_changes drop constraint if exists activation_changes_change_check;
alter table ops.activation_changes add constraint activation_changes_change_check
    check (change in ('add', 'remove', 'keep', 'history'));
-- Rows are written per batch but never read back per batch: an index on it would only
-- slow the writing of every answer.
drop index if exists ops.activation_changes_by_batch;
-- Earlier versions kept each change's payload on its row; batches now carry it.
alter table ops.activation_changes drop column if exists payload;

create table if not exists ops.activation_payloads (
    destination text not null,
    audience_id text not null,
    run_key text not null,
    batch_number integer not null,
    members json not null,
    primary key (destination, audience_id, run_key, batch_number)
);
-- Written once, read once, deleted: compressing a few megabytes per batch costs more
-- than the disk it saves.
alter table ops.activation_payloads alter column members set storage external;

create table if not exists ops.activation_state (
    destination text not null,
    audience_id text not null,
    profile_id text not null,
    identity_value text not null,
    is_member boolean not null,
    added_run_key text not null,
    removed_run_key text,
    updated_at timestamptz not null default now(),
    primary key (destination, audience_id, profile_id, identity_value)
);
alter table ops.activation_state add column if not exists sent_identities jsonb;

create table if not exists ops.activation_audiences (
    destination text not null,
    audience_id text not null,
    vendor_audience_id text,
    opened_at timestamptz not null default now(),
    history_shared_run_key text,
    primary key (destination, audience_id)
);
"""


def ensure_ledger_tables(cursor) -> None:
    # Mapped tasks start together; the lock keeps their DDL from racing.
    cursor.execute("select pg_advisory_xact_lock(hashtext('cdp_activation_ledger'))")
    cursor.execute(LEDGER_DDL)


def refresh_statistics(cursor) -> None:
    """Let the planner see how much each destination holds before a run diffs against it.

    Autovacuum catches up with a bulk write only minutes later; until then Postgres
    takes the state for nearly empty and joins it to the audience row by row, which
    for a million members costs hours instead of seconds.
    """
    cursor.execute("analyze ops.activation_state")


def stop_holding(cursor, keys: dict, released: str, *, only_added_by_run: bool = False) -> int:
    """Record that the destination no longer holds these members, as of the run in `keys`.

    `released` is a query of (profile_id, identity key) pairs, using `keys`' parameters.
    The identities they were sent under are forgotten with them: a removal sent later
    would have nothing to name. With `only_added_by_run`, members a later run added
    again stay held. Returns how many were released.
    """
    added_by_run = "and held.added_run_key = %(run)s" if only_added_by_run else ""
    cursor.execute(
        f"""
        update ops.activation_state as held
        set is_member = false, removed_run_key = %(run)s, sent_identities = null,
            updated_at = now()
        from ({released}) as released(profile_id, identity_value)
        where held.destination = %(destination)s and held.audience_id = %(audience)s
            and held.profile_id = released.profile_id
            and held.identity_value = released.identity_value
            {added_by_run}
        """,
        keys,
    )
    return cursor.rowcount
