"""The simulated SRAM cycles equal the layout's word counts (issue 3), and a narrow SRAM
word makes the ResNet-32 pipeline stall with cause `sram`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import layer

from cimsim.cli import main
from cimsim.config import load_scenario
from cimsim.hw.chip import build_chip, layer_geometry
from cimsim.mapping import map_network
from cimsim.mapping.sram import AddressGenerator, make_layout
from cimsim.network import load_model
from cimsim.runner import run

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


RES_C = 8
"""Channels of the residual test's pixels (64 bits): input, conv1 and the add all carry 8."""


@pytest.mark.parametrize("source", ["read_res", "adder_copy"])
@pytest.mark.parametrize("ports", [1, 2])
@pytest.mark.parametrize("method", ["iwap", "plip"])
@pytest.mark.parametrize("word_bits", [16, 40, 64])
def test_residual_pixels_cost_their_words_where_stored_and_read(tmp_path: Path, method: str, word_bits: int,
                                                                 ports: int, source: str) -> None:
    """conv1 adds the network input as its residual (add1 fused into conv1's digital processor).
    With read_res its own input memory holds the residual: each step is charged this timestep's
    input-pixel store, the group's kernel rows and its output's pixel read again for the add (the
    words that pixel occupies in the layout). With a copy (adder_copy) each step is charged this
    timestep's input-pixel store, the residual pixel that arrived with it (ceil(64 / word_bits)
    words), the group's kernel rows, and its output's residual pixel read back (the same words).
    Both with the two port rules; energy counts the same words."""
    (tmp_path / "m.toml").write_text(
        f'name = "residual_add"\n[input]\nheight = {H}\nwidth = {W}\nchannels = {RES_C}\n'
        + layer(name='"conv1"', type='"conv"', input='"input"', out_channels=str(RES_C), kernel="3", padding="1")
        + layer(name='"add1"', type='"add"', inputs='["conv1", "input"]', relu="true"))
    batch = 3
    (tmp_path / "s.toml").write_text(f"""
model = "m.toml"
[chip]
cycles_per_timestep = 1000
mvm_cycles = {MVM}
digital_cycles = {DIGITAL}
sram_word_bits = {word_bits}
sram_depth_words = 4096
sram_ports = {ports}
[mapping]
sram_method = "{method}"
residual_source = "{source}"
[energy]
enabled = true
table = "dazzi2021_14nm"
[run]
batch = {batch}
""")
    scenario = load_scenario(tmp_path / "s.toml")
    events = _Events()
    summary = run(scenario, [events]).summary
    net = load_model(scenario.model)
    plan = map_network(net, scenario)
    assert plan.layers["conv1"].fused == ("add1",) and plan.layers["conv1"].residual_input == "input"
    bits = RES_C * 8
    copy = source == "adder_copy"
    res_words = -(-bits // word_bits) if copy else 0  # a copy takes whole words of the residual area
    gen = AddressGenerator(make_layout(method, bits, H, 3, word_bits), H, W, 3, 1)
    geom = layer_geometry(net, plan, "conv1")
    n_in = H * W
    assert len(events.computes) == batch * geom.n_groups
    all_writes = all_reads = 0
    for timestep, image, first, cycles in events.computes:
        gi = first
        b, k = divmod(timestep, n_in)
        col, x = divmod(k, H)
        arrived = timestep < batch * n_in  # input pixel `timestep` and its residual copy arrive now
        writes = (len(_words(gen.store_addresses(b * W + col, x), bits, word_bits)) + res_words) if arrived else 0
        # this output's residual pixel: the copy read back, or its own input pixel read again
        out_col, out_x = divmod(gi, H)
        own = len(_words(gen.store_addresses(image * W + out_col, out_x), bits, word_bits))
        reads = res_words if copy else own
        for row in geom.group_rows[gi]:
            words: set[int] = set()
            for addr in gen.read_addresses(row, gi // geom.out_h - 1, image=image):
                words |= _words(addr, bits, word_bits)
            reads += len(words)
        sram = writes + reads if ports == 1 else max(writes, reads)
        assert cycles == sram + MVM + DIGITAL, (timestep, image, gi)
        all_reads += reads
    # energy: every input pixel's words and every residual pixel's words, written once and read once
    for b in range(batch):
        for k in range(n_in):
            col, x = divmod(k, H)
            all_writes += len(_words(gen.store_addresses(b * W + col, x), bits, word_bits)) + res_words
    counts = {(r["layer"], r["component"], r["action"]): r["count"] for r in summary["energy"]["counts"]["counts"]}
    assert counts[("conv1", "sram", "word_write")] == all_writes
    assert counts[("conv1", "sram", "word_read")] == all_reads
