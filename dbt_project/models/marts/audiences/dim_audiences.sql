{#- Audience metadata and classification come from audiences.yml through the
    audience macros; every text is emitted as a quoted literal. -#}
{%- set audiences = audience_definitions() %}
{%- set by_id = audiences_by_id(audiences) %}

with

audience_membership as (

    select * from {{ ref('fct_audience_membership') }}

),

audiences as (

{%- for audience in audiences %}
    {%- set mode = audience_evaluation_mode(audience, by_id) %}
    {%- if not loop.first %}

    union all
    {% endif %}

    select
        {{ audience_literal('text', audience.id) }} as audience_id,
        {{ audience_literal('text', audience.name) }} as audience_name,
        {{ audience_literal('text', audience.description) }} as description,
        {{ audience_literal('text', audience.owner) }} as owner,
        {{ audience_literal('text', mode.mode) }} as evaluation_mode,
        {{ audience_literal('text', mode.reason) }} as evaluation_reason,
        {{ audience_literal('text', tojson(audience.rule)) }} as rule_json
{%- else %}

    select
        cast(null as text) as audience_id,
        cast(null as text) as audience_name,
        cast(null as text) as description,
        cast(null as text) as owner,
        cast(null as text) as evaluation_mode,
        cast(null as text) as evaluation_reason,
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
        audiences.evaluation_mode,
        audiences.evaluation_reason,
        cast(audiences.rule_json as jsonb) as rule,
        coalesce(sizes.realised_member_count, 0) as realised_member_count,
        coalesce(sizes.exited_member_count, 0) as exited_member_count
    from audiences
    left join sizes
        on sizes.audience_id = audiences.audience_id

)

select * from final
