{#- Attribute columns are generated from the declarations (see
    int_profile_attributes_merged). -#}
{%- set attributes = profile_attribute_columns(declared_datasets(kind='record')) %}

with

profile_identities as (

    select * from {{ ref('bdg_profile_identities') }}

),

attributes_merged as (

    select * from {{ ref('int_profile_attributes_merged') }}

),

anchors as (

    select
        profile_identities.profile_id,
        profile_identities.namespace as anchor_namespace
    from profile_identities
    where profile_identities.is_anchor

),

-- The identity a profile was seen with most recently, per namespace: the one
-- destinations should use.
primary_identities as (

    select
        profile_identities.profile_id,
        (array_agg(profile_identities.identity_value
            order by profile_identities.last_seen_at desc,
                profile_identities.identity_value)
            filter (where profile_identities.namespace = 'crm_id'))[1]
            as customer_id,
        (array_agg(profile_identities.identity_value
            order by profile_identities.last_seen_at desc,
                profile_identities.identity_value)
            filter (where profile_identities.namespace = 'loyalty_id'))[1]
            as loyalty_id,
        (array_agg(profile_identities.identity_value
            order by profile_identities.last_seen_at desc,
                profile_identities.identity_value)
            filter (where profile_identities.namespace = 'email'))[1]
            as email,
        (array_agg(profile_identities.identity_value
            order by profile_identities.last_seen_at desc,
                profile_identities.identity_value)
            filter (where profile_identities.namespace = 'phone'))[1]
            as phone_e164,
        count(*) as identity_count,
        count(*) filter (where profile_identities.namespace = 'email')
            as email_count,
        count(*) filter (where profile_identities.namespace = 'phone')
            as phone_count,
        count(*) filter (where profile_identities.namespace = 'ecid')
            as device_count,
        min(profile_identities.first_seen_at) as first_seen_at,
        max(profile_identities.last_seen_at) as last_seen_at
    from profile_identities
    group by profile_identities.profile_id

),

final as (

    select
        anchors.profile_id,
        anchors.anchor_namespace,
        anchors.anchor_namespace = 'ecid' as is_anonymous,
        primary_identities.customer_id,
        primary_identities.loyalty_id,
        primary_identities.email,
        encode(sha256(convert_to(primary_identities.email, 'UTF8')), 'hex')
            as email_sha256,
        primary_identities.phone_e164,
        primary_identities.identity_count,
        primary_identities.email_count,
        primary_identities.phone_count,
        primary_identities.device_count,
        primary_identities.first_seen_at,
        primary_identities.last_seen_at
        {%- for attribute in attributes %},
        attributes_merged.{{ adapter.quote(attribute.name) }}
        {%- endfor %}
    from anchors
    inner join primary_identities
        on primary_identities.profile_id = anchors.profile_id
    left join attributes_merged
        on attributes_merged.profile_id = anchors.profile_id

)

select * from final
