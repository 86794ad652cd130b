"""The mapping plan: which cores compute which layer, and the dataflow edges between them.

Pure data, no SimPy: built by `cimsim.mapping.mapper.map_network`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import networkx as nx

from cimsim.mapping.stages import Unit, Window
from cimsim.network.layers import EdgeRole, Network


class ResidualPath(StrEnum):
    """How an adding stage gets its residual pixels (`mapping.residual_source`)."""

    READ_RES = "read_res"
    """Dazzi's `read_res` (Algorithm 1 lines 21-22): the block's first core reads each pixel from
    its own input memory and sends it; the adding core stores nothing."""
    OWN_INPUT = "own_input"
    """The adding core's own input memory holds the residual (it adds its own input): it reads
    each pixel from there for the add."""
    ADDER_COPY = "adder_copy"
    """The residual's producer sends its pixels to the adding core, which writes them into the
    free part of its input memory and reads them back for the add."""


@dataclass(frozen=True)
class CoreSpec:
    """One IMC core: a part of one layer's (collective) kernel matrix."""

    id: int
    layer: str
    row_part: int
    col_part: int
    rows_used: int
    cols_used: int
    position: tuple[int, int]
    """(row, column) on the core array."""
    channels: tuple[int, int] = (0, 0)
    """Input channels [start, stop) its crossbar rows hold: a row part of a layer split by input
    channels needs only these of every input pixel; (0, 0): all of them."""

    @property
    def name(self) -> str:
        """Human-readable core name, e.g. ``conv23.r1`` or ``conv1``."""
        return f"{self.layer}" if (self.row_part, self.col_part) == (0, 0) else f"{self.layer}.r{self.row_part}c{self.col_part}"


@dataclass(frozen=True)
class LayerMapping:
    """How one stage (a layer with cores of its own, `cimsim.mapping.stages`) sits on the chip."""

    layer: str
    rate: int
    """Output pixels computed per timestep (= kernel replicas, nr_parallel of Algorithm 1)."""
    replicas: int
    method: int
    dw: int
    """Output columns a group spans (1: Method 1; > 1: Method 2, Dazzi 2.2.2)."""
    rows: int
    """Crossbar rows of the collective kernel matrix (all replicas)."""
    cols: int
    fits: bool
    """True when the collective matrix fits the cores it was given."""
    row_parts: int
    col_parts: int
    cores: tuple[int, ...]
    sram_method: str
    pixel_bits: int
    """Bits of one input pixel (input channels x activation bits)."""
    slot_columns: int
    """Input columns in the circular SRAM buffer (F, or F + (dw - 1) x stride for Method 2)."""
    sram_words: int
    """Words of input SRAM needed: input pixels + the pre-stored zero pixel + the minimal residual area."""
    residual_capacity: int
    """Residual pixels the stage holds before their add: in its input SRAM besides the input
    buffer (`ResidualPath.ADDER_COPY`), or in its residual inbox (`READ_RES`; 0: none)."""
    sram_data_words: int
    """Words holding the H x slot_columns input pixels."""
    write_cycles: tuple[int, int]
    """(min, max) SRAM cycles to store one input pixel (words it touches)."""
    read_cycles: tuple[int, int]
    """(min, max) SRAM cycles to read one kernel row of F input pixels."""
    fused: tuple[str, ...]
    """Non-crossbar layers run by this layer's digital processor (add, avgpool, fc)."""
    main_inputs: tuple[str, ...]
    """Stages (or the network input) whose pixels feed the crossbar (several: a concat's, in
    channel order)."""
    residual_input: str | None
    """Compute layer whose pixels are added by the digital processor, if any."""
    note: str = ""
    unit: Unit = Unit.CROSSBAR
    """Where the stage computes: its crossbars, or only its digital processor."""
    window: Window | None = None
    """The window the controller slides (None: a 1 x 1 pixel, as a hand-built fc)."""
    digital_step_cycles: int = 0
    """`Unit.DIGITAL`: digital-processor cycles per output pixel."""
    jobs: int = 1
    """MVMs per output (a crossbar depthwise split into jobs)."""
    devices: int = 0
    """Crossbar devices holding weights (rows x columns of the collective matrix; a depthwise
    split into jobs K^2 x C x C_job); 0 on a digital stage."""
    weights: int = 0
    """Weights of the layer (devices that hold a non-zero weight of one replica)."""
    residual_pixel_words: int = 0
    """`ResidualPath.ADDER_COPY`: SRAM words one residual pixel takes in the residual area (whole
    words of C_out x bits): the cycles the adding core spends writing it when it arrives and
    reading it back for the add (0: no copy)."""
    residual_path: ResidualPath | None = None
    """How the stage gets its residual pixels (None: it adds none)."""
    residual_from: str | None = None
    """The stage whose cores send the residual pixels: the block's first conv (`READ_RES`), the
    stage itself (`OWN_INPUT`), or `residual_input` (`ADDER_COPY`)."""
    residual_chain: tuple[str, ...] = ()
    """`READ_RES`: the stages from this one back to the first (this stage, ..., `residual_from`),
    whose dataflow tables time the first core's sends (`cimsim.mapping.residual.send_schedule`)."""
    skew_capacity: int = 0
    """Several main inputs (a concat): input pixels an early input's slices may run ahead of the
    latest one, held in the SRAM words the input buffer and the residual area leave free
    (0: one input, whose inbox holds two of its producer's deliveries)."""

    @property
    def merge_cores(self) -> tuple[int, ...]:
        """Cores that emit the layer's output: the last row part of each column part."""
        return tuple(self.cores[(self.row_parts - 1) * self.col_parts + c] for c in range(self.col_parts))


