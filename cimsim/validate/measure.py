"""What `cimsim validate` measures: runs of the shipped scenarios (each run once per process, however
many checks and tables read it) and the numbers its checks compare, by measurement key."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
SCENARIOS = ROOT / "scenarios"

TIMESTEP_S = 100e-9
"""Dazzi's timestep (the scenarios': 50 cycles at 500 MHz)."""

FAST_BATCH = 3
"""Batch of the RAELLA runs: the `_fast` scenarios' own (the image interval is steady from the second
image on), and three images' counters."""


@functools.cache
def run(scenario: str, *overrides: str) -> dict[str, Any]:
    """The summary of `scenarios/<scenario>` with `--set` overrides (run once per process; not to be mutated)."""
    from cimsim.config import load_scenario
    from cimsim.runner import run as run_scenario

    return run_scenario(load_scenario(SCENARIOS / scenario, list(overrides))).summary


def throughput_at(summary: dict[str, Any], batch: int) -> float:
    """Images/s of a `batch`-image run from a shorter one: the pipeline's latency plus (batch - 1)
    image intervals (a steady interval from the second image on: the batch-3 golden files show it)."""
    span = summary["latency_timesteps"] + (batch - 1) * summary["image_interval_timesteps"]
    return batch / (span * summary["timestep_ns"] * 1e-9)


def steady_throughput(summary: dict[str, Any]) -> float:
    """Images/s in steady state: one image per mean image interval (needs a batch of 2 or more)."""
    return 1 / (summary["image_interval_timesteps"] * summary["timestep_ns"] * 1e-9)


@functools.cache
def layer_macs_of(scenario: str) -> dict[str, int]:
    from cimsim.config import load_scenario
    from cimsim.functional.options import layer_macs
    from cimsim.network import load_model

    net = load_model(load_scenario(SCENARIOS / scenario).model)
    return {layer.name: layer_macs(layer) for layer in net.layers if layer.kind.value in ("conv", "fc")}


def converts_per_mac(scenario: str, summary: dict[str, Any]) -> float:
    """ADC converts per multiply-accumulate of the crossbar layers (the summary's own figure where it
    reports one: with split-sign inputs or adaptive slicing)."""
    f = summary["functional"]
    macs = sum(layer_macs_of(scenario)[name] for name in f["layers"]) * f["images_checked"]
    if "macs" in f:
        assert f["macs"] == macs, (f["macs"], macs)
    return f["totals"]["adc_converts"] / macs


def crossbar_cycles(summary: dict[str, Any], layer: str) -> int:
    """Input-slice crossbar cycles of one layer over the run (both passes of its split-sign MVMs)."""
    c = summary["functional"]["layers"][layer]
    return c["speculative_slices"] + c["recovery_slices"]


def cycles_per_mvm(summary: dict[str, Any], layer: str) -> float:
    """Crossbar cycles per MVM of one layer: the counters count each pass of a split-sign MVM as an MVM."""
    passes = 2 if layer in summary["functional"].get("split_sign_layers", ()) else 1
    return crossbar_cycles(summary, layer) / summary["functional"]["layers"][layer]["mvms"] * passes


def paper_interval(latency: float, images_per_s: float, batch: int = 100) -> float:
    """The image interval (timesteps) a paper's batch throughput implies under the same formula as
    `throughput_at`: batch / ((latency + (batch - 1) x interval) x 100 ns)."""
    return (batch / (images_per_s * TIMESTEP_S) - latency) / (batch - 1)


def _dazzi(scenario: str) -> dict[str, float]:
    """The latency of one classification (batch 1) and the throughput of a batch of 100, both simulated."""
    one, hundred = run(scenario, "run.batch=1"), run(scenario, "run.batch=100")
    return {"cores": one["cores"], "latency_timesteps": one["latency_timesteps"],
            "throughput_batch100": hundred["throughput_images_per_s"],
            "image_interval": hundred["image_interval_timesteps"],
            "batch100_latency": hundred["latency_timesteps"]}


