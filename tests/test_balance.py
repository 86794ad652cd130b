"""The pipeline balancer: within the budget, only replicas that fit, the exhaustive optimum on a
small network, and its predicted image interval against the simulated one."""

from __future__ import annotations

import dataclasses
import itertools
import json
from fractions import Fraction
from pathlib import Path

import pytest

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.errors import MappingError
from cimsim.mapping import map_network
from cimsim.mapping.balance import interval_of, layer_options, resolve, stage_times
from cimsim.network import load_model
from cimsim.runner import run

ROOT = Path(__file__).resolve().parent.parent
RESNET = ROOT / "models" / "resnet32_cifar10.toml"

SMALL = """\
name = "small_balance"
bits = 8

[input]
height = 8
width = 8
channels = 3

[[layers]]
name = "conv1"
type = "conv"
input = "input"
out_channels = 16
kernel = 3
padding = 1
relu = true

[[layers]]
name = "conv2"
type = "conv"
input = "conv1"
out_channels = 32
kernel = 3
padding = 1

[[layers]]
name = "conv3"
type = "conv"
input = "conv2"
out_channels = 32
kernel = 3
padding = 1

[[layers]]
name = "add1"
type = "add"
inputs = ["conv3", "conv2"]

[[layers]]
name = "conv4"
type = "conv"
input = "add1"
out_channels = 32
kernel = 3
stride = 2
padding = 1
"""


def _scenario(tmp_path: Path, model: str | Path, body: str, overrides: list[str] | None = None):
    if isinstance(model, str):
        (tmp_path / "m.toml").write_text(model)
        model = tmp_path / "m.toml"
    path = tmp_path / "s.toml"
    path.write_text(f'model = "{model}"\nname = "bal"\n[dataflow]\nmode = "balanced"\n{body}')
    return load_scenario(path, overrides or [])


def _small_scenario(tmp_path: Path, cores: int):
    # 200-cycle timesteps: rates up to ~20 fit a step, so the budget, not the timestep, binds
    return _scenario(tmp_path, SMALL, f"[mapping]\nmax_cores = {cores}\n[chip]\ncrossbar_rows = 128\n"
                                      "crossbar_cols = 128\narray_rows = 4\narray_cols = 8\n"
                                      "cycles_per_timestep = 200\n")


@pytest.mark.parametrize("budget", [8, 9, 10, 12, 32])
def test_matches_exhaustive_search_on_a_small_network(tmp_path: Path, budget: int) -> None:
    scenario = _small_scenario(tmp_path, budget)
    net = load_model(scenario.model)
    options = layer_options(net, scenario)
    times = stage_times(options, scenario.chip.cycles_per_timestep, True)
    input_pixels = net.input_layer.out_h * net.input_layer.out_w
    try:
        resolved, balance = resolve(net, scenario)
    except MappingError:
        resolved, balance = None, None
    best: tuple[Fraction, int] | None = None
    names = list(options)
    for combo in itertools.product(*(options[n] for n in names)):
        rates = dict(zip(names, combo, strict=True))
        cores = sum(options[n][r].cores for n, r in rates.items())
        if cores > budget:
            continue
        interval = min(interval_of(times, rates, r_in, input_pixels) for r_in in range(1, input_pixels + 1)
                       if input_pixels % r_in == 0)
        if best is None or (interval, cores) < best:
            best = (interval, cores)
    if best is None:
        assert balance is None
        return
    assert balance is not None and resolved is not None
    assert (balance.interval_timesteps, balance.cores) == best
    assert interval_of(times, balance.rates, balance.input_pixels_per_timestep, input_pixels) == best[0]
    plan = map_network(net, resolved)
    assert plan.core_count == balance.cores <= budget


@pytest.mark.parametrize("budget", [42, 48, 64, 96])
def test_resnet32_within_budget_and_replicas_fit(tmp_path: Path, budget: int) -> None:
    scenario = _scenario(tmp_path, RESNET, f"[mapping]\nmax_cores = {budget}\n[chip]\narray_cols = 12\n")
    net = load_model(scenario.model)
    resolved, balance = resolve(net, scenario)
    assert balance is not None
    plan = map_network(net, resolved)
    assert plan.core_count == balance.cores <= budget
    assert plan.warnings == ()
    for name, lm in plan.layers.items():
        assert lm.rate == balance.rates[name]
        # every core's share of the collective kernel matrix fits its crossbar
        assert lm.fits or lm.row_parts * scenario.chip.crossbar_rows >= lm.rows
        assert lm.cols <= lm.col_parts * scenario.chip.crossbar_cols
    assert resolved.input.pixels_per_timestep == balance.input_pixels_per_timestep


def test_more_cores_never_slower_and_prediction_bounds_the_simulation(tmp_path: Path) -> None:
    # Two SRAM ports (stores and reads overlap): on one port the stage-1 add cores' residual
    # writes and read-backs keep every rate above 4 at 256 timesteps per image or more, so no
    # budget of the 8 x 12 array is faster than 42 cores (README "The pipeline balancer").
    scenario = _scenario(tmp_path, RESNET, "[mapping]\nmax_cores = 42\n[chip]\narray_cols = 12\nsram_ports = 2\n"
                         "[run]\nbatch = 6\n")
    net = load_model(scenario.model)
    intervals = []
    for budget in (42, 64, 96):
        _, balance = resolve(net, dataclasses.replace(scenario, mapping=dataclasses.replace(scenario.mapping,
                                                                                            max_cores=budget)))
        assert balance is not None
        intervals.append(balance.interval_timesteps)
    assert intervals == sorted(intervals, reverse=True) and intervals[-1] < intervals[0]
    summary = run(scenario).summary
    b = summary["balancer"]
    # the model is a lower bound of the simulated interval (fill and column starts add to it)
    assert summary["image_interval_timesteps"] >= b["predicted_interval_timesteps"]
    print(f"\nbalanced ResNet-32, 42 cores: predicted {b['predicted_interval_timesteps']:g}, simulated "
          f"{summary['image_interval_timesteps']:.1f} timesteps per image")
    assert summary["cores"] == b["cores"] <= 42


def test_balanced_summary_and_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.toml").write_text(SMALL)
    path = tmp_path / "s.toml"
    path.write_text('model = "m.toml"\nname = "bal"\n[dataflow]\nmode = "balanced"\n[mapping]\nmax_cores = 8\n'
                    "[chip]\narray_rows = 4\narray_cols = 6\n[run]\nbatch = 2\n")
    trace = tmp_path / "t.h5"
    assert main(["run", str(path), "--json", "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out)
    b = summary["balancer"]
    assert b["max_cores"] == 8 and b["cores"] == summary["cores"] <= 8
    assert {lay["name"]: lay["pixels_per_timestep"] for lay in summary["layers"]} == b["rates"]
    assert main(["report", str(trace), "--json"]) == 0
    assert capsys.readouterr().out == out
    assert main(["run", str(path), "--no-trace"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("balancer    ")


def test_balanced_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.toml").write_text(SMALL)
    path = tmp_path / "s.toml"
    path.write_text('model = "m.toml"\n[dataflow]\nmode = "balanced"\n[chip]\narray_rows = 2\narray_cols = 4\n')
    for extra, message in ((["--set", "mapping.max_cores=2"], "needs at least 6 cores"),
                           (["--set", "mapping.max_cores=9"], "more than the array's"),
                           (["--set", "mapping.replica_fit=assume"], "maps only replicas that fit")):
        assert main(["run", str(path), "--no-trace", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
