"""Time-multiplexed mapping (`mapping.weights = "reload"`): a network that needs more cores than
the chip has is cut into segments that fit, run one after another. Pure: no SimPy.

A segment is a run of consecutive layers (network order) whose stages fit the array. Cuts fall
only where a single tensor is alive, right after a stage's emitted output (its last fused layer,
or an alias of it): no residual or concat edge crosses a boundary, and the cut does not change
which layers are fused. The tensor at a cut is written to DRAM by the segment before it (a
*spill*) and is the next segment's input, streamed back from DRAM like an image. Each segment is
a network of its own (`Segment.network`): its input layer is named after the spilled tensor, so
its layers keep their names, inputs and weights.

A stage that alone needs more cores than the array is split by output channels over segments of
its own (*slices*, `Segment.channels`): each slice computes a band of the layer's output channels
(all its input rows: a row-split layer's partial sums never leave the chip) from the whole input
map, and writes that band to DRAM; the next segment reads the bands together as one map. The
band is the widest multiple of `chip.crossbar_cols` channels whose layer fits the array. Only a
conv (not grouped) or fc on crossbars, with nothing fused but ReLU and per-channel pooling, lying
alone between two cut points and not the network's output, can be sliced; a stage whose one
band of `crossbar_cols` channels still does not fit (its input rows alone need more crossbars
than the array) is an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cimsim.config.schema import Scenario
from cimsim.errors import MappingError
from cimsim.mapping.mapper import count_cores, stage_cores
from cimsim.mapping.stages import Stage, Unit, plan_stages
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
    channels: tuple[int, int] | None = None
    """A slice of a stage too large for the array: the band [first, end) of its output channels
    this segment computes (its one stage's layers, with that many channels); None: whole layers."""


SLICEABLE_FUSED: frozenset[LayerKind] = frozenset({LayerKind.MAXPOOL, LayerKind.LOCAL_AVGPOOL, LayerKind.AVGPOOL})
"""Fused layers that act channel by channel, so a slice of output channels can carry them."""


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
    owner = {}  # layer -> the stage computing it
    for name, st in stages.items():
        owner[name] = name
        for f in st.fused:
            owner[f] = name
    cuts = set(cut_points(net, scenario))
    order = [layer.name for layer in net.layers[1:]]
    bands = {name: _bands(net, scenario, stages[name], cuts, need) for name, need in cores.items() if need > array}
    segments: list[tuple[list[str], int, tuple[int, int] | None]] = []
    current: list[str] = []
    used = 0
    best_cut = -1  # index in `current` of the last cut point that fits
    best_used = 0
    counted: set[str] = set()
    skip = 0
    for name in order:
        if skip:
            skip -= 1
            continue
        stage = owner.get(name)
        if stage in bands:  # alone between two cuts (checked): close the segment before it, then its slices
            if current:
                segments.append((current, used, None))
            st_layers = [stage, *stages[stage].fused]
            for channels, n in bands[stage]:
                segments.append((st_layers, n, channels))
            skip = len(st_layers) - 1
            current, counted, used, best_cut, best_used = [], set(), 0, -1, 0
            continue
        add = cores[stage] if stage is not None and stage not in counted else 0
        if used + add > array:
            if best_cut < 0:
                raise MappingError(f"{scenario.source}: mapping.weights = 'reload': no cut point before layer "
                                   f"'{name}' leaves a segment that fits {array} cores (a residual block or "
                                   "concat wider than the chip cannot be cut)")
            segments.append((current[:best_cut + 1], best_used, None))
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
    if current:
        segments.append((current, used, None))
    out = []
    source = net.input_layer.name
    for index, (layers, n, band) in enumerate(segments):
        out.append(Segment(index, tuple(layers), source, layers[-1], n,
                           _subnetwork(net, source, layers, index, band), band))
        if index + 1 < len(segments) and segments[index + 1][2] is not None and segments[index + 1][0] == layers:
            continue  # the next slice of the same stage reads the same input
        source = layers[-1]
    return out


def _bands(net: Network, scenario: Scenario, stage: Stage, cuts: set[str],
           need: int) -> list[tuple[tuple[int, int], int]]:
    """The output-channel bands a stage too large for the array is sliced into, with each band's
    cores (module docstring); MappingError when it cannot be sliced."""
    chip = scenario.chip
    array = chip.array_rows * chip.array_cols
    layer = net.layer(stage.name)
    where = (f"{scenario.source}: mapping.weights = 'reload': layer '{stage.name}' alone needs {need} cores, the "
             f"array has chip.array_rows x chip.array_cols = {chip.array_rows} x {chip.array_cols} = {array}")
    fused = [net.layer(f) for f in stage.fused]
    order = [x.name for x in net.layers]
    at = order.index(stage.name)
    if (stage.unit is not Unit.CROSSBAR or layer.kind not in (LayerKind.CONV, LayerKind.FC) or layer.groups != 1
            or any(f.kind not in SLICEABLE_FUSED for f in fused)):
        raise MappingError(f"{where}; only a conv or fc on crossbars with nothing fused but pooling can be split "
                           "over segments by output channels")
    if stage.out_layer == order[-1]:
        raise MappingError(f"{where}; it is the network's output, which cannot be split over segments")
    if order[at + 1:at + 1 + len(fused)] != list(stage.fused) or stage.out_layer not in cuts \
            or (at > 1 and order[at - 1] not in cuts):
        raise MappingError(f"{where}; it can be split over segments by output channels only where it lies alone "
                           "between two cut points (no residual or concat edge around it)")
    cols = chip.crossbar_cols
    width = -(-layer.out_channels // cols) * cols
    while width > cols:
        width -= cols
        if _band_cores(net, scenario, stage, width) <= array:
            break
    else:
        if _band_cores(net, scenario, stage, cols) > array:
            raise MappingError(f"{where}; even {cols} of its output channels (one crossbar's columns) need "
                               f"{_band_cores(net, scenario, stage, cols)} cores")
    bands = [(c, min(c + width, layer.out_channels)) for c in range(0, layer.out_channels, width)]
    return [(band, _band_cores(net, scenario, stage, band[1] - band[0])) for band in bands]


def _band_cores(net: Network, scenario: Scenario, stage: Stage, channels: int) -> int:
    """Cores of the stage computing `channels` of its output channels."""
    source = net.layer(stage.name).inputs[0]
    sub = _subnetwork(net, source, [stage.name, *stage.fused], 0, (0, channels))
    return count_cores(sub, scenario)


def sliced(layer: Layer, band: tuple[int, int]) -> Layer:
    """`layer` computing only output channels [first, end) (a pooling layer: on those channels)."""
    n = band[1] - band[0]
    if layer.kind in SLICEABLE_FUSED:
        return dataclasses.replace(layer, in_channels=n, out_channels=n)
    return dataclasses.replace(layer, out_channels=n)


def _subnetwork(net: Network, source: str, layers: list[str], index: int,
                band: tuple[int, int] | None = None) -> Network:
    """The segment's layers behind an input layer shaped (and named) like the tensor `source` (a
    slice's layers with the band's channels)."""
    src = net.layer(source)
    inp = Layer(name=source, kind=LayerKind.INPUT, inputs=(), in_h=src.out_h, in_w=src.out_w,
                in_channels=src.out_channels, out_h=src.out_h, out_w=src.out_w, out_channels=src.out_channels)
    body = [net.layer(n) if band is None else sliced(net.layer(n), band) for n in layers]
    return Network.from_layers(f"{net.name}.segment{index}", [inp, *body],
                               description=f"segment {index} of {net.name}", bits=net.bits, source=net.source)
