{#- One select per audience declared in audiences.yml, its rule validated and
    compiled to SQL by the audience macros. -#}
{%- set audiences = audience_definitions() %}
{%- set context = audience_compile_context(audiences) %}

with

profiles as (

    select * from {{ ref('dim_profiles') }}

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
