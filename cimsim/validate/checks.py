"""The published numbers `cimsim validate` compares (`CHECKS`): per number its source, the paper's value,
the measurement that gives cimsim's (`cimsim.validate.measure.MEASUREMENTS`), the tolerance and the
modelling reason for any difference. Entries with `tolerance = None` are listed and never fail: a published
number the simulator does not model (no `value`), or one it misses for a stated modelling reason (its
`value` is measured and shown)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """One published number and how cimsim's is measured."""

    source: str
    """Paper, section / table / figure."""
    quantity: str
    paper: float
    unit: str
    measurement: str
    """Key into the measurements (`MEASUREMENTS`)."""
    value: str
    """Key of the value in that measurement's result."""
    tolerance: float | None
    """Relative (fraction of the paper's value), or absolute when `absolute`; None: not compared."""
    reason: str
    """Why the tolerance is what it is, the modelling reason for any difference."""
    absolute: bool = False


_DAZZI_LAT = ("Algorithm 1-2 timing on the ideal fabric; 2 timesteps more than the paper's, not explained by a rule "
              "the paper states (README 'Reproducing Dazzi et al. 2021')")
_DAZZI_TP = ("no inter-image gap: Algorithm 2's circular buffer continues across images, so images follow every "
             "1,024 / 256 timesteps; the paper's figure implies 1,036 / 258 (README)")

