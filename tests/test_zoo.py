"""The model zoo: every model file loads and its int8 reference forward pass runs; the generated
files are what tools/make_zoo.py writes; every zoo scenario maps without a problem and the small
ones run on the simulated cores with the run-time invariant checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import simpy

from cimsim.config import Scenario, load_scenario
from cimsim.functional.reference import reference_forward
from cimsim.functional.weights import make_images, make_params
from cimsim.hw.chip import build_chip
from cimsim.mapping import map_network
from cimsim.mapping.sizing import dry_run, resolve_array
from cimsim.network import Network, load_model

MODELS = Path(__file__).resolve().parents[1] / "models"

ZOO = {
    # model: (layers incl. input, conv+fc weights, output shape, calibration images)
    "vgg8_cifar10": (13, 12_973_440, (1, 1, 10), 8),
    "vgg11_cifar10": (16, 9_222_848, (1, 1, 10), 8),
    "mobilenetv2_block": (6, 8_856, (32, 32, 24), 8),
    "mobilenetv2_cifar10": (65, 2_202_560, (1, 1, 10), 8),
    "mlp_784_512_512_10": (4, 668_672, (1, 1, 10), 8),
    "resnet20_cifar10": (33, 270_896, (1, 1, 10), 8),
    "resnet56_cifar10": (87, 851_504, (1, 1, 10), 8),
    "resnet110_cifar10": (168, 1_722_416, (1, 1, 10), 8),
    # ResNet-18's 224 x 224 and the pseudo CNN's 152 x 152 maps give enough statistics with two
    # images (and keep the test short); the fcs after them are normalised on these two as well
    "resnet18_imagenet": (32, 11_678_912, (1, 1, 1000), 2),
    "meng_lu2024_cnn": (21, 11_796_672, (1, 1, 10), 2),
    "meng_lu2024_mlp": (6, 19_529_728, (1, 1, 512), 8),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_loads_and_its_reference_forward_pass_runs(name):
    layers, weights, out_shape, calibration = ZOO[name]
    net = load_model(MODELS / f"{name}.toml")
    assert len(net.layers) == layers
    # make_params normalises each channel on its calibration batch: fc layers need several images
    params = make_params(net, seed=1, calibration_images=calibration)
    assert sum(p.weights.size for p in params.values()) == weights
    images = make_images(net, 1, seed=2)
    out = reference_forward(net, params, images)
    for layer in net.layers:
        assert out[layer.name].shape == (1, layer.out_h, layer.out_w, layer.out_channels)
    final = out[net.output_layer.name]
    assert final.shape[1:] == out_shape
    assert np.unique(final).size > 3  # not a constant or saturated output


ROOT = MODELS.parent
ZOO_SCENARIOS = sorted((ROOT / "scenarios" / "zoo").glob("*.toml"))
SMALL = ("resnet20_cifar10", "mlp_784_512_512_10", "mobilenetv2_block")
"""Zoo scenarios small enough to simulate in the test suite (the others only map here)."""


def _make_zoo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_zoo", ROOT / "tools" / "make_zoo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_zoo_model_has_a_scenario_and_a_reference_test():
    stems = {p.stem for p in ZOO_SCENARIOS}
    assert stems == set(ZOO)
    assert set(_make_zoo().GENERATED) <= stems


def test_generated_files_are_what_make_zoo_writes(tmp_path: Path):
    """The committed models and scenarios are up to date with tools/make_zoo.py."""
    make_zoo = _make_zoo()
    assert make_zoo.main(["--out", str(tmp_path / "models"), "--scenarios", str(tmp_path / "zoo")]) == 0
    for stem in make_zoo.GENERATED:
        assert (tmp_path / "models" / f"{stem}.toml").read_text() == (MODELS / f"{stem}.toml").read_text()
    for path in ZOO_SCENARIOS:
        assert (tmp_path / "zoo" / path.name).read_text() == path.read_text()


@pytest.mark.parametrize("path", ZOO_SCENARIOS, ids=lambda p: p.stem)
def test_zoo_scenario_maps_without_problems(path: Path):
    scenario = load_scenario(path)
    net = load_model(scenario.model)
    report = dry_run(net, scenario)
    assert report["problems"] == []
    chip = report["chip"]
    rows, cols = chip["array"]
    assert rows * cols >= chip["cores"] > 0
    assert scenario.chip.sram_depth_words >= chip["min_sram_depth_words"]


@pytest.mark.parametrize("name", SMALL)
def test_small_zoo_scenario_runs_with_invariant_checks(name: str):
    scenario = resolve_array(*_loaded(ROOT / "scenarios" / "zoo" / f"{name}.toml"))
    net = load_model(scenario.model)
    chip = build_chip(simpy.Environment(), scenario, net, map_network(net, scenario))
    record = chip.run()
    assert len(record.image_done_ts) == 1 and record.image_done_ts[0] > 0
    assert chip.drained_problems() == []


def _loaded(path: Path) -> tuple[Network, Scenario]:
    scenario = load_scenario(path, ["run.batch=1", "run.check_invariants=true"])
    return load_model(scenario.model), scenario
