"""The functional datapath on every stage kind (issue 12): digital stages (maxpool, local and
global avgpool, unfused add, depthwise and fc on a processor of their own), grouped and depthwise
convs on crossbars (block-diagonal, with Ottavi's jobs), non-square windows, flatten + fc over a
whole map, concats of branches of different depth, MLPs. Each network runs on the simulated cores
with real values in both functional modes and two speculation policies, and its outputs must equal
the numpy reference forward pass bit for bit (ADCs wide enough that no accepted conversion clips)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simpy

from cimsim.config import load_scenario
from cimsim.functional.chip_math import LayerMath, dense_kernel_matrix
from cimsim.functional.crossbar import CrossbarConfig
from cimsim.functional.reference import conv_accumulate, im2col
from cimsim.functional.weights import make_params
from cimsim.hw.chip import build_chip
from cimsim.mapping import map_network
from cimsim.mapping.stages import Unit
from cimsim.network import load_model
from cimsim.network.model import load_model_text
from cimsim.runner import run_scenario


def head(h: int = 6, w: int = 6, c: int = 3) -> str:
    return f'name = "k"\nbits = 8\n[input]\nheight = {h}\nwidth = {w}\nchannels = {c}\n'


from harness import layer


def conv(name: str, inp: str, out: int, kernel: str = "3", padding: str = "1", **extra: str) -> str:
    return layer(name=f'"{name}"', type='"conv"', input=f'"{inp}"', out_channels=str(out), kernel=kernel,
                 padding=padding, relu="true", **extra)


C1 = conv("c1", "input", 4)
NETS: dict[str, tuple[str, str]] = {
    "maxpool": (head() + C1 + layer(name='"p"', type='"maxpool"', input='"c1"', kernel="3", stride="2",
                                    padding="1") + conv("c2", "p", 4), ""),
    "local_avgpool": (head() + C1 + layer(name='"p"', type='"avgpool"', input='"c1"', kernel="2", stride="2")
                      + layer(name='"q"', type='"avgpool"', input='"p"', kernel="3", padding="1")
                      + conv("c2", "q", 4), ""),
    "depthwise_crossbar": (head() + C1 + conv("dw", "c1", 4, groups="4") + conv("pw", "dw", 5, "1", "0"), ""),
    "depthwise_jobs": (head() + C1 + conv("dw", "c1", 4, groups="4") + conv("pw", "dw", 5, "1", "0"),
                       "depthwise_job_channels = 2\n"),
    "depthwise_digital": (head() + C1 + conv("dw", "c1", 4, groups="4") + conv("pw", "dw", 5, "1", "0"),
                          'depthwise = "digital"\n'),
    "grouped": (head() + C1 + conv("g", "c1", 6, groups="2") + conv("c2", "g", 3, "1", "0", groups="3"), ""),
    "non_square": (head(6, 7) + conv("a", "input", 4, "[3, 1]", "[1, 0]")
                   + conv("b", "a", 3, "[2, 3]", "[0, 1]", stride="[2, 1]"), ""),
    "flatten_fc_digital": (head() + C1 + layer(name='"p"', type='"maxpool"', input='"c1"', kernel="2", stride="2")
                           + layer(name='"f"', type='"flatten"', input='"p"')
                           + layer(name='"fc"', type='"fc"', input='"f"', out_features="5"), ""),
    "flatten_fc_crossbar": (head() + C1 + layer(name='"f"', type='"flatten"', input='"c1"')
                            + layer(name='"fc"', type='"fc"', input='"f"', out_features="5", relu="true")
                            + layer(name='"fc2"', type='"fc"', input='"fc"', out_features="3"),
                            'fc_on = "crossbar"\n'),
    "concat": (head() + C1 + conv("a", "c1", 3) + conv("b", "a", 2) + conv("c", "c1", 2, "1", "0")
               + layer(name='"cat"', type='"concat"', inputs='["b", "c1", "c"]') + conv("d", "cat", 4), ""),
    # 'a' feeds the add and 'e': the add cannot be fused into it and runs on a core of its own
    "unfused_add": (head() + C1 + conv("a", "c1", 4) + conv("b", "c1", 4, "1", "0")
                    + layer(name='"s"', type='"add"', inputs='["a", "b"]', relu="true") + conv("e", "a", 2)
                    + layer(name='"cat"', type='"concat"', inputs='["s", "e"]')
                    + layer(name='"gap"', type='"avgpool"', input='"cat"')
                    + layer(name='"fc"', type='"fc"', input='"gap"', out_features="4"), ""),
    "global_avgpool_unfused": (head() + C1 + layer(name='"p"', type='"maxpool"', input='"c1"', kernel="2",
                                                   stride="2") + layer(name='"gap"', type='"avgpool"', input='"p"')
                               + layer(name='"fc"', type='"fc"', input='"gap"', out_features="3"), ""),
    "mlp_digital": (head(1, 1, 12) + layer(name='"fc1"', type='"fc"', input='"input"', out_features="8", relu="true")
                    + layer(name='"fc2"', type='"fc"', input='"fc1"', out_features="4"), ""),
    "mlp_crossbar": (head(1, 1, 12) + layer(name='"fc1"', type='"fc"', input='"input"', out_features="8",
                                            relu="true")
                     + layer(name='"fc2"', type='"fc"', input='"fc1"', out_features="4"), 'fc_on = "crossbar"\n'),
}


def scenario(tmp_path: Path, model: str, mapping: str, mode: str, policy: str, extra: str = "") -> Path:
    (tmp_path / "m.toml").write_text(model)
    path = tmp_path / "s.toml"
    path.write_text(f'model = "m.toml"\n[run]\nbatch = 2\n[chip]\ncrossbar_rows = 32\ncrossbar_cols = 16\n'
                    f'[mapping]\n{mapping}[functional]\nenabled = true\nmode = "{mode}"\npolicy = "{policy}"\n'
                    f"adc_bits = 16\n{extra}")
    return path


def functional(tmp_path: Path, name: str, mode: str, policy: str) -> dict:
    model, mapping = NETS[name]
    report = run_scenario(scenario(tmp_path, model, mapping, mode, policy))
    return report.summary["functional"] | {"_plan": report.record.plan}


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_stage_kind_matches_the_reference(tmp_path: Path, name: str) -> None:
    results = {(mode, policy): functional(tmp_path, name, mode, policy)
               for mode in ("batched", "per_group") for policy in ("off", "on_failure")}
    for key, f in results.items():
        assert f["reference_match"] and f["mismatching_values"] == 0 and f["images_checked"] == 2, (key, f)
    # the two modes compute the same MVMs: the same counters
    for policy in ("off", "on_failure"):
        assert results[("batched", policy)]["totals"] == results[("per_group", policy)]["totals"], policy
    plan = results[("batched", "off")]["_plan"]
    units = {lm.unit for lm in plan.layers.values()}
    expect_digital = name not in ("depthwise_crossbar", "depthwise_jobs", "grouped", "non_square", "concat",
                                  "flatten_fc_crossbar", "mlp_crossbar")
    assert (Unit.DIGITAL in units) == expect_digital, units
    crossbar = {n for n, lm in plan.layers.items() if lm.unit is Unit.CROSSBAR}
    assert set(results[("batched", "off")]["layers"]) == crossbar  # counters of crossbar stages only
    if name == "concat":
        assert plan.layers["d"].main_inputs == ("b", "c1", "c")
    if name == "depthwise_jobs":
        assert plan.layers["dw"].jobs == 2


def test_depthwise_jobs_add_up_their_mvms(tmp_path: Path) -> None:
    """Split into 2 jobs, the depthwise layer runs 2 MVMs per output, each converting its 2 columns:
    as many column conversions as the unsplit 4 columns, twice the MVMs; every group's crossbar
    cycles are the sum over its jobs (policy off: 8 slices each)."""
    model, _ = NETS["depthwise_jobs"]
    one = run_scenario(scenario(tmp_path, model, "", "per_group", "off"))
    two = run_scenario(scenario(tmp_path, model, "depthwise_job_channels = 2\n", "per_group", "off"))
    a, b = one.summary["functional"]["layers"]["dw"], two.summary["functional"]["layers"]["dw"]
    assert b["mvms"] == 2 * a["mvms"] and b["column_mvms"] == a["column_mvms"]
    assert b["adc_converts"] == a["adc_converts"]
    lm = two.record.plan.layers["dw"]
    assert (lm.rows, lm.cols, lm.devices) == (18, 4, 72)  # the mapper's: 2 jobs in column bands on 9 x 2 shared rows
    # 8 crossbar cycles per job (policy off) are the base of each of its 2 MVMs: no recovery stall
    stalls = {lay["name"]: lay["stall_timesteps"]["recovery"] for lay in two.summary["layers"]}
    assert stalls["dw"] == 0


def test_depthwise_job_array_is_the_folded_block_diagonal() -> None:
    """A depthwise 3x3 conv of 4 channels in 2 jobs: a 36 x 2 array whose rows of channel c hold its
    kernel in column c mod 2; each job drives its channels' rows; the values are the reference's."""
    net = load_model_text(head(5, 5, 4) + conv("dw", "input", 4, groups="4"), "m")
    params = make_params(net, 3)
    lay = net.layer("dw")
    math = LayerMath(lay, params["dw"], CrossbarConfig(64, 64, adc_bits=16, policy="off"), 1, 64, jobs=2)
    dense = dense_kernel_matrix(params["dw"].weights, 4)
    assert dense.shape == (36, 4) and np.count_nonzero(dense) <= 36
    ((_, _, xbar),) = math.parts
    assert xbar.matrix.shape == (36, 2)
    assert np.array_equal(math.row_mask, np.arange(2)[:, None] == (np.arange(36) % 4) // 2)
    x = np.random.default_rng(0).integers(-50, 50, size=(1, 5, 5, 4)).astype(np.int8)
    win = im2col(x, 3, 1, 1)[0].reshape(25, 36)
    res = math.compute(win)
    ref = conv_accumulate(x, params["dw"].weights, 1, 1, groups=4)[0].reshape(25, 4)
    assert np.array_equal(res.acc, ref)
    assert res.mvms == 2 * 25 and np.array_equal(res.cycles, res.job_cycles.sum(axis=0))
    assert res.job_cycles.shape == (2, 25) and (res.cycles == 16).all()


class _Actions:
    """Records the action events (layer, component) of a run."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def action(self, image, layer, component, action, argument, n, recovery) -> None:
        self.seen.add((layer, str(component)))


