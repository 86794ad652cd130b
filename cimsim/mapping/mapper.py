"""Map a network onto the core array (Dazzi 2021 sections 2.2, 2.4.4, 3.1.1).

Every stage (`cimsim.mapping.stages`: a conv, a crossbar FC, or a layer on a digital
processor of its own) becomes one or more cores; add, global-pooling and digital-FC layers
that can be are fused into the digital processor of the core producing their main input.
Pure: no SimPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import networkx as nx

from cimsim.config.schema import AUTO, FabricKind, Scenario
from cimsim.errors import MappingError
from cimsim.mapping import topology
from cimsim.mapping.placement import snake
from cimsim.mapping.plan import CoreSpec, Flow, LayerMapping, MappingPlan, ResidualPath
from cimsim.mapping.replication import ReplicaShape, best_shape, collective_shape
from cimsim.mapping.residual import ResidualRoles, ResidualRoute, residual_routes
from cimsim.mapping.sram import SramLayout, auto_method, make_layout
from cimsim.mapping.stages import Stage, Unit, plan_stages
from cimsim.network import Network
from cimsim.network.layers import EdgeRole


def stage_rate(stage: Stage, scenario: Scenario) -> int:
    """Pixels per timestep the stage computes under the scenario's dataflow (1 for a stage
    without crossbar replicas: a digital stage, a depthwise split into jobs)."""
    flow = scenario.dataflow
    if stage.name in flow.layer_rates:
        return flow.layer_rates[stage.name]
    if flow.mode == "speedup" and stage.replicable:
        return flow.speedup_rates.get(str(stage.out_channels), 1)
    return 1


MAX_RATE = 1024
"""Largest rate (kernel replicas) of a layer: the search for a Method 2 layout is
quadratic in the replicas, and no crossbar holds more."""


def _key(name: str) -> str:
    return f"dataflow.layer_rates.{name if name.replace('_', '').replace('-', '').isalnum() else repr(name)}"


def _check_rates(net: Network, scenario: Scenario, stages: dict[str, Stage]) -> None:
    """Every dataflow.layer_rates entry names a stage, a rate above 1 only a stage with crossbar
    replicas, and every rate is at most the stage's output pixels per image (more replicas than
    outputs would compute nothing) and MAX_RATE."""
    flow = scenario.dataflow
    where = f"{scenario.source}: "
    replicable = [name for name, st in stages.items() if st.replicable]
    known = {layer.name for layer in net.layers}
    for name, rate in flow.layer_rates.items():
        problem = ""
        if name not in stages:
            if name in known:
                kind = net.layer(name).kind
                problem = (f"layer '{name}' is {'an' if kind[0] in 'aeiou' else 'a'} {kind} layer, fused into the "
                           "digital processor of its producer (or only a view of its inputs)")
            else:
                problem = f"model {net.source} has no layer '{name}'"
        elif rate > 1 and not stages[name].replicable:
            st = stages[name]
            problem = (f"layer '{name}' runs on a digital processor, without crossbar replicas" if st.unit is Unit.DIGITAL
                       else f"layer '{name}' is a depthwise conv split into {st.jobs} jobs "
                       "(mapping.depthwise_job_channels), without replicas")
        if problem:
            raise MappingError(f"{where}{_key(name)} = {rate}: {problem}; only layers on crossbars have rates "
                               f"above 1 (layers with rates: {', '.join(replicable)})")
    for name, st in stages.items():
        rate = stage_rate(st, scenario)
        pixels = st.window.out_pixels
        if rate <= min(pixels, MAX_RATE):
            continue
        if name in flow.layer_rates:
            key = _key(name)
        else:
            key = f'dataflow.speedup_rates."{st.out_channels}" (dataflow.mode = \'speedup\', layer \'{name}\')'
        limit = (f"more than the {pixels} output pixels per image of layer '{name}' "
                 f"({st.window.out_h} x {st.window.out_w})" if rate > pixels else f"more than {MAX_RATE} kernel replicas")
        raise MappingError(f"{where}{key} = {rate}: {limit}; at most {min(pixels, MAX_RATE)}")


def _sram_need(net: Network, stage: Stage, dw: int, scenario: Scenario, channels: int = 0,
               copy: bool = False) -> tuple[str, int, int, SramLayout, int, int]:
    """A stage's input SRAM at replica block width `dw` (its cores storing `channels` of each
    input pixel; 0: all), keeping a copy of its residual pixels or not: (placement method, slot
    columns, stored height, layout, residual words, residual capacity in pixels)."""
    chip = scenario.chip
    win = stage.window
    in_bits = (channels or stage.in_channels) * net.bits
    method = scenario.mapping.sram_method
    if method == "auto":
        method = auto_method(in_bits, chip.sram_word_bits)
    slot_columns = win.kernel[1] + (dw - 1) * win.stride[1]
    lay = make_layout(method, in_bits, win.in_h, slot_columns, chip.sram_word_bits)
    residual_words, residual_capacity = 0, 0
    res_pixel_words = residual_pixel_words(net, stage, scenario) if copy else 0
    if res_pixel_words:
        # The residual pixels wait in the rest of the input SRAM; at least dW + 2 output columns.
        residual_words = res_pixel_words * (dw + 2) * win.out_h
        residual_capacity = max(0, chip.sram_depth_words - lay.total_words) // res_pixel_words
    return method, slot_columns, win.in_h, lay, residual_words, residual_capacity


def residual_pixel_words(net: Network, stage: Stage, scenario: Scenario) -> int:
    """SRAM words one residual pixel of `stage` takes in its residual area when it keeps a copy
    (`ResidualPath.ADDER_COPY`), and so the cycles to write it when it arrives and to read it back
    for the add: whole words of the stage's C_out x bits (0: the stage adds no residual)."""
    if stage.residual_input is None:
        return 0
    return math.ceil(stage.out_channels * net.bits / scenario.chip.sram_word_bits)


