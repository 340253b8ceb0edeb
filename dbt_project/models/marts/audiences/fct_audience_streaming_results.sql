{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key=['audience_id', 'profile_id', 'evaluated_at'],
        full_refresh=false,
    )
}}

{#- One row per streaming audience, profile and streaming evaluation that
    looked at the profile: what the streaming path said, in or out. The
    history keeps only changes; the daily build needs every verdict, unchanged
    ones included, to check it against its own judgement
    (fct_audience_streaming_disagreements). Written by streaming evaluations
    only; durable, like the history. -#}
{%- set audiences = audiences_to_evaluate() if is_streaming_evaluation()
    else [] %}

with

members_evaluated as (

    select * from {{ ref('int_audience_members_evaluated') }}

),

streaming_events as (

    select * from {{ ref('int_streaming_events') }}

),

evaluated_audiences as (

    {{ audience_id_rows(audiences) }}

),

evaluated_profiles as (

    select distinct streaming_events.profile_id
    from streaming_events
    where streaming_events.profile_id is not null

),

final as (

    select
        evaluated_audiences.audience_id,
        evaluated_profiles.profile_id,
        {{ audience_evaluation_time() }} as evaluated_at,
        members_evaluated.profile_id is not null as is_member
    from evaluated_audiences
    cross join evaluated_profiles
    left join members_evaluated
        on members_evaluated.audience_id = evaluated_audiences.audience_id
        and members_evaluated.profile_id = evaluated_profiles.profile_id

)

select * from final
