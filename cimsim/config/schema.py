"""The scenario as a tree of frozen dataclasses.

Every field has a default, a unit in its name where it has one, and a docstring
(the string literal right after it), which `scenarios/template.toml` mirrors.
Loading and validation live in `cimsim.config.load`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FabricKind(StrEnum):
    """What carries pixels between cores, decided by `noc.topology` and `chip.clocking`."""

    IDEAL = "ideal"
    """No NoC: fixed delays (`noc.topology = "ideal"`)."""
    LINK_BUDGET = "link_budget"
    """A mesh or prism under `timestep` clocking: per-timestep link budgets."""
    ROUTERS = "routers"
    """A mesh or prism under `elastic` clocking: routers with credits, cycle by cycle."""


AUTO = 0
"""`chip.array_rows` / `array_cols` = "auto" as loaded: sized to the mapping by
`cimsim.mapping.sizing.resolve_array` before the chip is built."""


@dataclass(frozen=True)
class ChipConfig:
    """The core array and what is inside each core."""

    array_rows: int = 8
    """Rows of the core array (cores are placed along a snake over rows x cols); "auto": as
    few as the mapping needs (with both "auto", the most square array of enough cores,
    columns = ceil(sqrt(cores)), rows = ceil(cores / columns))."""
    array_cols: int = 6
    """Columns of the core array; "auto" as for array_rows."""
    crossbar_rows: int = 256
    """Rows (inputs) of each core's crossbar: one weight per device."""
    crossbar_cols: int = 256
    """Columns (outputs) of each core's crossbar."""
    clock_mhz: float = 500.0
    """Clock frequency in MHz; one simulated time unit is one cycle of this clock."""
    cycles_per_timestep: int = 50
    """Cycles in one dataflow timestep (Dazzi: 100 ns at 500 MHz = 50 cycles)."""
    clocking: str = "timestep"
    """"timestep": lock-step, each core computes at most one parallel group per
    timestep and its step must fit in cycles_per_timestep (else it stalls);
    "elastic": free-running, each step takes its own cycles and the timestep emerges."""
    sram_word_bits: int = 128
    """Input SRAM word length in bits."""
    sram_depth_words: int = 512
    """Input SRAM depth in words (128 x 512 = 8 KiB in Dazzi)."""
    sram_ports: int = 1
    """Input SRAM ports: 1 (stores and kernel-row reads share the port, their cycles add)
    or 2 (one write and one read port, they overlap)."""
    mvm_cycles: int = 10
    """Cycles of one crossbar matrix-vector multiplication (all replicas at once)."""
    digital_cycles: int = 4
    """Cycles of the digital processor per output pixel (scale, ReLU, residual/partial add)."""
    digital_ops_per_cycle: int = 16
    """Element-wise operations (compare, add) per cycle of a digital processor running a layer
    of its own: a pool or an add costs ceil(window values / this) cycles per output pixel
    (16: the 4 digital_cycles Dazzi's light processor spends per 56-64-channel pixel)."""
    digital_macs_per_cycle: int = 16
    """8-bit multiply-accumulates per cycle of a digital processor running a depthwise conv
    (mapping.depthwise = "digital") or an fc of its own: ceil(MACs per output / this) +
    digital_cycles per output pixel (16: Ottavi et al. 2021's 8 RISC-V cores with 4-way 8-bit
    SIMD MACs at PULP-NN's ~55 % utilisation, 8 x 4 x 0.55 = 17.6, rounded down)."""
    weight_device: str = "rram"
    """The crossbar's device, for programming weights (`mapping.weights = "reload"`): "rram"
    (write time ~100 ns) or "pcm" (PCRAM, ~50 ns), Meng & Lu 2024 Table 5 (data from its refs
    [29]-[31]); one write pulse programs a whole crossbar row."""
    weight_write_ns_per_row: int = 0
    """Time to program one crossbar row, overriding the device's (0: the device's)."""
    weight_write_bits_per_cycle: int = 256
    """Weight bits a core's programming interface takes per cycle (the row drivers' width: one
    256-column row of 8-bit weights per 8 cycles); a core's programming time is the larger of its
    rows x the row write time and its weight bits / this."""
    partial_sum_timesteps: int = 1
    """Timesteps for a row-split layer's partial sums to reach the merging core's
    digital processor (Dazzi 2.4.4: a split layer behaves as two layers in sequence)."""


