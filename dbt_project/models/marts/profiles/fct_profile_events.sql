{#- Generated from the dataset declarations: every profile-enabled event
    dataset, one row per event. An event re-sent in a later extract keeps its
    latest version. -#}
{{ depends_on_staging_models() }}

{%- set datasets = declared_datasets(kind='event') -%}
{%- set event_columns = profile_event_columns() %}

with

records_resolved as (

    select * from {{ ref('int_records_resolved') }}

),

events as (

{%- for dataset in datasets %}
    {%- if not loop.first %}

    union all
    {% endif %}

    select
        cast(staged.{{ adapter.quote(dataset.record_key) }} as text)
            as event_id,
        '{{ dataset.name }}' as dataset,
        {{ profile_event_type_sql(dataset, 'staged') }} as event_type,
        staged.{{ adapter.quote(dataset.timestamp_column) }} as occurred_at,
        records_resolved.profile_id,
        {%- for event_column in event_columns %}
        {{ profile_event_column_sql(dataset, event_column, 'staged') }}
            as {{ event_column.name }},
        {%- endfor %}
        staged._batch_id,
        staged._file_name,
        staged._line_number
    from {{ staging_relation(dataset) }} as staged
    left join records_resolved
        on records_resolved.dataset = '{{ dataset.name }}'
        and records_resolved._batch_id = staged._batch_id
        and records_resolved._line_number = staged._line_number
{%- else %}

    select
        cast(null as text) as event_id,
        cast(null as text) as dataset,
        cast(null as text) as event_type,
        cast(null as timestamptz) as occurred_at,
        cast(null as text) as profile_id,
        {%- for event_column in event_columns %}
        cast(null as {{ event_column.type }}) as {{ event_column.name }},
        {%- endfor %}
        cast(null as bigint) as _batch_id,
        cast(null as text) as _file_name,
        cast(null as integer) as _line_number
    where false
{%- endfor %}

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
