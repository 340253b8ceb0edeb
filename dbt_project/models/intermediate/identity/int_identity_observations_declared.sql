{#- Generated from the dataset declarations: one select per declared identity
    column of every profile-enabled dataset, values as typed. A view: it only
    gives int_identity_observations one input it can be unit-tested with. -#}
{{ config(materialized='view') }}
{{ depends_on_staging_models() }}

{%- set selects = [] -%}
{%- for dataset in declared_datasets() -%}
    {%- for column in dataset.columns if column.identity -%}
        {%- set value = 'staged.' ~ adapter.quote(column.name) -%}
        {%- set select_sql -%}
    select
        '{{ dataset.name }}' as dataset,
        '{{ dataset.name }}:' || staged._batch_id || ':' || staged._line_number
            as source_record_id,
        cast(staged.{{ adapter.quote(dataset.record_key) }} as text)
            as record_key,
        {{ 'true' if column.name == dataset.record_key else 'false' }}
            as is_record_key,
        '{{ column.name }}' as identity_column,
        '{{ column.identity }}' as namespace,
        cast({{ value }} as text) as raw_value,
        staged.{{ adapter.quote(dataset.timestamp_column) }} as observed_at,
        staged._batch_id,
        staged._file_name,
        staged._line_number

    from {{ staging_relation(dataset) }} as staged
    where {{ value }} is not null
        {%- endset -%}
        {%- do selects.append(select_sql) -%}
    {%- endfor -%}
{%- endfor %}

with

observations as (

{% if selects %}
    {{ selects | join('\n\n    union all\n\n') }}
{% else %}
    {#- Parsing, or no dataset declares an identity yet: keep the shape. -#}
    select
        cast(null as text) as dataset,
        cast(null as text) as source_record_id,
        cast(null as text) as record_key,
        cast(null as boolean) as is_record_key,
        cast(null as text) as identity_column,
        cast(null as text) as namespace,
        cast(null as text) as raw_value,
        cast(null as timestamptz) as observed_at,
        cast(null as bigint) as _batch_id,
        cast(null as text) as _file_name,
        cast(null as integer) as _line_number
    where false
{% endif %}

)

select * from observations
