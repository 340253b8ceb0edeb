{{ config(materialized='view') }}

{#- The profiles audiences are evaluated on. Evaluated now: dim_profiles as it
    is. Evaluated as of a past instant (var evaluation_time, set by
    backfills): only profiles seen by then, each attribute as the profile's
    records stood then, so a backfill never qualifies anyone on what was
    learned later. The identity graph is today's: records are attributed to
    the profiles they belong to now. -#}
-- depends_on: {{ ref('int_records_resolved') }}
{{ depends_on_staging_models() }}

{%- set attributes = profile_attribute_columns(declared_datasets(kind='record')) %}

with

profiles as (

    select * from {{ ref('dim_profiles') }}

),

{% if not is_as_of_evaluation() %}

final as (

    select * from profiles

)

{% else %}

attributes_then as (

    {{ merged_profile_attributes(observed_until=audience_evaluation_time()) }}

),

final as (

    select
        profiles.profile_id,
        profiles.anchor_namespace,
        profiles.is_anonymous,
        profiles.customer_id,
        profiles.loyalty_id,
        profiles.email,
        profiles.email_sha256,
        profiles.phone_e164,
        profiles.identity_count,
        profiles.email_count,
        profiles.phone_count,
        profiles.device_count,
        profiles.first_seen_at,
        profiles.last_seen_at
        {%- for attribute in attributes %},
        attributes_then.{{ adapter.quote(attribute.name) }}
        {%- endfor %}
    from profiles
    left join attributes_then
        on attributes_then.profile_id = profiles.profile_id
    where profiles.first_seen_at <= {{ audience_evaluation_time() }}

)

{% endif %}

select * from final
