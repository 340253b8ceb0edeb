{#- One select per profile-enabled event dataset, unioned: every event with
    the profile the `records_resolved_cte` gives its record (dataset,
    _batch_id, _line_number, profile_id), in fct_profile_events' columns.
    With batch_filter (a SQL condition on `staged`), only the events it keeps. -#}
{% macro profile_event_rows(records_resolved_cte, batch_filter=none) -%}
    {%- set datasets = declared_datasets(kind='event') -%}
    {%- set event_columns = profile_event_columns() -%}

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
        {{ records_resolved_cte }}.profile_id,
        {%- for event_column in event_columns %}
        {{ profile_event_column_sql(dataset, event_column, 'staged') }}
            as {{ event_column.name }},
        {%- endfor %}
        staged._batch_id,
        staged._file_name,
        staged._line_number
    from {{ staging_relation(dataset) }} as staged
    left join {{ records_resolved_cte }}
        on {{ records_resolved_cte }}.dataset = '{{ dataset.name }}'
        and {{ records_resolved_cte }}._batch_id = staged._batch_id
        and {{ records_resolved_cte }}._line_number = staged._line_number
    {%- if batch_filter is not none %}
    where {{ batch_filter }}
    {%- endif %}
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
{%- endmacro %}


{#- The latest version of each event among `events_cte` (an event re-sent in a
    later extract, or twice in one, keeps the last one landed). -#}
{% macro latest_event_versions(events_cte) -%}
    select distinct on ({{ events_cte }}.dataset, {{ events_cte }}.event_id)
        {{ events_cte }}.*
    from {{ events_cte }}
    order by
        {{ events_cte }}.dataset,
        {{ events_cte }}.event_id,
        {{ events_cte }}._batch_id desc,
        {{ events_cte }}._line_number desc
{%- endmacro %}