@dataclass(frozen=True)
class NocConfig:
    """The network-on-chip between cores."""

    topology: str = "ideal"
    """"ideal": a dedicated point-to-point link per dataflow edge, no contention (Dazzi 3.1.3);
    "mesh": array_rows x array_cols routers, one core each, XY routing; "prism": direct links
    from each core to the next prism_k cores along the snake placement (Dazzi et al. 2019)."""
    ideal_hop_timesteps: int = 0
    """Ideal fabric: timesteps between a pixel's production and its use by the
    consumer. 0: used in the same timestep (Dazzi 3.1.3, "all data delivery occurs
    within one timestep"); 1: registered at the timestep boundary."""
    prism_k: int = 5
    """Prism: each core has direct links to the next prism_k cores along the snake."""
    link_width_bits: int = 64
    """Mesh/prism: bits a link carries per cycle (one flit)."""
    link_cycles: int = 1
    """Mesh/prism: cycles for a flit to cross a link."""
    router_cycles: int = 1
    """Mesh/prism: router pipeline cycles per hop (route, arbitrate, traverse the switch)."""
    buffer_depth_flits: int = 16
    """Mesh/prism: depth of each router input buffer in flits (a whole packet must fit:
    virtual cut-through)."""
    partial_sum_bits: int = 8
    """Bits per channel of a partial sum sent between the cores of a row-split layer (the
    crossbar's ADC output; Dazzi's Eq. 7 budget assumes they are no wider than activations)."""
    header_bits: int = 16
    """Mesh/prism: header bits added to every packet (one pixel: channels x bits + header)."""
    dram_row: int = 0
    """Mesh: row of the edge router the DRAM / host port is attached to."""
    dram_col: int = 0
    """Mesh: column of the edge router the DRAM / host port is attached to."""


@dataclass(frozen=True)
class DramConfig:
    """The DRAM that streams input images in and takes classifier outputs."""

    enabled: bool = False
    """Model the DRAM (False: images appear at the input rate, as in Dazzi)."""
    bandwidth_gbps: float = 12.8
    """Channel bandwidth in GB/s (bytes), shared by image reads and result writes."""
    latency_ns: float = 50.0
    """Latency of a read in ns, before its bytes stream at the channel bandwidth."""
    model: str = "bandwidth"
    """"bandwidth": one channel of bandwidth_gbps and latency_ns, addresses ignored (the first
    model); "banks": channels x banks with row buffers and JEDEC-style timing, where each
    request's latency follows from its address (the keys below; bandwidth_gbps and
    latency_ns are then unused)."""
    preset: str = "ddr3_1600"
    """Banks model: the device whose values fill every key below left at 0: "ddr3_1600"
    (JEDEC DDR3-1600K 11-11-11, a 64-bit channel of 12.8 GB/s), "lpddr4_3200" (one x16
    LPDDR4-3200 channel, 6.4 GB/s), "none" (every key must be set)."""
    channels: int = 1
    """Banks model: independent channels, each with its own data bus and banks (Meng and Lu's
    34 GB/s TPU DRAM is about 2.7 DDR3-1600 channels: 3 give 38.4 GB/s of peak)."""
    banks: int = 0
    """Banks model: banks per channel, each with one row buffer (0: the preset's)."""
    row_bytes: int = 0
    """Banks model: bytes of one row (page) of a bank across the channel's devices (0: the preset's)."""
    data_rate_mtps: int = 0
    """Banks model: data transfers per second on the bus in millions (MT/s; two per DRAM
    clock, tCK = 2000 / data_rate_mtps ns) (0: the preset's)."""
    bus_bits: int = 0
    """Banks model: width of a channel's data bus in bits (0: the preset's)."""
    t_rcd: int = 0
    """Banks model: activate to column command, in DRAM clock cycles tCK (0: the preset's)."""
    t_cl: int = 0
    """Banks model: column command to the first data on the bus (CAS / read latency), in tCK;
    writes use it too (0: the preset's)."""
    t_rp: int = 0
    """Banks model: precharge (closing a row) to the next activate, in tCK (0: the preset's)."""
    t_burst: int = 0
    """Banks model: data-bus cycles of one burst, in tCK (burst length / 2); a burst moves
    2 x t_burst x bus_bits / 8 bytes, the smallest transfer (0: the preset's)."""
    page_policy: str = "open"
    """Banks model: "open" (a row stays open after an access: the next access to it is a row
    hit, to another row a conflict) or "closed" (auto-precharge after every access)."""
    scheduler: str = "frfcfs"
    """Banks model: the order a bank serves its queued requests in: "frfcfs" (first-ready:
    the oldest row hit first, else the oldest) or "fcfs" (arrival order)."""
    capacity_mib: int = 8192
    """DRAM size in MiB; the address regions (images, results, weights, spills) must fit
    (8192: the TPU's 8 GB in Meng and Lu's Table 3)."""


