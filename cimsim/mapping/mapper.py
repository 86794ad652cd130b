"""Map a network onto the core array (Dazzi 2021 sections 2.2, 2.4.4, 3.1.1).

Each conv layer (and the FC layer when it runs on a crossbar) becomes one or more
cores; add, average-pooling and digital-FC layers are fused into the digital
processor of the core that produces their main input. Pure: no SimPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import networkx as nx

from cimsim.config.schema import FabricKind, Scenario
from cimsim.errors import MappingError
from cimsim.mapping import topology
from cimsim.mapping.placement import snake
from cimsim.mapping.plan import CoreSpec, Flow, LayerMapping, MappingPlan
from cimsim.mapping.replication import ReplicaShape, best_shape, collective_shape
from cimsim.mapping.sram import SramLayout, auto_method, make_layout
from cimsim.network import Layer, Network
from cimsim.network.layers import EdgeRole, LayerKind

SIMULATED_KINDS: frozenset[LayerKind] = frozenset(
    {LayerKind.INPUT, LayerKind.CONV, LayerKind.ADD, LayerKind.AVGPOOL, LayerKind.FC})
"""Layer kinds the simulated cores run today; the numpy reference (`cimsim.functional`) runs every kind."""


def layer_rate(layer: Layer, scenario: Scenario) -> int:
    """Pixels per timestep the layer computes under the scenario's dataflow."""
    flow = scenario.dataflow
    if layer.name in flow.layer_rates:
        return flow.layer_rates[layer.name]
    if flow.mode == "speedup":
        return flow.speedup_rates.get(str(layer.out_channels), 1)
    return 1


def check_simulated(net: Network) -> None:
    """Refuse, in one line, the first layer the simulated cores cannot run yet: the kinds
    outside `SIMULATED_KINDS` and grouped (depthwise) or non-square convs."""
    for layer in net.layers:
        problem = ""
        if layer.kind not in SIMULATED_KINDS:
            shown = "avgpool (local, with a kernel)" if layer.kind == LayerKind.LOCAL_AVGPOOL else layer.kind.value
            problem = f"kind {shown} is not simulated yet"
        elif layer.kind == LayerKind.CONV and layer.groups > 1:
            what = "depthwise" if layer.is_depthwise else "grouped"
            problem = f"a {what} conv (groups = {layer.groups}) is not simulated yet"
        elif layer.kind == LayerKind.CONV and not layer.is_square:
            (kh, kw), (sh, sw), (ph, pw) = layer.kernel_hw, layer.stride_hw, layer.padding_hw
            problem = (f"a non-square conv (kernel {kh}x{kw}, stride {sh}x{sw}, padding {ph}x{pw}) "
                       "is not simulated yet")
        if problem:
            raise MappingError(
                f"{net.source}: layer '{layer.name}': {problem} (the simulated cores run conv with groups = 1 and "
                "square kernels, add, global avgpool and fc; the numpy reference forward pass runs every kind)"
            )


