{#- Connected components of the identity graph, computed by the
    `connected_components` materialization (macros/identity): one row per
    node with the smallest node id of its component.

    The materialization sorts every edge once to deduplicate it; with
    Postgres' default work_mem (4MB) that sort spills to disk at a few million
    edges and took minutes instead of seconds, so this model asks for more,
    for its own transaction only (var components_work_mem). Raising it for
    every model was measured too: no faster at 5M records. -#}
{{ config(
    materialized='connected_components',
    pre_hook="set local work_mem = '" ~ var('components_work_mem', '256MB') ~ "'",
) }}

select
    edges.node_a,
    edges.node_b
from {{ ref('int_identity_edges') }} as edges
