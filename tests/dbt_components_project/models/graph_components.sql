{{ config(materialized='connected_components') }}

select
    test_edges.node_a,
    test_edges.node_b
from graph.test_edges as test_edges