@dataclass(frozen=True)
class InputConfig:
    """How images enter the chip."""

    pixels_per_timestep: int = 1
    """Pixels of the input image streamed into the first layer's core per timestep."""


@dataclass(frozen=True)
class MappingConfig:
    """How layers become cores."""

    sram_method: str = "plip"
    """Input SRAM pixel placement: "iwap", "klip", "plip", or "auto" (IWAP when a
    pixel is smaller than a word, else PLIP, as Dazzi 3.1.2)."""
    fc_on: str = "digital"
    """Where fully connected layers run: "digital" (fused into the digital processor of the
    core producing a 1 x 1 input, after global average pooling: Dazzi's 43-core count; an fc
    that cannot be fused, e.g. after a flatten, on the input or after another fc, runs on the
    digital processor of a core of its own, see chip.digital_macs_per_cycle) or "crossbar"
    (every fc on crossbars of its own)."""
    replica_fit: str = "split"
    """When a layer's kernel replicas do not fit one crossbar: "split" it by rows
    over more cores (Eq. 5), "error", or "assume" they fit (Dazzi 3.1.4's assumption;
    reported as a warning)."""
    depthwise: str = "crossbar"
    """Where depthwise convs (groups = input channels) run: "crossbar" (block-diagonal on
    crossbars, Ottavi et al. 2021: K^2 x C rows, the off-diagonal devices zero) or "digital"
    (on the digital processor of a core of its own, their HYBRID choice; see
    chip.digital_macs_per_cycle)."""
    depthwise_job_channels: int = 0
    """Crossbar depthwise: channels per job, Ottavi's C_job. The C / C_job jobs sit side by side
    in column bands of C_job columns and share K^2 x C_job rows, driven with one job's inputs at a
    time: K^2 x C_job x C devices, and an output pixel takes C / C_job MVMs. 0: one job of all C
    channels (the block-diagonal K^2 C x C matrix)."""
    weights: str = "stationary"
    """"stationary": every weight on the chip at once (a network needing more cores is refused);
    "reload": a network needing more cores than the array is cut into segments that fit
    (`cimsim.mapping.segments`), run one after another, each programmed from DRAM before it runs
    and the whole batch passing through it (needs dram.enabled)."""
    residual_source: str = "read_res"
    """Where a residual add gets its residual pixels: "read_res" (Dazzi Algorithm 1 lines 21-22:
    the block's first core, whose input memory holds the block input, reads each pixel from its
    own input memory and sends it to the adding core, which stores nothing; the first core keeps
    a slot until its pixel is sent) or "adder_copy" (the producer of the block input sends its
    pixels to the adding core, which writes them into the free part of its own input memory and
    reads them back for the add). A residual that no first core holds (a resampling layer's
    output) or that would outrun the first core's H x F buffer is kept by the adding core in
    both."""
    max_cores: int = 0
    """Core budget of the balanced dataflow (`dataflow.mode = "balanced"`): the pipeline
    balancer picks the layer rates of the highest throughput within this many cores; 0: the
    array's chip.array_rows x chip.array_cols."""


@dataclass(frozen=True)
class DataflowConfig:
    """Pixels per timestep computed by each layer."""

    mode: str = "regular"
    """"regular": every core computes one pixel per timestep; "speedup": rates from
    speedup_rates by output channels (Dazzi 3.1.4), layer_rates override both; "balanced":
    the pipeline balancer picks every rate and the input's pixels per timestep for the
    highest throughput within mapping.max_cores (layer_rates entries stay as given)."""
    speedup_rates: dict[str, int] = field(default_factory=lambda: {"16": 4, "28": 2, "56": 1})
    """Speed-up mode: output channels -> pixels per timestep (kernel replicas)."""
    layer_rates: dict[str, int] = field(default_factory=dict)
    """Per-layer override: layer name -> pixels per timestep."""