CHECKS: tuple[Check, ...] = (
    Check("Dazzi 2021, 3.1.1", "IMC cores, ResNet-32", 43, "cores", "dazzi_regular", "cores", 1, (
        "Table 2's layer 22 has C_in = 56 (504 rows, split over two cores); its real input has 28 channels, 252 "
        "rows, one core: 42 (README 'Core count')"), absolute=True),
    Check("Dazzi 2021, 3.1.3", "latency, regular dataflow", 1628, "timesteps", "dazzi_regular", "latency_timesteps",
          0.005, _DAZZI_LAT),
    Check("Dazzi 2021, 3.1.3", "throughput, regular, batch 100", 9650, "images/s", "dazzi_regular",
          "throughput_batch100", 0.02, _DAZZI_TP),
    Check("Dazzi 2021, 3.1.4", "latency, speed-up dataflow", 526, "timesteps", "dazzi_speedup", "latency_timesteps",
          0.03, ("same timing rules; replicas assumed to fit as the paper does (mapping.replica_fit = assume); the "
                 "adding cores keep their own copy of the residual pixels (the paper re-reads the block's first core's "
                 "input memory, read_res), and that copy's SRAM writes and read-backs (4 + 4 words per step) push "
                 "steps of the five stage-1 add cores past the 50-cycle timestep: their first step of an image (54 cycles: 531 timesteps "
                 "alone), and, with a next image streaming in, the steps of the last column (51-58 cycles): 541 at "
                 "batch 2 (README 'Differences from the paper's algorithms')")),
    Check("Dazzi 2021, 3.1.4", "speed-up of the latency", 3.1, "x", "dazzi_factor", "speedup", 0.03,
          "the ratio of the two latencies above: the speed-up latency's residual SRAM cycles (above) lower it"),
    Check("Dazzi 2021, 3.1.4", "throughput, speed-up, batch 100", 38600, "images/s", "dazzi_speedup",
          "throughput_batch100", 0.02, (
              "no inter-image gap, as in the regular dataflow, but the stage-1 add cores, without slack at 4 "
              "outputs per timestep, lose a few timesteps per image to the residual pixels' SRAM cycles: an "
              "image every ~261 timesteps instead of 256; the paper's figure implies 259 (README)")),
    Check("Dazzi 2021, 3.1.3 / 3.2", "latency with the PCM/PWM crossbar, 13-cycle MVM", 1628, "timesteps", "pcm",
          "latency_timesteps", 0.005, (
              "timing is the timestep's: 128 PWM steps at 10 per cycle (13 cycles) plus SRAM and digital cycles fit "
              "the 50-cycle timestep, so the latency is the ideal fabric's 1,630; the shipped 4 steps per cycle (a "
              "32-cycle MVM, an assumption: the paper gives no PWM clock) do not fit (README 'Analog noise')")),
    Check("Dazzi 2021, 3.2", "PCM/PWM outputs off the int8 reference, noise off, 24-bit ADC", 0, "values", "pcm",
          "mismatching", 0, (
              "one analog pass of the 8-bit PWM input over differential pairs; 24 bits resolve every 256-row column "
              "sum (LSB = 1 product), so every MVM is exact"), absolute=True),
    Check("Dazzi 2021, 3.2 / Table 4", "energy efficiency per array", 10.5, "TOPS/W", "none", "", None,
          ("not reproduced: the paper's figure is per array at peak and includes ADC, PWM and digital energy, which "
           "the shipped table lacks (README 'Energy, power and area')")),
    Check("RAELLA thesis, 4.3.2", "speculation success", 0.98, "fraction", "raella", "success", 0.01, (
        "ResNet-32 / CIFAR-10 on 256 x 256 crossbars with Center+Offset weights; the thesis's ~98 % is over its "
        "ImageNet baselines")),
    Check("RAELLA thesis, 4.3.2", "crossbar cycles per MVM, speculating", 11, "cycles", "raella", "cycles_always", 0,
          "3 speculative (4b, 2b, 2b) + 8 one-bit recovery slices: the same slicing", absolute=True),
    Check("RAELLA thesis, 4.3.2", "crossbar cycles per MVM, recovery only", 8, "cycles", "raella",
          "cycles_recovery_only", 0, "eight 1-bit input slices", absolute=True),
    Check("RAELLA thesis, 4.3.2", "ADC converts saved against recovery-only", 0.60, "fraction", "raella",
          "converts_saved", 0.05, ("'~60 %'; with 3 speculative converts the saving cannot exceed 62.5 %, recovery "
                                   "converts take the rest")),
    Check("RAELLA thesis, 4.3.2", "speculative converts per column", 3, "converts", "raella", "speculative_converts",
          0, "every column converts each of the 3 speculative slices", absolute=True),
    Check("RAELLA thesis, 4.3.2", "recovery converts per column", 0.3, "converts", "raella", "recovery_converts", 0.2,
          ("most failures here are in the 2-bit slices (2 recovery converts each, 4 for the 4-bit one), and "
           "ResNet-32's crossbars hold fewer rows than RAELLA's ImageNet layers: fewer failures (README RAELLA)"),
          absolute=True),
    Check("RAELLA thesis, 6.1", "crossbar cycles of the signed layer, split-sign / two's complement, policy off", 2,
          "x", "raella_fast", "conv1_cycles_ratio_off", 0, (
              "'Latency is doubled for signed inputs': conv1, the one layer whose input (the image) can be negative, "
              "runs a positive and a negative pass of every MVM (16 cycles instead of 8); the post-ReLU layers keep "
              "one pass"), absolute=True),
    Check("RAELLA thesis, 6.1", "crossbar cycles per MVM of the signed layer, speculating", 22, "cycles",
          "raella_fast", "conv1_cycles_split_always", 0, "two passes of 3 speculative + 8 recovery slices (11 x 2)",
          absolute=True),
    Check("RAELLA thesis, 6.1", "throughput of always against off, source not the bottleneck", 8 / 11 - 1,
          "fraction", "raella_fast", "always_vs_off", 0.02, (
              "the thesis's 8 / 11 cycles per psum set; the pipeline's rate also carries the SRAM and digital "
              "cycles around each MVM and the slowest of the chained layers' MVMs (README RAELLA)"), absolute=True),
    Check("RAELLA thesis, 7.2", "ADC converts per MAC, speculation against recovery-only", 0.018 / 0.047 - 1,
          "fraction", "raella_fast", "per_mac_saving", 0.05, (
              "0.047 -> 0.018 converts per MAC; per column the saving cannot exceed 62.5 % (3 of 8 converts), "
              "recovery converts take the rest; split-sign conv1 converts twice in both"), absolute=True),
    Check("issue 16 (int8 exactness)", "digits CNN top-1, chip minus int8 reference, noise off, 9-bit ADCs", 0,
          "points", "digits", "chip_minus_int8", 0, (
              "no column saturates a 9-bit ADC on this network (0 saturations), so every logit is the reference's and "
              "so is every top-1; accuracy against noise and ADC bits is the digits CNN's own table"), absolute=True),
    Check("Ottavi 2021, IV (IMA8)", "device overhead, depthwise jobs of 8 channels", 0.25, "fraction", "ottavi",
          "overhead_8", 0.3, ("N_xbar = K^2 C C_job: the overhead is the depthwise share x (C_job - 1); 2.9 % of "
                              "this CIFAR-10 MobileNetV2's weights are depthwise against Ottavi's ~4 % (ImageNet), "
                              "27 % less: hence 30 %")),
    Check("Ottavi 2021, IV (IMA16)", "device overhead, depthwise jobs of 16 channels", 0.54, "fraction", "ottavi",
          "overhead_16", 0.3, "as for IMA8: the depthwise share, 2.9 % here against ~4 %"),
    Check("Ottavi 2021, IV", "devices / weights, one job per depthwise layer", 23, "x", "ottavi", "one_job_ratio",
          0.3, "the block-diagonal K^2 C^2 of every depthwise layer; the CIFAR-10 network's channel mix differs"),
    Check("Meng & Lu 2024, Fig. 6", "TPU-like reloading MLP, batch 1, a tenth of the stationary chip's crossbars",
          0.068, "TOPS", "meng_lu", "tops_batch1", None, (
              "a miss, listed: the array follows a rule stated before the result, a tenth of the 298 cores the "
              "stationary MLP needs (6 x 5, the README's roofline table's), not one picked to land on 0.068; the "
              "paper's 0.068 is the roofline (34 GB/s x 2 ops per byte at 1 MAC per byte: 5,744 timesteps of weight "
              "reads), which has no programming time; cimsim writes each segment's crossbars after their bytes "
              "arrive, and in each of the 14 segments the last-fed core's 256 row writes at 100 ns are exposed: "
              "5,744 + 14 x 256 = 9,328 timesteps of the 9,344 simulated, 62 % of the roofline (on 110 cores, 3 "
              "segments, 0.060) (README 'Networks larger than the chip')")),
    Check("Meng & Lu 2024, Fig. 6", "FWS-CIM MLP at batch 1, at the chip's 92 TOPS peak", 91.6, "TOPS",
          "meng_lu_fws_mlp", "tops_at_peak", 0.005, (
              "FWS-CIM's TOPS are its utilisation x its 92 TOPS peak; cimsim's: MACs per image / (image interval x "
              "mapped weights) x 92, on a chip sized for the mapping (its 100 ns MVM is Dazzi's, not Meng & Lu's). "
              "An fc takes a whole vector per timestep, so the stationary MLP takes an image per timestep with every "
              "weight busy: 100 %, 92 TOPS. The paper's 91.6 is 99.6 % of its peak (55.9 M weights in its 56 M of "
              "RRAM, the rest unstated): the 0.5 % is that loss cimsim's chip, sized to the mapping, does not have")),
    Check("Meng & Lu 2024, Table 4", "FWS-CIM MLP mapped weights", 55.9e6, "weights", "meng_lu_fws_mlp",
          "mapped_weights", None, (
              "listed: the paper maps 'three copies of all weights'; cimsim maps one (19.5 M): one copy already "
              "takes an image per timestep with every weight busy, and more copies of a 1 x 1 network can only "
              "be further pipelines taking images in turn (a rate above 1 needs more than one output pixel per "
              "image), which scale throughput and chip alike and leave the TOPS at the peak unchanged")),
    Check("Meng & Lu 2024, Fig. 6", "FWS-CIM CNN at batch 1, at the 92 TOPS peak, balanced within 55.8 M weights",
          83, "TOPS", "meng_lu_fws_cnn", "tops_at_peak", None, (
              "a miss, listed: the balancer within the paper's 852 cores (55.8 M weights) uses 211 (conv1 and conv2 "
              "at 4 pixels per timestep), an image every ~5,980 timesteps (5,776 predicted: pool1, a maxpool on "
              "a digital core of its own, emits its 5,776 pixels one per timestep, and no rate above 1 exists for "
              "a digital layer); its 11.9 M mapped weights are ~5 % busy. The paper's copies presume every stage, "
              "pooling included, speeds up with its copies (README 'Networks larger than the chip')")),
    Check("Meng & Lu 2024, Fig. 6", "FWS-CIM CNN at batch 1, at the 92 TOPS peak, the paper's copies as replicas, "
          "at most", 83, "TOPS", "meng_lu_copies", "tops_at_peak_bound", None, (
              "a miss, listed, by a bound (the run, 12,460 cores, did not finish in 15 minutes): however fast the "
              "replicated convs, pool1, a maxpool on a digital core of its own with no replicas, emits its 5,776 "
              "pixels one per timestep (as simulated in the balanced run), so the 34.6 M mapped weights give at most "
              "1.6 % utilisation. cimsim's copies are Dazzi's kernel replicas, which share their layer's input SRAM "
              "and digital processor: the mapper's step model gives conv2's 192-replica step 77 timesteps, an image "
              "per 11,704 (0.75 TOPS at the peak), an over-estimate (README 'Networks larger than the chip')")),
    Check("Meng & Lu 2024, Table 4", "FWS-CIM CNN mapped weights, the paper's copies", 55.8e6, "weights",
          "meng_lu_copies", "mapped_weights", None, (
              "listed: the footnote's copies of conv1-conv11 (192/192/48/48/12/12/3/3/1/1/1; conv12 also 1) x "
              "this pseudo-CNN's layers: 34.6 M; the layer list is the zoo's construction (the paper gives totals "
              "only) and keeps 10.4 M of its 11.8 M weights in the 1-copy layers conv9-conv12 and fc1, where the "
              "paper's 55.8 M / 11.7 M implies more in the copied ones. As replicas they take 687 M devices")),
)


__all__ = ["CHECKS", "Check"]
