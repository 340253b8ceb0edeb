"""The activation ledger: every run, every change sent, and what each destination holds.

- `ops.activation_runs`: one row per destination, audience and run, with its counts,
  exclusions by reason, where the files went and whether delivery was confirmed.
- `ops.activation_changes`: one row per profile added, removed or (for full files)
  kept by a run. It is written before anything is sent, so an interrupted run can be
  finished with exactly the same content.
- `ops.activation_state`: one row per destination, audience, profile and identity
  value: what the destination holds after the last confirmed run. Later runs send the
  difference between it and the current audience.

Nothing here is ever purged.
"""

from __future__ import annotations

LEDGER_DDL = """
create schema if not exists ops;

create table if not exists ops.activation_runs (
    destination text not null,
    audience_id text not null,
    run_key text not null,
    status text not null check (status in ('planned', 'sent')),
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

create table if not exists ops.activation_changes (
    destination text not null,
    audience_id text not null,
    run_key text not null,
    profile_id text not null,
    identity_value text not null,
    change text not null check (change in ('add', 'remove', 'keep')),
    primary key (destination, audience_id, run_key, profile_id, identity_value)
);

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
"""


def ensure_ledger_tables(cursor) -> None:
    # Mapped tasks start together; the lock keeps their CREATEs from racing.
    cursor.execute("select pg_advisory_xact_lock(hashtext('cdp_activation_ledger'))")
    cursor.execute(LEDGER_DDL)