@dataclass(frozen=True)
class Flow:
    """A stream of packets between two cores (or from the DRAM / input port: src None)."""

    src: int | None
    dst: int
    role: EdgeRole
    src_layer: str
    dst_layer: str
    packet_bits: int
    """Payload bits of one pixel (channels x bits; partial sums at partial_sum_bits)."""
    pixels_per_timestep: int
    """Pixels per timestep the producer emits at its own rate (Eq. 7's load)."""
    route: tuple[object, ...] = ()
    """Router positions from source to destination (empty on the ideal fabric)."""
    read_res: bool = False
    """The packets are pixels of the source core's input memory, read by `read_res` (a
    residual flow from the block's first core), not its outputs."""

    @property
    def bits_per_timestep(self) -> int:
        """Eq. 7's numerator: payload bits this flow needs per timestep."""
        return self.packet_bits * self.pixels_per_timestep


@dataclass(frozen=True)
class MappingPlan:
    """The network on the chip."""

    layers: dict[str, LayerMapping]
    """Compute layers in topological order."""
    cores: tuple[CoreSpec, ...]
    edges: tuple[tuple[str, str, EdgeRole], ...]
    """(producer, consumer, role) between compute layers; role main|residual; the
    network input is the producer name of the first layer's main edge."""
    input_name: str
    output_layer: str
    """Compute layer whose digital processor emits the network output."""
    array: tuple[int, int]
    warnings: tuple[str, ...] = ()
    flows: tuple[Flow, ...] = ()
    """Every core-to-core (and input-to-core) packet stream, with its route."""
    topology: nx.DiGraph | None = field(default=None, compare=False, repr=False)
    """The NoC's router graph the flows are routed on (None: the ideal fabric)."""

    @property
    def core_count(self) -> int:
        """Number of IMC cores used."""
        return len(self.cores)


def dataflow_order(plan: MappingPlan) -> list[str]:
    """Compute layers producers first (ties in plan order): the order values flow in."""
    deps: nx.DiGraph[str] = nx.DiGraph()
    deps.add_nodes_from(plan.layers)
    deps.add_edges_from((a, b) for a, b, _ in plan.edges if a in plan.layers)
    index = list(plan.layers).index
    return list(nx.lexicographical_topological_sort(deps, key=index))


def layer_pixels(net: Network, plan: MappingPlan) -> dict[str, int]:
    """Output pixels per image of every stage, before any fused pool (1 for an FC)."""
    return {name: lm.window.out_pixels if lm.window is not None else 1 for name, lm in plan.layers.items()}