def test_digital_stage_takes_no_mvm_and_no_recovery(tmp_path: Path) -> None:
    """A maxpool on a digital processor: with policy always (11-cycle MVMs on the crossbar stages)
    its steps show no recovery, and the datapath sends no crossbar, DAC or ADC events for it."""
    model, _ = NETS["maxpool"]
    sc = load_scenario(scenario(tmp_path, model, "", "per_group", "always"))
    net = load_model(sc.model)
    actions = _Actions()
    chip = build_chip(simpy.Environment(), sc, net, map_network(net, sc), [actions])
    assert chip.datapath is not None
    chip.datapath.probe = chip.probe
    pool = next(c for c in chip.cores.values() if c.spec.layer == "p")
    conv1 = next(c for c in chip.cores.values() if c.spec.layer == "c1")
    assert pool.base_mvm_cycles == 0 and conv1.base_mvm_cycles == 11  # policy always: 3 + 8 slices
    record = chip.run()
    assert record.extra["functional"]["reference_match"]
    assert record.cores[pool.spec.id].stall_timesteps.get("recovery", 0) == 0
    assert {c for layer, c in actions.seen if layer == "p"} == set()
    assert {c for layer, c in actions.seen if layer == "c1"} >= {"adc", "dac", "crossbar"}


def test_depth_multiplier_straddling_jobs_gets_a_block_per_job() -> None:
    """Depthwise with a depth multiplier of 2 in jobs of 1 channel: a channel's two outputs are in
    two jobs, so the jobs cannot share columns; each job has its block, and the values stay exact."""
    net = load_model_text(head(4, 4, 2) + conv("dw", "input", 4, groups="2"), "m")
    params = make_params(net, 5)
    math = LayerMath(net.layer("dw"), params["dw"], CrossbarConfig(64, 64, adc_bits=16, policy="off"), 1, 64,
                     jobs=4)
    assert len(math.parts) == 4 and all(x.matrix.shape == (18, 1) for _, _, x in math.parts)
    x = np.random.default_rng(1).integers(-60, 60, size=(1, 4, 4, 2)).astype(np.int8)
    res = math.compute(im2col(x, 3, 1, 1)[0].reshape(16, 18))
    assert np.array_equal(res.acc, conv_accumulate(x, params["dw"].weights, 1, 1, groups=2)[0].reshape(16, 4))
