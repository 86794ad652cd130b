"""Dazzi's `read_res` (Algorithm 1 lines 21-22): the block's first core reads each residual pixel
from its own input memory and sends it to the adding core, which stores none
(`mapping.residual_source = "read_res"`, the default), against the adding core keeping a copy
(`"adder_copy"`).

The network: an 8 x 8 x 8 image streamed one pixel per timestep (pixel k, index = column * 8 + row,
arrives at timestep k), conv1 -> conv2 -> conv3, all 3x3 / stride 1 / padding 1 with 8 channels, and
add3 = conv3 + conv1 fused into conv3's digital processor. As derived in tests/test_stage_timing.py,
each conv is a fixed delay of H + 1 = 9 timesteps: conv1's output j (the residual pixel j) at j + 9,
conv2's at j + 18, conv3's at j + 27. conv2 is the block's first core: its input memory holds conv1's
pixels. conv3's output (r, c) depends on conv2's (r + 1, c + 1), which depends on conv1's (r + 2, c + 2)
(clamped to the image): conv2 sends residual pixel (r, c) when it has stored conv1's (r + 2, c + 2),
at timestep idx(r + 2, c + 2) + 9 = idx(r, c) + 18 + 9 for rows r <= 5, the timestep conv3 adds it
(rows 5 to 7 of a column all wait for conv1's row 7, and go together as conv3's inbox of two allows).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import simpy
from harness import layer

from cimsim.config import load_scenario
from cimsim.hw.chip import Chip
from cimsim.mapping import map_network
from cimsim.mapping.plan import ResidualPath
from cimsim.network import load_model
from cimsim.network.layers import EdgeRole
from cimsim.runner import run

H = W = 8
C = 8
MVM, DIGITAL = 7, 3
MODEL = (f'name = "block"\n[input]\nheight = {H}\nwidth = {W}\nchannels = {C}\n'
         + layer(name='"conv1"', type='"conv"', input='"input"', out_channels=str(C), kernel="3", padding="1",
                 relu="true")
         + layer(name='"conv2"', type='"conv"', input='"conv1"', out_channels=str(C), kernel="3", padding="1",
                 relu="true")
         + layer(name='"conv3"', type='"conv"', input='"conv2"', out_channels=str(C), kernel="3", padding="1")
         + layer(name='"add3"', type='"add"', inputs='["conv3", "conv1"]', relu="true"))


def write(tmp_path: Path, source: str, word_bits: int = 64, extra: str = "", batch: int = 2) -> Path:
    (tmp_path / "m.toml").write_text(MODEL)
    path = tmp_path / f"{source}.toml"
    path.write_text(f"""
