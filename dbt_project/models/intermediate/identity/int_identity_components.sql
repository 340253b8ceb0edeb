{#- Connected components of the identity graph, computed by the
    `connected_components` materialization (macros/identity): one row per
    node with the smallest node id of its component. -#}
{{ config(materialized='connected_components') }}

select
    edges.node_a,
    edges.node_b
from {{ ref('int_identity_edges') }} as edges
