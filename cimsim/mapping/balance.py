"""The pipeline balancer (`dataflow.mode = "balanced"`): every layer's rate for a core budget.

The model. In the steady state of a pipeline that streams images back to back, a layer
computing `r` pixels per timestep computes its P output pixels per image in P / r parallel
groups, and each group takes s(r) timesteps: ceil(step cycles / cycles_per_timestep) under
`timestep` clocking (a step that overruns its timestep stalls the core, `sram` or
`compute`), step cycles / cycles_per_timestep under `elastic` clocking. The step cycles are
the mapper's estimate (`cimsim.mapping.mapper.LayerCost`: SRAM stores and kernel-row reads,
MVM, digital processor), so replicas the core cannot feed within a timestep buy nothing.
The input, streamed at `r_in` pixels per timestep, takes P_in / r_in. Nothing moves faster
than its slowest stage, so the image interval is

    T = max(P_in / r_in, max over compute layers L of P_L / r_L x s_L(r_L))   [timesteps per image]

and the throughput 1 / (T x timestep): the bottleneck layer's rate normalised by its output
pixels (and by its step time). The simulated interval can only be longer: fill, Method 2
stripes, partial-sum timesteps, column starts and NoC stalls add to it; the summary reports
both. The cost of a rate is the cores the mapper gives the layer at that rate (Method 1 if
it fits, else Method 2 with the smallest fitting dW, else Method 1 split by rows; a rate
whose input SRAM overflows, or whose replicas do not fit under `replica_fit = "error"`, is
not a choice). The input costs no core.

The choice. Minimise T subject to the sum of the layers' cores <= `mapping.max_cores`. For a
given T the layers are independent (each needs its stage time <= T, at its fewest cores), so
the optimum is exact without a search over combinations: try the candidate intervals (every
stage time of every candidate rate) in increasing order and take the first whose cheapest
rates fit the budget. Ties: the fewest cores per layer, then the lowest rate (fewer
replicas, shorter latency); the input gets the lowest rate that keeps up. Candidate rates
divide the layer's pixels per image (other rates leave partial groups at column ends,
which the model does not see: rate 5 on 32-high columns was predicted at 224 and simulated
at 261 timesteps per image) and keep the replicas within one crossbar's columns
(`rate x out_channels <= crossbar_cols`; the mapper splits columns only for a layer that is
too wide on its own). `dataflow.layer_rates` entries are kept as given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from cimsim.config.schema import Scenario
from cimsim.errors import MappingError
from cimsim.mapping.mapper import MAX_RATE, LayerCost, compute_layers, layer_cost
from cimsim.mapping.residual import residual_roles
from cimsim.network import Network


@dataclass(frozen=True)
class Balance:
    """The balancer's choice and what its model predicts for it."""

    max_cores: int
    """The budget."""
    cores: int
    """Cores the chosen rates use."""
    input_pixels_per_timestep: int
    rates: dict[str, int]
    """Compute layer -> pixels per timestep."""
    layer_cores: dict[str, int]
    """Compute layer -> cores at its rate."""
    interval_timesteps: Fraction
    """Predicted image interval T (timesteps per image)."""
    bottleneck: tuple[str, ...]
    """The stages whose P / r equals T ("input" for the input stream)."""

    def as_dict(self, timestep_ns: float) -> dict[str, Any]:
        """The summary's `balancer` section."""
        interval = float(self.interval_timesteps)
        return {
            "objective": "min image interval T = max(P_in / r_in, max_L P_L / r_L) within max_cores",
            "max_cores": self.max_cores,
            "cores": self.cores,
            "input_pixels_per_timestep": self.input_pixels_per_timestep,
            "predicted_interval_timesteps": interval,
            "predicted_throughput_images_per_s": 1e9 / (interval * timestep_ns),
            "bottleneck": list(self.bottleneck),
            "rates": dict(self.rates),
            "layer_cores": dict(self.layer_cores),
        }


def divisors(n: int, limit: int) -> list[int]:
    """Divisors of `n` up to `limit`, ascending."""
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def layer_options(net: Network, scenario: Scenario) -> dict[str, dict[int, LayerCost]]:
    """Every compute layer's feasible rates and their costs: layer -> {rate: cost}
    (a `dataflow.layer_rates` entry is the layer's only option)."""
    xbar_cols = scenario.chip.crossbar_cols
    pinned = scenario.dataflow.layer_rates
    options: dict[str, dict[int, LayerCost]] = {}
    stages = compute_layers(net, scenario)
    roles = residual_roles(net, scenario, stages)
    for name, stage in stages.items():
        pixels = stage.window.out_pixels
        if name in pinned:
            rates = [pinned[name]]
        elif not stage.replicable:
            rates = [1]
        else:
            rates = [r for r in divisors(pixels, MAX_RATE) if r == 1 or r * stage.out_channels <= xbar_cols]
        costs = {r: c for r in rates if (c := layer_cost(net, stage, r, scenario, roles[name])) is not None}
        if not costs:
            why = f"at the rate {pinned[name]} of dataflow.layer_rates" if name in pinned else "at any rate"
            raise MappingError(f"{scenario.source}: dataflow.mode = 'balanced': layer '{name}' cannot be mapped {why} "
                               "(its input SRAM overflows or its replicas do not fit)")
        options[name] = costs
    return options


