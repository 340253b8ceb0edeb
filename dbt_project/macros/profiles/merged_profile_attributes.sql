{#- Every column declared `profile_attribute` in a profile-enabled record
    dataset, merged per profile as the most recent non-null value by record
    timestamp. With observed_until (a SQL instant), only records observed at or
    before it count: the profile as it stood then, for audiences evaluated as
    of a past date. -#}
{% macro merged_profile_attributes(observed_until=none) %}
{%- set datasets = declared_datasets(kind='record') -%}
{%- set attributes = profile_attribute_columns(datasets) %}

with

records_resolved as (

    select * from {{ ref('int_records_resolved') }}

),

attribute_records as (

{%- for dataset in datasets %}
    {%- if not loop.first %}

    union all
    {% endif %}

    select
        records_resolved.profile_id,
        records_resolved.observed_at,
        records_resolved._batch_id,
        records_resolved._line_number
        {%- for attribute in attributes %},
        {%- if attribute.name in dataset.columns | map(attribute='name') | list %}
        cast(staged.{{ adapter.quote(attribute.name) }}
            as {{ declared_sql_type(attribute.data_type) }})
            as {{ adapter.quote(attribute.name) }}
        {%- else %}
        cast(null as {{ declared_sql_type(attribute.data_type) }})
            as {{ adapter.quote(attribute.name) }}
        {%- endif %}
        {%- endfor %}
    from {{ staging_relation(dataset) }} as staged
    inner join records_resolved
        on records_resolved.dataset = '{{ dataset.name }}'
        and records_resolved._batch_id = staged._batch_id
        and records_resolved._line_number = staged._line_number
    {%- if observed_until is not none %}
    where records_resolved.observed_at <= {{ observed_until }}
    {%- endif %}
{%- else %}

    select
        cast(null as text) as profile_id,
        cast(null as timestamptz) as observed_at,
        cast(null as bigint) as _batch_id,
        cast(null as integer) as _line_number
    where false
{%- endfor %}

),

-- The latest non-null value wins, attribute by attribute.
merged as (

    select
        attribute_records.profile_id
        {%- for attribute in attributes %},
        (
            array_agg(attribute_records.{{ adapter.quote(attribute.name) }}
                order by
                    attribute_records.observed_at desc,
                    attribute_records._batch_id desc,
                    attribute_records._line_number desc)
            filter (
                where attribute_records.{{ adapter.quote(attribute.name) }}
                    is not null
            )
        )[1] as {{ adapter.quote(attribute.name) }}
        {%- endfor %}
    from attribute_records
    group by attribute_records.profile_id

)

select * from merged
{% endmacro %}
