"""The simulated SRAM cycles equal the layout's word counts (issue 3), and a narrow SRAM
word makes the ResNet-32 pipeline stall with cause `sram`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.hw.chip import build_chip, layer_geometry
from cimsim.mapping import map_network
from cimsim.mapping.sram import AddressGenerator, make_layout
from cimsim.network import load_model

ROOT = Path(__file__).resolve().parent.parent
H, W, C = 5, 7, 3
MVM, DIGITAL = 7, 3

MODEL = f"""
name = "one_conv"
[input]
height = {H}
width = {W}
channels = {C}
[[layers]]
name = "conv1"
type = "conv"
input = "input"
out_channels = 4
kernel = 3
padding = 1
"""


def _words(address: int, bits: int, word_bits: int) -> set[int]:
    return set(range(address // word_bits, (address + bits - 1) // word_bits + 1))


class _Events:
    def __init__(self) -> None:
        self.computes: list[tuple[int, int, int, int]] = []

    def compute(self, cycle, timestep, core, layer, image, first, count, cycles, row, col):
        self.computes.append((timestep, image, first, cycles))

    def stall(self, *args):
        pass

    def image_done(self, *args):
        pass


@pytest.mark.parametrize("method", ["iwap", "klip", "plip"])
@pytest.mark.parametrize("word_bits", [16, 40, 64])
def test_store_and_read_cycles_equal_layout_word_counts(tmp_path: Path, method: str, word_bits: int) -> None:
    (tmp_path / "m.toml").write_text(MODEL)
    (tmp_path / "s.toml").write_text(f"""
model = "m.toml"
[chip]
cycles_per_timestep = 1000
mvm_cycles = {MVM}
digital_cycles = {DIGITAL}
sram_word_bits = {word_bits}
sram_depth_words = 4096
[mapping]
sram_method = "{method}"
[run]
batch = 3
""")
    scenario = load_scenario(tmp_path / "s.toml")
    net = load_model(scenario.model)
    plan = map_network(net, scenario)
    import simpy

    env = simpy.Environment()
    events = _Events()
    chip = build_chip(env, scenario, net, plan, [events])
    chip.run()
    bits = C * 8
    # The reference: Algorithm 2's addresses, counted into words here, independently of
    # the simulator's precomputed tables.
    gen = AddressGenerator(make_layout(method, bits, H, 3, word_bits), H, W, 3, 1)
    geom = layer_geometry(net, plan, "conv1")
    n_in = H * W
    assert len(events.computes) == 3 * geom.n_groups
    for timestep, image, first, cycles in events.computes:
        gi = first  # rate 1: one output per group
        # this timestep's store: input pixel `timestep` arrives and is stored at once
        b, k = divmod(timestep, n_in)
        col, x = divmod(k, H)
        writes = len(_words(gen.store_addresses(b * W + col, x), bits, word_bits)) if timestep < 3 * n_in else 0
        out_col = gi // geom.out_h
        reads = 0
        for row in geom.group_rows[gi]:
            words: set[int] = set()
            for addr in gen.read_addresses(row, out_col - 1, image=image):
                words |= _words(addr, bits, word_bits)
            reads += len(words)
        assert cycles == writes + reads + MVM + DIGITAL, (timestep, image, gi)


def test_narrow_sram_word_stalls_the_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(ROOT / "scenarios/narrow_sram_stall.toml"), "--json"]) == 0
    narrow = json.loads(capsys.readouterr().out)
    assert main(["run", str(ROOT / "scenarios/dazzi2021_resnet32.toml"), "--json"]) == 0
    wide = json.loads(capsys.readouterr().out)
    sram = {lay["name"]: lay["stall_timesteps"]["sram"] for lay in narrow["layers"]}
    assert sum(sram.values()) > 0
    assert all(lay["stall_timesteps"]["sram"] == 0 for lay in wide["layers"])
    # 56-channel pixels need 14 words of 32 bits: the stage-3 layers overrun the timestep
    assert sram["conv23"] > 0
    assert narrow["latency_timesteps"] > wide["latency_timesteps"]
