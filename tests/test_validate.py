"""`cimsim validate`: every reproduced number within its tolerance; a number outside fails it; the README's
reproduction tables are what it prints."""

from __future__ import annotations

import json
import math

import pytest

from cimsim import validate as v
from cimsim.cli import main
from cimsim.validate import checks, measure, meng_lu, readme, tables


def test_every_reproduction_within_its_tolerance(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["all_within_tolerance"]
    compared = [r for r in out["checks"] if r["tolerance"] is not None]
    assert len(compared) >= 16  # (7 more before the numbers only a bug could change moved to the tests below)
    for r in compared:
        assert r["status"] == "ok", r
        assert r["source"] and r["reason"]
    sources = " ".join(r["source"] for r in out["checks"])
    for paper in ("Dazzi 2021", "RAELLA", "Ottavi 2021", "Meng & Lu 2024"):
        assert paper in sources


def test_a_number_out_of_tolerance_exits_5(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = v.Check("test", "reloading MLP at a wrong paper value", 0.5, "TOPS", "meng_lu", "tops_batch1", 0.1, "test")
    monkeypatch.setattr(checks, "CHECKS", (*checks.CHECKS, wrong))
    assert main(["validate", "--only", "meng_lu"]) == v.EXIT_OUT_OF_TOLERANCE
    out = capsys.readouterr().out
    assert "OUT OF TOLERANCE" in out and "1 out of tolerance" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--only", "nope"], "--only: unknown measurement 'nope'"),
    (["--table", "nope"], "--table: unknown table 'nope'"),
])
def test_unknown_measurement_or_table_is_a_one_line_error(argv: list[str], message: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cimsim: error: {message}") and err.count("\n") == 1


def test_readme_has_every_table_once() -> None:
    names = [b.name for b in readme.blocks(readme.README.read_text())]
    assert sorted(names) == sorted([readme.CHECKS_TABLE, *tables.TABLES])


@pytest.mark.parametrize("name", [readme.CHECKS_TABLE, *(n for n, t in tables.TABLES.items() if t.ci)])
def test_readme_table_is_what_validate_prints(name: str) -> None:
    """The README's table is the command's output, byte for byte (regenerate: python tools/readme_tables.py).
    The slow tables (`ci = False`) are checked by `python tools/readme_tables.py --check`."""
    block = next(b for b in readme.blocks(readme.README.read_text()) if b.name == name)
    assert block.body == readme.render(name)


def test_table_command_prints_the_table_and_its_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--markdown", "--table", "dazzi"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("|  | paper | cimsim | run |") and "`cimsim validate --markdown --table dazzi`" in text
    assert main(["validate", "--json", "--table", "dazzi"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["header"][1] == "paper" and out["rows"][1][2] == "**1,630** timesteps (163.0 us)"


def test_update_rewrites_a_stale_table(tmp_path) -> None:
    path = tmp_path / "README.md"
    path.write_text("text\n<!-- cimsim validate --markdown --table dazzi -->\nold\n" + readme.END + "\nmore\n")
    assert readme.stale(path) == ["dazzi"]
    assert readme.update(path) == ["dazzi"]
    assert readme.stale(path) == [] and readme.update(path) == []
    text = path.read_text()
    assert text.startswith("text\n<!--") and text.endswith(readme.END + "\nmore\n") and "**42**" in text


def test_converts_per_mac_equals_the_summary_s_own() -> None:
    """validate computes MACs from the network where the summary has none (two's complement); the same
    count as the summary's own on a split-sign run (`converts_per_mac` asserts it)."""
    s = measure.fast_run("always")
    f = s["functional"]
    assert measure.converts_per_mac("raella_resnet32_always_fast.toml", s) == pytest.approx(
        f["adc_converts_per_mac"], abs=1e-5)


# --- numbers only a bug could change: checked here, not by `cimsim validate` ---------------------------


def test_exact_numbers_of_the_reproductions() -> None:
    """RAELLA's slicing on the flagship (4.3.2, 6.1), the ideal-ADC PCM/PWM array and the digits CNN at
    9-bit ADCs (exact), measured on the same runs as `cimsim validate`."""
    raella = measure.MEASUREMENTS["raella"][1]()
    assert raella["cycles_always"] == 11  # 3 speculative (4b, 2b, 2b) + 8 one-bit recovery slices
    assert raella["cycles_recovery_only"] == 8
    assert raella["speculative_converts"] == 3  # every column converts its 3 speculative slices
    fast = measure.MEASUREMENTS["raella_fast"][1]()
    assert fast["conv1_cycles_ratio_off"] == 2  # 'Latency is doubled for signed inputs': two passes
    assert fast["conv1_cycles_split_always"] == 22  # 2 x (3 + 8)
    pcm, ideal = measure.MEASUREMENTS["pcm"][1](), measure.MEASUREMENTS["pcm_ideal"][1]()
    assert ideal["mismatching"] == 0  # 24 bits resolve every 256-row column sum
    assert ideal["latency_timesteps"] == pcm["latency_timesteps"]  # the ADC does not change the timing
    digits = measure.MEASUREMENTS["digits"][1]()
    assert digits["chip_minus_int8"] == 0  # no column saturates a 9-bit ADC: every logit is the reference's


def test_the_shipped_pwm_rate_is_the_slowest_that_never_stalls() -> None:
    """Dazzi's pipeline 'never stalls' (3.1.3): the PWM pulse of 128 steps must fit, with the slowest
    step's SRAM and digital cycles, in the 50-cycle timestep. The slowest step's non-MVM cycles come from
    a timing run with a 1-cycle MVM; the shipped rate is the smallest that fits, and one step slower
    overruns the timestep (the latency grows)."""
    from cimsim.config import load_scenario

    overhead = 0

    class Slowest:
        def compute(self, cycle, timestep, core, layer, image, first, count, cycles, row, col):  # type: ignore[no-untyped-def]
            nonlocal overhead
            overhead = max(overhead, cycles - 1)

    from cimsim.runner import run

    run(load_scenario(measure.SCENARIOS / "dazzi2021_resnet32.toml", ["chip.mvm_cycles=1", "run.batch=2"]), [Slowest()])
    shipped = load_scenario(measure.SCENARIOS / "dazzi2021_resnet32_pcm.toml")
    steps = shipped.functional.pwm_steps_per_cycle
    fits = [p for p in range(1, 129) if math.ceil(128 / p) + overhead <= shipped.chip.cycles_per_timestep]
    assert overhead == 22 and fits[0] == steps == 5
    slower = measure.run("dazzi2021_resnet32_pcm.toml", f"functional.pwm_steps_per_cycle={steps - 1}")
    assert slower["latency_timesteps"] > measure.MEASUREMENTS["pcm"][1]()["latency_timesteps"] == 1630


def test_the_paper_intervals_follow_the_throughput_formula() -> None:
    """The intervals the README quotes for the paper's batch-100 throughputs, by the formula the checks use."""
    assert round(measure.paper_interval(526, 38600), 1) == 256.4
    assert round(measure.paper_interval(1628, 9650), 1) == 1030.3
    t = measure.throughput_at({"latency_timesteps": 526, "image_interval_timesteps": measure.paper_interval(526, 38600),
                               "timestep_ns": 100.0}, 100)
    assert t == pytest.approx(38600)


FOOTNOTE_COPIES = (192, 192, 48, 48, 12, 12, 3, 3, 1, 1, 1, 1)
"""Meng & Lu 2024 Table 4 footnote 2's copies of conv1-conv12 (its 11 numbers; the trailing 1 also for the
last stage's second conv), fc1 and fc2 one each."""


def test_meng_lu_copies_mapping_applies_the_footnote_and_counts_its_weights() -> None:
    """The copies scenario's rates are the footnote's, the input keeps pace with conv1, and the mapped
    weights (a dry run) are copies x weights of each layer: 3x3 convs of 3-64-64-128-128-128-128-256-256-
    512-512-512-512 channels, fc 8,192 x 256 and 256 x 10."""
    d = meng_lu.mapped("cnn_copies")
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 128), (128, 128), (128, 256), (256, 256), (256, 512),
             (512, 512), (512, 512), (512, 512)]
    assert d["rates"] == {f"conv{i + 1}": c for i, c in enumerate(FOOTNOTE_COPIES) if c > 1}
    assert d["input_rate"] == 192
    weights = sum(c * 9 * cin * cout for c, (cin, cout) in zip(FOOTNOTE_COPIES, convs, strict=True)) + 8192 * 256 + 2560
    assert d["mapped_weights"] == weights == 34_576_896
    # the stages keep pace with 192 pixels per timestep: 152^2/192, 76^2/48, 38^2/12, 19^2/3 groups
    assert [-(-p // c) for p, c in zip((152**2, 76**2, 38**2, 19**2), (192, 48, 12, 3), strict=True)] == [121] * 4


def test_meng_lu_balanced_within_the_paper_budget() -> None:
    """The balancer within 852 cores (55.8 M weights / 65,536) cannot beat pool1's one pixel per timestep:
    76 x 76 = 5,776 timesteps per image, reached on 211 cores with conv1 and conv2 at 4."""
    d = meng_lu.mapped("cnn_balanced")
    assert d["rates"] == {"conv1": 4, "conv2": 4} and d["input_rate"] == 4
    assert d["cores"] == 211 and d["predicted_interval"] == 76 * 76 and "pool1" in d["predicted_slowest"]


def test_meng_lu_fws_figures() -> None:
    """TOPS at the paper's peak = 92 x MACs per image / (interval x mapped weights): the MLP takes an image per
    timestep with every weight busy (92 TOPS, 391 on cimsim's 100 ns chip); `at_peak` by hand."""
    mlp = meng_lu.fws("mlp")
    assert mlp["interval"] == 1 and mlp["mapped_weights"] == 19_529_728
    assert mlp["tops_at_peak"] == pytest.approx(92) and mlp["tops"] == pytest.approx(2 * 19_529_728 / 100e-9 / 1e12)
    got = meng_lu.at_peak(1000, 4, 500)
    assert got["utilisation"] == 0.5 and got["tops_at_peak"] == 46 and got["tops"] == pytest.approx(0.005)


def test_listed_checks_show_their_measured_value(monkeypatch: pytest.MonkeyPatch) -> None:
    """A miss is listed with its number and deviation (tolerance None, never failing); a check without a
    measured value shows none."""
    rows = v.validate({"meng_lu_copies"})
    by = {r["quantity"]: r for r in rows}
    copies = by["FWS-CIM CNN mapped weights, the paper's copies"]
    assert copies["cimsim"] == 34_576_896 and copies["tolerance"] is None and copies["status"] == "not compared"
    assert copies["deviation"] == pytest.approx(34_576_896 / 55.8e6 - 1)
    unmodelled = v.Check("test", "a number not modelled", 1.0, "x", "none", "", None, "test")
    monkeypatch.setattr(checks, "CHECKS", (*checks.CHECKS, unmodelled))
    (row,) = v.validate({"none"})
    assert row["cimsim"] is None and row["deviation"] is None and row["status"] == "not compared"


def test_meng_lu_copies_bound_is_pool1s_floor() -> None:
    """Whatever the replicated convs do, pool1 (a digital stage, no replicas) emits 76 x 76 pixels one per
    timestep: the copies mapping's interval is at least 5,776, its TOPS at the peak at most 92 x MACs /
    (5,776 x mapped weights)."""
    d = meng_lu.predicted("cnn_copies")
    assert d["floor_interval"] == 5776 and d["floor_layers"] == ("pool1",)
    assert d["tops_at_peak_bound"] == pytest.approx(92 * 3_278_682_624 / (5776 * 34_576_896))
    assert d["predicted_interval"] >= d["floor_interval"]
