"""NoC topologies as networkx graphs, and routing policies. Pure: no SimPy.

Nodes are router positions (row, col) of the core array; a core sits at its
position's router. `mesh`: a 2D mesh, links both ways between neighbours.
`prism`: a direct link from each position to the next k positions along the snake
placement (Dazzi et al. 2019's 5-Parallel-Prism in outline). The DRAM / host port is
the node "dram", linked both ways to one router.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import networkx as nx

from cimsim.mapping.placement import snake

Node = tuple[int, int] | str
RoutingPolicy = Callable[[nx.DiGraph, Node, Node], list[Node] | None]


def mesh(rows: int, cols: int, dram: tuple[int, int] | None = None) -> nx.DiGraph:
    """A rows x cols mesh of routers; `dram` attaches the DRAM port to that router."""
    g: nx.DiGraph[Node] = nx.DiGraph(kind="mesh")
    for r in range(rows):
        for c in range(cols):
            g.add_node((r, c))
            for dr, dc in ((0, 1), (1, 0)):
                if r + dr < rows and c + dc < cols:
                    g.add_edge((r, c), (r + dr, c + dc))
                    g.add_edge((r + dr, c + dc), (r, c))
    if dram is not None:
        g.add_edge("dram", dram)
        g.add_edge(dram, "dram")
    return g


def prism(rows: int, cols: int, k: int) -> nx.DiGraph:
    """Direct links from each snake position to the next k positions; DRAM linked to the first."""
    order = snake(rows, cols)
    g: nx.DiGraph[Node] = nx.DiGraph(kind="prism")
    g.add_nodes_from(order)
    for i, a in enumerate(order):
        for b in order[i + 1:i + 1 + k]:
            g.add_edge(a, b)
    for first in order[:k]:
        g.add_edge("dram", first)
    return g


def xy_route(g: nx.DiGraph, src: Node, dst: Node) -> list[Node] | None:
    """Dimension-order routing on a mesh: along the row (X = column) first, then the column."""
    if src == dst:
        return [src]
    path: list[Node] = [src]
    if src == "dram":
        src = next(iter(g.successors("dram")))
        path.append(src)
    target = next(iter(g.predecessors("dram"))) if dst == "dram" else dst
    assert not isinstance(src, str) and not isinstance(target, str), "mesh routers are (row, col)"
    r, c = src
    tr, tc = target
    while c != tc:
        c += 1 if tc > c else -1
        path.append((r, c))
    while r != tr:
        r += 1 if tr > r else -1
        path.append((r, c))
    if dst == "dram":
        path.append("dram")
    return path if all(g.has_edge(a, b) for a, b in itertools.pairwise(path)) else None


def direct_route(g: nx.DiGraph, src: Node, dst: Node) -> list[Node] | None:
    """Prism routing: one direct link, or nothing."""
    if src == dst:
        return [src]
    return [src, dst] if g.has_edge(src, dst) else None


ROUTING: dict[str, RoutingPolicy] = {"mesh": xy_route, "prism": direct_route}


def node_name(node: object) -> str:
    """A router's name in messages and link names: ``r<row>.<col>``, or the port's own name."""
    if isinstance(node, str):
        return node
    pos: tuple[int, int] = node  # type: ignore[assignment]  # a router position (row, col)
    return f"r{pos[0]}.{pos[1]}"


def packet_flits(payload_bits: int, header_bits: int, link_width_bits: int) -> int:
    """Flits of one packet: payload plus header, in link-width units, rounded up."""
    return -(-(payload_bits + header_bits) // link_width_bits)


def build_topology(kind: str, rows: int, cols: int, dram: tuple[int, int], prism_k: int) -> nx.DiGraph:
    """The router graph a scenario names (`noc.topology` mesh or prism)."""
    if kind == "mesh":
        return mesh(rows, cols, dram)
    return prism(rows, cols, prism_k)