@dataclass(frozen=True)
class FunctionalConfig:
    """Real arithmetic: int8 weights and images through bit-sliced crossbars (RAELLA)."""

    enabled: bool = False
    """Carry real pixel values through the chip and compare the outputs with a numpy
    reference forward pass (False: timing only)."""
    weights: str = ""
    """.npz of int8 weights (<layer>.weights/.bias/.multiplier/.shift), relative to the
    scenario file; empty: generated from run.seed with realistic per-channel distributions."""
    images: str = ""
    """.npz with an int8 array `images` (batch, H, W, C); empty: generated from run.seed."""
    labels: str = ""
    """.npz with an int array `labels` (one class per image), relative to the scenario file: the
    summary's functional.accuracy (chip, int8 reference, float) is then reported; empty: the
    `labels` of the images .npz if it holds them, else no accuracy."""
    adc_bits: int = 7
    """Bits of each column's signed ADC (7: [-64, 63], RAELLA)."""
    policy: str = "off"
    """Input slicing: "off" (8 one-bit slices), "always" (RAELLA: 4b, 2b, 2b speculative
    slices, then 1-bit recovery slices always run: 3 + 8 = 11 crossbar cycles), "on_failure"
    (recovery cycles only when some column failed: 3 or 11, data-dependent)."""
    weight_encoding: str = "center_offset"
    """Signed weights on devices: "center_offset" (RAELLA 4.1), "differential" (a pair of
    devices per weight, zero center) or "offset" (ISAAC's unsigned weights, RAELLA 7.1: w + 128
    on the devices, 128 x the input sum subtracted digitally; fixed slicing 2b-2b-2b-2b)."""
    mode: str = "batched"
    """How values are computed: "batched" (each image layer by layer in batched numpy when its
    first group fires; the cores then check every window was produced before they read it and
    write the values group by group) or "per_group" (every group computed when it fires, from
    the values the simulated producers wrote; slower, same results)."""
    crossbar_cycle_cycles: int = 1
    """Clock cycles per crossbar cycle (one input slice); an MVM then takes
    crossbar cycles x this, replacing chip.mvm_cycles (RAELLA: 100 ns = 50 cycles at 500 MHz)."""
    input_encoding: str = "twos_complement"
    """Signed inputs: "twos_complement" (a signed sign slice, one pass) or "split_sign" (RAELLA
    6.1: a layer whose input can be negative runs a positive and a negative pass, doubling its
    crossbar cycles and ADC converts; post-ReLU inputs are unchanged)."""
    weight_slicing: str = "fixed"
    """Weight slices: "fixed" (4b, 2b, 2b for every layer; 2b x 4 with weight_encoding "offset") or
    "adaptive" (RAELLA 4.2: per layer, the fewest slices of at most 4 bits whose error on ten test
    images is below error_budget, on the noisy crossbar when noise.column_sigma > 0; the last
    layer 8 x 1b)."""
    error_budget: float = 0.09
    """Adaptive slicing's budget: mean absolute error of a layer's nonzero int8 outputs
    (RAELLA 4.2.1, 0.09)."""
    crossbar: str = "raella"
    """The crossbar's arithmetic: "raella" (bit-sliced RAELLA crossbar, the fields above) or
    "pcm_pwm" (Dazzi 2021 3.2: differential PCM pairs, the 8-bit signed input applied as one
    pulse-width-modulated read pulse, one analog pass and one adc_bits conversion per column;
    `cimsim.functional.pcm_pwm`)."""
    pwm_steps_per_cycle: int = 4
    """pcm_pwm: PWM time steps per clock cycle; the read pulse of an 8-bit signed input lasts
    up to 2**7 = 128 steps, so an MVM takes ceil(128 / this) clock cycles (4: 32 cycles,
    0.5 ns steps at 500 MHz; an assumption, Dazzi gives no PWM clock), replacing chip.mvm_cycles."""


