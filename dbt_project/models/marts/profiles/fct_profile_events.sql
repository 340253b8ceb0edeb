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

    {{ latest_event_versions('events') }}

)

select * from latest_events
