"""Numerical model of the chip: int8 weights, a numpy reference, and RAELLA-style crossbars.

Pure numpy, no SimPy. The simulated cores call `LayerMath`; everything is
checked against `reference_forward` (bit-exact wherever no ADC saturation was
accepted).

API
---
`cimsim.functional.weights`
    ``LayerParams(weights, bias, multiplier, shift)`` frozen: int8 weights
    (kernel, kernel, c_in, c_out) ((1, 1, c_in, c_out) for an fc), int32 bias
    and multiplier (c_out,), int shift; out = clip(round((acc + bias) *
    multiplier / 2**shift)) to int8, then ReLU where the layer has relu.
    ``make_params(network, seed) -> {layer: LayerParams}`` for every conv/fc
    (realistic per-channel Laplacian weights, per-channel int8 quantisation,
    requantisation calibrated on a seeded batch; one Generator per seed).
    ``load_params(path, network)`` / ``save_params(path, params)``: ``.npz`` with
    ``<layer>.weights``, ``.bias``, ``.multiplier``, ``.shift`` (bad files raise
    `cimsim.errors.InputError` naming file, array and problem).
    ``make_images(network, batch, seed) -> int8 (batch, H, W, C)`` smooth
    natural-image-like fields; ``load_images(path, network)`` (array ``images``).
    ``calibrate_scales(network, real, fixed)`` and ``quantise_params(network, w, b,
    scales)``: the calibration and quantisation steps of `make_params`, reused by
    `cimsim.onnx_import`; ``float_layer`` is the float twin of every layer kind.

`cimsim.functional.reference`
    ``reference_forward(network, params, images) -> {layer: int8 (batch, H, W, C)}``
    (every layer, the input included); ``conv_accumulate(x, weights, stride,
    padding, groups=1) -> int32`` (grouped, non-square); ``requantise(acc, params,
    relu) -> int8`` (round half up); ``saturating_add``; ``global_avgpool`` and
    ``local_avgpool`` (integer mean, round half to even); ``maxpool``; flatten and
    concat in ``layer_forward``.

`cimsim.functional.crossbar`
    ``CrossbarConfig(rows, cols, adc_bits=7, input_bits=8, input_slices=(4, 2, 2),
    recovery_slice_bits=1, weight_encoding="center_offset" | "differential" | "offset",
    policy="always" | "on_failure" | "off", weight_slice_bits=(4, 2, 2),
    recovery="slice" | "column")``.
    ``Crossbar(matrix int8 (rows, cols), config).mvm(x int8 (rows,) or (n, rows))
    -> MvmResult``: ``values`` int32 (cols,) / (n, cols); ``crossbar_cycles``
    (off 8, always 11, on_failure 3 or 11; max over a batch) and per-vector
    ``cycles``; counters ``speculative_slices``, ``recovery_slices``,
    ``failed_columns``, ``failed_slices``, ``adc_converts`` (=
    ``speculative_converts + recovery_converts``), ``saturations_accepted``,
    ``clipped_converts``, ``column_mvms``, ``mvms``, ``recovery_mvms``;
    ``clipped_mask`` marks outputs that are not exact.

`cimsim.functional.chip_math`
    ``LayerMath(layer, params, crossbar_config, row_parts, xbar_rows, jobs=1)``:
    ``compute(windows int8 (n, kh*kw*c_in)) -> GroupResult`` (``acc`` int32
    (n, c_out) summed over row parts, ``crossbar_cycles`` max over parts and
    windows, per-window ``cycles`` (summed over jobs, ``job_cycles`` per job),
    counters summed); ``finish(acc, relu, residual=None) -> int8 (n, c_out)``;
    grouped convs as ``dense_kernel_matrix`` (block-diagonal). ``windows(activations
    (H, W, C), rows_cols, kernel, stride, padding) -> int8 (n, kh*kw*C)`` (zero
    padding; ints or (H, W) pairs).

`cimsim.functional.noise` and `cimsim.functional.pcm_pwm`
    ``NoisyCrossbar(matrix, config, sigma, rng)``: RAELLA 7.3's column-sum noise
    (``add_column_noise``); ``PcmPwmCrossbar(matrix, PcmConfig, rng)``: Dazzi's differential
    PCM pairs with PWM inputs (one pass, one conversion per column), PCM programming noise,
    drift and read noise; ``crossbar_factory(scenario, layer_index)`` picks them for a
    scenario's ``functional.crossbar`` and ``[noise]`` (`LayerMath(..., crossbar_factory=)`).
`cimsim.functional.encoding`
    ``functional.input_encoding``: ``input_can_be_negative(network, layer)`` (the rule: the
    image is signed, a ReLU'd conv/fc/add/maxpool output is not, pools / flatten / concat
    follow their inputs), ``sign_passes``, ``split(windows) -> (max(x, 0), max(-x, 0))``;
    ``LayerMath(..., sign_passes=2)`` runs both passes (RAELLA 6.1) on unsigned crossbars
    (``CrossbarConfig.input_signed=False``).

`cimsim.functional.slicing`
    ``functional.weight_slicing = "adaptive"``: ``all_slicings()`` (RAELLA's 108),
    ``choose_slicing`` / ``adaptive_slicings`` (Algorithm 1 against ``functional.error_budget``,
    mean |error| of nonzero int8 outputs, 4.2.1; ``SearchNoise``: noise-aware, on seeded
    noisy crossbars when ``noise.column_sigma > 0``); `cimsim.functional.options` wires both
    options into the datapath and its summary.

`cimsim.functional.digital`
    ``DigitalMath(layer, params, in_hw, kernel, stride, padding).compute(x (H, W, C),
    positions) -> int8 (n, c_out)``: a digital stage's own layer (maxpool, local or
    global avgpool, depthwise conv, fc, add's main pixel) with the reference's arithmetic.

`cimsim.functional.onnx_agreement`
    ``onnx_source(model_path)`` (an ``.onnx`` model imported, or None) and
    ``OnnxAgreement``: the chip's outputs against onnxruntime's float outputs.
    ``chip_forward(network, params, image, config, xbar_rows)`` runs one image
    through the chip arithmetic end to end (``build_layer_maths`` programs
    every layer once).

Modelling decisions (RAELLA thesis sections) are in the `crossbar` docstring
(the weight encoding in the `centers` docstring): Center+Offset 2T2R weights
(4.1) sliced 4b-2b-2b (4.2), two's-complement inputs, 7-bit signed LSB ADC
(3.1), speculation 4b-2b-2b with 1-bit recovery of the failed speculative slice
only (4.3), saturation accepted in recovery (3.5). `crossbar` re-exports
`optimal_centers` and `weight_slices` from `centers`; its helpers live in
`crossbar_recovery` (single-entry recovery sums of `mvm`) and
`crossbar_reference` (the literal `mvm_explicit`).
"""

from cimsim.functional.chip_math import GroupResult, LayerMath, build_layer_maths, chip_forward, windows
from cimsim.functional.crossbar import COUNTERS, Crossbar, CrossbarConfig, MvmResult
from cimsim.functional.reference import conv_accumulate, reference_forward, requantise
from cimsim.functional.weights import (
    LayerParams,
    load_images,
    load_params,
    make_images,
    make_params,
    save_params,
)

__all__ = [
    "COUNTERS",
    "Crossbar",
    "CrossbarConfig",
    "GroupResult",
    "LayerMath",
    "LayerParams",
    "MvmResult",
    "build_layer_maths",
    "chip_forward",
    "conv_accumulate",
    "load_images",
    "load_params",
    "make_images",
    "make_params",
    "reference_forward",
    "requantise",
    "save_params",
    "windows",
]
