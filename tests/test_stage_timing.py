"""Timing of the layer kinds beyond conv/add/global avgpool/fc on the simulated cores, derived by
hand on small inputs (as tests/test_pipeline.py's plain3 latency), and what the mapper makes of
them: digital stages, depthwise on either side, a concat's two branches, an MLP.

Common setting: an 8 x 8 x 3 image streamed one pixel per timestep column by column (pixel k,
index = column * 8 + row, arrives at timestep k), the ideal fabric with 0 hop timesteps, lock-step
clocking with 50 cycles per timestep. A stage computes its outputs in stream order, at most one per
timestep, each as soon as the input pixel completing its window is there:
    T(j) = max(A(need(j)), T(j - 1) + s),
with s the timesteps one step occupies (1 when it fits the 50 cycles). As derived in
test_pipeline.py, a 3x3 / stride 1 / padding 1 conv on this stream is a fixed delay of H + 1 = 9:
conv1's output j is computed at timestep j + 9.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cimsim.cli import main
from cimsim.mapping.stages import Unit
from cimsim.runner import run_scenario

HEAD = 'name = "t"\nbits = 8\n[input]\nheight = 8\nwidth = 8\nchannels = 3\n'


from harness import layer

CONV1 = layer(name='"conv1"', type='"conv"', input='"input"', out_channels="8", kernel="3", padding="1", relu="true")


def scenario(tmp_path: Path, model: str, extra: str = "") -> Path:
    (tmp_path / "model.toml").write_text(model)
    path = tmp_path / "s.toml"
    path.write_text('model = "model.toml"\n' + extra)
    return path


def first_last(report) -> dict[str, tuple[int, int]]:
    return {lay["name"]: (lay["first_output_timestep"], lay["last_output_timestep"]) for lay in report.summary["layers"]}


def test_maxpool_2x2_stride_2(tmp_path: Path) -> None:
    """conv1 -> 2x2/2 maxpool. Pool output (c, r), c, r in 0..3, needs input pixel
    (2c + 1) * 8 + 2r + 1, which conv1 computes at 16c + 2r + 18: every output fires the
    timestep its window completes (2 timesteps apart, never behind), so T(c, r) = 16c + 2r + 18:
    first 18, last (3, 3) = 72, latency 73. Its circular buffer (8 rows x 2 columns) never
    blocks: column 2c + 2's row x arrives at 16c + x + 25, after (c, x // 2) used the slot."""
    model = HEAD + CONV1 + layer(name='"pool"', type='"maxpool"', input='"conv1"', kernel="2", stride="2")
    report = run_scenario(scenario(tmp_path, model))
    assert first_last(report) == {"conv1": (9, 72), "pool": (18, 72)}
    assert report.summary["latency_timesteps"] == 73
    progress = report.record.progress["pool"]
    assert [ts for ts, _ in progress] == [16 * c + 2 * r + 18 for c in range(4) for r in range(4)]
    lm = report.record.plan.layers["pool"]
    assert lm.unit is Unit.DIGITAL and lm.devices == 0 and len(lm.cores) == 1
    assert lm.digital_step_cycles == math.ceil(2 * 2 * 8 / 16)  # window values / chip.digital_ops_per_cycle


DW = layer(name='"dw"', type='"conv"', input='"conv1"', out_channels="8", kernel="3", padding="1", groups="8",
           relu="true")


def test_depthwise_on_crossbar_is_a_conv_with_a_block_diagonal_matrix(tmp_path: Path) -> None:
    """On crossbars the depthwise layer is a dense 72 x 8 matrix (K^2 C x C, of which K^2 C = 72
    devices hold weights): timing as a 3x3 conv, T(j) = j + 18, latency 82 + 9 = 91."""
    report = run_scenario(scenario(tmp_path, HEAD + CONV1 + DW))
    assert first_last(report) == {"conv1": (9, 72), "dw": (18, 81)}
    assert report.summary["latency_timesteps"] == 82
    lm = report.record.plan.layers["dw"]
    assert (lm.unit, lm.rows, lm.cols, lm.devices, lm.weights) == (Unit.CROSSBAR, 72, 8, 576, 72)


def test_depthwise_digital_fits_the_timestep(tmp_path: Path) -> None:
    """With mapping.depthwise = "digital" at 16 MACs per cycle a step is ceil(72 / 16) + 4 = 9
    cycles plus its SRAM accesses: it fits, so the timing equals the crossbar's."""
    report = run_scenario(scenario(tmp_path, HEAD + CONV1 + DW, '[mapping]\ndepthwise = "digital"\n'))
    assert first_last(report) == {"conv1": (9, 72), "dw": (18, 81)}
    lm = report.record.plan.layers["dw"]
    assert (lm.unit, lm.devices, lm.digital_step_cycles) == (Unit.DIGITAL, 0, 9)


