"""Deadlocks and stalled runs stop with exit code 3 and a report of what waits for what (issue 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.errors import SimulationError
from cimsim.mapping import map_network
from cimsim.network import load_model
from cimsim.runner import run

# A residual add across a long main path: the add's core must buffer the shortcut's
# pixels while four convolutions fill their windows. With the SRAM sized to exactly the
# mapper's minimum residual area (dW + 2 = 3 output columns) the shortcut producer fills
# that area, blocks, and so starves the main path that would drain it: a deadlock.
LONG_SHORTCUT = """
name = "long_shortcut"
[input]
height = 8
width = 8
channels = 4
[[layers]]
name = "a"
type = "conv"
input = "input"
out_channels = 8
kernel = 3
padding = 1
relu = true
""" + "".join(f"""
[[layers]]
name = "m{i}"
type = "conv"
input = "{'a' if i == 0 else f'm{i - 1}'}"
out_channels = 8
kernel = 3
padding = 1
relu = true
""" for i in range(4)) + """
[[layers]]
name = "add"
type = "add"
inputs = ["m3", "a"]
relu = true
"""


def _scenario(tmp_path: Path, depth: int | None = None) -> Path:
    (tmp_path / "m.toml").write_text(LONG_SHORTCUT)
    s = tmp_path / "s.toml"
    s.write_text('model = "m.toml"\n[run]\nwatchdog_timesteps = 50\n'
                 + (f"[chip]\nsram_depth_words = {depth}\n" if depth else ""))
    return s


def _tight_depth(tmp_path: Path) -> int:
    scenario = load_scenario(_scenario(tmp_path))
    plan = map_network(load_model(scenario.model), scenario)
    return max(lm.sram_words for lm in plan.layers.values())


def test_roomy_sram_runs(tmp_path: Path) -> None:
    assert run(load_scenario(_scenario(tmp_path))).summary["latency_timesteps"] > 0


def test_forced_deadlock_stops_and_names_the_blocked_cores(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _scenario(tmp_path, _tight_depth(tmp_path))
    with pytest.raises(SimulationError) as err:
        run(load_scenario(path))
    msg = str(err.value)
    assert "deadlock" in msg and "\n" not in msg
    # the root: 'a' cannot hand its pixels to the full residual area of m3's core
    assert msg.split(": ", 2)[2].startswith("a (image 0")
    assert "residual buffer of m3" in msg
    assert "m0 (image 0" in msg and "waits for input pixel" in msg
    assert main(["run", str(path), "--no-trace"]) == 3
    err_out = capsys.readouterr().err
    assert err_out.startswith("cimsim: error: deadlock") and "Traceback" not in err_out


def test_watchdog_stops_a_run_that_makes_no_progress(tmp_path: Path) -> None:
    # a run whose timers keep firing but whose cores never compute: the DRAM answers so
    # slowly that nothing happens for longer than the watchdog allows
    path = _scenario(tmp_path)
    scenario = load_scenario(path, ["dram.enabled=true", "dram.latency_ns=1e7", "run.watchdog_timesteps=100"])
    with pytest.raises(SimulationError, match=r"no progress for run.watchdog_timesteps = 100 timesteps"):
        run(scenario)