def compute_layers(net: Network, scenario: Scenario) -> dict[str, Stage]:
    """The stages (layers with cores of their own), in network order."""
    return plan_stages(net, scenario)


@dataclass(frozen=True)
class LayerCost:
    """What a stage costs at a rate: cores, and the cycles of one steady-state step."""

    cores: int
    groups: int
    """Parallel groups per image (a Method 2 block is `rate / dW` outputs high and dW wide)."""
    step_cycles: int
    """Estimated cycles of one parallel group in the middle of a column: storing the input
    pixels it consumes (rate x stride^2, at the layout's most words per pixel), reading its
    new kernel rows (rate / dW x stride rows of the window's words), storing and reading back
    the residual pixel of each of its outputs (an add's core keeping a copy) or reading one
    from its input memory per output (`read_res`), the MVMs (or a digital
    stage's work) and the digital processor (digital_cycles per output); stores and reads add
    on one SRAM port."""


def layer_cost(net: Network, stage: Stage, rate: int, scenario: Scenario,
               roles: ResidualRoles | None = None) -> LayerCost | None:
    """Cores the mapper gives `stage` at `rate` pixels per timestep (its replica layout, row and
    column splits, as `map_network` chooses them) and its step cycles, or None when that rate
    cannot be mapped: its replicas do not fit and `mapping.replica_fit` is "error", or its
    input SRAM overflows. `roles`: its part in residual adds (`residual_roles`; None: none)."""
    roles = roles or ResidualRoles()
    chip = scenario.chip
    win = stage.window
    try:
        shape, fits, _ = _choose_shape(stage, rate, scenario)
    except MappingError:
        return None
    rows, cols = _matrix(stage, shape, fits, scenario)
    share = channel_share(stage, rows, scenario)
    _, _, _, lay, residual_words, _ = _sram_need(net, stage, shape.dw, scenario, share, roles.copy)
    if lay.total_words + residual_words > chip.sram_depth_words:
        return None
    metrics = lay.metrics(win.kernel[1])
    sh, sw = win.stride
    stores = rate * sh * sw * max(metrics.write_cycles)
    window = win.kernel[1] + (shape.dw - 1) * sw
    reads = math.ceil(rate / shape.dw) * sh * max(metrics.read_cycles) * math.ceil(window / win.kernel[1])
    if roles.copy:  # its outputs' residual pixels, stored and read back
        residual = rate * residual_pixel_words(net, stage, scenario)
        stores, reads = stores + residual, reads + residual
    if roles.reads:  # read_res: a pixel of its own input per output (at its own rate: an estimate)
        reads += rate * lay.pixel_read_words()
    sram = stores + reads if chip.sram_ports == 1 else max(stores, reads)
    dw = max(1, min(shape.dw, rate, win.out_w))
    groups = math.ceil(win.out_w / dw) * math.ceil(win.out_h / math.ceil(rate / dw))
    if stage.unit is Unit.DIGITAL:
        return LayerCost(1, groups, sram + stage.digital_step_cycles * rate)
    row_parts, col_parts = _cores_of(stage, rows, cols, scenario)
    return LayerCost(row_parts * col_parts, groups, sram + chip.mvm_cycles * stage.jobs + chip.digital_cycles * rate)