def test_depthwise_digital_slow_processor_takes_two_timesteps_per_output(tmp_path: Path) -> None:
    """At 1 MAC per cycle a step is 72 + 4 = 76 cycles plus at most a few SRAM words: two
    timesteps. The dw then computes every other timestep from its first window on,
    T(j) = 18 + 2j (its input, j + 18 at most, is always there in time), the last at 144; the
    last step's outputs are delivered at the start of its second timestep, 145, so the latency
    is 146. Each step stalls its core one timestep for compute."""
    report = run_scenario(scenario(tmp_path, HEAD + CONV1 + DW,
                                   '[mapping]\ndepthwise = "digital"\n[chip]\ndigital_macs_per_cycle = 1\n'))
    assert [ts for ts, _ in report.record.progress["dw"]] == [18 + 2 * j for j in range(64)]
    assert report.summary["latency_timesteps"] == 146
    dw_core = next(c for c in report.record.cores if c.layer == "dw")
    assert dw_core.stall_timesteps.get("compute") == 64


def test_concat_of_branches_of_different_depth(tmp_path: Path) -> None:
    """conv1 feeds conv2 and, directly, a concat with conv2; conv3 (1x1) reads the concat. Its
    pixel k is complete when the later branch delivers it: conv2's k + 18 (conv1's k + 9 waits in
    conv3's SRAM). A 1x1 conv fires on its pixel: T3(j) = j + 18, latency 82."""
    model = (HEAD + CONV1
             + layer(name='"conv2"', type='"conv"', input='"conv1"', out_channels="8", kernel="3", padding="1")
             + layer(name='"cat"', type='"concat"', inputs='["conv2", "conv1"]')
             + layer(name='"conv3"', type='"conv"', input='"cat"', out_channels="4", kernel="1"))
    report = run_scenario(scenario(tmp_path, model))
    assert first_last(report) == {"conv1": (9, 72), "conv2": (18, 81), "conv3": (18, 81)}
    assert report.summary["latency_timesteps"] == 82
    lm = report.record.plan.layers["conv3"]
    assert lm.main_inputs == ("conv2", "conv1") and lm.rows == 16 and lm.skew_capacity >= 9


def test_concat_skew_beyond_the_sram_deadlocks_with_a_report(tmp_path: Path, capsys) -> None:
    """With 32-channel branches (4 words a concat pixel, 2 a branch pixel) and 50 SRAM words,
    conv3 keeps (50 - 36) // 4 = 3 pixels of the short branch, fewer than its lead of 9: conv1
    stops 3 pixels ahead, conv2 then waits for conv1 forever. The run stops (exit 3) with a
    one-line report of what the cores wait for, instead of hanging."""
    wide = 'out_channels = 32\nkernel = 3\npadding = 1\n'
    model = (HEAD + layer(name='"conv1"', type='"conv"', input='"input"') + wide
             + layer(name='"conv2"', type='"conv"', input='"conv1"') + wide
             + layer(name='"cat"', type='"concat"', inputs='["conv2", "conv1"]')
             + layer(name='"conv3"', type='"conv"', input='"cat"', out_channels="4", kernel="1"))
    path = scenario(tmp_path, model, "[chip]\nsram_depth_words = 50\n")
    assert main(["run", str(path), "--no-trace"]) == 3
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "deadlock" in err and "conv3" in err, err


MLP = ('name = "mlp"\nbits = 8\n[input]\nheight = 1\nwidth = 1\nchannels = 64\n'
       + layer(name='"fc1"', type='"fc"', input='"input"', out_features="64", relu="true")
       + layer(name='"fc2"', type='"fc"', input='"fc1"', out_features="10"))


def test_mlp_on_digital_processors(tmp_path: Path) -> None:
    """fc1 reads the input and fc2 follows an fc: both run on digital processors of their own.
    fc1's step: ceil(64 x 64 / 16) + 4 = 260 cycles + its SRAM words, 6 timesteps from timestep 0
    (delivered at the start of timestep 5); fc2: ceil(64 x 10 / 16) + 4 = 44 + SRAM words, 2
    timesteps from 5, done at 6. Image 1 (entering at timestep 1) waits for fc1 until 6: fc1
    6..11, fc2 11..12."""
    path = scenario(tmp_path, MLP)
    report = run_scenario(path, ["run.batch=2"])
    plan = report.record.plan
    cycles = {}
    for name, macs in (("fc1", 64 * 64), ("fc2", 64 * 10)):
        lm = plan.layers[name]
        assert lm.unit is Unit.DIGITAL and lm.digital_step_cycles == math.ceil(macs / 16) + 4
        cycles[name] = lm.digital_step_cycles + lm.write_cycles[1] + lm.read_cycles[1]
    assert math.ceil(cycles["fc1"] / 50) == 6 and math.ceil(cycles["fc2"] / 50) == 2
    assert report.record.image_done_ts == [6, 12]


