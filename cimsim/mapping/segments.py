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
than the array) is split by input rows too (`Segment.rows`): for each band of output channels,
bands of its input channels run one after another, each reading only its input channels; every
band but the last writes its int32 partial sums (`PARTIAL_BYTES` per output value) to DRAM and
the next band reads them back with its input and adds them (Dazzi 2.4.4's row split, through
DRAM instead of between two cores); only the last band writes the layer's int8 outputs. A stage
split by rows may have nothing fused (an fc: its input is one pixel). A stage whose single input
channel under one crossbar's
columns still needs more cores than the array is an error.
"""

from __future__ import annotations

import dataclasses
import functools
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
    rows: tuple[int, int] | None = None
    """A slice split by input rows too: the band [first, end) of the layer's input channels it reads
    and computes partial sums over (None: all of them)."""
    partials_in: bool = False
    """It reads the previous row band's partial sums with its input (and adds them)."""
    partials_out: bool = False
    """It writes partial sums (int32), not the layer's outputs: a later row band completes them."""

    def input_pixel_bytes(self) -> int:
        """Bytes the segment reads from DRAM per input pixel: its input channels, and partial sums."""
        net = self.network
        inp, out = net.input_layer, net.output_layer
        return -(-inp.out_channels * net.bits // 8) + (PARTIAL_BYTES * out.out_channels if self.partials_in else 0)

    def output_bytes(self) -> int:
        """Bytes the segment writes to DRAM per image: its output map, or its partial sums."""
        out, bits = self.network.output_layer, self.network.bits
        if self.partials_out:
            return out.out_h * out.out_w * out.out_channels * PARTIAL_BYTES
        return -(-out.out_h * out.out_w * out.out_channels * bits // 8)


PARTIAL_BYTES = 4
"""Bytes of one partial sum written to DRAM between the row bands of a layer (an int32 accumulator)."""


@dataclass(frozen=True)
class _Slice:
    """One segment of a sliced stage (`Segment.channels`, `rows`, `partials_in`, `partials_out`)."""

    channels: tuple[int, int]
    rows: tuple[int, int] | None
    cores: int
    partials_in: bool = False
    partials_out: bool = False


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
    segments: list[tuple[list[str], int, _Slice | None]] = []
    current: list[str] = []
    used = 0
    best_cut = -1  # index in `current` of the last cut point that fits
    best_used = 0
    counted: set[str] = set()
    skip = 0
    piece: _Slice | None
    for name in order:
        if skip:
            skip -= 1
            continue
        stage = owner.get(name)
        if stage in bands:  # alone between two cuts (checked): close the segment before it, then its slices
            if any(n in owner for n in current):  # (a flatten alone before it: the slices read it)
                segments.append((current, used, None))
            st_layers = [stage, *stages[stage].fused]
            for piece in bands[stage]:
                segments.append((st_layers, piece.cores, piece))
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
    for index, (layers, n, piece) in enumerate(segments):
        if piece is None:
            out.append(Segment(index, tuple(layers), source, layers[-1], n, _subnetwork(net, source, layers, index)))
        else:
            source = net.layer(layers[0]).inputs[0]  # a slice reads the stage's own input
            out.append(Segment(index, tuple(layers), source, layers[-1], n,
                               _subnetwork(net, source, layers, index, piece.channels, piece.rows),
                               piece.channels, piece.rows, piece.partials_in, piece.partials_out))
        source = layers[-1]
    return out


def _bands(net: Network, scenario: Scenario, stage: Stage, cuts: set[str], need: int) -> list[_Slice]:
    """The slices a stage too large for the array runs in, in order (module docstring);
    MappingError when it cannot be sliced."""
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

    @functools.cache  # the search asks the same widths again
    def cores(channels: int, rows: int | None = None) -> int:
        sub = _subnetwork(net, layer.inputs[0], [stage.name, *stage.fused], 0, (0, channels),
                          None if rows is None else (0, rows))
        return count_cores(sub, scenario)

    cols, c_out = chip.crossbar_cols, layer.out_channels
    width = min(c_out, -(-c_out // cols) * cols)
    while width > cols and cores(width) > array:
        width -= cols
    col_bands = [(c, min(c + width, c_out)) for c in range(0, c_out, width)]
    if cores(width) <= array:
        return [_Slice(band, None, cores(band[1] - band[0])) for band in col_bands]
    if layer.kind is LayerKind.FC and (layer.in_h, layer.in_w) != (1, 1):
        raise MappingError(f"{where}; even {width} of its output channels need {cores(width)} cores, and an fc "
                           "over a whole map cannot be split by input rows over segments (flatten its input)")
    if fused:
        raise MappingError(f"{where}; even {width} of its output channels need {cores(width)} cores, and a layer "
                           f"split by input rows over segments can have nothing fused ({', '.join(stage.fused)})")
    lo, hi = 0, layer.in_channels  # the most input channels whose band fits (cores grow with them)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if cores(width, mid) <= array:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        raise MappingError(f"{where}; even one of its input channels under {width} output channels needs "
                           f"{cores(width, 1)} cores")
    row_bands = [(r, min(r + lo, layer.in_channels)) for r in range(0, layer.in_channels, lo)]
    return [_Slice(band, rows, cores(band[1] - band[0], rows[1] - rows[0]), i > 0, i < len(row_bands) - 1)
            for band in col_bands for i, rows in enumerate(row_bands)]


def sliced(layer: Layer, band: tuple[int, int], rows: tuple[int, int] | None = None) -> Layer:
    """`layer` computing only output channels [first, end) (a pooling layer: on those channels), from
    input channels `rows` (None: all)."""
    n = band[1] - band[0]
    if layer.kind in SLICEABLE_FUSED:
        return dataclasses.replace(layer, in_channels=n, out_channels=n)
    if rows is not None:
        return dataclasses.replace(layer, in_channels=rows[1] - rows[0], out_channels=n)
    return dataclasses.replace(layer, out_channels=n)


def _subnetwork(net: Network, source: str, layers: list[str], index: int,
                band: tuple[int, int] | None = None, rows: tuple[int, int] | None = None) -> Network:
    """The segment's layers behind an input layer shaped (and named) like the tensor `source` (a
    slice's layers with the band's channels; a row band's input with only its channels)."""
    src = net.layer(source)
    channels = src.out_channels if rows is None else rows[1] - rows[0]
    inp = Layer(name=source, kind=LayerKind.INPUT, inputs=(), in_h=src.out_h, in_w=src.out_w,
                in_channels=channels, out_h=src.out_h, out_w=src.out_w, out_channels=channels)
    body = [net.layer(n) if band is None else sliced(net.layer(n), band, rows) for n in layers]
    return Network.from_layers(f"{net.name}.segment{index}", [inp, *body],
                               description=f"segment {index} of {net.name}", bits=net.bits, source=net.source)
