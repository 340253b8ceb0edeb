{#- One select per audience this build evaluates (all of them, or those a
    backfill or the streaming path asks for), its rule validated and compiled
    to SQL by the audience macros. Rules that use other audiences compile
    against every definition. -#}
{%- set audiences = audiences_to_evaluate() %}
{%- set context = audience_compile_context(audience_definitions()) %}

with

-- A streaming evaluation (var streaming_evaluation) looks only at the
-- profiles of the new events, with those events added to what the last
-- build knew.
streaming_events as (

    select * from {{ ref('int_streaming_events') }}
    where profile_id is not null

),

profiles as (

    select * from {{ ref('int_audience_profiles') }}
    {%- if is_streaming_evaluation() %}
    where profile_id in (select streaming_events.profile_id from streaming_events)
    {%- endif %}

),

profile_events as (

    select * from {{ ref('fct_profile_events') }}
    {%- if is_streaming_evaluation() %}
    where profile_id in (select streaming_events.profile_id from streaming_events)
        and (dataset, event_id) not in (
            select streaming_events.dataset, streaming_events.event_id
            from streaming_events
        )

    union all

    select * from streaming_events
    {%- endif %}

),

members as (

{%- for audience in audiences %}
    {%- if not loop.first %}

    union all
    {% endif %}

    select
        {{ audience_literal('text', audience.id) }} as audience_id,
        profiles.profile_id,
        {{ context.evaluated_at }} as evaluated_at
    from profiles
    where {{ audience_rule_sql(audience, context) }}
{%- else %}

    select
        cast(null as text) as audience_id,
        cast(null as text) as profile_id,
        cast(null as timestamptz) as evaluated_at
    where false
{%- endfor %}

)

select * from members
