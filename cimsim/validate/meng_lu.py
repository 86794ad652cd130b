"""Meng & Lu 2024's numbers, measured: the FWS-CIM chip running the pseudo-models the way the paper maps
them (Table 4, Fig. 6) and the TPU-like reloading chip on an array chosen by a stated rule.

FWS-CIM. The paper's TOPS at batch 1 are its chip's utilisation times its 92 TOPS peak (Table 3;
91.6 and 83 TOPS "out of the total 92 theoretical TOPS"), on a chip holding the mapped weights (56 M of
RRAM for 55.9 / 55.8 M mapped). cimsim's crossbar does one MVM per 100 ns timestep (Dazzi's core), not
Meng & Lu's, so its absolute TOPS are its own chip's; the comparable figure is the same utilisation
on a chip sized for the mapping: MACs per image / (image interval x mapped weights), every mapped weight
doing one MAC per timestep at the peak, times 92 TOPS. "Batch 1" is no batching: images stream one
after another, each its own batch; a stationary chip reads no weights per image, so the rate is the
steady image interval.

TPU. The reloading MLP runs on a tenth of the stationary chip's crossbars (`TPU_ARRAY`): the rule the
README's roofline table uses for both models, stated before the result is known, not an array picked
to land on the paper's roofline number.
"""

from __future__ import annotations

import functools
from typing import Any

from cimsim.validate import measure as m

PEAK_TOPS = m.TPU_PEAK_TOPS
"""Table 3: the FWS-CIM chip's peak, the TPU's too."""

FWS_SCENARIOS = {"mlp": "zoo/meng_lu2024_mlp.toml", "cnn_copies": "zoo/meng_lu2024_cnn_fws.toml",
                 "cnn_balanced": "zoo/meng_lu2024_cnn_balanced.toml"}
"""The FWS-CIM mappings: the MLP's zoo scenario (one copy, see README), the CNN with the paper's copies as
kernel replicas, and the CNN balanced within the paper's 55.8 M weights."""

FWS_BATCH = 2
"""Images simulated for the steady image interval (steady from the second image on)."""

TPU_ARRAY = {"mlp": (6, 5), "cnn": (7, 3)}
"""A tenth of the stationary zoo chips' crossbars (298 and 209 cores): 30 and 21 cores."""


@functools.cache
def mapped(key: str) -> dict[str, Any]:
    """A dry run of an FWS-CIM mapping (no simulation): mapped weights (copies x weights), devices, cores,
    the layer rates above 1 and the image interval of the mapper's step model (the balancer's)."""
    from cimsim.config import load_scenario
    from cimsim.mapping import balance
    from cimsim.mapping.mapper import compute_layers
    from cimsim.mapping.sizing import dry_run
    from cimsim.network import load_model

    sc = load_scenario(m.SCENARIOS / FWS_SCENARIOS[key])
    net = load_model(sc.model)
    sc, _ = balance.resolve(net, sc)
    chip = dry_run(net, sc)["chip"]
    rates = {n: sc.dataflow.layer_rates.get(n, 1) for n in balance.stage_pixels(net, sc)}
    times = balance.stage_times({n: {r: c} for n, r in rates.items()
                                 for c in [balance.layer_options(net, sc)[n][r]]}, sc.chip.cycles_per_timestep,
                                sc.chip.clocking == "timestep")
    interval = balance.interval_of(times, rates, sc.input.pixels_per_timestep, net.input_layer.out_h
                                   * net.input_layer.out_w)
    slowest = tuple(n for n in times if times[n][rates[n]][1] == interval)
    fixed = [n for n, st in compute_layers(net, sc).items() if not st.replicable]
    floor = max((times[n][1][1] for n in fixed), default=0)
    return {"mapped_weights": chip["weights"], "devices": chip["crossbar_devices"], "cores": chip["cores"],
            "rates": {n: r for n, r in rates.items() if r > 1}, "input_rate": sc.input.pixels_per_timestep,
            "predicted_interval": float(interval), "predicted_slowest": slowest, "floor_interval": float(floor),
            "floor_layers": tuple(n for n in fixed if times[n][1][1] == floor)}


def fws_map(key: str) -> dict[str, float]:
    """The mapped weights of an FWS-CIM mapping (a dry run)."""
    return {"mapped_weights": mapped(key)["mapped_weights"]}


def _macs(key: str) -> int:
    from cimsim.config import load_scenario
    from cimsim.network import load_model
    from cimsim.roofline import network_macs

    return network_macs(load_model(load_scenario(m.SCENARIOS / FWS_SCENARIOS[key]).model))


def at_peak(macs: int, interval: float, weights: int) -> dict[str, float]:
    """TOPS on cimsim's chip (one MVM per 100 ns timestep), the utilisation of the mapped weights and that
    utilisation x the paper's 92 TOPS peak, for an image every `interval` timesteps."""
    utilisation = macs / (interval * weights)
    return {"tops": 2 * macs / (interval * m.TIMESTEP_S) / 1e12, "utilisation": utilisation,
            "tops_at_peak": utilisation * PEAK_TOPS}


@functools.cache
def fws(key: str) -> dict[str, Any]:
    """The simulated FWS-CIM run (`FWS_BATCH` images): image interval, cores, latency and `at_peak`."""
    s = m.run(FWS_SCENARIOS[key], f"run.batch={FWS_BATCH}")
    interval = float(s["image_interval_timesteps"])
    weights = mapped(key)["mapped_weights"]
    return {"mapped_weights": weights, "cores": s["cores"], "interval": interval, "latency": s["latency_timesteps"],
            **at_peak(_macs(key), interval, weights)}


def predicted(key: str) -> dict[str, Any]:
    """`at_peak` of the mapper's predicted interval (no simulation), and as `..._bound` the most the mapping
    can reach: at the floor that its layers without replicas (digital ones) set, one output per timestep."""
    d = mapped(key)
    bound = {f"{k}_bound": v for k, v in at_peak(_macs(key), d["floor_interval"], d["mapped_weights"]).items()}
    return {**d, **at_peak(_macs(key), d["predicted_interval"], d["mapped_weights"]), **bound}


def tpu_mlp() -> dict[str, float]:
    """The TPU-like reloading MLP at batch 1 on `TPU_ARRAY`, with its segments."""
    rows, cols = TPU_ARRAY["mlp"]
    point = m.roofline_points("mlp", rows, cols, "1")[0]
    s = m.run("zoo/meng_lu2024_mlp.toml", *m.MENG_LU_RELOAD, f"chip.array_rows={rows}", f"chip.array_cols={cols}",
              "run.batch=1")
    return {"tops_batch1": point["tops"], "roofline_batch1": point["roofline_tops"], "segments": len(s["segments"])}


__all__ = ["FWS_BATCH", "FWS_SCENARIOS", "PEAK_TOPS", "TPU_ARRAY", "at_peak", "fws", "fws_map", "mapped", "predicted",
           "tpu_mlp"]
