"""What one step of a core does, as action counts: static tables for the energy collector.

A core's step (one parallel group of one image) does the same work whatever the timing:
it stores the input pixels the group newly needs, reads the group's kernel rows, runs
one MVM on its crossbar, runs the digital processor on the group's outputs (the writing
core of a layer) and sends the released pixels along its flows. What depends on the
rotation of the circular SRAM buffer depends on the image modulo its period, so the
table has one entry per (phase, group): `CoreSteps.steps[phase * n_groups + group]`.
The energy collector (`cimsim.sim.energy`) counts the steps a core really computed and
multiplies; nothing here knows an energy.

What the timing-only model does not compute is taken as Dazzi's core does it: one
8-bit PWM input per row and one conversion per column per MVM (one crossbar cycle).
With the functional datapath these three come from the data instead
(`cimsim.hw.datapath`), and the tables leave them out.

Links: each flow's packets cross every link of its route (`bit_hop`, argument the
link's length in core pitches: the Manhattan distance between its routers; 1 for the
DRAM/host port) and every router on it (`traversal`, the source and destination routers
included). On the ideal fabric (no routes) every stream is taken as one direct link of
one pitch carrying the payload bits (Dazzi's point-to-point links between neighbours).
Input pixels from the image source are counted where they are consumed, as the layer
`plan.input_name`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from cimsim.energy.actions import Action, Component, CountKey
from cimsim.hw.core import Core
from cimsim.hw.fabric import Fabric
from cimsim.mapping.plan import Flow, MappingPlan
from cimsim.network import Network
from cimsim.network.layers import LayerKind

C, A = Component, Action

CORE_COMPONENTS = (C.CORE, C.DFC, C.SRAM, C.CROSSBAR, C.DAC, C.ADC, C.DIGITAL)
"""Components every core instance powers (a table gives static power to some of them)."""


@dataclass(frozen=True)
class CoreSteps:
    """Action counts of each (phase, group) step of one core."""

    core: int
    n_groups: int
    period: int
    """Images after which the SRAM rotation repeats (phases)."""
    steps: tuple[tuple[tuple[CountKey, int], ...], ...]
    """steps[phase * n_groups + group]: ((layer, component, action, argument), count) pairs."""


def link_length(a: object, b: object) -> int:
    """Length of the link a -> b in core pitches (Manhattan distance; 1 for a port)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return abs(a[0] - b[0]) + abs(a[1] - b[1])
    return 1


def flow_actions(flow: Flow, fabric: Fabric, link_width_bits: int, layer: str) -> list[tuple[CountKey, int]]:
    """Actions of one packet (pixel) of `flow`: bits over each link, flits through each router."""
    if not flow.route:
        return [((layer, C.LINK, A.BIT_HOP, 1), flow.packet_bits)]
    flits = fabric.flits(flow.packet_bits)
    bits = flits * link_width_bits
    out = [((layer, C.LINK, A.BIT_HOP, link_length(a, b)), bits) for a, b in itertools.pairwise(flow.route)]
    out.append(((layer, C.ROUTER, A.TRAVERSAL, 0), flits * len(flow.route)))
    return out


def _digital(net: Network, plan: MappingPlan, layer: str, pooled: bool) -> tuple[list[tuple[Action, int]], int]:
    """(digital actions per output pixel, FC MACs per image) of a layer's writing core."""
    lm = plan.layers[layer]
    lay = net.layer(layer)
    fused = [net.layer(f) for f in lm.fused]
    add = next((f for f in fused if f.kind is LayerKind.ADD), None)
    fc = next((f for f in fused if f.kind is LayerKind.FC), None)
    ch = lay.out_channels
    per_pixel = [(A.REQUANTISE, ch)]
    if (add.relu if add is not None else lay.relu):
        per_pixel.append((A.RELU, ch))
    adds = ch * (lm.row_parts - 1) + (ch if add is not None else 0)
    if adds:
        per_pixel.append((A.ADD, adds))
    if pooled:
        per_pixel.append((A.POOL, ch))
    return per_pixel, (fc.in_channels * fc.out_channels if fc is not None else 0)


