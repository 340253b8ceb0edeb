{#- Identities that never link, whatever records say: values on the operator's
    never-link list, and identifiers linked to more distinct other identities
    than their namespace allows (a store's shared tablet, a call-centre
    placeholder phone). -#}
with

pairs as (

    select * from {{ ref('int_identity_pairs') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

never_link as (

    select * from {{ ref('identity_never_link') }}

),

-- Devices are attributed, never linked, so they do not count towards a
-- person identifier's degree; a device counts the people identifiers on it.
neighbours as (

    select pairs.node_a as node_id, pairs.node_b as neighbour_id
    from pairs
    where pairs.kind_b <> 'device'

    union all

    select pairs.node_b as node_id, pairs.node_a as neighbour_id
    from pairs
    where pairs.kind_a <> 'device'

),

degrees as (

    select
        neighbours.node_id,
        count(*) as linked_identity_count
    from neighbours
    group by neighbours.node_id

),

over_limit as (

    select
        nodes.node_id,
        'degree_above_limit' as quarantine_reason,
        'linked to ' || degrees.linked_identity_count
            || ' identities; limit ' || nodes.max_linked_identities
            as evidence
    from nodes
    inner join degrees
        on degrees.node_id = nodes.node_id
    where degrees.linked_identity_count > nodes.max_linked_identities

),

listed as (

    select
        nodes.node_id,
        'never_link_value' as quarantine_reason,
        'identity_never_link: ' || coalesce(never_link.reason, '')
            as evidence
    from never_link
    inner join nodes
        on nodes.node_id = {{ identity_node_id(
            'never_link.namespace_a', 'never_link.value_a'
        ) }}
    where never_link.namespace_b is null

),

-- A listed value that is also over the limit is reported once, as listed:
-- the operator's decision explains it best.
final as (

    select * from listed

    union all

    select * from over_limit
    where over_limit.node_id not in (select listed.node_id from listed)

)

select * from final
