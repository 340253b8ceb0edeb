{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['audience_id', 'profile_id', 'valid_from'],
    )
}}

{#- Each build opens a range for pairs that newly qualify and closes the open
    range of pairs that no longer do, both at the evaluation time; a pair that
    stays in (or out) is untouched, so re-running at the same evaluation time
    changes nothing. -#}
with

members_evaluated as (

    select * from {{ ref('int_audience_members_evaluated') }}

),

evaluation as (

    select
        coalesce(
            max(members_evaluated.evaluated_at),
            {{ audience_evaluation_time() }}
        ) as evaluated_at
    from members_evaluated

),

{% if is_incremental() %}

open_ranges as (

    select * from {{ this }}
    where valid_to is null

),

newly_qualified as (

    select
        members_evaluated.audience_id,
        members_evaluated.profile_id,
        members_evaluated.evaluated_at as valid_from,
        cast(null as timestamptz) as valid_to
    from members_evaluated
    left join open_ranges
        on open_ranges.audience_id = members_evaluated.audience_id
        and open_ranges.profile_id = members_evaluated.profile_id
    where open_ranges.profile_id is null

),

exited as (

    select
        open_ranges.audience_id,
        open_ranges.profile_id,
        open_ranges.valid_from,
        evaluation.evaluated_at as valid_to
    from open_ranges
    cross join evaluation
    left join members_evaluated
        on members_evaluated.audience_id = open_ranges.audience_id
        and members_evaluated.profile_id = open_ranges.profile_id
    where members_evaluated.profile_id is null
        and open_ranges.valid_from <= evaluation.evaluated_at

),

changes as (

    select * from newly_qualified
    union all
    select * from exited

)

{% else %}

changes as (

    select
        members_evaluated.audience_id,
        members_evaluated.profile_id,
        members_evaluated.evaluated_at as valid_from,
        cast(null as timestamptz) as valid_to
    from members_evaluated

)

{% endif %}

select * from changes
