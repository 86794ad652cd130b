"""NoC and DRAM sections of the summary: Eq. 7 bandwidth needs, per-link statistics."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from cimsim.mapping.plan import Flow, MappingPlan
from cimsim.mapping.topology import node_name


def _node(n: object) -> str:
    return node_name(n)


def _flow_links(flow: Flow, plan: MappingPlan) -> list[str]:
    """Link names a flow uses: its route's hops, or its own dedicated link on the ideal fabric."""
    if len(flow.route) > 1:
        return [f"{_node(a)}->{_node(b)}" for a, b in zip(flow.route, flow.route[1:], strict=False)]
    src = "dram" if flow.src is None else plan.cores[flow.src].name
    return [f"{src}->{plan.cores[flow.dst].name}"]


def link_needs(plan: MappingPlan) -> dict[str, int]:
    """Payload bits per timestep each link must carry when every producer runs at its rate."""
    need: dict[str, int] = defaultdict(int)
    for f in plan.flows:
        for link in _flow_links(f, plan):
            need[link] += f.bits_per_timestep
    return dict(need)


def noc_summary(plan: MappingPlan, topology: str, link_stats: list[dict[str, Any]],
                timestep_ns: float) -> dict[str, Any]:
    """Eq. 7 (per flow and per link) and what each link carried in the run."""
    gbps = 1.0 / timestep_ns  # bits per timestep -> Gbit/s
    data_flows = [f for f in plan.flows if f.role != "partial"]
    eq7 = max((f.bits_per_timestep for f in data_flows), default=0)
    carriers = [f for f in data_flows if f.bits_per_timestep == eq7]
    need = link_needs(plan)
    peak = max(need.values(), default=0)
    carried = {s["link"]: s for s in link_stats}
    links = []
    for name in sorted(set(need) | set(carried), key=lambda n: (-need.get(n, 0), n)):
        row = {"link": name, "need_gbps": round(need.get(name, 0) * gbps, 3)}
        row.update({k: v for k, v in carried.get(name, {}).items() if k != "link"})
        links.append(row)
    return {
        "topology": topology,
        "eq7_peak_gbps": round(eq7 * gbps, 3),
        "eq7_flows": [
            f"{'input' if f.src is None else plan.cores[f.src].name} -> {plan.cores[f.dst].name} ({f.role})"
            for f in carriers
        ],
        "peak_link_need_gbps": round(peak * gbps, 3),
        "peak_links": [n for n, v in need.items() if v == peak],
        "links": links,
    }