def _dazzi_speedup_factor() -> dict[str, float]:
    reg = run("dazzi2021_resnet32.toml", "run.batch=1")["latency_timesteps"]
    fast = run("dazzi2021_resnet32_speedup.toml", "run.batch=1")["latency_timesteps"]
    return {"speedup": reg / fast}


def _raella() -> dict[str, float]:
    f = run("dazzi2021_resnet32_speculation.toml", "run.batch=1")["functional"]
    t, cols = f["totals"], f["totals"]["column_mvms"]
    return {
        "success": f["speculation_success"],
        "cycles_always": (t["speculative_slices"] + t["recovery_slices"]) / t["mvms"],
        "cycles_recovery_only": t["recovery_slices"] / t["mvms"],
        "converts_saved": 1 - t["adc_converts"] / (8 * cols),
        "speculative_converts": t["speculative_converts"] / cols,
        "recovery_converts": t["recovery_converts"] / cols,
    }


UNREPLICATED = ("dataflow.layer_rates={}", "input.pixels_per_timestep=1")
"""Overrides that take conv1's two kernel replicas (and the 2-pixel source they need) out of a `_fast`
scenario, so the split-sign conv1 is the pipeline's bottleneck."""
TWOS = "functional.input_encoding=twos_complement"
BATCH = f"run.batch={FAST_BATCH}"


def fast_run(policy: str, *overrides: str) -> dict[str, Any]:
    """A `raella_resnet32_<policy>_fast.toml` run at `FAST_BATCH`."""
    return run(f"raella_resnet32_{policy}_fast.toml", *overrides, BATCH)


def _raella_fast() -> dict[str, float]:
    runs = {p: fast_run(p) for p in ("off", "always", "on_failure")}
    off, always, on_failure = (steady_throughput(s) for s in runs.values())
    per_mac = {p: converts_per_mac(f"raella_resnet32_{p}_fast.toml", s) for p, s in runs.items()}
    ratio = crossbar_cycles(fast_run("off", *UNREPLICATED), "conv1") / crossbar_cycles(
        fast_run("off", *UNREPLICATED, TWOS), "conv1")
    return {"always_vs_off": always / off - 1, "on_failure_vs_off": on_failure / off - 1,
            "per_mac_saving": per_mac["always"] / per_mac["off"] - 1,
            "conv1_cycles_ratio_off": ratio,
            "conv1_cycles_split_always": cycles_per_mvm(runs["always"], "conv1")}


def _pcm(scenario: str) -> dict[str, float]:
    """A PCM/PWM scenario's latency and outputs off the int8 reference."""
    s = run(scenario)
    return {"latency_timesteps": s["latency_timesteps"], "mismatching": s["functional"]["mismatching_values"]}


def _digits() -> dict[str, float]:
    acc = run("digits_cnn.toml")["functional"]["accuracy"]
    return {"chip_minus_int8": 100 * (acc["chip"] - acc["int8_reference"]), "chip": acc["chip"]}


def _ottavi() -> dict[str, float]:
    from cimsim.config import load_scenario
    from cimsim.mapping.sizing import dry_run
    from cimsim.network import load_model

    path = SCENARIOS / "zoo" / "mobilenetv2_cifar10.toml"
    out: dict[str, float] = {}
    for job in (0, 8, 16):
        sc = load_scenario(path, ["mapping.depthwise=crossbar", f"mapping.depthwise_job_channels={job}"])
        chip = dry_run(load_model(sc.model), sc)["chip"]
        out[f"devices_{job}"], out["weights"] = chip["crossbar_devices"], chip["weights"]
    net = load_model(load_scenario(path).model)
    depthwise = [layer for layer in net.layers if layer.is_depthwise]
    dw_weights = sum(layer.kernel_hw[0] * layer.kernel_hw[1] * layer.out_channels for layer in depthwise)
    out["depthwise_share"] = dw_weights / out["weights"]
    block_diagonal = sum(layer.kernel_hw[0] * layer.kernel_hw[1] * layer.in_channels * layer.out_channels
                         for layer in depthwise)
    for job in (8, 16):
        out[f"overhead_{job}"] = out[f"devices_{job}"] / out["weights"] - 1
        # Ottavi's N_xbar = K^2 C C_job per depthwise layer: the overhead is (C_job - 1) x the depthwise share
        out[f"overhead_{job}_exact"] = out[f"overhead_{job}"] / ((job - 1) * out["depthwise_share"])
    out["one_job_ratio"] = out["devices_0"] / out["weights"]
    # one job: each depthwise layer's block-diagonal K^2 C x C matrix, every other weight one device
    out["one_job_exact"] = out["devices_0"] / (out["weights"] - dw_weights + block_diagonal)
    return out


