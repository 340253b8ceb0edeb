"""Planning a run: who should the destination hold, what does it hold, what to send.

Planning happens in one warehouse transaction and leaves the whole run in the ledger
before a single request goes out: each change (add, remove, keep for full files,
history for an audience's first sharing, and any of it the manager has not yet taken)
with the exact identities and attributes to send, cut into numbered batches the size
of the vendor's requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cdp.activation.destinations import DESTINATION_TYPES, Destination
from cdp.activation.identities import IDENTITY_KINDS
from cdp.activation.ledger import stop_holding

MEMBERS_VIEW = "activation.act_audience_members"
PROFILES_TABLE = "marts.dim_profiles"
IDENTITIES_TABLE = "marts.bdg_profile_identities"
HISTORY_TABLE = "marts.fct_audience_membership_history"


@dataclass
class RunSummary:
    destination: str
    audience_id: str
    run_key: str
    outcome: str  # sent | partial | already_sent | dry_run
    is_first_run: bool = False
    rows_added: int = 0
    rows_removed: int = 0
    rows_in_file: int = 0
    history_rows: int = 0
    members_eligible: int = 0
    excluded_by_reason: dict[str, int] = field(default_factory=dict)
    batch_count: int = 0
    rows_failed: int = 0
    removals_refused: int = 0
    export_location: str | None = None
    sample_profile_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def identities_sql(destination: Destination) -> str:
    """A jsonb of identity kind to the values to send, per the destination's match rule."""
    kinds = [IDENTITY_KINDS[name] for name in destination.identities]

    if destination.identity_match == "first_available":
        branches = " ".join(
            f"when {kind.presence} is not null "
            f"then jsonb_build_object('{kind.name}', jsonb_build_array({kind.expression}))"
            for kind in kinds
        )
        return f"coalesce(case {branches} end, '{{}}'::jsonb)"

    if destination.identity_match == "all_available":
        pairs = ", ".join(
            f"'{kind.name}', case when {kind.presence} is not null "
            f"then jsonb_build_array({kind.expression}) end"
            for kind in kinds
        )
        return f"jsonb_strip_nulls(jsonb_build_object({pairs}))"

    # every_value: each value the profile holds of each accepted kind, from the graph.
    pairs = ", ".join(
        f"'{kind.name}', jsonb_agg(distinct {kind.value_expression} order by "
        f"{kind.value_expression}) filter (where namespace = '{kind.namespace}')"
        for kind in kinds
    )
    return (
        f"coalesce((select jsonb_strip_nulls(jsonb_build_object({pairs})) "
        f"from {IDENTITIES_TABLE} where {IDENTITIES_TABLE}.profile_id = member.profile_id), "
        "'{}'::jsonb)"
    )


def attributes_sql(destination: Destination) -> str:
    if not destination.attributes:
        return "'{}'::jsonb"
    pairs = ", ".join(
        f"'{field_name}', profile.\"{attribute}\""
        for field_name, attribute in destination.attributes.items()
    )
    return f"jsonb_build_object({pairs})"


