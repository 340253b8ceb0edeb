"""The connected_components materialization finds exactly the connected components.

Random graphs of many shapes (isolated nodes, stars, long chains, cycles, many small
components, one giant component) are built with the materialization and compared
with a union-find in Python, then changed (edges added, edges removed so components
split) and rebuilt incrementally, then rebuilt with --full-refresh.
"""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import pytest
from psycopg2.extras import execute_values

from cdp import settings, warehouse
from tests.conftest import query

PROJECT_DIR = Path(__file__).parent / "dbt_components_project"
COMPONENTS = "analytics.graph_components"
MAX_NODE_ID = 2**60

Edge = tuple[int, int]


def true_components(edges: list[Edge]) -> dict[int, int]:
    """Node -> smallest node of its component, by union-find with path halving."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for node_a, node_b in edges:
        parent.setdefault(node_a, node_a)
        parent.setdefault(node_b, node_b)
        root_a, root_b = root(node_a), root(node_b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)

    return {node: root(node) for node in parent}


def random_graph(seed: int) -> list[Edge]:
    """Many shapes side by side; node ids are random so labels follow no path order."""
    rng = random.Random(seed)
    nodes = rng.sample(range(1, MAX_NODE_ID), 3_000)
    edges: list[Edge] = []

    def take(count: int) -> list[int]:
        return [nodes.pop() for _ in range(count)]

    edges += [(node, node) for node in take(40)]  # isolated identities
    for _ in range(5):  # stars: a hub and its leaves
        hub, *leaves = take(rng.randint(3, 30))
        edges += [(hub, leaf) for leaf in leaves]
    for length in (2, 50, 700):  # chains, the worst case for label propagation
        chain = take(length)
        edges += list(itertools.pairwise(chain))
    for _ in range(4):  # cycles
        cycle = take(rng.randint(3, 40))
        edges += list(zip(cycle, cycle[1:] + cycle[:1], strict=True))
    for _ in range(150):  # many small components
        members = take(rng.randint(2, 5))
        edges += [(rng.choice(members), member) for member in members]
    giant = take(len(nodes))  # one giant, loosely connected random component
    edges += [(giant[i], giant[rng.randrange(i)]) for i in range(1, len(giant))]
    edges += [tuple(rng.sample(giant, 2)) for _ in range(200)]

    rng.shuffle(edges)
    return [(a, b) if rng.random() < 0.5 else (b, a) for a, b in edges]


def write_edges(edges: list[Edge]) -> None:
    with warehouse.connect() as conn, conn.cursor() as cursor:
        cursor.execute("create schema if not exists graph")
        cursor.execute("drop table if exists graph.test_edges")
        cursor.execute("create table graph.test_edges (node_a bigint, node_b bigint)")
        execute_values(cursor, "insert into graph.test_edges values %s", edges, page_size=5000)


def build(work_dir: Path, *extra: str) -> None:
    from dbt.cli.main import dbtRunner

    os.environ.update(warehouse.address().dbt_env())
    os.environ.update(settings.TELEMETRY_OFF)
    os.environ["CDP_COMPONENTS_TARGET_DIR"] = str(work_dir / "target")
    outcome = dbtRunner().invoke(
        [
            "run",
            *extra,
            "--project-dir",
            str(PROJECT_DIR),
            "--profiles-dir",
            str(settings.DBT_PROJECT_DIR),
            "--log-path",
            str(work_dir / "logs"),
        ]
    )
    assert outcome.success, outcome.exception


def built_components() -> dict[int, int]:
    return dict(query(f"select node_id, component_id from {COMPONENTS}"))


def assert_matches(edges: list[Edge]) -> None:
    expected = true_components(edges)
    got = built_components()
    assert len(got) == len(expected), "one row per node, no node lost or duplicated"
    wrong = [node for node, component in expected.items() if got.get(node) != component]
    assert not wrong, f"{len(wrong)} of {len(expected)} nodes got the wrong component"


def split_bridges(edges: list[Edge], rng: random.Random) -> list[Edge]:
    """Drop some edges whose removal must split a component: the chains' middles."""
    truth = true_components(edges)
    sizes: dict[int, int] = {}
    for component in truth.values():
        sizes[component] = sizes.get(component, 0) + 1
    degree: dict[int, int] = {}
    for a, b in edges:
        if a != b:
            degree[a] = degree.get(a, 0) + 1
            degree[b] = degree.get(b, 0) + 1
    # In a chain, an edge between two degree-2 nodes is a bridge.
    chain_links = [
        (a, b)
        for a, b in edges
        if a != b and degree[a] == 2 and degree[b] == 2 and sizes[truth[a]] in (50, 700)
    ]
    dropped = set(rng.sample(chain_links, 6)) | set(rng.sample(edges, 20))
    return [edge for edge in edges if edge not in dropped]


@pytest.mark.parametrize("seed", [7, 2024])
def test_full_build_equals_connected_components(warehouse_env, tmp_path, seed):
    edges = random_graph(seed)
    write_edges(edges)

    build(tmp_path)

    assert_matches(edges)


def test_incremental_builds_follow_additions_and_splits(warehouse_env, tmp_path):
    rng = random.Random(11)
    edges = random_graph(11)
    write_edges(edges)
    build(tmp_path)

    # New links join components, and new nodes arrive.
    nodes = sorted({node for edge in edges for node in edge})
    newcomers = rng.sample(range(1, MAX_NODE_ID), 30)
    added = [tuple(rng.sample(nodes, 2)) for _ in range(25)]
    added += [(newcomer, rng.choice(nodes)) for newcomer in newcomers]
    edges = edges + added
    write_edges(edges)
    build(tmp_path)
    assert_matches(edges)

    # Removing bridges must split components that were one.
    edges = split_bridges(edges, rng)
    write_edges(edges)
    build(tmp_path)
    assert_matches(edges)
    incremental_table = sorted(built_components().items())

    build(tmp_path, "--full-refresh")
    assert sorted(built_components().items()) == incremental_table

    runs = query(
        "select mode, rounds, edge_count, nodes_recomputed "
        f"from {COMPONENTS}__runs order by built_at"
    )
    assert [run[0] for run in runs] == ["full", "incremental", "incremental", "full"]
    assert all(run[1] >= 1 for run in runs), "every build that computed records its rounds"
    total_nodes = len(true_components(edges))
    assert runs[1][3] < total_nodes, "an addition must not recompute every component"
    assert runs[3][2] == len({(min(a, b), max(a, b)) for a, b in edges})


def test_an_unchanged_graph_recomputes_nothing(warehouse_env, tmp_path):
    edges = random_graph(3)
    write_edges(edges)
    build(tmp_path)
    before = sorted(built_components().items())

    build(tmp_path)

    assert sorted(built_components().items()) == before
    mode, nodes_recomputed = query(
        f"select mode, nodes_recomputed from {COMPONENTS}__runs order by built_at desc limit 1"
    )[0]
    assert (mode, nodes_recomputed) == ("incremental", 0)
