"""The datapath's hooks for ``functional.input_encoding`` and ``functional.weight_slicing``.

`choose_layer_slicings` runs Adaptive Weight Slicing (`cimsim.functional.slicing`) at program
time; `SignedSlicing` gives the action events of a split-sign stage its unsigned input slices;
`options_summary` adds the functional summary's entries of both options (nothing with the
defaults, so default summaries are unchanged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from cimsim.config.schema import Scenario
from cimsim.functional.chip_math import LayerMath
from cimsim.functional.crossbar import CrossbarConfig
from cimsim.functional.encoding import InputEncoding
from cimsim.functional.images import ImageStream
from cimsim.functional.slicing import TEST_IMAGES, SlicingChoice, WeightSlicing, adaptive_slicings
from cimsim.functional.weights import LayerParams
from cimsim.hw.datapath_actions import Slicing
from cimsim.mapping.plan import MappingPlan
from cimsim.network import Network
from cimsim.network.layers import LayerKind

if TYPE_CHECKING:
    from cimsim.hw.datapath import Datapath


class SignedSlicing:
    """The input-slice tables of a stage's action events: two's complement, or unsigned for the
    passes of a split-sign stage."""

    def __init__(self, cfg: CrossbarConfig, signed: Slicing) -> None:
        self.signed = signed
        self._cfg = cfg
        self._unsigned: Slicing | None = None

    def of(self, math: LayerMath) -> Slicing:
        """The tables for `math`'s crossbars."""
        if math.config.input_signed:
            return self.signed
        if self._unsigned is None:
            self._unsigned = Slicing(math.config)
        return self._unsigned


def choose_layer_slicings(scenario: Scenario, net: Network, plan: MappingPlan, params: dict[str, LayerParams],
                          cfg: CrossbarConfig, passes: dict[str, int]) -> dict[str, SlicingChoice]:
    """Adaptive slicing's choice per crossbar stage ({} with ``weight_slicing = "fixed"``), on the first
    `TEST_IMAGES` images of the run's image source (fewer if the run has fewer)."""
    fcfg = scenario.functional
    if fcfg.weight_slicing != WeightSlicing.ADAPTIVE:
        return {}
    n = TEST_IMAGES if not fcfg.images else min(TEST_IMAGES, scenario.run.batch)
    stream = ImageStream.of(scenario, net, n)
    try:
        images = np.stack([stream[i] for i in range(n)])
    finally:
        stream.close()
    layers = {name: (plan.layers[name].jobs, p) for name, p in passes.items()}
    sigma = scenario.noise.column_sigma if fcfg.crossbar == "raella" else 0.0
    return adaptive_slicings(net, params, images, cfg, fcfg.error_budget, layers, scenario.chip.crossbar_rows,
                             sigma, scenario.run.seed)


def layer_macs(layer: Any) -> int:
    """Multiply-accumulates of one image through conv/fc ``layer`` (its groups' real weights)."""
    groups = layer.groups if layer.kind is LayerKind.CONV else 1
    return layer.out_h * layer.out_w * (layer.kernel_rows // groups) * layer.out_channels


def options_summary(dp: Datapath) -> dict[str, Any]:
    """Summary entries of the input encoding and weight slicing (empty with both defaults):
    per stage the sign passes and chosen slicing; overall ADC converts per MAC."""
    cfg = dp.scenario_functional
    split = cfg.input_encoding == InputEncoding.SPLIT_SIGN
    if not split and not dp.slicings:
        return {}
    out: dict[str, Any] = {"input_encoding": cfg.input_encoding, "weight_slicing": cfg.weight_slicing}
    if split:
        out["split_sign_layers"] = [n for n, p in dp.sign_passes.items() if p == 2]
    if dp.slicings:
        out["error_budget"] = cfg.error_budget
        out["slicing_noise_sigma"] = dp.noise_params["column_sigma"] if not dp.pcm else 0.0
        out["slicings"] = {n: c.summary() for n, c in dp.slicings.items()}
    macs = sum(layer_macs(m.layer) for m in dp.maths.values()) * dp.outputs_checked
    converts = sum(c["adc_converts"] for c in dp.counters.values())
    out["macs"] = macs
    out["adc_converts_per_mac"] = round(converts / macs, 5) if macs else None
    return out


__all__ = ["SignedSlicing", "choose_layer_slicings", "layer_macs", "options_summary"]
