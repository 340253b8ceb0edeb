"""The yardsticks the stitching engine is measured against, on the same edges.

- the physical floor: edges out of Postgres by COPY, connected components in
  process with scipy, labels back by COPY;
- full-table min-label propagation: every round rewrites every node's label as the
  smallest label among its neighbours, until a round changes nothing. This is what
  public dbt id-stitching packages do.
"""

from __future__ import annotations

import io
import time

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def union_find_floor(cursor, edges_table: str) -> dict[str, float]:
    started = time.perf_counter()

    buffer = io.StringIO()
    cursor.copy_expert(f"copy (select node_a, node_b from {edges_table}) to stdout", buffer)
    buffer.seek(0)
    pairs = np.loadtxt(buffer, dtype=np.int64, ndmin=2)

    nodes, positions = np.unique(pairs.ravel(), return_inverse=True)
    positions = positions.reshape(-1, 2)
    graph = coo_matrix(
        (np.ones(len(positions), dtype=np.int8), (positions[:, 0], positions[:, 1])),
        shape=(len(nodes), len(nodes)),
    )
    count, component_of = connected_components(graph, directed=False)
    smallest = np.full(count, np.iinfo(np.int64).max)
    np.minimum.at(smallest, component_of, nodes)

    cursor.execute("drop table if exists bench_floor_labels")
    cursor.execute(
        "create temporary table bench_floor_labels (node_id bigint, component_id bigint)"
    )
    out = io.StringIO()
    np.savetxt(out, np.column_stack([nodes, smallest[component_of]]), fmt="%d", delimiter="\t")
    out.seek(0)
    cursor.copy_expert("copy bench_floor_labels from stdin", out)

    return {"seconds": time.perf_counter() - started, "components": int(count)}


def full_table_propagation(cursor, edges_table: str, max_rounds: int) -> dict[str, float]:
    """Rounds until no label changes, or `max_rounds` (then `converged` is False)."""
    started = time.perf_counter()
    cursor.execute("drop table if exists bench_links, bench_labels")
    cursor.execute(
        f"""
        create temporary table bench_links as
        select node_a as src, node_b as dst from {edges_table}
        union all
        select node_b as src, node_a as dst from {edges_table}
        """
    )
    cursor.execute(
        "create temporary table bench_labels as "
        "select distinct src as node_id, src as label from bench_links"
    )

    rounds, changed = 0, 1
    while changed and rounds < max_rounds:
        rounds += 1
        cursor.execute(
            """
            create temporary table bench_next as
            select links.src as node_id, least(min(labels.label), min(own.label)) as label
            from bench_links as links
            inner join bench_labels as labels on labels.node_id = links.dst
            inner join bench_labels as own on own.node_id = links.src
            group by links.src
            """
        )
        cursor.execute(
            "select count(*) from bench_next inner join bench_labels using (node_id) "
            "where bench_next.label <> bench_labels.label"
        )
        changed = cursor.fetchone()[0]
        cursor.execute("drop table bench_labels")
        cursor.execute("alter table bench_next rename to bench_labels")

    return {
        "seconds": time.perf_counter() - started,
        "rounds": rounds,
        "converged": not changed,
    }
