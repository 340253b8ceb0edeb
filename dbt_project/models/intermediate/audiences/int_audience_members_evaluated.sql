{#- One select per audience declared in audiences.yml, its rule compiled to SQL
    by audience_rule_sql. -#}
{%- set audiences = audiences_to_evaluate() %}

with

-- A streaming evaluation (var streaming_batch_ids) looks only at the
-- profiles of the new events, with those events added to what the last
-- build knew.
streaming_events as (

    select * from {{ ref('int_streaming_events') }}
    where profile_id is not null

),

profiles as (

    select * from {{ ref('int_audience_profiles') }}
    {%- if streaming_batch_ids() %}
    where profile_id in (select streaming_events.profile_id from streaming_events)
    {%- endif %}

),

profile_events as (

    select * from {{ ref('fct_profile_events') }}
    {%- if streaming_batch_ids() %}
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
        '{{ audience.id }}' as audience_id,
        profiles.profile_id,
        {{ audience_evaluation_time() }} as evaluated_at
    from profiles
    where {{ audience_rule_sql(audience) }}
{%- else %}

    select
        cast(null as text) as audience_id,
        cast(null as text) as profile_id,
        cast(null as timestamptz) as evaluated_at
    where false
{%- endfor %}

)

select * from members
