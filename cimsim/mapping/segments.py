"""Time-multiplexed mapping (`mapping.weights = "reload"`): a network that needs more cores than
the chip has is cut into segments that fit, run one after another. Pure: no SimPy.

A segment is a run of consecutive layers (network order) whose stages fit the array. Cuts fall
only where a single tensor is alive, right after a stage's emitted output (its last fused layer,
or an alias of it): no residual or concat edge crosses a boundary, and the cut does not change
which layers are fused. The tensor at a cut is written to DRAM by the segment before it (a
*spill*) and is the next segment's input, streamed back from DRAM like an image. Each segment is
a network of its own (`Segment.network`): its input layer is named after the spilled tensor, so
its layers keep their names, inputs and weights.
"""

from __future__ import annotations

from dataclasses import dataclass

from cimsim.config.schema import Scenario
from cimsim.errors import MappingError
from cimsim.mapping.mapper import stage_cores
from cimsim.mapping.stages import plan_stages
from cimsim.network import Layer, Network
from cimsim.network.layers import LayerKind


@dataclass(frozen=True)
class Segment:
    """Consecutive layers programmed onto the chip together."""

    index: int
    layers: tuple[str, ...]
    """The network's layers this segment computes (not its input)."""
    input: str
    """The tensor it reads: the network input (segment 0) or the previous segment's output."""
    output: str
    """The tensor it produces: a spill to DRAM, or the network's output (last segment)."""
    cores: int
    network: Network


def cut_points(net: Network, scenario: Scenario) -> list[str]:
    """Layers after which a segment may end: a stage's emitted output (or an alias of only it)
    that is then the only tensor later layers read."""
    stages = plan_stages(net, scenario)
    emitted = {st.out_layer for st in stages.values()}
    order = [layer.name for layer in net.layers]
    position = {name: i for i, name in enumerate(order)}
    last_use = {name: i for i, name in enumerate(order)}
    for layer in net.layers:
        for src in layer.inputs:
            last_use[src] = max(last_use[src], position[layer.name])
    cuts = []
    for i, layer in enumerate(net.layers[:-1]):
        alive = [n for n in order[:i + 1] if last_use[n] > i]
        if alive != [layer.name]:
            continue
        if layer.name in emitted or (layer.kind is LayerKind.FLATTEN and layer.inputs[0] in emitted):
            cuts.append(layer.name)
    return cuts


def plan_segments(net: Network, scenario: Scenario) -> list[Segment]:
    """The fewest greedy segments whose stages each fit the array (`chip.array_rows x
    array_cols` cores): each segment runs to the last cut point that still fits."""
    chip = scenario.chip
    array = chip.array_rows * chip.array_cols
    stages = plan_stages(net, scenario)
    cores = {name: stage_cores(st, scenario) for name, st in stages.items()}
    too_big = [(n, c) for n, c in cores.items() if c > array]
    if too_big:
        name, need = too_big[0]
        raise MappingError(f"{scenario.source}: mapping.weights = 'reload': layer '{name}' alone needs {need} cores, "
                           f"the array has chip.array_rows x chip.array_cols = {chip.array_rows} x {chip.array_cols} "
                           f"= {array}; reloading cannot split a layer")
    owner = {}  # layer -> the stage computing it
    for name, st in stages.items():
        owner[name] = name
        for f in st.fused:
            owner[f] = name
    cuts = set(cut_points(net, scenario))
    order = [layer.name for layer in net.layers[1:]]
    segments: list[tuple[list[str], int]] = []
    current: list[str] = []
    used = 0
    best_cut = -1  # index in `current` of the last cut point that fits
    best_used = 0
    counted: set[str] = set()
    for name in order:
        stage = owner.get(name)
        add = cores[stage] if stage is not None and stage not in counted else 0
        if used + add > array:
            if best_cut < 0:
                raise MappingError(f"{scenario.source}: mapping.weights = 'reload': no cut point before layer "
                                   f"'{name}' leaves a segment that fits {array} cores (a residual block or "
                                   "concat wider than the chip cannot be cut)")
            segments.append((current[:best_cut + 1], best_used))
            current = current[best_cut + 1:]
            counted = {owner[n] for n in current if n in owner}
            used = sum(cores[s] for s in counted)
            best_cut, best_used = -1, 0
            add = cores[stage] if stage is not None and stage not in counted else 0
        current.append(name)
        if stage is not None:
            counted.add(stage)
        used += add
        if name in cuts:
            best_cut, best_used = len(current) - 1, used
    segments.append((current, used))
    out = []
    source = net.input_layer.name
    for index, (layers, n) in enumerate(segments):
        out.append(Segment(index, tuple(layers), source, layers[-1], n, _subnetwork(net, source, layers, index)))
        source = layers[-1]
    return out


def _subnetwork(net: Network, source: str, layers: list[str], index: int) -> Network:
    """The segment's layers behind an input layer shaped (and named) like the tensor `source`."""
    src = net.layer(source)
    inp = Layer(name=source, kind=LayerKind.INPUT, inputs=(), in_h=src.out_h, in_w=src.out_w,
                in_channels=src.out_channels, out_h=src.out_h, out_w=src.out_w, out_channels=src.out_channels)
    return Network.from_layers(f"{net.name}.segment{index}", [inp, *(net.layer(n) for n in layers)],
                               description=f"segment {index} of {net.name}", bits=net.bits, source=net.source)
