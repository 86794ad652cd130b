"""RAELLA's Adaptive Weight Slicing (Andrulis 2023, section 4.2, Algorithm 1): per layer, at
compile time, the weight slicing with the fewest slices whose error stays below a budget.

``functional.weight_slicing``: ``"fixed"`` (every layer the crossbar config's slicing, 4b-2b-2b)
or ``"adaptive"``:

- Slicings (4.2.2): tuples of 1..`MAX_SLICE_BITS` bits (RAELLA's 4b ReRAMs) summing to the 8
  bits of an offset magnitude, high-order first; 108 of them (`all_slicings`).
- Error (4.2.1): the mean absolute difference between the layer's int8 outputs as the crossbars
  compute them and the exact ones, over the outputs whose exact value is nonzero ("the average
  magnitude error allowed for nonzero outputs of a layer after outputs are fully computed and
  quantized to 8b"). The outputs are the layer's own requantised outputs (its bias,
  multiplier, shift and ReLU; a fused residual add is not part of them), computed from the
  layer's exact inputs (the reference forward pass) so one layer's error does not leak into the
  next layer's test.
- Test inputs (4.2.1): ten images (the run's, `test_images`); every output position of each.
- The crossbar simulated (4.2.2): Center+Offset weights re-encoded for the slicing (optimal
  centers per slicing), "1b input slices when comparing weight slicings" (policy off), the
  layer's own input encoding (a split-sign layer's two passes).
- Noise (7.3: "RAELLA's empirical slicing strategy is noise-aware"): with ``noise.column_sigma``
  = E > 0 every candidate is evaluated on `NoisyCrossbar`s of that E, so the error includes the
  analog noise and the choice changes with E. The draws are deterministic: every candidate's
  crossbars of layer ``i`` take Generators seeded (run.seed, `SLICING_STREAM`, i, crossbar
  number), the same for every candidate of the layer (common random numbers, so candidates are
  compared on the same noise realisation as far as their shapes allow).
- Search (4.2.2): slicings from fewest slices to most; within the first slice count that has a
  below-budget slicing, the lowest-error one; later counts are not tested. The network's last
  conv/fc always gets 8 x 1b ("We always use the most conservative 1b per weight slice for the
  last layer"). If no slicing is below budget, the lowest-error one tested (all 108) is used and
  ``within_budget`` is false.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np

from cimsim.functional.chip_math import LayerMath, all_positions, windows
from cimsim.functional.crossbar import WEIGHT_MAGNITUDE_BITS, CrossbarConfig
from cimsim.functional.noise import column_noise_factory, crossbar_rngs
from cimsim.functional.reference import reference_forward, requantise
from cimsim.functional.weights import LayerParams
from cimsim.network import Network
from cimsim.network.layers import Layer, LayerKind

MAX_SLICE_BITS = 4
"""Bits per weight slice at most (RAELLA's 4b ReRAM devices, 4.2.3)."""
SLICING_STREAM = 17
"""Second word of the noise Generators' seeds in the search (apart from the run's noise, 16)."""
TEST_IMAGES = 10
"""Test images of the search (4.2.1: "we use ten inputs chosen randomly from the validation set")."""
DEFAULT_ERROR_BUDGET = 0.09
"""RAELLA's error budget (4.2.1 and 6.1: "RAELLA's error budget is set to 0.09 in all tests")."""


class WeightSlicing(StrEnum):
    """Values of ``functional.weight_slicing``."""

    FIXED = "fixed"
    ADAPTIVE = "adaptive"


def all_slicings(total: int = WEIGHT_MAGNITUDE_BITS, max_bits: int = MAX_SLICE_BITS) -> list[tuple[int, ...]]:
    """Every slicing (widths 1..max_bits summing to total), fewest slices first, then lexicographically
    from the widest high-order slice."""
    out = [c for k in range(1, total + 1) for c in itertools.product(range(max_bits, 0, -1), repeat=k)
           if sum(c) == total]
    return sorted(out, key=lambda c: (len(c), tuple(-b for b in c)))


@dataclass(frozen=True)
class SlicingChoice:
    """The slicing chosen for one layer and how it was found."""

    slicing: tuple[int, ...]
    error: float
    """Its mean absolute error over nonzero outputs (module docstring)."""
    tested: int
    """Slicings evaluated."""
    within_budget: bool
    last_layer: bool = False
    """The network's last layer (8 x 1b without a search)."""

    def summary(self) -> dict[str, Any]:
        """The functional summary's entry for this layer."""
        return {"slicing": list(self.slicing), "slices": len(self.slicing), "error": round(self.error, 5),
                "tested": self.tested, "within_budget": self.within_budget, "last_layer": self.last_layer}


@dataclass(frozen=True)
class SearchNoise:
    """The column noise the search evaluates candidates under (module docstring)."""

    sigma: float = 0.0
    """RAELLA's E (0: noiseless crossbars)."""
    seed: int = 0
    """run.seed."""
    layer_index: int = 0

    def factory(self) -> Callable[[np.ndarray, CrossbarConfig], Any] | None:
        """A fresh crossbar factory for one candidate (None without noise)."""
        if self.sigma <= 0:
            return None
        return column_noise_factory(self.sigma, crossbar_rngs(self.seed, SLICING_STREAM, self.layer_index))


def slicing_error(layer: Layer, params: LayerParams, win: np.ndarray, exact: np.ndarray, config: CrossbarConfig,
                  row_parts: int, xbar_rows: int, jobs: int = 1, sign_passes: int = 1,
                  noise: SearchNoise | None = None) -> float:
    """Mean absolute error of the int8 outputs of windows ``win`` through crossbars of ``config``
    (its slicing; 1b input slices; ``noise``'s column noise) against the ``exact`` int8 outputs,
    over nonzero exact outputs."""
    cfg = replace(config, policy="off")
    lm = LayerMath(layer, params, cfg, row_parts, xbar_rows, jobs=jobs, sign_passes=sign_passes,
                   crossbar_factory=noise.factory() if noise else None)
    out = requantise(lm.compute(win).acc, params, layer.relu).astype(np.int32)
    nz = exact != 0
    if not nz.any():
        return 0.0
    return float(np.abs(out[nz] - exact[nz]).mean())


def choose_slicing(layer: Layer, params: LayerParams, win: np.ndarray, config: CrossbarConfig, budget: float,
                   row_parts: int, xbar_rows: int, jobs: int = 1, sign_passes: int = 1,
                   last_layer: bool = False, noise: SearchNoise | None = None) -> SlicingChoice:
    """Algorithm 1's FindBestSlicing for one layer on test windows ``win`` (module docstring)."""
    matrix = LayerMath(layer, params, config, row_parts, xbar_rows, jobs=jobs).matrix
    acc = win.astype(np.int64) @ matrix.astype(np.int64)
    exact = requantise(acc, params, layer.relu).astype(np.int32)

    def error(s: tuple[int, ...]) -> float:
        return slicing_error(layer, params, win, exact, replace(config, weight_slice_bits=s), row_parts,
                             xbar_rows, jobs, sign_passes, noise)

    if last_layer:
        s = (1,) * WEIGHT_MAGNITUDE_BITS
        e = error(s)
        return SlicingChoice(s, e, 1, e < budget, True)
    best: tuple[float, tuple[int, ...]] | None = None
    overall: tuple[float, tuple[int, ...]] | None = None
    tested = 0
    for _count, group in itertools.groupby(all_slicings(), key=len):
        for s in group:
            e = error(s)
            tested += 1
            if overall is None or e < overall[0]:
                overall = (e, s)
            if e < budget and (best is None or e < best[0]):
                best = (e, s)
        if best is not None:
            return SlicingChoice(best[1], best[0], tested, True)
    assert overall is not None
    return SlicingChoice(overall[1], overall[0], tested, False)


def layer_windows(layer: Layer, inputs: list[np.ndarray], kernel_hw, stride, padding) -> np.ndarray:
    """Every output position's input window of each test image's input map (H, W, C), stacked."""
    pos = all_positions(layer)
    return np.concatenate([windows(x, pos, kernel_hw, stride, padding) for x in inputs])


def adaptive_slicings(net: Network, params: dict[str, LayerParams], images: np.ndarray, config: CrossbarConfig,
                      budget: float, layers: dict[str, tuple[int, int]], xbar_rows: int,
                      sigma: float = 0.0, seed: int = 0) -> dict[str, SlicingChoice]:
    """The chosen slicing of every crossbar layer ``layers`` (name -> (jobs, sign passes)) on test
    ``images`` (n, H, W, C) int8, each layer fed its exact inputs from the reference forward pass,
    candidates evaluated under column noise ``sigma`` (seeded from ``seed``)."""
    ref = reference_forward(net, params, images)
    index = {layer.name: i for i, layer in enumerate(net.layers)}
    convs = [layer.name for layer in net.layers if layer.kind in (LayerKind.CONV, LayerKind.FC)]
    out: dict[str, SlicingChoice] = {}
    for name, (jobs, passes) in layers.items():
        layer = net.layer(name)
        conv = layer.kind is LayerKind.CONV
        kernel = layer.kernel_hw if conv else (1, 1)
        stride, padding = (layer.stride_hw, layer.padding_hw) if conv else ((1, 1), (0, 0))
        inputs = list(ref[layer.inputs[0]])
        win = layer_windows(layer, inputs, kernel, stride, padding)
        out[name] = choose_slicing(layer, params[name], win, config, budget, -(-layer.kernel_rows // xbar_rows),
                                   xbar_rows, jobs, passes, last_layer=name == convs[-1],
                                   noise=SearchNoise(sigma, seed, index[name]))
    return out


__all__ = [
    "DEFAULT_ERROR_BUDGET",
    "MAX_SLICE_BITS",
    "SLICING_STREAM",
    "TEST_IMAGES",
    "SearchNoise",
    "SlicingChoice",
    "WeightSlicing",
    "adaptive_slicings",
    "all_slicings",
    "choose_slicing",
    "layer_windows",
    "slicing_error",
]