model = "m.toml"
[chip]
cycles_per_timestep = 1000
mvm_cycles = {MVM}
digital_cycles = {DIGITAL}
sram_word_bits = {word_bits}
sram_depth_words = 4096
[mapping]
sram_method = "plip"
residual_source = "{source}"
[energy]
enabled = true
table = "dazzi2021_14nm"
[run]
batch = {batch}
check_invariants = true
{extra}""")
    return path


def test_the_residual_flows_from_the_first_core_and_the_adder_keeps_no_copy(tmp_path: Path) -> None:
    plans = {}
    for source in ("read_res", "adder_copy"):
        sc = load_scenario(write(tmp_path, source))
        plans[source] = map_network(load_model(sc.model), sc)
    rr, ac = plans["read_res"], plans["adder_copy"]
    l3, l2 = rr.layers["conv3"], rr.layers["conv2"]
    assert (l3.residual_path, l3.residual_from, l3.residual_input) == (ResidualPath.READ_RES, "conv2", "conv1")
    assert l3.residual_chain == ("conv3", "conv2") and l2.residual_path is None  # conv2 sends, adds nothing
    res = [f for f in rr.flows if f.role is EdgeRole.RESIDUAL]
    assert [(f.src_layer, f.dst_layer, f.read_res, f.packet_bits) for f in res] == [("conv2", "conv3", True, 64)]
    # the adding core's input memory is the paper's H x F pixels + the zero pixel, as its first core's
    assert l3.sram_words == l2.sram_words == H * 3 + 1 and l3.residual_pixel_words == 0
    c3 = ac.layers["conv3"]
    assert (c3.residual_path, c3.residual_from) == (ResidualPath.ADDER_COPY, "conv1")
    assert [(f.src_layer, f.read_res) for f in ac.flows if f.role is EdgeRole.RESIDUAL] == [("conv1", False)]
    assert c3.sram_words == H * 3 + 1 + 1 * (1 + 2) * H  # + dW + 2 output columns of one-word residual pixels


class _Steps:
    def __init__(self) -> None:
        self.cycles: dict[tuple[str, int, int], tuple[int, int]] = {}

    def compute(self, cycle, timestep, core, layer, image, first, count, cycles, row, col):  # type: ignore[no-untyped-def]
        self.cycles[(layer, image, first)] = (timestep, cycles)


@pytest.mark.parametrize("word_bits", [16, 40, 64])
def test_read_res_sram_words_and_cycles_by_hand(tmp_path: Path, word_bits: int) -> None:
    """PLIP pixels of 64 bits take w = ceil(64 / word_bits) words. With read_res the first core
    (conv2) reads every conv1 pixel once more (w words each) and conv3 neither writes nor reads a
    residual; with adder_copy conv3 writes each (w) and reads it back (w). In the steady state inside
    the image (conv2's outputs in rows 0..5 of columns 0..4; columns 2..4 of a later image) conv2's
    step reads one residual pixel
    (module docstring: the one conv3 adds nine timesteps later) or none; conv3's step with a copy
    stores one and reads one."""
    w = math.ceil(64 / word_bits)
    runs, steps = {}, {}
    for source in ("read_res", "adder_copy"):
        sc = load_scenario(write(tmp_path, source, word_bits))
        steps[source] = _Steps()
        runs[source] = run(sc, [steps[source]]).summary
    counts = {s: {(r["layer"], r["action"]): r["count"] for r in runs[s]["energy"]["counts"]["counts"]
                  if r["component"] == "sram"} for s in runs}
    rr, ac = counts["read_res"], counts["adder_copy"]
    batch, n = 2, H * W
    assert rr[("conv2", "word_read")] - ac[("conv2", "word_read")] == batch * n * w
    assert ac[("conv3", "word_read")] - rr[("conv3", "word_read")] == batch * n * w
    assert ac[("conv3", "word_write")] - rr[("conv3", "word_write")] == batch * n * w
    assert rr[("conv3", "word_write")] == batch * n * w  # only its input pixels
    assert runs["read_res"]["latency_timesteps"] == runs["adder_copy"]["latency_timesteps"] == 63 + 27 + 1
    for image in range(batch):
        for c in range(5):
            for r in range(6):
                j = c * H + r
                if image and c < 2:  # conv2 still sends the previous image's last columns, paced by conv3
                    continue
                t2, rr2 = steps["read_res"].cycles[("conv2", image, j)]
                _, ac2 = steps["adder_copy"].cycles[("conv2", image, j)]
                t3, rr3 = steps["read_res"].cycles[("conv3", image, j)]
                _, ac3 = steps["adder_copy"].cycles[("conv3", image, j)]
                assert (t2, t3) == (image * n + j + 18, image * n + j + 27)
                # conv2's output (r, c) at j + 18 stores conv1's (r + 1, c + 1), which releases
                # residual pixel (r - 1, c - 1); row 0 stores a pixel of row 1, which releases none
                assert rr2 - ac2 == (w if r >= 1 and c >= 1 else 0), (image, r, c)
                assert ac3 - rr3 == 2 * w, (image, r, c)


def _owed_holds(path: Path, *overrides: str) -> tuple[dict[str, int], list[int]]:
    sc = load_scenario(path, list(overrides))
    net = load_model(sc.model)
    chip = Chip(simpy.Environment(), sc, net, map_network(net, sc))
    record = chip.run()
    return {c.spec.name: c.owed_holds for c in chip.cores.values()}, record.image_done_ts


def test_a_slot_still_owed_to_the_adder_is_kept(tmp_path: Path) -> None:
    """conv1 and conv2 compute 2 pixels per timestep from a 2-pixel source, conv3 only 1: conv2 runs
    ahead of conv3 until its H x F buffer is full of pixels conv3 has not added yet, and then must
    not overwrite one (its stores stop: `owed_holds`); the invariant checks at every step find no
    pixel overwritten before it was sent, the values equal the reference, and with a copy at the
    adder nothing holds conv2 back but its own windows."""
    path = write(tmp_path, "read_res", extra="[input]\npixels_per_timestep = 2\n[dataflow]\n"
                 "layer_rates = { conv1 = 2, conv2 = 2 }\n[functional]\nenabled = true\n", batch=3)
    holds, done = _owed_holds(path)
    assert holds["conv2"] > 0 and holds["conv1"] == holds["conv3"] == 0
    summary = run(load_scenario(path)).summary
    assert summary["functional"]["mismatching_values"] == 0 and summary["functional"]["images_checked"] == 3
    copy_holds, copy_done = _owed_holds(path, "mapping.residual_source=adder_copy")
    assert not any(copy_holds.values())
    assert done == copy_done  # conv3 paces both


def test_a_resampled_residual_or_a_short_buffer_keeps_a_copy(tmp_path: Path) -> None:
    """A residual that no first core holds (the output of a 1 x 1 resampling conv) and one that would
    outrun the first core's buffer are kept by the adding core, with a note saying why."""
    model = (f'name = "rs"\n[input]\nheight = {H}\nwidth = {W}\nchannels = {C}\n'
             + layer(name='"conv1"', type='"conv"', input='"input"', out_channels=str(C), kernel="3", padding="1")
             + layer(name='"rs"', type='"conv"', input='"conv1"', out_channels=str(C), kernel="1")
             + layer(name='"conv2"', type='"conv"', input='"conv1"', out_channels=str(C), kernel="3", padding="1")
             + layer(name='"add2"', type='"add"', inputs='["conv2", "rs"]'))
    (tmp_path / "m.toml").write_text(model)
    (tmp_path / "s.toml").write_text('model = "m.toml"\n')
    sc = load_scenario(tmp_path / "s.toml")
    lm = map_network(load_model(sc.model), sc).layers["conv2"]
    assert (lm.residual_path, lm.residual_from) == (ResidualPath.ADDER_COPY, "rs") and "resampling" in lm.note
    # three 3x3 convs between the block input and the add: the first core's 3-column buffer is too short
    deep = (f'name = "deep"\n[input]\nheight = {H}\nwidth = {W}\nchannels = {C}\n'
            + "".join(layer(name=f'"c{i}"', type='"conv"', input=f'"{src}"', out_channels=str(C), kernel="3",
                            padding="1") for i, src in enumerate(["input", "c0", "c1", "c2"]))
            + layer(name='"add"', type='"add"', inputs='["c3", "c0"]'))
    (tmp_path / "m.toml").write_text(deep)
    sc = load_scenario(tmp_path / "s.toml")
    lm = map_network(load_model(sc.model), sc).layers["c3"]
    assert lm.residual_path is ResidualPath.ADDER_COPY and "H x F buffer" in lm.note
    summary = run(load_scenario(tmp_path / "s.toml", ["run.check_invariants=true"])).summary
    assert summary["latency_timesteps"] == 63 + 4 * 9 + 1


def test_read_res_runs_on_the_shipped_flagship_without_copies_at_stage_one() -> None:
    """The speed-up flagship: the five stage-1 adding cores need the paper's 1.5 KB (97 words of 16
    bytes: 32 x 3 pixels + the zero pixel), the resampled adds (conv13, conv23) keep copies."""
    root = Path(__file__).resolve().parent.parent
    sc = load_scenario(root / "scenarios" / "dazzi2021_resnet32_speedup.toml")
    plan = map_network(load_model(sc.model), sc)
    for name in ("conv3", "conv5", "conv7", "conv9", "conv11"):
        assert plan.layers[name].residual_path is ResidualPath.READ_RES
        assert plan.layers[name].sram_words * 16 == 1552
    assert {plan.layers[n].residual_path for n in ("conv13", "conv23")} == {ResidualPath.ADDER_COPY}
    assert np.all([plan.layers[n].residual_path is ResidualPath.READ_RES
                   for n in ("conv15", "conv17", "conv25", "conv31")])
