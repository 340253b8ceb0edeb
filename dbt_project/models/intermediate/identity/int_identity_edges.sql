{#- The links the connected-components step unions, after every graph rule:
    devices never bridge (they are attributed later, by time), quarantined
    identities and never-link pairs are dropped. A self-edge per linkable
    identity makes singletons their own component. -#}
with

pairs as (

    select * from {{ ref('int_identity_pairs') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

quarantine as (

    select * from {{ ref('int_identity_quarantine') }}

),

never_link as (

    select * from {{ ref('identity_never_link') }}

),

refused_pairs as (

    select
        least(node_a_ids.node_id, node_b_ids.node_id) as node_a,
        greatest(node_a_ids.node_id, node_b_ids.node_id) as node_b
    from never_link
    cross join lateral (
        select {{ identity_node_id(
            'never_link.namespace_a', 'never_link.value_a'
        ) }} as node_id
    ) as node_a_ids
    cross join lateral (
        select {{ identity_node_id(
            'never_link.namespace_b', 'never_link.value_b'
        ) }} as node_id
    ) as node_b_ids
    where never_link.namespace_b is not null

),

linkable_nodes as (

    select
        nodes.node_id,
        nodes.first_seen_at,
        nodes.last_seen_at
    from nodes
    left join quarantine
        on quarantine.node_id = nodes.node_id
    where nodes.kind <> 'device'
        and quarantine.node_id is null

),

links as (

    select
        pairs.node_a,
        pairs.node_b,
        pairs.link_rule,
        pairs.evidence_count,
        pairs.first_seen_at,
        pairs.last_seen_at
    from pairs
    inner join linkable_nodes as node_a
        on node_a.node_id = pairs.node_a
    inner join linkable_nodes as node_b
        on node_b.node_id = pairs.node_b
    left join refused_pairs
        on refused_pairs.node_a = pairs.node_a
        and refused_pairs.node_b = pairs.node_b
    where refused_pairs.node_a is null

),

self_edges as (

    select
        linkable_nodes.node_id as node_a,
        linkable_nodes.node_id as node_b,
        'self' as link_rule,
        0::bigint as evidence_count,
        linkable_nodes.first_seen_at,
        linkable_nodes.last_seen_at
    from linkable_nodes

),

final as (

    select * from links
    union all
    select * from self_edges

)

select * from final