def _emitters(net: Network, scenario: Scenario) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Map every layer to the compute layer (or input) that emits its pixels, and
    each compute layer to the layers fused into its digital processor."""
    emit: dict[str, str] = {}
    fused: dict[str, list[str]] = {}
    for layer in net.layers:
        if layer.kind == "input":
            emit[layer.name] = layer.name
        elif layer.kind == "conv" or (layer.kind == "fc" and scenario.mapping.fc_on == "crossbar"):
            emit[layer.name] = layer.name
            fused[layer.name] = []
        else:
            src = emit[layer.inputs[0]]
            if src == net.input_layer.name:
                hint = ("; with mapping.fc_on = 'crossbar' it runs on a core of its own"
                        if layer.kind == "fc" else "")
                raise MappingError(
                    f"{net.source}: layer '{layer.name}' ({layer.kind}) reads the network input directly; "
                    f"it must follow a conv layer whose digital processor can run it{hint}"
                )
            if layer.kind == "fc" and any(net.layer(f).kind == "fc" for f in fused[src]):
                first = next(f for f in fused[src] if net.layer(f).kind == "fc")
                raise MappingError(
                    f"{net.source}: layer '{layer.name}' (fc): a second fc in the digital processor of '{src}' "
                    f"(after '{first}') is not simulated yet; with mapping.fc_on = 'crossbar' every fc runs on "
                    "a core of its own"
                )
            if len(net.consumers(layer.inputs[0])) > 1:
                others = [c for c in net.consumers(layer.inputs[0]) if c != layer.name]
                raise MappingError(
                    f"{net.source}: {layer.kind} layer '{layer.name}': its {'main ' if layer.kind == 'add' else ''}"
                    f"input '{layer.inputs[0]}' has other consumers ({', '.join(repr(o) for o in others)}), so "
                    f"the {layer.kind} cannot be fused into the digital processor of '{src}' (which would then "
                    "send them its result instead of its map)"
                )
            emit[layer.name] = src
            fused[src].append(layer.name)
    return emit, fused


MAX_RATE = 1024
"""Largest rate (kernel replicas) of a layer: the search for a Method 2 layout is
quadratic in the replicas, and no crossbar holds more."""


def _check_rates(net: Network, scenario: Scenario, fused: dict[str, list[str]]) -> None:
    """Every dataflow.layer_rates entry names a layer that runs on crossbars, and every
    rate is at most the layer's output pixels per image (more replicas than outputs would
    compute nothing) and MAX_RATE."""
    flow = scenario.dataflow
    where = f"{scenario.source}: "
    compute = list(fused)
    known = {layer.name for layer in net.layers}
    for name, rate in flow.layer_rates.items():
        key = f"dataflow.layer_rates.{name if name.replace('_', '').replace('-', '').isalnum() else repr(name)}"
        if name not in fused:
            if name in known:
                kind = net.layer(name).kind
                why = ("runs on the digital processor of the core before it (mapping.fc_on = 'digital')"
                       if kind == "fc" else f"is {'an' if kind[0] in 'aeiou' else 'a'} {kind} layer, fused into the "
                       "digital processor of its producer")
                problem = f"layer '{name}' {why}; only layers on crossbars have rates"
            else:
                problem = f"model {net.source} has no layer '{name}'"
            raise MappingError(f"{where}{key} = {rate}: {problem} (layers with rates: {', '.join(compute)})")
    for name in fused:
        layer = net.layer(name)
        rate = layer_rate(layer, scenario)
        pixels = layer.out_h * layer.out_w
        if rate <= min(pixels, MAX_RATE):
            continue
        if name in flow.layer_rates:
            key = f"dataflow.layer_rates.{name if name.replace('_', '').replace('-', '').isalnum() else repr(name)}"
        else:
            key = f'dataflow.speedup_rates."{layer.out_channels}" (dataflow.mode = \'speedup\', layer \'{name}\')'
        limit = (f"more than the {pixels} output pixels per image of layer '{name}' ({layer.out_h} x {layer.out_w})"
                 if rate > pixels else f"more than {MAX_RATE} kernel replicas")
        raise MappingError(f"{where}{key} = {rate}: {limit}; at most {min(pixels, MAX_RATE)}")


def _sram_need(net: Network, layer: Layer, dw: int, scenario: Scenario,
               residual: bool) -> tuple[str, int, int, SramLayout, int, int]:
    """A layer's input SRAM at replica block width `dw`: (placement method, slot columns, stored
    height, layout, residual words, residual capacity in pixels)."""
    chip = scenario.chip
    kernel = layer.kernel if layer.kind == "conv" else 1
    stride = layer.stride if layer.kind == "conv" else 1
    in_bits = layer.in_channels * net.bits
    method = scenario.mapping.sram_method
    if method == "auto":
        method = auto_method(in_bits, chip.sram_word_bits)
    slot_columns = kernel + (dw - 1) * stride
    in_h = layer.in_h if layer.kind == "conv" else 1
    lay = make_layout(method, in_bits, in_h, slot_columns, chip.sram_word_bits)
    residual_words, residual_capacity = 0, 0
    if residual:
        # The residual pixels wait in the rest of the input SRAM; at least dW + 2 output columns.
        res_pixel_words = math.ceil(layer.out_channels * net.bits / chip.sram_word_bits)
        residual_words = res_pixel_words * (dw + 2) * layer.out_h
        residual_capacity = max(0, chip.sram_depth_words - lay.total_words) // res_pixel_words
    return method, slot_columns, in_h, lay, residual_words, residual_capacity


def compute_layers(net: Network, scenario: Scenario) -> dict[str, bool]:
    """The layers that run on crossbars (in network order), each with whether a residual add is
    fused into its digital processor."""
    _, fused = _emitters(net, scenario)
    return {name: any(net.layer(f).kind == "add" for f in fs) for name, fs in fused.items()}


@dataclass(frozen=True)
class LayerCost:
    """What a layer costs at a rate: cores, and the cycles of one steady-state step."""

    cores: int
    groups: int
    """Parallel groups per image (a Method 2 block is `rate / dW` outputs high and dW wide)."""
    step_cycles: int
    """Estimated cycles of one parallel group in the middle of a column: storing the input
    pixels it consumes (rate x stride^2, at the layout's most words per pixel), reading its
    new kernel rows (rate / dW x stride rows of the window's words), the MVM and the digital
    processor (digital_cycles per output); stores and reads add on one SRAM port."""


def layer_cost(net: Network, layer: Layer, rate: int, scenario: Scenario, residual: bool) -> LayerCost | None:
    """Cores the mapper gives `layer` at `rate` pixels per timestep (its replica layout, row and
    column splits, as `map_network` chooses them) and its step cycles, or None when that rate
    cannot be mapped: its replicas do not fit and `mapping.replica_fit` is "error", or its
    input SRAM overflows."""
    chip = scenario.chip
    kernel = layer.kernel if layer.kind == "conv" else 1
    stride = layer.stride if layer.kind == "conv" else 1
    try:
        shape, fits, _ = _choose_shape(layer, kernel, stride, rate, scenario)
    except MappingError:
        return None
    split = fits or scenario.mapping.replica_fit == "split"
    rows, cols = (shape.rows, shape.cols) if split else (layer.kernel_rows, layer.kernel_cols)
    _, _, _, lay, residual_words, _ = _sram_need(net, layer, shape.dw, scenario, residual)
    if lay.total_words + residual_words > chip.sram_depth_words:
        return None
    metrics = lay.metrics(kernel)
    stores = rate * stride * stride * max(metrics.write_cycles)
    window = kernel + (shape.dw - 1) * stride
    reads = math.ceil(rate / shape.dw) * stride * max(metrics.read_cycles) * math.ceil(window / kernel)
    sram = stores + reads if chip.sram_ports == 1 else max(stores, reads)
    cores = math.ceil(rows / chip.crossbar_rows) * math.ceil(cols / chip.crossbar_cols)
    dw = max(1, min(shape.dw, rate, layer.out_w))
    groups = math.ceil(layer.out_w / dw) * math.ceil(layer.out_h / math.ceil(rate / dw))
    return LayerCost(cores, groups, sram + chip.mvm_cycles + chip.digital_cycles * rate)


def map_network(net: Network, scenario: Scenario) -> MappingPlan:
    """Place every compute layer on cores of the scenario's chip (a `dataflow.mode = "balanced"`
    scenario must have been resolved by `cimsim.mapping.balance.resolve` first)."""
    chip = scenario.chip
    check_simulated(net)
    emit, fused = _emitters(net, scenario)
    if scenario.dataflow.mode == "balanced":
        unresolved = [name for name in fused if name not in scenario.dataflow.layer_rates]
        if unresolved:
            raise MappingError(f"{scenario.source}: dataflow.mode = 'balanced': layer '{unresolved[0]}' has no rate; "
                               "resolve the scenario with cimsim.mapping.balance.resolve(net, scenario) first "
                               "(cimsim.runner does)")
    _check_rates(net, scenario, fused)
    warnings: list[str] = []
    layers: dict[str, LayerMapping] = {}
    edges: list[tuple[str, str, EdgeRole]] = []
    cores: list[CoreSpec] = []
    positions = snake(chip.array_rows, chip.array_cols)
    for layer in net.layers:
        if layer.name not in fused:
            continue
        rate = layer_rate(layer, scenario)
        kernel = layer.kernel if layer.kind == "conv" else 1
        stride = layer.stride if layer.kind == "conv" else 1
        shape, fits, note = _choose_shape(layer, kernel, stride, rate, scenario)
        if note and not fits:
            warnings.append(f"{layer.name}: {note}")
        rows = shape.rows if (fits or scenario.mapping.replica_fit == "split") else layer.kernel_rows
        cols = shape.cols if (fits or scenario.mapping.replica_fit == "split") else layer.kernel_cols
        row_parts = math.ceil(rows / chip.crossbar_rows)
        col_parts = math.ceil(cols / chip.crossbar_cols)
        if not fits and scenario.mapping.replica_fit == "split":
            note = f"{rate} replicas need {shape.rows} rows; split over {row_parts * col_parts} cores"
        main = emit[layer.inputs[0]]
        residual = None
        for f in fused[layer.name]:
            fl = net.layer(f)
            if fl.kind == "add":
                if residual is not None:
                    raise MappingError(f"{net.source}: layer '{layer.name}' would need two residual adds")
                residual = emit[fl.inputs[1]]
        in_bits = layer.in_channels * net.bits
        method, slot_columns, in_h, lay, residual_words, residual_capacity = _sram_need(
            net, layer, shape.dw, scenario, residual is not None)
        need = lay.total_words + residual_words
        if need > chip.sram_depth_words:
            raise MappingError(
                f"{scenario.source}: layer '{layer.name}' needs {need} words of {chip.sram_word_bits}-bit input SRAM "
                f"({method.upper()}: {in_h} x {slot_columns} pixels of {in_bits} bits + a zero pixel"
                f"{' + residual area' if residual_words else ''}), the core has chip.sram_depth_words = "
                f"{chip.sram_depth_words}"
            )
        metrics = lay.metrics(kernel)
        ids = []
        for r in range(row_parts):
            for c in range(col_parts):
                cid = len(cores)
                if cid >= len(positions):
                    total = _count_cores(net, scenario, fused)
                    raise MappingError(
                        f"{scenario.source}: the mapping needs {total} cores, the array has "
                        f"chip.array_rows x chip.array_cols = {chip.array_rows} x {chip.array_cols} = {len(positions)}"
                    )
                r_used = min(chip.crossbar_rows, rows - r * chip.crossbar_rows)
                c_used = min(chip.crossbar_cols, cols - c * chip.crossbar_cols)
                cores.append(CoreSpec(cid, layer.name, r, c, r_used, c_used, positions[cid]))
                ids.append(cid)
        layers[layer.name] = LayerMapping(
            layer=layer.name, rate=rate, replicas=rate, method=shape.method, dw=shape.dw, rows=shape.rows,
            cols=shape.cols, fits=fits, row_parts=row_parts, col_parts=col_parts, cores=tuple(ids),
            sram_method=method, pixel_bits=in_bits, slot_columns=slot_columns, sram_words=need,
            residual_capacity=residual_capacity,
            sram_data_words=lay.words, write_cycles=metrics.write_cycles, read_cycles=metrics.read_cycles,
            fused=tuple(fused[layer.name]), main_input=main, residual_input=residual, note=note,
        )
        edges.append((main, layer.name, EdgeRole.MAIN))
        if residual is not None:
            edges.append((residual, layer.name, EdgeRole.RESIDUAL))
    plan = MappingPlan(
        layers=layers, cores=tuple(cores), edges=tuple(edges), input_name=net.input_layer.name,
        output_layer=emit[net.output_layer.name], array=(chip.array_rows, chip.array_cols),
        warnings=tuple(warnings),
    )
    flows, graph = _routed_flows(plan, net, scenario)
    return replace(plan, flows=tuple(flows), topology=graph)


def _routed_flows(plan: MappingPlan, net: Network, scenario: Scenario) -> tuple[list[Flow], nx.DiGraph | None]:
    """Core-level packet streams of the plan, routed on the scenario's topology; an edge
    the topology cannot carry is a mapping error naming the two layers."""
    noc, chip = scenario.noc, scenario.chip
    flows: list[Flow] = []
    for src_layer, dst_layer, role in plan.edges:
        dst = plan.layers[dst_layer]
        targets = dst.cores if role is EdgeRole.MAIN else dst.merge_cores
        if src_layer == plan.input_name:
            inp = net.input_layer
            sources: list[int | None] = [None]
            bits, rate = inp.out_channels * net.bits, scenario.input.pixels_per_timestep
        else:
            src = plan.layers[src_layer]
            sources = list(src.merge_cores)
            pooled = any(net.layer(f).kind == "avgpool" for f in src.fused)
            bits = net.layer(src_layer).out_channels * net.bits // src.col_parts
            rate = 1 if pooled else src.rate
        for s in sources:
            flows.extend(Flow(s, t, role, src_layer, dst_layer, bits, rate) for t in targets)
    for lm in plan.layers.values():
        if lm.row_parts > 1:
            layer = net.layer(lm.layer)
            bits = layer.out_channels * noc.partial_sum_bits // lm.col_parts
            for cid in lm.cores:
                spec = plan.cores[cid]
                merge = lm.merge_cores[spec.col_part]
                if cid != merge:
                    flows.append(Flow(cid, merge, EdgeRole.PARTIAL, lm.layer, lm.layer, bits, lm.rate))
    if scenario.fabric is FabricKind.IDEAL:
        return flows, None
    biggest = max((f.packet_bits for f in flows), default=0)
    flits = topology.packet_flits(biggest, noc.header_bits, noc.link_width_bits)
    if scenario.fabric is FabricKind.ROUTERS and flits > noc.buffer_depth_flits:
        raise MappingError(
            f"{scenario.source}: noc.buffer_depth_flits = {noc.buffer_depth_flits} is smaller than the largest "
            f"packet ({biggest} + {noc.header_bits} header bits = {flits} flits of {noc.link_width_bits} bits); "
            "routers move whole packets (virtual cut-through)"
        )
    dram = (noc.dram_row, noc.dram_col)
    if noc.topology == "mesh":
        rows, cols = chip.array_rows, chip.array_cols
        if not (0 <= noc.dram_row < rows and 0 <= noc.dram_col < cols) or not (
                noc.dram_row in (0, rows - 1) or noc.dram_col in (0, cols - 1)):
            raise MappingError(f"{scenario.source}: noc.dram_row, noc.dram_col = {dram}: must be a router on the "
                               f"edge of the {rows} x {cols} mesh")
    graph = topology.build_topology(noc.topology, chip.array_rows, chip.array_cols, dram, noc.prism_k)
    routing = topology.ROUTING[noc.topology]
    routed = []
    for f in flows:
        a = "dram" if f.src is None else plan.cores[f.src].position
        b = plan.cores[f.dst].position
        path = routing(graph, a, b)
        if path is None:
            src_name = "the input (DRAM port)" if f.src is None else f"'{f.src_layer}' (core {plan.cores[f.src].name})"
            raise MappingError(
                f"{scenario.source}: noc.topology = '{noc.topology}': the {f.role} edge from {src_name} to "
                f"'{f.dst_layer}' (core {plan.cores[f.dst].name}) is not a link of the topology"
                + (f" (noc.prism_k = {noc.prism_k})" if noc.topology == "prism" else "")
            )
        routed.append(replace(f, route=tuple(path)))
    return routed, graph


def _choose_shape(layer: Layer, kernel: int, stride: int, rate: int,
                  scenario: Scenario) -> tuple[ReplicaShape, bool, str]:
    """The replica layout of a layer: (shape, fits one crossbar, note)."""
    chip = scenario.chip
    policy = scenario.mapping.replica_fit
    method1 = collective_shape(layer.in_channels, layer.out_channels, kernel, stride, rate)
    if method1.rows <= chip.crossbar_rows and method1.cols <= chip.crossbar_cols:
        return method1, True, ""
    if rate == 1:
        return method1, False, ""
    if policy != "assume":
        best = best_shape(layer.in_channels, layer.out_channels, kernel, stride, rate,
                          chip.crossbar_rows, chip.crossbar_cols)
        if best is not None:
            return best, True, f"Method 1 needs {method1.rows} rows; Method 2 with dW = {best.dw} fits in {best.rows}"
    if policy == "error":
        raise MappingError(
            f"{scenario.source}: layer '{layer.name}': {rate} kernel replicas need {method1.rows} x {method1.cols} "
            f"crossbar cells by Method 1 and no Method 2 layout fits a {chip.crossbar_rows} x {chip.crossbar_cols} "
            "crossbar (mapping.replica_fit = 'error')"
        )
    if policy == "assume":
        return method1, False, (f"{rate} replicas need {method1.rows} rows x {method1.cols} cols > crossbar "
                                f"{chip.crossbar_rows} x {chip.crossbar_cols}; assumed to fit "
                                "(mapping.replica_fit = 'assume')")
    return method1, False, ""


def _count_cores(net: Network, scenario: Scenario, fused: dict[str, list[str]]) -> int:
    """Cores the mapping would need on an unbounded array (for the error message)."""
    chip = scenario.chip
    total = 0
    for name in fused:
        layer = net.layer(name)
        kernel = layer.kernel if layer.kind == "conv" else 1
        stride = layer.stride if layer.kind == "conv" else 1
        rate = layer_rate(layer, scenario)
        shape, fits, _ = _choose_shape(layer, kernel, stride, rate, scenario)
        rows, cols = (shape.rows, shape.cols) if fits or scenario.mapping.replica_fit == "split" else (
            layer.kernel_rows, layer.kernel_cols)
        total += math.ceil(rows / chip.crossbar_rows) * math.ceil(cols / chip.crossbar_cols)
    return total
