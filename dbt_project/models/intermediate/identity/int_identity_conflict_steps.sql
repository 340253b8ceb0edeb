{#- Every link inside a conflict component, once in each direction, with
    what the walk in int_identity_component_splits needs of the identity a
    step leaves from. -#}
{{ config(
    indexes=[{'columns': ['from_node_id']}],
) }}

with

conflict_nodes as (

    select * from {{ ref('int_identity_conflict_nodes') }}

),

edges as (

    select * from {{ ref('int_identity_edges') }}
    where node_a <> node_b

),

both_directions as (

    select
        edges.node_a as from_node_id,
        edges.node_b as to_node_id
    from edges

    union all

    select
        edges.node_b as from_node_id,
        edges.node_a as to_node_id
    from edges

),

final as (

    select
        both_directions.from_node_id,
        both_directions.to_node_id,
        step_from.priority as from_priority,
        step_from.is_unique as from_is_unique,
        step_from.component_node_count
    from both_directions
    inner join conflict_nodes as step_from
        on step_from.node_id = both_directions.from_node_id

)

select * from final
