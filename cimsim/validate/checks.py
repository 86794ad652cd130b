"""The published numbers `cimsim validate` compares (`CHECKS`): per number its source, the paper's value,
the measurement that gives cimsim's (`cimsim.validate.measure.MEASUREMENTS`), the tolerance and the
modelling reason for any difference. Entries with `tolerance = None` are listed and never fail: a published
number the simulator does not model (no `value`), one of a different network, or one it misses for a stated
modelling reason (its `value` is measured and shown). Numbers that only a bug could change (cycles per MVM
of a slicing, exactness) are the tests' job (tests/test_validate.py)."""

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

CHECKS: tuple[Check, ...] = (
    Check("Dazzi 2021, 3.1.1", "IMC cores, ResNet-32", 43, "cores", "dazzi_regular", "cores", 1, (
        "Table 2's layer 22 has C_in = 56 (504 rows, split over two cores); its real input has 28 channels, 252 "
        "rows, one core: 42 (README 'Core count')"), absolute=True),
    Check("Dazzi 2021, 3.1.3", "latency, regular dataflow, one image", 1628, "timesteps", "dazzi_regular",
          "latency_timesteps", 0.005, _DAZZI_LAT),
    Check("Dazzi 2021, 3.1.3", "throughput, regular, batch 100", 9650, "images/s", "dazzi_regular",
          "throughput_batch100", 0.02, (
              "simulated at batch 100: no inter-image gap (Algorithm 2's circular buffer continues across images), an "
              "image every 1,024 timesteps, the input stream's rate; the paper's 9,650 under the same formula "
              "(batch / ((latency + 99 intervals) x 100 ns)) implies an interval of 1,030.3 (README)")),
    Check("Dazzi 2021, 3.1.4", "latency, speed-up dataflow, one image", 526, "timesteps", "dazzi_speedup",
          "latency_timesteps", 0.005, (
              "same timing rules; replicas assumed to fit as the paper does (mapping.replica_fit = assume); the "
              "residual pixels read from the block's first core's input memory (read_res, Algorithm 1 lines 21-22): "
              "the stage-1 first cores' steps take at most 50 cycles, within the timestep (README 'Reproducing "
              "Dazzi')")),
    Check("Dazzi 2021, 3.1.4", "speed-up of the latency", 3.1, "x", "dazzi_factor", "speedup", 0.02,
          "the ratio of the two one-image latencies above (1,630 / 526)"),
    Check("Dazzi 2021, 3.1.4", "throughput, speed-up, batch 100", 38600, "images/s", "dazzi_speedup",
          "throughput_batch100", 0.005, (
              "simulated at batch 100: an image every 256 timesteps, the input stream's rate (4 pixels per timestep); "
              "the paper's 38,600 under the same formula implies an interval of 256.4 (README)")),
    Check("Dazzi 2021, 3.1.3 / 3.2", "latency with the PCM/PWM crossbar, shipped PWM rate", 1628, "timesteps", "pcm",
          "latency_timesteps", 0.005, (
              "the shipped dazzi2021_resnet32_pcm.toml: 5 PWM steps per cycle, the fewest with which every step fits "
              "the 50-cycle timestep (the paper's pipeline never stalls: a 26-cycle MVM + at most 22 SRAM and digital "
              "cycles, README 'Analog noise'), so the latency is the ideal fabric's 1,630")),
    Check("Dazzi 2021, 3.2 / Table 4", "energy efficiency per array, at peak", 10.5, "TOPS/W", "dazzi_array",
          "tops_per_w", None, (
              "A MISS, listed: cimsim charges the blocks a source gives (Table 4's DFC+SRAM 10.55 mW, the ADC from "
              "Kull 2017 11.8 mW, the PCM read 4.6 mW: 27 mW per array at one MVM per 100 ns); the paper's 10.5 "
              "TOPS/W at its 1.008 TOPS is 96 mW per array, and the rest, the PWM, the digital processor and the "
              "column voltage regulators, has no published value. The sources' spread moves cimsim's figure about "
              "10 % either way (the ADC at the survey model's 3.85 pJ instead of Kull's measured 4.61 pJ, the PCM "
              "read for a 128-ns PWM pulse instead of 70 ns), not the 4.6x (README 'Energy, power and area')")),
    Check("RAELLA thesis, 4.3.2", "speculation success", 0.98, "fraction", "raella", "success", 0.01, (
        "ResNet-32 / CIFAR-10 on 256 x 256 crossbars with Center+Offset weights; the thesis's ~98 % is over its "
        "ImageNet baselines")),
    Check("RAELLA thesis, 4.3.2", "ADC converts saved against recovery-only", 0.60, "fraction", "raella",
          "converts_saved", 0.05, ("'~60 %'; with 3 speculative converts the saving cannot exceed 62.5 %, recovery "
                                   "converts take the rest")),
    Check("RAELLA thesis, 4.3.2", "recovery converts per column", 0.18, "converts", "raella", "recovery_converts",
          0.06, (
              "what the thesis's own figures imply: speculation 'fails approximately 2 % of the time, requiring 2-4 "
              "recovery converts depending on which speculative slice failed', a failure being one slice of one "
              "column (the unit of the ~98 % success above), so 3 slices x 2 % x 2-4 = 0.12-0.24 per column; its "
              "'+ 0.3 recovery converts' disagrees with that and with its ~60 % saving (which implies 0.2)"),
          absolute=True),
    Check("RAELLA thesis, 6.1", "throughput of always against off, source not the bottleneck", 8 / 11 - 1,
          "fraction", "raella_fast", "always_vs_off", 0.02, (
              "the thesis's 8 / 11 cycles per psum set; the pipeline's rate also carries the SRAM and digital "
              "cycles around each MVM and the slowest of the chained layers' MVMs (README RAELLA)"), absolute=True),
    Check("RAELLA thesis, 7.2", "ADC converts per MAC, speculation against recovery-only", 0.018 / 0.047 - 1,
          "fraction", "raella_fast", "per_mac_saving", 0.05, (
              "0.047 -> 0.018 converts per MAC; per column the saving cannot exceed 62.5 % (3 of 8 converts), "
              "recovery converts take the rest; split-sign conv1 converts twice in both"), absolute=True),
    Check("Ottavi 2021, IV", "device overhead / ((C_job - 1) x depthwise share), jobs of 8 channels", 1, "x",
          "ottavi", "overhead_8_exact", 1e-6, (
              "the exact form of Ottavi's N_xbar = K^2 C C_job per depthwise layer: the devices beyond one per weight "
              "are (C_job - 1) x the depthwise weights; this CIFAR-10 MobileNetV2's depthwise share is 2.9 % "
              "(Ottavi's 25 % for IMA8 implies 3.6 % for their ImageNet network, listed below)")),
    Check("Ottavi 2021, IV", "device overhead / ((C_job - 1) x depthwise share), jobs of 16 channels", 1, "x",
          "ottavi", "overhead_16_exact", 1e-6, "as for jobs of 8 channels"),
    Check("Ottavi 2021, IV", "devices / (weights + block-diagonal zeros), one job per depthwise layer", 1, "x",
          "ottavi", "one_job_exact", 1e-6, (
              "one job: each depthwise layer's block-diagonal K^2 C x C matrix, every other weight one device")),
    Check("Ottavi 2021, IV (IMA8)", "device overhead, depthwise jobs of 8 channels", 0.25, "fraction", "ottavi",
          "overhead_8", None, "Ottavi's ImageNet MobileNetV2 (3.6 % depthwise weights); this CIFAR-10 one has 2.9 %"),
    Check("Ottavi 2021, IV (IMA16)", "device overhead, depthwise jobs of 16 channels", 0.54, "fraction", "ottavi",
          "overhead_16", None, "as for IMA8"),
    Check("Ottavi 2021, IV", "devices / weights, one job per depthwise layer", 23, "x", "ottavi", "one_job_ratio",
          None, "Ottavi's ImageNet network; the channel mix of this CIFAR-10 one differs"),
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