def stage_pixels(net: Network, scenario: Scenario) -> dict[str, int]:
    """Output pixels per image of every stage (1 for an FC)."""
    return {name: st.window.out_pixels for name, st in compute_layers(net, scenario).items()}


def stage_time(cost: LayerCost, cycles_per_timestep: int, lockstep: bool) -> Fraction:
    """Timesteps a layer needs per image: its groups times the timesteps of a step."""
    step = (Fraction(-(-cost.step_cycles // cycles_per_timestep)) if lockstep
            else Fraction(cost.step_cycles, cycles_per_timestep))
    return cost.groups * step


Times = dict[str, dict[int, tuple[int, Fraction]]]
"""Layer -> rate -> (cores, timesteps per image)."""


def stage_times(options: dict[str, dict[int, LayerCost]], cycles_per_timestep: int, lockstep: bool) -> Times:
    """Every option's cores and stage time."""
    return {n: {r: (c.cores, stage_time(c, cycles_per_timestep, lockstep)) for r, c in opts.items()}
            for n, opts in options.items()}


def choose(times: Times, input_pixels: int, budget: int) -> tuple[dict[str, int], int, Fraction] | None:
    """The rates of the smallest image interval within `budget` cores: (layer rates, input
    rate, interval), or None when even the cheapest rates exceed the budget."""
    input_rates = divisors(input_pixels, MAX_RATE)
    candidates = sorted({t for opts in times.values() for _, t in opts.values()}
                        | {Fraction(input_pixels, r) for r in input_rates})
    for interval in candidates:
        rates: dict[str, int] = {}
        total = 0
        for name, opts in times.items():
            ok = [(cores, r) for r, (cores, t) in opts.items() if t <= interval]
            if not ok:
                break
            cores, rate = min(ok)
            rates[name] = rate
            total += cores
        else:
            feeds = [r for r in input_rates if Fraction(input_pixels, r) <= interval]
            if total <= budget and feeds:
                return rates, feeds[0], interval
    return None


def interval_of(times: Times, rates: dict[str, int], input_rate: int, input_pixels: int) -> Fraction:
    """The model's image interval T of a rate assignment."""
    return max([Fraction(input_pixels, input_rate), *(times[n][r][1] for n, r in rates.items())])


def resolve(net: Network, scenario: Scenario) -> tuple[Scenario, Balance | None]:
    """A `dataflow.mode = "balanced"` scenario with every layer's rate (`dataflow.layer_rates`)
    and the input's `pixels_per_timestep` chosen, and the choice; other scenarios unchanged."""
    if scenario.dataflow.mode != "balanced":
        return scenario, None
    chip = scenario.chip
    where = f"{scenario.source}: dataflow.mode = 'balanced'"
    if scenario.mapping.replica_fit == "assume":
        raise MappingError(f"{where}: the balancer maps only replicas that fit; mapping.replica_fit = 'assume' "
                           "would count overfull crossbars (use 'split' or 'error')")
    array = chip.array_rows * chip.array_cols
    if array == 0:  # an "auto" array: the budget is what sizes it
        if not scenario.mapping.max_cores:
            raise MappingError(f"{where}: chip.array_rows or array_cols = 'auto' needs mapping.max_cores, the core "
                               "budget, to balance within")
        array = scenario.mapping.max_cores
    budget = scenario.mapping.max_cores or array
    if budget > array:
        raise MappingError(f"{where}: mapping.max_cores = {budget} is more than the array's chip.array_rows x "
                           f"chip.array_cols = {chip.array_rows} x {chip.array_cols} = {array} cores")
    options = layer_options(net, scenario)
    times = stage_times(options, chip.cycles_per_timestep, chip.clocking == "timestep")
    input_pixels = net.input_layer.out_h * net.input_layer.out_w
    chosen = choose(times, input_pixels, budget)
    if chosen is None:
        least = sum(min(c.cores for c in opts.values()) for opts in options.values())
        raise MappingError(f"{where}: the network needs at least {least} cores at its cheapest rates; "
                           f"mapping.max_cores = {budget}")
    rates, input_rate, interval = chosen
    stages = {"input": Fraction(input_pixels, input_rate)} | {n: times[n][r][1] for n, r in rates.items()}
    balance = Balance(budget, sum(options[n][r].cores for n, r in rates.items()), input_rate, rates,
                      {n: options[n][r].cores for n, r in rates.items()}, interval,
                      tuple(n for n, t in stages.items() if t == interval))
    resolved = dataclasses.replace(
        scenario, dataflow=dataclasses.replace(scenario.dataflow, layer_rates=dict(rates)),
        input=dataclasses.replace(scenario.input, pixels_per_timestep=input_rate))
    return resolved, balance
