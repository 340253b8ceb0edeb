{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['audience_id', 'profile_id'],
        full_refresh=false,
        post_hook="delete from {{ this }} where valid_to = valid_from",
    )
}}

{#- A profile is in an audience from the evaluation that first found it in
    (valid_from) until the first later evaluation that found it out (valid_to,
    null while it is still in). An evaluation at instant t, whether the daily
    build at now or a backfill of a past date run in any order, changes only
    the pairs whose membership at t differs from what the history said:

    - found in, history said out: a range opens at t and lasts until the next
      evaluation (the history said out there), joining the range that ends at
      t and the one that starts at the next evaluation, so ranges never touch;
    - found out, history said in: the range holding t ends at t, and resumes
      at the next evaluation when the history had the profile in there.

    Pairs whose membership at t is unchanged are not touched, so re-running an
    evaluation changes nothing. Every range of a changed pair is rewritten
    (delete+insert on the pair); a range emptied by a re-run (valid_from =
    valid_to) is removed by the post-hook. Never rebuilt by --full-refresh:
    the history of past evaluations cannot be recomputed from today's data.
    Builds run by Airflow or the command line take turns (cdp.transform holds
    a warehouse lock for each dbt run), so two evaluations never interleave. -#}
-- depends_on: {{ ref('int_streaming_events') }}
{%- set audiences = audiences_to_evaluate() %}

with

members_evaluated as (

    select * from {{ ref('int_audience_members_evaluated') }}

),

evaluations as (

    select * from {{ ref('fct_audience_evaluations') }}

),

evaluation as (

    select {{ audience_evaluation_time() }} as evaluated_at

),

members as (

    select distinct
        members_evaluated.audience_id,
        members_evaluated.profile_id
    from members_evaluated

),

{% if is_incremental() %}

evaluated_audiences as (

    {{ audience_id_rows(audiences) }}

),

next_evaluations as (

    select
        evaluated_audiences.audience_id,
        min(evaluations.evaluated_at) as next_evaluated_at
    from evaluated_audiences
    cross join evaluation
    left join evaluations
        on evaluations.audience_id = evaluated_audiences.audience_id
        and evaluations.evaluated_at > evaluation.evaluated_at
    group by evaluated_audiences.audience_id

),

-- A streaming evaluation looks only at the profiles of the new events: it
-- says nothing of the others, so their ranges are left as they are.
evaluated_profiles as (

    select distinct streaming_events.profile_id
    from {{ ref('int_streaming_events') }} as streaming_events
    where streaming_events.profile_id is not null

),

-- The evaluated audiences' ranges, each with its place relative to t.
ranges as (

    select
        history.audience_id,
        history.profile_id,
        history.valid_from,
        history.valid_to,
        case
            when history.valid_from <= evaluation.evaluated_at
                and (
                    history.valid_to is null
                    or history.valid_to > evaluation.evaluated_at
                )
                then 'holds_evaluation'
            when history.valid_to = evaluation.evaluated_at
                then 'ends_at_evaluation'
            when history.valid_from = next_evaluations.next_evaluated_at
                then 'starts_at_next_evaluation'
            else 'elsewhere'
        end as place
    from {{ this }} as history
    inner join next_evaluations
        on next_evaluations.audience_id = history.audience_id
    cross join evaluation
    {%- if is_streaming_evaluation() %}
    where history.profile_id in (
        select evaluated_profiles.profile_id from evaluated_profiles
    )
    {%- endif %}

),

history_at_evaluation as (

    select
        ranges.audience_id,
        ranges.profile_id,
        bool_or(ranges.place = 'holds_evaluation') as was_in
    from ranges
    group by
        ranges.audience_id,
        ranges.profile_id

),

changed_pairs as (

    select
        coalesce(members.audience_id, history_at_evaluation.audience_id)
            as audience_id,
        coalesce(members.profile_id, history_at_evaluation.profile_id)
            as profile_id,
        members.profile_id is not null as is_in
    from members
    full outer join history_at_evaluation
        on history_at_evaluation.audience_id = members.audience_id
        and history_at_evaluation.profile_id = members.profile_id
    where (members.profile_id is not null)
        <> coalesce(history_at_evaluation.was_in, false)

),

entered_ranges as (

    select
        changed_pairs.audience_id,
        changed_pairs.profile_id,
        coalesce(ending.valid_from, evaluation.evaluated_at) as valid_from,
        case
            when starting.profile_id is not null then starting.valid_to
            else next_evaluations.next_evaluated_at
        end as valid_to
    from changed_pairs
    cross join evaluation
    inner join next_evaluations
        on next_evaluations.audience_id = changed_pairs.audience_id
    left join ranges as ending
        on ending.audience_id = changed_pairs.audience_id
        and ending.profile_id = changed_pairs.profile_id
        and ending.place = 'ends_at_evaluation'
    left join ranges as starting
        on starting.audience_id = changed_pairs.audience_id
        and starting.profile_id = changed_pairs.profile_id
        and starting.place = 'starts_at_next_evaluation'
    where changed_pairs.is_in

),

exited_ranges as (

    select
        changed_pairs.audience_id,
        changed_pairs.profile_id,
        holding.valid_from,
        evaluation.evaluated_at as valid_to
    from changed_pairs
    cross join evaluation
    inner join ranges as holding
        on holding.audience_id = changed_pairs.audience_id
        and holding.profile_id = changed_pairs.profile_id
        and holding.place = 'holds_evaluation'
    where not changed_pairs.is_in

    union all

    select
        changed_pairs.audience_id,
        changed_pairs.profile_id,
        next_evaluations.next_evaluated_at as valid_from,
        holding.valid_to
    from changed_pairs
    inner join next_evaluations
        on next_evaluations.audience_id = changed_pairs.audience_id
    inner join ranges as holding
        on holding.audience_id = changed_pairs.audience_id
        and holding.profile_id = changed_pairs.profile_id
        and holding.place = 'holds_evaluation'
    where not changed_pairs.is_in
        and next_evaluations.next_evaluated_at is not null
        and (
            holding.valid_to is null
            or holding.valid_to > next_evaluations.next_evaluated_at
        )

),

-- A changed pair's other ranges are written back as they were.
kept_ranges as (

    select
        ranges.audience_id,
        ranges.profile_id,
        ranges.valid_from,
        ranges.valid_to
    from ranges
    inner join changed_pairs
        on changed_pairs.audience_id = ranges.audience_id
        and changed_pairs.profile_id = ranges.profile_id
    where ranges.place = 'elsewhere'
        or (
            not changed_pairs.is_in
            and ranges.place in (
                'ends_at_evaluation', 'starts_at_next_evaluation'
            )
        )

),

changes as (

    select * from entered_ranges
    union all
    select * from exited_ranges
    union all
    select * from kept_ranges

)

{% else %}

changes as (

    select
        members.audience_id,
        members.profile_id,
        evaluation.evaluated_at as valid_from,
        cast(null as timestamptz) as valid_to
    from members
    cross join evaluation

)

{% endif %}

select * from changes
