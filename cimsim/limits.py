"""Limits checked before a run allocates anything: memory bounded by design, hopeless runs refused.

`check_run(scenario, net)` (called by `cimsim.runner.run`) refuses, with one `InputError`
line (exit 2):

- a run whose lower bound on length passes `run.max_timesteps`: the image source streams at
  most `input.pixels_per_timestep` pixels per timestep, so `batch x H x W / rate` timesteps
  are needed whatever the chip does;
- a network whose layer maps hold more than `MAX_MAP_PIXELS` pixels in all (the simulated
  cores keep per-pixel state of every layer they compute);
- in functional mode: activations other than 8 bits (the datapath is int8), more than
  `MAX_WEIGHTS` weights or `MAX_ACTIVATIONS` activation values of one image.
"""

from __future__ import annotations

from cimsim.config.schema import Scenario
from cimsim.errors import InputError
from cimsim.network import Network

MAX_MAP_PIXELS = 1 << 21
"""Input plus output pixels of every layer map of one image, summed (ResNet-32: 61,440;
a 224 x 224 ImageNet ResNet-50 about 0.5 million)."""
MAX_WEIGHTS = 1 << 25
"""Functional mode: int8 weights of all conv and fc layers (ResNet-32: 0.46 million)."""
MAX_ACTIVATIONS = 1 << 25
"""Functional mode: activation values of one image over all layers."""


def min_timesteps(scenario: Scenario, net: Network) -> int:
    """Timesteps the image source needs to stream the whole batch: a lower bound on the run."""
    inp = net.input_layer
    return -(-scenario.run.batch * inp.out_h * inp.out_w // scenario.input.pixels_per_timestep)


def check_run(scenario: Scenario, net: Network) -> None:
    """Raise `InputError` for a run that cannot fit the limits above."""
    where = scenario.source or scenario.name
    need = min_timesteps(scenario, net)
    if need > scenario.run.max_timesteps:
        inp = net.input_layer
        raise InputError(
            f"{where}: run.batch = {scenario.run.batch:,} images of {inp.out_h} x {inp.out_w} pixels at "
            f"input.pixels_per_timestep = {scenario.input.pixels_per_timestep} need at least {need:,} timesteps, "
            f"more than run.max_timesteps = {scenario.run.max_timesteps:,}: lower the batch or raise the limit")
    pixels = sum(layer.in_h * layer.in_w + layer.out_h * layer.out_w for layer in net.layers)
    if pixels > MAX_MAP_PIXELS:
        raise InputError(f"{net.source}: the layer maps of one image hold {pixels:,} pixels in all, at most "
                         f"{MAX_MAP_PIXELS:,} (the simulated cores keep per-pixel state of every layer)")
    if not scenario.functional.enabled:
        return
    if net.bits != 8:
        raise InputError(f"{net.source}: bits = {net.bits}: functional mode (functional.enabled = true) computes "
                         "int8 activations only; use bits = 8 or a timing-only run")
    weights = sum(layer.kernel_rows * layer.kernel_cols for layer in net.layers)
    if weights > MAX_WEIGHTS:
        raise InputError(f"{net.source}: {weights:,} weights: functional mode holds at most {MAX_WEIGHTS:,}")
    values = sum(layer.out_h * layer.out_w * layer.out_channels for layer in net.layers)
    if values > MAX_ACTIVATIONS:
        raise InputError(f"{net.source}: {values:,} activation values per image: functional mode holds at most "
                         f"{MAX_ACTIVATIONS:,}")
