{#- Every linked (non-device) identity with the anchor of its profile. A
    component is one profile, anchored by its highest-priority identity (the
    earliest seen among equals, so a new value does not move the id); a
    component holding two values of a unique namespace is split first
    (int_identity_component_splits). -#}
with

components as (

    select * from {{ ref('int_identity_components') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

splits as (

    select * from {{ ref('int_identity_component_splits') }}

),

component_nodes as (

    select
        components.component_id,
        nodes.node_id,
        nodes.priority,
        nodes.first_seen_at,
        nodes.namespace,
        nodes.identity_value
    from components
    inner join nodes
        on nodes.node_id = components.node_id

),

component_anchors as (

    select distinct on (component_nodes.component_id)
        component_nodes.component_id,
        component_nodes.node_id as anchor_node_id
    from component_nodes
    order by
        component_nodes.component_id,
        component_nodes.priority,
        component_nodes.first_seen_at,
        component_nodes.identity_value

),

whole_components as (

    select
        component_nodes.node_id,
        component_anchors.anchor_node_id,
        case
            when component_nodes.node_id = component_anchors.anchor_node_id
                then 'component_anchor'
            else 'same_component'
        end as link_rule
    from component_nodes
    inner join component_anchors
        on component_anchors.component_id = component_nodes.component_id
    left join splits
        on splits.node_id = component_nodes.node_id
    where splits.node_id is null

),

assignments as (

    select * from whole_components

    union all

    select
        splits.node_id,
        splits.anchor_node_id,
        splits.link_rule
    from splits

),

final as (

    select
        assignments.node_id,
        linked_node.namespace,
        linked_node.identity_value,
        linked_node.priority,
        {{ profile_id_from_anchor('anchor.namespace', 'anchor.identity_value') }}
            as profile_id,
        anchor.namespace as anchor_namespace,
        anchor.identity_value as anchor_value,
        assignments.link_rule,
        assignments.node_id = assignments.anchor_node_id as is_anchor
    from assignments
    inner join nodes as linked_node
        on linked_node.node_id = assignments.node_id
    inner join nodes as anchor
        on anchor.node_id = assignments.anchor_node_id

)

select * from final
