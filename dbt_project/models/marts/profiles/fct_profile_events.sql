{#- Generated from the dataset declarations: every profile-enabled event
    dataset, one row per event. An event re-sent in a later extract keeps its
    latest version. -#}
{{ depends_on_staging_models() }}

with

records_resolved as (

    select * from {{ ref('int_records_resolved') }}

),

events as (

    {{ profile_event_rows('records_resolved') }}

),

latest_events as (

    select distinct on (events.dataset, events.event_id)
        events.*
    from events
    order by
        events.dataset,
        events.event_id,
        events._batch_id desc,
        events._line_number desc

)

select * from latest_events
