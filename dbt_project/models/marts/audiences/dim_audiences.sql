{#- Audience metadata comes from audiences.yml; every text is emitted as a
    quoted literal. -#}
{%- set audiences = declared_audiences() %}

with

audience_membership as (

    select * from {{ ref('fct_audience_membership') }}

),

audiences as (

{%- for audience in audiences %}
    {%- set where = 'audience metadata' %}
    {%- if not loop.first %}

    union all
    {% endif %}

    select
        {{ audience_literal(audience.id, 'text', audience.id, where) }}
            as audience_id,
        {{ audience_literal(audience.id, 'text', audience.name, where) }}
            as audience_name,
        {{ audience_literal(audience.id, 'text', audience.description, where) }}
            as description,
        {{ audience_literal(audience.id, 'text', audience.owner, where) }}
            as owner,
        {{ audience_literal(audience.id, 'text', tojson(audience.rule), where) }}
            as rule_json
{%- else %}

    select
        cast(null as text) as audience_id,
        cast(null as text) as audience_name,
        cast(null as text) as description,
        cast(null as text) as owner,
        cast(null as text) as rule_json
    where false
{%- endfor %}

),

sizes as (

    select
        audience_membership.audience_id,
        count(*) filter (where audience_membership.status = 'realised')
            as realised_member_count,
        count(*) filter (where audience_membership.status = 'exited')
            as exited_member_count
    from audience_membership
    group by audience_membership.audience_id

),

final as (

    select
        audiences.audience_id,
        audiences.audience_name,
        audiences.description,
        audiences.owner,
        cast(audiences.rule_json as jsonb) as rule,
        coalesce(sizes.realised_member_count, 0) as realised_member_count,
        coalesce(sizes.exited_member_count, 0) as exited_member_count
    from audiences
    left join sizes
        on sizes.audience_id = audiences.audience_id

)

select * from final