ADC_SURVEY_10B_J = 3.8539e-12
"""The ADC survey model's 10-bit energy at 14 nm, 1.5 GS/s (hwcomponents-adc; the dazzi2021_14nm table's
comment), 16 % below Kull et al. 2017's measured 4.6133 pJ: the low end of the ADC's spread."""
PWM_PULSE_S = 128e-9
"""An 8-bit PWM input's longest pulse at the 1-ns PWM step that 1.008 TOPS implies (2 x 65,536 ops per
130 ns): the high end of the PCM read time (the table takes Ottavi 2021's 70-ns array operation)."""


def _dazzi_array() -> dict[str, float]:
    """One 256 x 256 array at peak with the dazzi2021_14nm table (`cimsim.energy.peak`), and the figure
    at each end of its sources' spread."""
    from cimsim.energy import Entry, load_table, resolve_table
    from cimsim.energy.actions import Action, Component
    from cimsim.energy.peak import array_peak, component_power_W

    table = load_table(resolve_table("dazzi2021_14nm"))
    rep = array_peak(table)
    adc = table.actions[(Component.ADC, Action.CONVERT)]
    assert adc.by_argument is not None
    survey = table.with_energy(Component.ADC, Action.CONVERT, Entry(by_argument={**adc.by_argument,
                                                                                 10: ADC_SURVEY_10B_J}))
    pcm = table.actions[(Component.CROSSBAR, Action.MVM)]
    long_read = table.with_energy(Component.CROSSBAR, Action.MVM,
                                  Entry(per_argument_J=pcm.per_argument_J * PWM_PULSE_S / 70e-9))
    return {"tops_per_w": rep["tops_per_w"], "tops": rep["tops"], "power_mW": rep["average_power_W"] * 1e3,
            "dfc_sram_mW": component_power_W(rep, Component.DFC, Component.SRAM) * 1e3,
            "tops_per_w_survey_adc": array_peak(survey)["tops_per_w"],
            "tops_per_w_long_read": array_peak(long_read)["tops_per_w"]}


MENG_LU_RELOAD = ("mapping.weights=reload", "dram.enabled=true", "dram.bandwidth_gbps=34")
"""`--set` of Meng & Lu's reloading runs (their TPU's 34 GB/s), with the array's rows and columns."""


TPU_PEAK_TOPS = 92.0
"""Meng & Lu 2024 Table 3: the TPU's peak (the reference roof of their roofline, over its 34 GB/s)."""


@functools.cache
def roofline_points(model: str, rows: int, cols: int, batches: str) -> tuple[dict[str, Any], ...]:
    """`cimsim roofline --reference-roof 92` of `zoo/meng_lu2024_<model>.toml` reloading on a `rows` x `cols`
    array, at the comma-separated batches (each point with both ridges)."""
    from cimsim.roofline import roofline

    args = argparse.Namespace(scenario=str(SCENARIOS / "zoo" / f"meng_lu2024_{model}.toml"), batch=batches,
                              set=[*MENG_LU_RELOAD, f"chip.array_rows={rows}", f"chip.array_cols={cols}"],
                              reference_roof=TPU_PEAK_TOPS)
    result = roofline(args)
    return tuple({**p, "ridge": result["ridge_intensity_macs_per_byte"],
                  "tpu_ridge": result["reference"]["ridge_intensity_macs_per_byte"],
                  "tpu_ridge_batch": result["reference"]["ridge_batch"]} for p in result["points"])


