"""The model zoo: every model file loads, its int8 reference forward pass runs, and the mapper says
which of them the simulated cores cannot run yet (their scenarios come with the simulator side)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cimsim.functional.reference import reference_forward
from cimsim.functional.weights import make_images, make_params
from cimsim.network import load_model

MODELS = Path(__file__).resolve().parents[1] / "models"

ZOO = {
    # model: (layers incl. input, conv+fc weights, output shape, first layer the cores cannot run yet)
    "vgg8_cifar10": (13, 12_973_440, (1, 1, 10), "pool1"),
    "mobilenetv2_block": (6, 8_856, (32, 32, 24), "dw"),
    "mlp_784_512_512_10": (4, 668_672, (1, 1, 10), None),
    "resnet18_imagenet": (32, 11_678_912, (1, 1, 1000), "maxpool"),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_loads_and_its_reference_forward_pass_runs(name):
    layers, weights, out_shape, _ = ZOO[name]
    net = load_model(MODELS / f"{name}.toml")
    assert len(net.layers) == layers
    # make_params normalises each channel on its calibration batch: fc layers need several images,
    # ResNet-18's 224 x 224 maps give enough statistics with two (and keep the test short)
    params = make_params(net, seed=1, calibration_images=2 if name == "resnet18_imagenet" else 8)
    assert sum(p.weights.size for p in params.values()) == weights
    images = make_images(net, 1, seed=2)
    out = reference_forward(net, params, images)
    for layer in net.layers:
        assert out[layer.name].shape == (1, layer.out_h, layer.out_w, layer.out_channels)
    final = out[net.output_layer.name]
    assert final.shape[1:] == out_shape
    assert np.unique(final).size > 3  # not a constant or saturated output
