{#- Every linkable identity with the profile it belongs to now. Devices go to
    the person who authenticated on them last; a device nobody authenticated
    on is an anonymous profile of its own. A profile keeps at most
    var('max_identities_per_profile') identities, by priority and then
    recency; the rest are marked `is_cut_by_cap` and link nowhere. -#}
with

identities_linked as (

    select * from {{ ref('int_identities_linked') }}

),

device_authentications as (

    select * from {{ ref('int_device_authentications') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

quarantine as (

    select * from {{ ref('int_identity_quarantine') }}

),

devices as (

    select nodes.*
    from nodes
    left join quarantine
        on quarantine.node_id = nodes.node_id
    where nodes.kind = 'device'
        and quarantine.node_id is null

),

last_authentications as (

    select distinct on (device_authentications.node_id)
        device_authentications.node_id,
        device_authentications.profile_id
    from device_authentications
    order by
        device_authentications.node_id,
        device_authentications.authenticated_at desc,
        device_authentications._batch_id desc,
        device_authentications._line_number desc

),

device_links as (

    select
        devices.node_id,
        devices.namespace,
        devices.identity_value,
        coalesce(
            last_authentications.profile_id,
            {{ profile_id_from_anchor('devices.namespace', 'devices.identity_value') }}
        ) as profile_id,
        case
            when last_authentications.profile_id is null
                then 'anonymous_device_anchor'
            else 'device_last_authenticated'
        end as link_rule,
        last_authentications.profile_id is null as is_anchor
    from devices
    left join last_authentications
        on last_authentications.node_id = devices.node_id

),

resolved as (

    select
        identities_linked.node_id,
        identities_linked.namespace,
        identities_linked.identity_value,
        identities_linked.profile_id,
        identities_linked.link_rule,
        identities_linked.is_anchor
    from identities_linked

    union all

    select
        device_links.node_id,
        device_links.namespace,
        device_links.identity_value,
        device_links.profile_id,
        device_links.link_rule,
        device_links.is_anchor
    from device_links

),

-- The anchor always stays; then the highest-priority, most recently seen.
ranked as (

    select
        resolved.*,
        row_number() over (
            partition by resolved.profile_id
            order by
                resolved.is_anchor desc,
                nodes.priority,
                nodes.last_seen_at desc,
                resolved.identity_value
        ) as profile_rank
    from resolved
    inner join nodes
        on nodes.node_id = resolved.node_id

),

final as (

    select
        ranked.node_id,
        ranked.namespace,
        ranked.identity_value,
        ranked.profile_id,
        ranked.link_rule,
        ranked.is_anchor,
        ranked.profile_rank,
        ranked.profile_rank
            > {{ var('max_identities_per_profile', 50) }} as is_cut_by_cap
    from ranked

)

select * from final