def test_mlp_on_crossbars(tmp_path: Path) -> None:
    """With mapping.fc_on = "crossbar" each fc is a crossbar core; both fit a timestep, so an
    image is done in the timestep it enters (0 hop timesteps): images 0, 1, 2 at 0, 1, 2."""
    report = run_scenario(scenario(tmp_path, MLP, '[mapping]\nfc_on = "crossbar"\n'), ["run.batch=3"])
    assert report.record.image_done_ts == [0, 1, 2]
    assert {lm.unit for lm in report.record.plan.layers.values()} == {Unit.CROSSBAR}


def test_flatten_fc_reads_the_whole_map(tmp_path: Path) -> None:
    """conv1 -> flatten -> fc (crossbar): the fc's window is the whole 8 x 8 map (its 8 x 8 x 8 = 512
    rows split over two 256-row crossbars), so it fires once per image, on conv1's last output (72)."""
    model = (HEAD + CONV1 + layer(name='"flat"', type='"flatten"', input='"conv1"')
             + layer(name='"fc"', type='"fc"', input='"flat"', out_features="10"))
    report = run_scenario(scenario(tmp_path, model, '[mapping]\nfc_on = "crossbar"\n[chip]\nsram_depth_words = 1024\n'))
    lm = report.record.plan.layers["fc"]
    assert (lm.rows, lm.row_parts, lm.window.kernel) == (512, 2, (8, 8))
    assert first_last(report)["fc"][0] >= 72


@pytest.mark.parametrize("kernel", ["[3, 1]", "[1, 3]"])
def test_non_square_conv_runs_with_its_window(tmp_path: Path, kernel: str) -> None:
    """A 3x1 (or 1x3) conv, padding 0: its window spans 3 rows (columns) and 1 column (row)."""
    model = HEAD + layer(name='"c"', type='"conv"', input='"input"', out_channels="4", kernel=kernel)
    report = run_scenario(scenario(tmp_path, model))
    lm = report.record.plan.layers["c"]
    kh, kw = (3, 1) if kernel == "[3, 1]" else (1, 3)
    assert lm.window.kernel == (kh, kw) and lm.rows == kh * kw * 3
    assert report.summary["layers"][0]["pixels"] == (8 - kh + 1) * (8 - kw + 1)


def test_depthwise_jobs_share_rows_and_run_one_after_another(tmp_path: Path) -> None:
    """mapping.depthwise_job_channels = 4 splits the 8-channel depthwise into 2 jobs (Ottavi's
    C_job = 4): 9 x 4 = 36 shared rows, 8 columns, 9 x 8 x 4 = 288 devices; each output takes
    2 MVMs (2 x 10 cycles, still within the timestep, so the timing is the plain conv's)."""
    report = run_scenario(scenario(tmp_path, HEAD + CONV1 + DW, "[mapping]\ndepthwise_job_channels = 4\n"))
    lm = report.record.plan.layers["dw"]
    assert (lm.rows, lm.cols, lm.devices, lm.weights, lm.jobs, lm.rate) == (36, 8, 288, 72, 2, 1)
    assert first_last(report)["dw"] == (18, 81)
    bad = scenario(tmp_path, HEAD + CONV1 + DW, "[mapping]\ndepthwise_job_channels = 3\n")
    assert main(["run", str(bad), "--no-trace"]) == 2


def test_an_add_after_an_unfused_add_gets_a_stage_of_its_own(tmp_path: Path) -> None:
    """s = add(a, c1) cannot be fused (a also feeds e), so it is a digital add stage with residual
    c1; t = add(s, e) must not be fused into it (that would replace c1 by e as its residual)."""
    model = (HEAD + CONV1
             + layer(name='"a"', type='"conv"', input='"conv1"', out_channels="8", kernel="1")
             + layer(name='"e"', type='"conv"', input='"a"', out_channels="8", kernel="1")
             + layer(name='"s"', type='"add"', inputs='["a", "conv1"]')
             + layer(name='"t"', type='"add"', inputs='["s", "e"]'))
    report = run_scenario(scenario(tmp_path, model))
    plan = report.record.plan
    assert plan.layers["s"].residual_input == "conv1" and plan.layers["s"].fused == ()
    assert plan.layers["t"].unit is Unit.DIGITAL and plan.layers["t"].residual_input == "e"