def plan(cursor, destination: Destination, audience_id: str, run_key: str, batch_size: int,
         *, share_history: bool) -> RunSummary:  # fmt: skip
    keys = {"destination": destination.name, "audience": audience_id, "run": run_key}
    cursor.execute(
        "select not exists (select 1 from ops.activation_runs where destination = %(destination)s"
        " and audience_id = %(audience)s and status in ('sent', 'partial'))",
        keys,
    )
    is_first_run = cursor.fetchone()[0]

    _current_members(cursor, destination, audience_id)
    cursor.execute(
        "select excluded_reason, count(*) from current_members"
        " where excluded_reason is not null group by 1 order by 1"
    )
    excluded = {reason: count for reason, count in cursor.fetchall()}

    _diff(cursor, destination, keys)
    history_rows = 0
    if share_history or destination.type == "audience_sharing":
        history_rows, past_without_identity = _add_history(
            cursor, destination, keys, first_sharing=share_history
        )
        if past_without_identity:
            excluded["no_accepted_identity_in_history"] = past_without_identity
    batch_count = _write_batches(cursor, destination, keys, batch_size)

    cursor.execute(
        """
        select
            count(*) filter (where change = 'add'),
            count(*) filter (where change = 'remove'),
            count(*) filter (where change in ('add', 'keep'))
        from planned_changes
        """
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
        rows_in_file=in_full_file if destination.export_mode == "full_file" else added + removed,
        history_rows=history_rows,
        members_eligible=eligible,
        excluded_by_reason=excluded,
        batch_count=batch_count,
        export_location=destination.resolved_location(),
        sample_profile_ids=sample,
    )
    cursor.execute(
        """
        insert into ops.activation_runs
            (destination, audience_id, run_key, status, is_first_run, export_mode,
             rows_added, rows_removed, rows_in_file, history_rows, members_eligible,
             excluded_by_reason, export_location, batch_count)
        values (%s, %s, %s, 'planned', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            destination.name, audience_id, run_key, is_first_run, destination.export_mode,
            added, removed, summary.rows_in_file, history_rows, eligible, json.dumps(excluded),
            summary.export_location, batch_count,
        ),
    )  # fmt: skip
    return summary


def _current_members(cursor, destination: Destination, audience_id: str) -> None:
    """Who is in the audience now, what each would be sent, and why anyone cannot be.

    Consent is checked before identity: a profile without consent is never counted as
    sendable, whatever identities it has.
    """
    consent = destination.consent_column
    # Analytics and audience sharing need no channel consent: every member qualifies.
    has_consent = f"coalesce(member.{consent}, false)" if consent else "true"
    profile_join = (
        f"left join {PROFILES_TABLE} as profile on profile.profile_id = member.profile_id"
        if destination.attributes
        else ""
    )
    cursor.execute(
        f"""
        create temporary table current_members on commit drop as
        -- Materialized: inlined, the identities (and their hashing) would be computed
        -- once for each use below.
        with member_identities as materialized (
            select
                member.profile_id,
                member.qualified_at,
                {has_consent} as has_consent,
                {identities_sql(destination)} as identities,
                {attributes_sql(destination)} as attributes
            from {MEMBERS_VIEW} as member
            {profile_join}
            where member.audience_id = %s
        )
        select
            profile_id,
            qualified_at,
            identities,
            attributes,
            md5(identities::text) as identity_key,
            case
                when not has_consent then 'no_{destination.marketing_action}_consent'
                when identities = '{{}}'::jsonb then 'no_accepted_identity'
            end as excluded_reason
        from member_identities
        """,
        (audience_id,),
    )
    # A fresh temporary table has no statistics; without them the diff's joins guess
    # one row and loop over every pair.
    cursor.execute("analyze current_members")


def _diff(cursor, destination: Destination, keys: dict) -> None:
    """The difference between who should be there and what the destination holds.

    Each change carries its payload, the member exactly as it will be sent. It is json,
    not jsonb: it is only ever written out as text, and aggregating json into a batch
    costs a tenth of converting jsonb.
    """
    cursor.execute(
        """
        create temporary table planned_changes on commit drop as
        select profile_id, identity_key, change,
               json_build_object('profile_id', profile_id, 'identity_key', identity_key,
                                  'change', change, 'identities', identities,
                                  'attributes', attributes, 'realised_at', qualified_at)
                   as payload
        from (
            select member.*,
                   case when held.profile_id is null then 'add' else 'keep' end as change
            from current_members as member
            left join ops.activation_state as held
                on held.destination = %(destination)s
                and held.audience_id = %(audience)s
                and held.profile_id = member.profile_id
                and held.identity_value = member.identity_key
                and held.is_member
            where member.excluded_reason is null
                and (held.profile_id is null or %(keep_unchanged)s)
        ) as wanted
        """,
        {**keys, "keep_unchanged": destination.export_mode == "full_file"},
    )
    _add_removals(cursor, destination, keys)


def _add_removals(cursor, destination: Destination, keys: dict) -> None:
    """What the destination holds and should not: removed under the identities sent.

    A vendor that matches people by value (an email list, an ad platform's hashes)
    removes everyone with a value it is told to remove. Two profiles can share one (a
    family email stays two profiles), and a member whose phone changed keeps their
    email: so a removal names only the values no remaining member needs. One left with
    none is settled here, without a request: recorded as `skipped`, and no longer held.
    """
    cursor.execute(
        """
        create temporary table leaving on commit drop as
        select held.profile_id, held.identity_value as identity_key,
               held.sent_identities as identities
        from ops.activation_state as held
        left join current_members as member
            on member.profile_id = held.profile_id
            and member.identity_key = held.identity_value
            and member.excluded_reason is null
        where held.destination = %(destination)s
            and held.audience_id = %(audience)s
            and held.is_member
            and member.profile_id is null
        """,
        keys,
    )
    cursor.execute("select exists (select 1 from leaving)")
    anyone_leaving = cursor.fetchone()[0]
    if anyone_leaving and DESTINATION_TYPES[destination.type].matches_by_value:
        _keep_values_still_wanted(cursor)

    cursor.execute(
        """
        insert into planned_changes (profile_id, identity_key, change, payload)
        select profile_id, identity_key, 'remove',
               json_build_object('profile_id', profile_id, 'identity_key', identity_key,
                                  'change', 'remove', 'identities', identities,
                                  'attributes', '{}'::jsonb, 'exited_at', now())
        from leaving
        where identities <> '{}'::jsonb
        """
    )
    cursor.execute(
        """
        insert into ops.activation_changes
            (destination, audience_id, run_key, profile_id, identity_value, change, status,
             reason)
        select %(destination)s, %(audience)s, %(run)s, profile_id, identity_key, 'remove',
               'skipped', 'every value it was sent under is still held for another member'
        from leaving
        where identities = '{}'::jsonb
        """,
        keys,
    )
    stop_holding(
        cursor, keys, "select profile_id, identity_key from leaving where identities = '{}'"
    )


def _keep_values_still_wanted(cursor) -> None:
    """Take out of each removal the values a member who stays (or arrives) still has."""
    cursor.execute(
        """
        create temporary table leaving_values on commit drop as
        select distinct held.kind, held_value.value
        from leaving
        cross join lateral jsonb_each(leaving.identities) as held(kind, held_values)
        cross join lateral jsonb_array_elements_text(held.held_values) as held_value(value)
        """
    )
    cursor.execute("analyze leaving_values")
    # Exists, not in: a semi-join Postgres can hash however many values leave.
    cursor.execute(
        """
        create temporary table values_still_wanted on commit drop as
        select distinct kinds.kind, kind_value.value
        from current_members as member
        cross join lateral jsonb_each(member.identities) as kinds(kind, member_values)
        cross join lateral jsonb_array_elements_text(kinds.member_values) as kind_value(value)
        where member.excluded_reason is null
            and exists (
                select 1 from leaving_values as leaving_value
                where leaving_value.kind = kinds.kind and leaving_value.value = kind_value.value
            )
        """
    )
    # Looked up once per value of each removal, below.
    cursor.execute("create index on values_still_wanted (kind, value)")
    cursor.execute("analyze values_still_wanted")
    cursor.execute(
        """
        update leaving
        set identities = coalesce(
            (
                select jsonb_object_agg(kind, kept_values)
                from (
                    select held.kind, jsonb_agg(held_value.value) as kept_values
                    from jsonb_each(leaving.identities) as held(kind, held_values)
                    cross join lateral jsonb_array_elements_text(held.held_values)
                        as held_value(value)
                    where not exists (
                        select 1 from values_still_wanted as wanted
                        where wanted.kind = held.kind and wanted.value = held_value.value
                    )
                    group by held.kind
                ) as kept
            ),
            '{}'::jsonb
        )
        where exists (select 1 from values_still_wanted)
        """
    )


def _add_history(cursor, destination: Destination, keys: dict, *, first_sharing: bool
                 ) -> tuple[int, int]:  # fmt: skip
    """Memberships that already ended: all of them on an audience's first sharing, and
    afterwards those the manager refused or never took.

    A downstream audience manager learns only what it is told; without this, members
    realised and exited before the sharing began would be lost to it. History goes
    only with the first sharing, so nothing else would ever send a refused range
    again. Each past range is its own change, keyed by when it began, built afresh
    from the membership history. A past member with none of the accepted identities
    left (a profile since merged into another) cannot be sent: it is counted, not
    planned, or the manager would refuse the whole batch.

    Returns the ranges planned and the ranges left out for want of an identity.
    """
    not_yet_taken = (
        ""
        if first_sharing
        else """
            and exists (
                select 1 from ops.activation_changes as refused
                where refused.destination = %(destination)s
                    and refused.audience_id = %(audience)s
                    and refused.profile_id = member.profile_id
                    and refused.identity_value = 'history@' || member.valid_from::text
                    and refused.status in ('rejected', 'failed')
            )
            and not exists (
                select 1 from ops.activation_changes as taken
                where taken.destination = %(destination)s
                    and taken.audience_id = %(audience)s
                    and taken.profile_id = member.profile_id
                    and taken.identity_value = 'history@' || member.valid_from::text
                    and taken.status = 'sent'
            )
        """
    )
    cursor.execute(
        f"""
        create temporary table past_memberships on commit drop as
        select member.profile_id, member.valid_from, member.valid_to,
               {identities_sql(destination)} as identities
        from {HISTORY_TABLE} as member
        where member.audience_id = %(audience)s and member.valid_to is not null
        {not_yet_taken}
        """,
        keys,
    )
    cursor.execute(
        """
        insert into planned_changes (profile_id, identity_key, change, payload)
        select profile_id, identity_key, 'history',
               json_build_object('profile_id', profile_id, 'identity_key', identity_key,
                                  'change', 'history', 'identities', identities,
                                  'attributes', '{}'::jsonb,
                                  'realised_at', valid_from, 'exited_at', valid_to)
        from (
            select *, 'history@' || valid_from::text as identity_key from past_memberships
        ) as past
        where identities <> '{}'::jsonb
        """
    )
    planned = cursor.rowcount
    cursor.execute("select count(*) from past_memberships where identities = '{}'::jsonb")
    return planned, cursor.fetchone()[0]


def _write_batches(cursor, destination: Destination, keys: dict, batch_size: int) -> int:
    """Write the changes cut into request-sized batches: removals first, then additions.

    Removing first matters when a member's identities change: the old identities go,
    then the new ones arrive, so a value the two share (the same email with a new
    phone) ends up held rather than removed. In full-file mode removals are implied by
    the file and go in no batch.

    Each batch's payload is one row holding all its members, in the order they are
    sent: written once, read once, and replaced by one ledger row per member with its
    outcome once the vendor has answered. That order only has to be stable, so it is
    byte order ("C"), which sorts a million ids several times faster than a language's.
    """
    cursor.execute(
        """
        create temporary table numbered_changes on commit drop as
        select profile_id, identity_key, change, payload, position,
               case
                   when change = 'remove' and %(full_file)s then null
                   when change = 'remove' then (position - 1) / %(size)s + 1
                   else removal_batches + (position - 1) / %(size)s + 1
               end as batch_number
        from (
            select *,
                   row_number() over (
                       partition by change = 'remove'
                       order by change, profile_id collate "C", identity_key collate "C"
                   ) as position,
                   case when %(full_file)s then 0 else
                       (count(*) filter (where change = 'remove') over () + %(size)s - 1)
                       / %(size)s
                   end as removal_batches
            from planned_changes
        ) as numbered
        """,
        {"size": batch_size, "full_file": destination.export_mode == "full_file"},
    )
    cursor.execute(
        """
        insert into ops.activation_payloads
            (destination, audience_id, run_key, batch_number, members)
        select %(destination)s, %(audience)s, %(run)s, batch_number,
               json_agg(payload order by position)
        from numbered_changes
        where batch_number is not null
        group by batch_number
        """,
        keys,
    )
    cursor.execute(
        """
        insert into ops.activation_batches
            (destination, audience_id, run_key, batch_number, operation, row_count, status)
        select %(destination)s, %(audience)s, %(run)s, batch_number,
               case when bool_or(change = 'remove') then 'remove' else 'add' end, count(*),
               'planned'
        from numbered_changes
        where batch_number is not null
        group by batch_number
        """,
        keys,
    )
    batch_count = cursor.rowcount

    # A full file's removals travel in no batch: recorded now, settled with the manifest.
    cursor.execute(
        """
        insert into ops.activation_changes
            (destination, audience_id, run_key, profile_id, identity_value, change, status)
        select %(destination)s, %(audience)s, %(run)s, profile_id, identity_key, change,
               'planned'
        from numbered_changes
        where batch_number is null
        """,
        keys,
    )
    return batch_count
