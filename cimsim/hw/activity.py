"""What one step of a core does, as action counts: static tables for the energy collector.

A core's step (one parallel group of one image) does the same work whatever the timing:
it stores the input pixels the group newly needs, reads the group's kernel rows, reads
the residual pixel of each of its outputs (a core that adds its own input, or that keeps
a copy, which it also stored; charged to the step that adds them, so an image's counts
stay with the image), reads again for `read_res` the input pixels the group newly needs
(a block's first core: each pixel once per adding stage, whenever it is sent), runs
one MVM on its crossbar, runs the digital processor on the group's outputs (the writing
core of a layer) and sends the released pixels along its flows; its dataflow controller
works one step (`dfc.step`: the combinational logic that fires the group). Timesteps in
which a controller only stores arriving pixels count no step (their words are counted). What depends on the
rotation of the circular SRAM buffer depends on the image modulo its period, so the
tables are indexed by (phase, group) (`CoreSteps.basis`).
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

import numpy as np

from cimsim.energy.actions import Action, Component, CountKey
from cimsim.hw.core import Core
from cimsim.hw.fabric import Fabric
from cimsim.mapping.plan import Flow, LayerMapping, MappingPlan
from cimsim.mapping.stages import Unit
from cimsim.network import Layer, Network
from cimsim.network.layers import LayerKind

C, A = Component, Action

CORE_COMPONENTS = (C.CORE, C.DFC, C.SRAM, C.CROSSBAR, C.DAC, C.ADC, C.DIGITAL)
"""Components every core instance powers (a table gives static power to some of them)."""


BASES = ("steps", "write_words", "read_words", "residual_words", "read_res_words", "outputs", "sent", "new_pixels",
         "last_groups")
"""What a step's action counts are proportional to (see `CoreSteps.basis`)."""


@dataclass(frozen=True)
class CoreSteps:
    """Action counts of one core's steps, as rates times per-(phase, group) bases.

    A step (phase p, group g) performs `n` x basis[p, g] of each `(key, basis, n)` in
    `rates`; summing over the steps a core computed (a hit count per (phase, group)) gives
    its action counts without a dict per step.
    """

    core: int
    n_groups: int
    period: int
    """Images after which the SRAM rotation repeats (phases)."""
    rates: tuple[tuple[CountKey, str, int], ...]
    """(key, basis name in `BASES`, count per unit of the basis)."""
    basis: dict[str, np.ndarray]
    """Basis name -> int64 array (period, n_groups): its value in each step."""

    def counts(self, hits: np.ndarray) -> dict[CountKey, int]:
        """Action counts of the steps in `hits` (period x n_groups step counts)."""
        totals = {name: int((hits * b).sum()) for name, b in self.basis.items()}
        out: dict[CountKey, int] = {}
        for key, name, n in self.rates:
            k = totals[name] * n
            if k:
                out[key] = out.get(key, 0) + k
        return out


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


def _own_work(lm: LayerMapping, lay: Layer) -> list[tuple[Action, int]]:
    """Digital actions per output pixel of a digital stage's own layer (before requantising)."""
    assert lm.window is not None
    kh, kw = lm.window.kernel
    win = kh * kw
    if lay.kind in (LayerKind.MAXPOOL, LayerKind.LOCAL_AVGPOOL, LayerKind.AVGPOOL):
        return [(A.POOL, win * lay.out_channels)]
    if lay.kind is LayerKind.ADD:
        return [(A.ADD, lay.out_channels)]
    if lay.kind is LayerKind.FC:
        return [(A.FC_MAC, lay.in_channels * lay.out_channels), (A.REQUANTISE, lay.out_channels)]
    return [(A.DW_MAC, win * lay.out_channels), (A.REQUANTISE, lay.out_channels)]  # a depthwise conv


def _digital(net: Network, plan: MappingPlan, layer: str, pooled: bool) -> tuple[list[tuple[Action, int]], int]:
    """(digital actions per output pixel, FC MACs per image) of a layer's writing core."""
    lm = plan.layers[layer]
    lay = net.layer(layer)
    if lm.unit is Unit.DIGITAL:
        own = _own_work(lm, lay)
        if lay.relu:
            own.append((A.RELU, lay.out_channels))
        rest, fc_macs = _fused_work(net, lm, lay, pooled, own_requantise=False)
        return own + rest, fc_macs
    return _fused_work(net, lm, lay, pooled, own_requantise=True)