@dataclass(frozen=True)
class NoiseConfig:
    """Analog non-idealities of the functional crossbars, all drawn from run.seed (default: none)."""

    column_sigma: float = 0.0
    """RAELLA 7.3's noise level E: every analog column sum gets Gaussian noise of standard
    deviation E * sqrt(N+ + N-) (N+, N-: the sums of its positive and negative products) before
    its ADC (a fraction: 0.12 = the thesis's 12 %; 0: off)."""
    pcm: bool = False
    """pcm_pwm crossbar: apply the PCM device model below (programming noise, drift, read noise)."""
    pcm_program_sigma: float = 0.0422
    """Programming noise, standard deviation at G_max as a fraction of G_max; smaller
    conductances scale by the polynomial fit 0.26348 + 1.9650 g - 1.1731 g**2 (uS at
    G_max = 25 uS, g = G / G_max; 1.0552 uS at g = 1) of Nandakumar et al. 2019 / Joshi et al.
    2020 (as in IBM aihwkit's PCMLikeNoiseModel; external)."""
    pcm_read_sigma: float = 0.0088
    """Read (1/f) noise coefficient Q_s at G_max: relative standard deviation
    min(Q_s / g**0.65, 0.2) * sqrt(ln((t + t_read) / (2 t_read))), t_read = 250 ns, t = time
    since programming + 20 s (Joshi et al. 2020 / aihwkit; external)."""
    pcm_drift_nu: float = 0.05
    """Mean drift exponent nu: G(t) = G(t0) * (t / t0)**-nu, t0 = 20 s (Joshi et al. 2020 /
    aihwkit: mean nu >= 0.049; external)."""
    pcm_drift_nu_sigma: float = 0.008
    """Device-to-device standard deviation of nu (aihwkit's fit at high conductance; external)."""
    time_since_program_s: float = 3600.0
    """Seconds between programming and inference (drift and accumulated read noise)."""
    pcm_drift_compensation: bool = True
    """Global drift compensation per crossbar (Joshi et al. 2020): outputs divided by the
    array's mean conductance ratio (drifted / programmed)."""


@dataclass(frozen=True)
class EnergyConfig:
    """Energy, power and area from action counts x an energy table."""

    enabled: bool = False
    """Charge the run's action counts with `table` and report energy, power and area."""
    table: str = ""
    """The energy table: a builtin name ("dazzi2021_14nm", "raella_like") or the path of a
    table TOML relative to the scenario file; required when enabled."""


@dataclass(frozen=True)
class RunConfig:
    """What to simulate and report."""

    batch: int = 1
    """Images streamed back to back."""
    seed: int = 0
    """Seed of the run's single numpy Generator."""
    max_timesteps: int = 10_000_000
    """Hard limit on simulated timesteps; a run reaching it stops with exit code 3."""
    watchdog_timesteps: int = 20_000
    """A run in which no core computes and no pixel enters for this many timesteps is stopped
    (exit code 3) with a report of what every blocked core and router waits for."""
    check_invariants: bool = True
    """Check the dataflow invariants while running (windows present before a core computes,
    SRAM and buffers within capacity, every pixel delivered exactly once); a violation stops
    the run (exit code 3). They cost a few comparisons per computed group."""


@dataclass(frozen=True)
class Scenario:
    """One experiment: a model on a chip with a dataflow."""

    model: str
    """Path of the model TOML, relative to the scenario file (or of an .onnx model, imported
    when loaded; needs cimsim[onnx])."""
    name: str = ""
    """Name shown in reports (defaults to the scenario file's stem)."""
    description: str = ""
    """Free text."""
    chip: ChipConfig = field(default_factory=ChipConfig)
    noc: NocConfig = field(default_factory=NocConfig)
    input: InputConfig = field(default_factory=InputConfig)
    dram: DramConfig = field(default_factory=DramConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)
    dataflow: DataflowConfig = field(default_factory=DataflowConfig)
    functional: FunctionalConfig = field(default_factory=FunctionalConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)
    run: RunConfig = field(default_factory=RunConfig)
    source: str = ""
    """Path of the file this scenario was loaded from (set by the loader)."""
    overrides: tuple[str, ...] = ()
    """The `KEY=VALUE` overrides applied on top of the file, in order (set by the loader)."""

    @property
    def fabric(self) -> FabricKind:
        """The fabric this scenario's NoC and clocking settings select."""
        if self.noc.topology == "ideal":
            return FabricKind.IDEAL
        return FabricKind.LINK_BUDGET if self.chip.clocking == "timestep" else FabricKind.ROUTERS
