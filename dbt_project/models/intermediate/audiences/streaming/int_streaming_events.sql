{#- One row per event of the batches a streaming evaluation looks at
    (ops.streaming_pending) in fct_profile_events' columns, attributed by
    int_streaming_records_resolved. Empty unless the streaming path runs. -#}
{{ depends_on_staging_models() }}

with

records_resolved as (

    select * from {{ ref('int_streaming_records_resolved') }}

),

events as (

    {%- set pending_batches -%}
        {{ 'true' if is_streaming_evaluation() else 'false' }}
        and staged._batch_id in (
            select pending.batch_id
            from {{ source('ops', 'streaming_pending') }} as pending
        )
    {%- endset %}
    {{ profile_event_rows('records_resolved', pending_batches) }}

),

-- An event re-sent within the new batches keeps its latest version.
latest_events as (

    {{ latest_event_versions('events') }}

)

select * from latest_events
