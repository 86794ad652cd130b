"""Chip sizing and the mapping dry run (`cimsim map`): what a network needs of the chip, every
problem at once, without simulating. Pure: no SimPy.

`resolve_array` turns `chip.array_rows` / `array_cols` = "auto" into the smallest array the
mapping fits. `dry_run` maps the network once on the scenario's chip with the SRAM depth and the
array taken as unbounded, to learn what each stage needs, then compares those needs with the
chip: SRAM depth per layer, the array, Eq. 7's link bandwidth; each shortfall is one problem line.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from cimsim.config.schema import AUTO, Scenario
from cimsim.mapping.mapper import count_cores, map_network
from cimsim.mapping.stages import Unit
from cimsim.network import Network

UNBOUNDED_SRAM_WORDS = 1 << 30
"""SRAM depth the dry run maps with, to learn every layer's need."""


def square_array(cores: int) -> tuple[int, int]:
    """The most square rows x cols array of at least `cores` cores (cols = ceil(sqrt(cores)))."""
    cols = max(1, math.isqrt(max(cores, 1) - 1) + 1)
    return max(1, -(-cores // cols)), cols


def resolve_array(net: Network, scenario: Scenario) -> Scenario:
    """The scenario with "auto" array dimensions replaced by the fewest the mapping needs."""
    chip = scenario.chip
    if AUTO not in (chip.array_rows, chip.array_cols):
        return scenario
    cores = count_cores(net, scenario)
    if chip.array_rows == AUTO and chip.array_cols == AUTO:
        rows, cols = square_array(cores)
    elif chip.array_rows == AUTO:
        rows, cols = max(1, -(-cores // chip.array_cols)), chip.array_cols
    else:
        rows, cols = chip.array_rows, max(1, -(-cores // chip.array_rows))
    return replace(scenario, chip=replace(chip, array_rows=rows, array_cols=cols))


def _unbounded(net: Network, scenario: Scenario) -> tuple[Scenario, int]:
    chip = scenario.chip
    cores = count_cores(net, scenario)
    rows, cols = square_array(cores)
    if scenario.noc.topology != "ideal":  # keep the scenario's shape where it fits, for its routes
        rows, cols = max(rows, chip.array_rows or 1), max(cols, chip.array_cols or 1)
    big = replace(chip, sram_depth_words=UNBOUNDED_SRAM_WORDS, array_rows=rows, array_cols=cols)
    return replace(scenario, chip=big), cores


def dry_run(net: Network, scenario: Scenario) -> dict[str, Any]:
    """Per stage and for the chip: what the mapping needs and every way the chip falls short."""
    chip = scenario.chip
    big, cores = _unbounded(net, scenario)
    plan = map_network(net, big)
    problems: list[str] = []
    layers = []
    for name, lm in plan.layers.items():
        layer = net.layer(name)
        words = lm.sram_words
        if words > chip.sram_depth_words:
            problems.append(f"layer '{name}' needs {words} words of input SRAM, chip.sram_depth_words = "
                            f"{chip.sram_depth_words}")
        layers.append({
            "name": name, "kind": str(layer.kind), "runs_on": str(lm.unit),
            "fused": list(lm.fused), "cores": len(lm.cores), "rate": lm.rate, "replicas": lm.replicas,
            "crossbar_rows": lm.rows, "crossbar_cols": lm.cols, "row_parts": lm.row_parts, "col_parts": lm.col_parts,
            "crossbar_devices": lm.devices, "weights": lm.weights,
            "digital_cycles_per_output": lm.digital_step_cycles if lm.unit is Unit.DIGITAL else chip.digital_cycles,
            "mvms_per_output": lm.jobs if lm.unit is Unit.CROSSBAR else 0,
            "sram_words": words, "inputs": list(lm.main_inputs) + ([lm.residual_input] if lm.residual_input else []),
        })
    array = chip.array_rows * chip.array_cols
    auto = AUTO in (chip.array_rows, chip.array_cols)
    if not auto and cores > array:
        problems.append(f"the mapping needs {cores} cores, the array has chip.array_rows x chip.array_cols = "
                        f"{chip.array_rows} x {chip.array_cols} = {array}")
    fitted = resolve_array(net, scenario) if auto else scenario
    timestep_ns = chip.cycles_per_timestep * 1000.0 / chip.clock_mhz
    eq7 = max((f.bits_per_timestep for f in plan.flows if f.role != "partial"), default=0)
    link_bits = -(-eq7 // chip.cycles_per_timestep)
    if scenario.noc.topology != "ideal" and link_bits > scenario.noc.link_width_bits:
        problems.append(f"Eq. 7: a flow needs {eq7} bits per timestep = {link_bits} bits per cycle, "
                        f"noc.link_width_bits = {scenario.noc.link_width_bits}")
    need_rows, need_cols = square_array(cores)
    return {
        "scenario": scenario.name, "model": net.name, "layers": layers,
        "chip": {
            "cores": cores,
            "crossbar_devices": sum(lm.devices for lm in plan.layers.values()),
            "weights": sum(lm.weights for lm in plan.layers.values()),
            "min_sram_depth_words": max((lm.sram_words for lm in plan.layers.values()), default=0),
            "array": [fitted.chip.array_rows, fitted.chip.array_cols] if auto else [chip.array_rows, chip.array_cols],
            "min_square_array": [need_rows, need_cols],
            "eq7_peak_bits_per_timestep": eq7, "eq7_peak_gbps": round(eq7 / timestep_ns, 3),
            "eq7_link_width_bits": link_bits,
        },
        "problems": problems,
    }