def _matrix(stage: Stage, shape: ReplicaShape, fits: bool, scenario: Scenario) -> tuple[int, int]:
    """Crossbar rows and columns the stage is given: the collective matrix of its replicas,
    or of one replica when they do not fit and are assumed to."""
    if fits or scenario.mapping.replica_fit == "split":
        return shape.rows, shape.cols
    kh, kw = stage.window.kernel
    return kh * kw * -(-stage.in_channels // stage.jobs), stage.out_channels


def _cores_of(stage: Stage, rows: int, cols: int, scenario: Scenario) -> tuple[int, int]:
    """(row parts, column parts): one core for a digital stage; a layer split by input channels
    has as many row parts as its channel shares (`channel_share`)."""
    chip = scenario.chip
    if stage.unit is Unit.DIGITAL:
        return 1, 1
    share = channel_share(stage, rows, scenario)
    row_parts = math.ceil(stage.in_channels / share) if share else math.ceil(rows / chip.crossbar_rows)
    return row_parts, math.ceil(cols / chip.crossbar_cols)


def channel_share(stage: Stage, rows: int, scenario: Scenario) -> int:
    """Input channels per row part when the stage's rows must be split (Dazzi Eq. 5) and can be
    split by input channels: each row part holds every window position of a share of the
    channels, so it needs only those channels of each input pixel (0: no split, or a
    jobbed layer, or one reading a concat, whose rows are split as they come: a row part of a
    concat's consumer would not hear every producer, and its values would be computed before
    they all arrived)."""
    xbar = scenario.chip.crossbar_rows
    if rows <= xbar or stage.jobs > 1 or stage.in_channels < 2 or len(stage.main_inputs) > 1:
        return 0
    positions = rows // stage.in_channels  # window pixels (of every replica) per channel
    share = xbar // positions
    if positions * stage.in_channels != rows or share < 1:
        return 0
    return min(share, stage.in_channels)


def _weights(net: Network, stage: Stage) -> int:
    """Non-zero weights of one replica of the stage's layer (0 without a crossbar)."""
    layer = net.layer(stage.name)
    if stage.unit is Unit.DIGITAL:
        return 0
    kh, kw = stage.window.kernel
    return kh * kw * (stage.in_channels // max(1, layer.groups)) * stage.out_channels


def map_network(net: Network, scenario: Scenario) -> MappingPlan:
    """Place every stage on cores of the scenario's chip (a `dataflow.mode = "balanced"`
    scenario must have been resolved by `cimsim.mapping.balance.resolve` first)."""
    chip = scenario.chip
    if AUTO in (chip.array_rows, chip.array_cols):
        raise MappingError(f"{scenario.source}: chip.array_rows / array_cols = 'auto': resolve the scenario with "
                           "cimsim.mapping.sizing.resolve_array(net, scenario) first (cimsim.runner does)")
    stages = plan_stages(net, scenario)
    if scenario.dataflow.mode == "balanced":
        unresolved = [name for name in stages if name not in scenario.dataflow.layer_rates]
        if unresolved:
            raise MappingError(f"{scenario.source}: dataflow.mode = 'balanced': layer '{unresolved[0]}' has no rate; "
                               "resolve the scenario with cimsim.mapping.balance.resolve(net, scenario) first "
                               "(cimsim.runner does)")
    _check_rates(net, scenario, stages)
    warnings: list[str] = []
    layers: dict[str, LayerMapping] = {}
    edges: list[tuple[str, str, EdgeRole]] = []
    cores: list[CoreSpec] = []
    positions = snake(chip.array_rows, chip.array_cols)
    rates = {name: stage_rate(st, scenario) for name, st in stages.items()}
    chosen = {name: (rates[name], *_choose_shape(st, rates[name], scenario)) for name, st in stages.items()}
    routes = residual_routes(net, stages, {n: (c[0], c[1].dw) for n, c in chosen.items()},
                             scenario.mapping.residual_source)
    for name, st in stages.items():
        rate, shape, fits, note = chosen[name]
        route: ResidualRoute | None = routes.get(name)
        if note and not fits:
            warnings.append(f"{name}: {note}")
        rows, cols = _matrix(st, shape, fits, scenario)
        row_parts, col_parts = _cores_of(st, rows, cols, scenario)
        if not fits and scenario.mapping.replica_fit == "split":
            note = f"{rate} replicas need {shape.rows} rows; split over {row_parts * col_parts} cores"
        share = 0 if st.unit is Unit.DIGITAL else channel_share(st, rows, scenario)
        if route is not None and route.path is ResidualPath.OWN_INPUT and share:
            route = ResidualRoute(ResidualPath.ADDER_COPY, str(st.residual_input), note=(
                "its merging core holds only its share of the input channels: it keeps a copy of the residual"))
        copy = route is not None and route.path is ResidualPath.ADDER_COPY
        in_bits = (share or st.in_channels) * net.bits
        method, slot_columns, in_h, lay, residual_words, residual_capacity = _sram_need(net, st, shape.dw, scenario,
                                                                                        share, copy)
        if route is not None and route.path is ResidualPath.READ_RES:
            residual_capacity = route.inbox
        need = lay.total_words + residual_words
        if need > chip.sram_depth_words:
            raise MappingError(
                f"{scenario.source}: layer '{name}' needs {need} words of {chip.sram_word_bits}-bit input SRAM "
                f"({method.upper()}: {in_h} x {slot_columns} pixels of {in_bits} bits + a zero pixel"
                f"{' + residual area' if residual_words else ''}), the core has chip.sram_depth_words = "
                f"{chip.sram_depth_words}"
            )
        if route is not None and route.note:
            note = f"{note}; {route.note}" if note else route.note
        metrics = lay.metrics(st.window.kernel[1])
        ids = []
        for r in range(row_parts):
            for c in range(col_parts):
                cid = len(cores)
                if cid >= len(positions):
                    total = count_cores(net, scenario)
                    raise MappingError(
                        f"{scenario.source}: the mapping needs {total} cores, the array has "
                        f"chip.array_rows x chip.array_cols = {chip.array_rows} x {chip.array_cols} = {len(positions)}"
                        + ("" if scenario.mapping.weights == "reload" else
                           " (mapping.weights = 'reload' runs it in segments that fit)")
                    )
                digital = st.unit is Unit.DIGITAL
                if share:  # a row part per share of the input channels, every window position of them
                    lo, hi = r * share, min(st.in_channels, (r + 1) * share)
                    r_used, channels = rows // st.in_channels * (hi - lo), (lo, hi)
                else:
                    r_used = 0 if digital else min(chip.crossbar_rows, rows - r * chip.crossbar_rows)
                    channels = (0, 0)
                c_used = 0 if digital else min(chip.crossbar_cols, cols - c * chip.crossbar_cols)
                cores.append(CoreSpec(cid, name, r, c, r_used, c_used, positions[cid], channels))
                ids.append(cid)
        xbar = st.unit is Unit.CROSSBAR
        skew = 0
        if len(st.main_inputs) > 1:
            skew = (chip.sram_depth_words - need) // math.ceil(in_bits / chip.sram_word_bits)
        layers[name] = LayerMapping(
            layer=name, rate=rate, replicas=rate if xbar else 0, method=shape.method, dw=shape.dw,
            rows=shape.rows if xbar else 0, cols=shape.cols if xbar else 0, fits=fits,
            row_parts=row_parts, col_parts=col_parts, cores=tuple(ids),
            sram_method=method, pixel_bits=in_bits, slot_columns=slot_columns, sram_words=need,
            residual_capacity=residual_capacity,
            residual_pixel_words=residual_pixel_words(net, st, scenario) if copy else 0,
            residual_path=route.path if route is not None else None,
            residual_from=route.source if route is not None else None,
            residual_chain=route.chain if route is not None else (),
            sram_data_words=lay.words, write_cycles=metrics.write_cycles, read_cycles=metrics.read_cycles,
            fused=st.fused, main_inputs=st.main_inputs, residual_input=st.residual_input, note=note,
            unit=st.unit, window=st.window, digital_step_cycles=st.digital_step_cycles, jobs=st.jobs,
            skew_capacity=skew, devices=shape.rows * shape.cols if xbar else 0, weights=_weights(net, st) * (rate if xbar else 0),
        )
        edges.extend((m, name, EdgeRole.MAIN) for m in st.main_inputs)
        if st.residual_input is not None:
            edges.append((st.residual_input, name, EdgeRole.RESIDUAL))
    emitted = stages[next(reversed(stages))].name if stages else net.input_layer.name
    plan = MappingPlan(
        layers=layers, cores=tuple(cores), edges=tuple(edges), input_name=net.input_layer.name,
        output_layer=_output_stage(net, stages, emitted), array=(chip.array_rows, chip.array_cols),
        warnings=tuple(warnings),
    )
    flows, graph = _routed_flows(plan, net, scenario)
    return replace(plan, flows=tuple(flows), topology=graph)


def _output_stage(net: Network, stages: dict[str, Stage], last: str) -> str:
    """The stage that emits the network's output."""
    out = net.output_layer.name
    for name, st in stages.items():
        if out == name or out in st.fused:
            return name
    return last  # the output is an alias (a flatten) of the last stage


def _routed_flows(plan: MappingPlan, net: Network, scenario: Scenario) -> tuple[list[Flow], nx.DiGraph | None]:
    """Core-level packet streams of the plan, routed on the scenario's topology; an edge
    the topology cannot carry is a mapping error naming the two layers."""
    noc, chip = scenario.noc, scenario.chip
    flows: list[Flow] = []
    offsets: dict[tuple[str, str], int] = {}  # (producer, consumer) -> its first channel in the consumer's pixel
    for name, lm in plan.layers.items():
        first = 0
        for m in lm.main_inputs:
            offsets[(m, name)] = first
            first += _emitted_channels(net, plan, m)
    for src_layer, dst_layer, role in plan.edges:
        dst = plan.layers[dst_layer]
        if role is EdgeRole.RESIDUAL and dst.residual_path is not ResidualPath.ADDER_COPY:
            if dst.residual_path is ResidualPath.READ_RES:
                flows.extend(_read_res_flows(net, plan, dst))
            continue  # OWN_INPUT: the adding core reads its own input memory
        targets = dst.cores if role is EdgeRole.MAIN else dst.merge_cores
        width = _emitted_channels(net, plan, src_layer)
        if src_layer == plan.input_name:
            sources: list[int | None] = [None]
            rate = scenario.input.pixels_per_timestep
        else:
            src = plan.layers[src_layer]
            sources = list(src.merge_cores)
            pooled = any(net.layer(f).kind == "avgpool" for f in src.fused)
            width //= src.col_parts
            rate = 1 if pooled else src.rate
        for i, s in enumerate(sources):
            lo = offsets.get((src_layer, dst_layer), 0) + i * width  # the channels source s sends
            for t in targets:
                c_lo, c_hi = plan.cores[t].channels if role is EdgeRole.MAIN else (0, 0)
                whole = (c_lo, c_hi) == (0, 0) or (src_layer != plan.input_name and plan.layers[src_layer].col_parts > 1)
                overlap = width if whole else max(0, min(c_hi, lo + width) - max(c_lo, lo))
                if overlap or whole:  # a row part split by input channels gets only its share (of a producer in one column part)
                    flows.append(Flow(s, t, role, src_layer, dst_layer, overlap * net.bits, rate))
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


def _read_res_flows(net: Network, plan: MappingPlan, dst: LayerMapping) -> list[Flow]:
    """The residual flows of a `read_res` add: from the block's first conv's cores that hold the
    block input (each row part of a layer split by input channels its share; else its first core)
    to the adding stage's merging cores, at the adding stage's rate."""
    first = plan.layers[str(dst.residual_from)]
    channels = _emitted_channels(net, plan, str(dst.residual_input))
    flows: list[Flow] = []
    for cid in first.cores:
        spec = plan.cores[cid]
        lo, hi = spec.channels
        if spec.col_part or ((lo, hi) == (0, 0) and spec.row_part):
            continue  # every column part holds the same input; without shares, so does every row part
        width = hi - lo if (lo, hi) != (0, 0) else channels
        flows.extend(Flow(cid, t, EdgeRole.RESIDUAL, first.layer, dst.layer, width * net.bits, dst.rate, read_res=True)
                     for t in dst.merge_cores)
    return flows


def _emitted_channels(net: Network, plan: MappingPlan, name: str) -> int:
    """Channels of the pixels stage (or the network input) `name` emits (after its fused layers)."""
    if name == plan.input_name:
        return net.input_layer.out_channels
    lm = plan.layers[name]
    return net.layer(lm.fused[-1] if lm.fused else name).out_channels


def _choose_shape(stage: Stage, rate: int, scenario: Scenario) -> tuple[ReplicaShape, bool, str]:
    """The replica layout of a stage: (shape, fits one crossbar, note); a digital stage's is
    its window without replicas."""
    chip = scenario.chip
    policy = scenario.mapping.replica_fit
    win = stage.window
    c_in = -(-stage.in_channels // stage.jobs)  # jobs in column bands, driven one after another on shared rows
    method1 = collective_shape(c_in, stage.out_channels, win.kernel, win.stride, rate)
    if stage.unit is Unit.DIGITAL or (method1.rows <= chip.crossbar_rows and method1.cols <= chip.crossbar_cols):
        return method1, True, ""
    if rate == 1:
        return method1, False, ""
    if policy != "assume":
        best = best_shape(c_in, stage.out_channels, win.kernel, win.stride, rate, chip.crossbar_rows, chip.crossbar_cols)
        if best is not None:
            return best, True, f"Method 1 needs {method1.rows} rows; Method 2 with dW = {best.dw} fits in {best.rows}"
    if policy == "error":
        raise MappingError(
            f"{scenario.source}: layer '{stage.name}': {rate} kernel replicas need {method1.rows} x {method1.cols} "
            f"crossbar cells by Method 1 and no Method 2 layout fits a {chip.crossbar_rows} x {chip.crossbar_cols} "
            "crossbar (mapping.replica_fit = 'error')"
        )
    if policy == "assume":
        return method1, False, (f"{rate} replicas need {method1.rows} rows x {method1.cols} cols > crossbar "
                                f"{chip.crossbar_rows} x {chip.crossbar_cols}; assumed to fit "
                                "(mapping.replica_fit = 'assume')")
    return method1, False, ""


def stage_cores(stage: Stage, scenario: Scenario) -> int:
    """Cores the mapper gives a stage at its rate."""
    shape, fits, _ = _choose_shape(stage, stage_rate(stage, scenario), scenario)
    rows, cols = _matrix(stage, shape, fits, scenario)
    r, c = _cores_of(stage, rows, cols, scenario)
    return r * c


def count_cores(net: Network, scenario: Scenario) -> int:
    """Cores the mapping needs on an unbounded array."""
    return sum(stage_cores(st, scenario) for st in plan_stages(net, scenario).values())
