{#- One select per audience declared in audiences.yml, its rule compiled to SQL
    by audience_rule_sql. -#}
{%- set audiences = audiences_to_evaluate() %}

with

profiles as (

    select * from {{ ref('int_audience_profiles') }}

),

profile_events as (

    select * from {{ ref('fct_profile_events') }}

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
