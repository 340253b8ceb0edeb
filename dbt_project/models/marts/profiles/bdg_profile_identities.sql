with

identities_resolved as (

    select * from {{ ref('int_identities_resolved') }}
    where not is_cut_by_cap

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

final as (

    select
        identities_resolved.namespace,
        identities_resolved.identity_value,
        identities_resolved.profile_id,
        identities_resolved.link_rule,
        identities_resolved.is_anchor,
        nodes.observation_count,
        nodes.dataset_count,
        nodes.first_seen_at,
        nodes.last_seen_at
    from identities_resolved
    inner join nodes
        on nodes.node_id = identities_resolved.node_id

)

select * from final
