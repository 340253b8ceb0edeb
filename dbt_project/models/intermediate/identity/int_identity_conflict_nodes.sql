{#- The identities of components that hold two or more values of one unique
    namespace: the only part of the graph int_identity_component_splits walks.
    A table of its own so Postgres plans that walk with real row counts; as a
    CTE, its estimates were off by orders of magnitude and the walk spilled
    gigabytes at 5M records. -#}
{{ config(
    indexes=[{'columns': ['node_id'], 'unique': true}],
) }}

with

components as (

    select * from {{ ref('int_identity_components') }}

),

nodes as (

    select * from {{ ref('int_identity_nodes') }}

),

component_nodes as (

    select
        components.component_id,
        nodes.node_id,
        nodes.namespace,
        nodes.priority,
        nodes.is_unique,
        nodes.last_seen_at
    from components
    inner join nodes
        on nodes.node_id = components.node_id

),

conflict_components as (

    select distinct component_nodes.component_id
    from component_nodes
    where component_nodes.is_unique
    group by
        component_nodes.component_id,
        component_nodes.namespace
    having count(*) > 1

),

final as (

    select
        component_nodes.*,
        count(*) over (partition by component_nodes.component_id)
            as component_node_count
    from component_nodes
    inner join conflict_components
        on conflict_components.component_id = component_nodes.component_id

)

select * from final