def _fused_work(net: Network, lm: LayerMapping, lay: Layer, pooled: bool,
                own_requantise: bool) -> tuple[list[tuple[Action, int]], int]:
    """Digital actions per output pixel of the layers fused into a stage (and, on a crossbar
    stage, its own requantise, ReLU and partial-sum adds), and the fused FC's MACs per image."""
    fused = [net.layer(f) for f in lm.fused]
    add = next((f for f in fused if f.kind is LayerKind.ADD), None)
    fc = next((f for f in fused if f.kind is LayerKind.FC), None)
    ch = lay.out_channels
    per_pixel = [(A.REQUANTISE, ch)] if own_requantise else []
    relu = add.relu if add is not None else (lay.relu and own_requantise)  # a digital stage counted its own
    if relu:
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
    lm = plan.layers[layer]
    rates: list[tuple[CountKey, str, int]] = [
        ((layer, C.DFC, A.STEP, 0), "steps", 1),
        ((layer, C.SRAM, A.WORD_WRITE, 0), "write_words", 1),
        ((layer, C.SRAM, A.WORD_READ, 0), "read_words", 1),
    ]
    if core._res_words:  # a copy: each residual pixel written once into the SRAM and read once for its add
        rates.append(((layer, C.SRAM, A.WORD_WRITE, 0), "residual_words", 1))
    if core._res_words or core._own_residual:
        rates.append(((layer, C.SRAM, A.WORD_READ, 0), "residual_words", 1))
    if core.senders:  # read_res: every input pixel read once more per adding stage
        rates.append(((layer, C.SRAM, A.WORD_READ, 0), "read_res_words", len(core.senders)))
    if lm.unit is Unit.CROSSBAR:  # a depthwise in jobs: one MVM per job, all rows, its band of columns
        jobs = lm.jobs
        rates.append(((layer, C.CROSSBAR, A.MVM, cells // jobs), "steps", jobs))
        if not functional:
            rates += [((layer, C.CROSSBAR, A.CYCLE, cells // jobs), "steps", jobs),
                      ((layer, C.DAC, A.DRIVE, net.bits), "steps", spec.rows_used * jobs),
                      ((layer, C.ADC, A.CONVERT, adc_bits), "steps", spec.cols_used)]
    if core.is_writer:
        digital, fc_macs = _digital(net, plan, layer, core.pooled)
        rates += [((layer, C.DIGITAL, action, 0), "outputs", n) for action, n in digital]
        if fc_macs:
            rates.append(((layer, C.DIGITAL, A.FC_MAC, 0), "last_groups", fc_macs))
    for f in plan.flows:
        if f.src == spec.id:
            rates += [(key, "sent", n) for key, n in flow_actions(f, fabric, link_width_bits, layer)]
        elif f.src is None and f.dst == spec.id:
            rates += [(key, "new_pixels", n) for key, n in flow_actions(f, fabric, link_width_bits, plan.input_name)]
    # input pixels each group newly needs (the last group also takes the unused rest)
    bounds = np.maximum.accumulate(np.asarray(core._need, dtype=np.int64) + 1)
    bounds[-1] = geom.n_in
    lo = np.concatenate(([0], bounds[:-1]))
    writes = np.zeros((period, geom.n_in + 1), dtype=np.int64)
    writes[:, 1:] = np.cumsum(np.asarray(core._write_cost, dtype=np.int64), axis=1)
    res_reads = np.zeros((period, geom.n_in + 1), dtype=np.int64)
    res_reads[:, 1:] = np.cumsum(np.asarray(core._res_cost, dtype=np.int64), axis=1)
    phases = [(p * geom.in_w) % geom.slot_columns for p in range(period)]
    ones = np.ones((period, g), dtype=np.int64)
    last = np.zeros((period, g), dtype=np.int64)
    last[:, -1] = 1
    basis = {
        "steps": ones,
        "write_words": writes[:, bounds] - writes[:, lo],
        "read_words": np.asarray([core._read[ph] for ph in phases], dtype=np.int64),
        "residual_words": np.asarray([core._res_read[ph] for ph in phases], dtype=np.int64),
        "read_res_words": res_reads[:, bounds] - res_reads[:, lo],
        "outputs": ones * np.asarray(core._count, dtype=np.int64),
        "sent": ones * np.asarray(core._send, dtype=np.int64),
        "new_pixels": ones * (bounds - lo),
        "last_groups": last,
    }
    return CoreSteps(spec.id, g, period, tuple(rates), basis)


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


__all__ = ["BASES", "CORE_COMPONENTS", "CoreSteps", "core_steps", "flow_actions", "link_length", "powered_instances"]