def _meng_lu(measure: str, *args: str) -> Callable[[], dict[str, float]]:
    """A measurement of `cimsim.validate.meng_lu` (imported when it runs: it builds on this module)."""
    def measurement() -> dict[str, float]:
        from cimsim.validate import meng_lu

        result = getattr(meng_lu, measure)(*args)
        return {k: float(v) for k, v in result.items() if isinstance(v, int | float)}
    return measurement


MEASUREMENTS: dict[str, tuple[str, Callable[[], dict[str, float]]]] = {
    "dazzi_regular": ("dazzi2021_resnet32.toml: latency at batch 1, throughput simulated at batch 100",
                      lambda: _dazzi("dazzi2021_resnet32.toml")),
    "dazzi_speedup": ("dazzi2021_resnet32_speedup.toml: latency at batch 1, throughput simulated at batch 100",
                      lambda: _dazzi("dazzi2021_resnet32_speedup.toml")),
    "dazzi_factor": ("both Dazzi scenarios, batch 1", _dazzi_speedup_factor),
    "raella": ("dazzi2021_resnet32_speculation.toml (policy always, 7-bit ADC), batch 1", _raella),
    "raella_fast": (("raella_resnet32_<policy>_fast.toml (split-sign inputs), batch 3, throughput = 1 / image "
                     "interval; conv1's crossbar cycles over the same images "
                     "with conv1 unreplicated, split-sign against two's complement"), _raella_fast),
    "pcm": ("dazzi2021_resnet32_pcm.toml as shipped (5 PWM steps per cycle: a 26-cycle MVM), batch 1",
            lambda: _pcm("dazzi2021_resnet32_pcm.toml")),
    "pcm_ideal": ("dazzi2021_resnet32_pcm_ideal_adc.toml (24-bit ADC, no device noise), batch 1; tests only",
                  lambda: _pcm("dazzi2021_resnet32_pcm_ideal_adc.toml")),
    "digits": ("digits_cnn.toml (9-bit ADCs, noise off), the 360 held-out images", _digits),
    "ottavi": ("zoo/mobilenetv2_cifar10.toml, mapping.depthwise = crossbar, dry_run", _ottavi),
    "none": ("not measured", dict),
    "dazzi_array": (("one 256 x 256 core at peak, analytical (cimsim.energy.peak): a full MVM of 8-bit inputs, "
                     "256 10-bit conversions, 1 SRAM word written and 3 read per 100-ns timestep, priced with "
                     "dazzi2021_14nm"), _dazzi_array),
    "meng_lu": (("zoo/meng_lu2024_mlp.toml, reload on 6 x 5 cores (a tenth of the stationary chip's 298), 34 GB/s "
                 "DRAM, batch 1"), _meng_lu("tpu_mlp")),
    "meng_lu_fws_mlp": (("zoo/meng_lu2024_mlp.toml (stationary, one copy), batch 2; TOPS at the 92 TOPS peak = "
                         "92 x MACs per image / (image interval x mapped weights)"), _meng_lu("fws", "mlp")),
    "meng_lu_fws_cnn": (("zoo/meng_lu2024_cnn_balanced.toml (the balancer within the paper's 55.8 M weights: 852 "
                         "cores), batch 2; TOPS at the peak as above"), _meng_lu("fws", "cnn_balanced")),
    "meng_lu_copies": (("zoo/meng_lu2024_cnn_fws.toml (the paper's copies as kernel replicas): dry run, the image "
                        "interval of the mapper's step model"), _meng_lu("predicted", "cnn_copies")),
}
"""Measurement key -> (what it runs, the function)."""


__all__ = ["BATCH", "FAST_BATCH", "MEASUREMENTS", "ROOT", "SCENARIOS", "TIMESTEP_S", "TPU_PEAK_TOPS", "TWOS",
           "UNREPLICATED", "converts_per_mac", "crossbar_cycles", "cycles_per_mvm", "fast_run", "layer_macs_of",
           "paper_interval", "roofline_points", "run", "steady_throughput", "throughput_at"]
