"""`cimsim validate`: every reproduced number within its tolerance; a number outside fails it; the README's
reproduction tables are what it prints."""

from __future__ import annotations

import json
import math

import pytest

from cimsim import validate as v
from cimsim.cli import main
from cimsim.validate import checks, measure, readme, tables


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
    pcm = measure.MEASUREMENTS["pcm"][1]()
    assert pcm["mismatching"] == 0  # 24 bits resolve every 256-row column sum
    assert pcm["ideal_latency_timesteps"] == pcm["latency_timesteps"]  # the ADC does not change the timing
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
