{#- Every linkable identity with the profile it belongs to. Devices go to the
    person who authenticated on them last; a device nobody authenticated on is
    an anonymous profile of its own. -#}
with

identities_linked as (

    select * from {{ ref('int_identities_linked') }}

),

device_authentications as (

    select * from {{ ref('int_device_authentications') }}

),

observations as (

    select * from {{ ref('int_identity_observations') }}
    where is_linkable

),

devices as (

    select distinct
        observations.identity_value as ecid
    from observations
    where observations.namespace = 'ecid'

),

last_authentications as (

    select distinct on (device_authentications.ecid)
        device_authentications.ecid,
        device_authentications.profile_id
    from device_authentications
    order by
        device_authentications.ecid,
        device_authentications.authenticated_at desc,
        device_authentications._batch_id desc,
        device_authentications._line_number desc

),

device_links as (

    select
        'ecid' as namespace,
        devices.ecid as identity_value,
        coalesce(
            last_authentications.profile_id,
            {{ profile_id_from_anchor("'ecid'", 'devices.ecid') }}
        ) as profile_id,
        case
            when last_authentications.profile_id is null then 'ecid'
        end as anchor_namespace,
        case
            when last_authentications.profile_id is null then devices.ecid
        end as anchor_value,
        case
            when last_authentications.profile_id is null
                then 'anonymous_device_anchor'
            else 'device_last_authenticated'
        end as link_rule
    from devices
    left join last_authentications
        on last_authentications.ecid = devices.ecid

),

resolved as (

    select
        identities_linked.namespace,
        identities_linked.identity_value,
        identities_linked.profile_id,
        identities_linked.link_rule,
        identities_linked.anchor_namespace = identities_linked.namespace
            and identities_linked.anchor_value
                = identities_linked.identity_value as is_anchor
    from identities_linked

    union all

    select
        device_links.namespace,
        device_links.identity_value,
        device_links.profile_id,
        device_links.link_rule,
        device_links.anchor_namespace is not null as is_anchor
    from device_links

)

select * from resolved