def core_steps(core: Core, net: Network, plan: MappingPlan, fabric: Fabric, link_width_bits: int,
               adc_bits: int, functional: bool) -> CoreSteps:
    """The step table of one core (see the module docstring)."""
    spec, geom = core.spec, core.geom
    layer, g = spec.layer, core.n_groups
    period = len(core._write_cost)
    cells = spec.rows_used * spec.cols_used
    flows_out = [f for f in plan.flows if f.src == spec.id]
    flows_in = [f for f in plan.flows if f.src is None and f.dst == spec.id]
    per_packet: dict[CountKey, int] = {}
    for f in flows_out:
        for key, n in flow_actions(f, fabric, link_width_bits, layer):
            per_packet[key] = per_packet.get(key, 0) + n
    per_input: dict[CountKey, int] = {}
    for f in flows_in:
        for key, n in flow_actions(f, fabric, link_width_bits, plan.input_name):
            per_input[key] = per_input.get(key, 0) + n
    digital, fc_macs = _digital(net, plan, layer, core.pooled) if core.is_writer else ([], 0)
    # input pixels each group newly needs (the last group also takes the unused rest)
    new: list[tuple[int, int]] = []
    seen = 0
    for gi in range(g):
        hi = geom.n_in if gi == g - 1 else max(seen, core._need[gi] + 1)
        new.append((seen, hi))
        seen = hi
    steps = []
    for phase in range(period):
        write = core._write_cost[phase]
        read = core._read[(phase * geom.in_w) % geom.slot_columns]
        for gi in range(g):
            acts: dict[CountKey, int] = {}
            add = _Adder(acts)
            lo, hi = new[gi]
            add((layer, C.SRAM, A.WORD_WRITE, 0), sum(write[lo:hi]))
            add((layer, C.SRAM, A.WORD_READ, 0), read[gi])
            add((layer, C.CROSSBAR, A.MVM, cells), 1)
            if not functional:
                add((layer, C.CROSSBAR, A.CYCLE, cells), 1)
                add((layer, C.DAC, A.DRIVE, net.bits), spec.rows_used)
                add((layer, C.ADC, A.CONVERT, adc_bits), spec.cols_used)
            count = core._count[gi]
            for action, n in digital:
                add((layer, C.DIGITAL, action, 0), n * count)
            if fc_macs and gi == g - 1:
                add((layer, C.DIGITAL, A.FC_MAC, 0), fc_macs)
            send = core._send[gi]
            for key, n in per_packet.items():
                add(key, n * send)
            for key, n in per_input.items():
                add(key, n * (hi - lo))
            steps.append(tuple(sorted(acts.items())))
    return CoreSteps(spec.id, g, period, tuple(steps))


class _Adder:
    """Adds non-zero counts into one step's dict."""

    def __init__(self, acts: dict[CountKey, int]) -> None:
        self.acts = acts

    def __call__(self, key: CountKey, n: int) -> None:
        if n:
            self.acts[key] = self.acts.get(key, 0) + n


def powered_instances(plan: MappingPlan, dram: bool) -> list[tuple[str, Component, str]]:
    """(layer, component, instance) of everything the chip powers for the whole run."""
    out = [(c.layer, comp, c.name) for c in plan.cores for comp in CORE_COMPONENTS]
    if plan.topology is not None and any(f.route for f in plan.flows):
        from cimsim.mapping.topology import node_name

        out += [("", C.ROUTER, node_name(n)) for n in plan.topology.nodes if not isinstance(n, str)]
        out += [("", C.LINK, f"{node_name(a)}->{node_name(b)}") for a, b in plan.topology.edges]
    if dram:
        out.append(("", C.DRAM, "dram"))
    return out


__all__ = ["CORE_COMPONENTS", "CoreSteps", "core_steps", "flow_actions", "link_length", "powered_instances"]
