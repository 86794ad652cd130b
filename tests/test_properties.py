"""Property-based tests: random valid small networks on random chips run to completion with
every dataflow invariant holding (the components' own run-time checks and `Chip.drained_problems`).

Hypothesis draws a network (1-4 convs, kernel 1 or 3, padding 0/1, stride 1/2, 1-8
channels, an optional residual add of matching shapes, an optional avgpool + fc head) on
a square 4-10 pixel image, and a scenario (crossbar sizes that sometimes force row and
column splits, SRAM placement, regular dataflow or per-layer rates of 1/2/4, the ideal,
mesh or prism fabric, timestep or elastic clocking, a batch of 1-3, an array that is
sometimes too small). Where the mapping must fail (too few cores, a dataflow edge the
prism fabric lacks, an SRAM too small) the test checks that it does, with a one-line
`MappingError` naming the cause, and that it fails only then (the expectation is derived
independently of the mapper's own check). `derandomize=True` makes the cases the same on
every run and machine; the count is printed at the end of the session (tests/conftest.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import conftest
import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimsim.config import load_scenario
from cimsim.errors import MappingError
from cimsim.hw.chip import build_chip
from cimsim.mapping import map_network
from cimsim.network import Network, load_model

EXAMPLES = int(os.environ.get("CIMSIM_PROPERTY_EXAMPLES", "800"))
"""Generated cases (override with the environment variable for a longer soak run)."""
MAX_TIMESTEPS = 20_000
"""run.max_timesteps of every generated case: a guard far above what these networks need
(at most 10 x 10 pixels x 3 images x a few layers), so a livelock fails fast."""


# --- the generated network -------------------------------------------------------------


@dataclass
class Conv:
    name: str
    inp: str
    out: int
    kernel: int
    stride: int
    padding: int
    relu: bool
    shape: tuple[int, int, int]  # output H, W, C

    def toml(self) -> str:
        return (f'[[layers]]\nname = "{self.name}"\ntype = "conv"\ninput = "{self.inp}"\n'
                f"out_channels = {self.out}\nkernel = {self.kernel}\nstride = {self.stride}\n"
                f"padding = {self.padding}\nrelu = {str(self.relu).lower()}\n\n")


@dataclass
class Net:
    size: int
    channels: int
    convs: list[Conv]
    text: str
    add: tuple[str, str] | None = None  # (main, residual) of the add, if any
    head: bool = False
    layer_names: list[str] = field(default_factory=list)  # compute layers (convs, fc on a crossbar)


@st.composite
def networks(draw: st.DrawFn) -> Net:
    size = draw(st.integers(4, 10))
    c0 = draw(st.integers(1, 8))
    n = draw(st.integers(1, 4))
    convs: list[Conv] = []
    shape = (size, size, c0)
    prev = "input"
    strided = False
    for i in range(n):
        kernel = draw(st.sampled_from((1, 3)))
        padding = 0 if kernel == 1 else draw(st.sampled_from((0, 1)))
        h = shape[0]
        stride = 1
        if not strided and h >= 4 and draw(st.integers(0, 3)) == 0:
            stride, strided = 2, True
        if h + 2 * padding < kernel:  # the padded input must hold the kernel
            padding = 1 if kernel == 3 and h + 2 >= kernel else padding
            if h + 2 * padding < kernel:
                kernel, padding = 1, 0
        out = draw(st.integers(1, 8))
        oh = (h + 2 * padding - kernel) // stride + 1
        conv = Conv(f"conv{i + 1}", prev, out, kernel, stride, padding, draw(st.booleans()), (oh, oh, out))
        convs.append(conv)
        shape, prev = conv.shape, conv.name
    # Residual add: main = the last conv, residual = the image or an earlier conv of the same
    # height and width (the last conv then gets the residual's channels).
    add = None
    if draw(st.booleans()):
        last = convs[-1]
        candidates = [("input", (size, size, c0))] + [(c.name, c.shape) for c in convs[:-1]]
        candidates = [(name, shp) for name, shp in candidates if shp[:2] == last.shape[:2]]
        if candidates:
            name, shp = draw(st.sampled_from(candidates))
            last.out, last.shape = shp[2], shp
            add = (last.name, name)
    head = draw(st.booleans())
    text = f'name = "gen"\nbits = 8\n\n[input]\nheight = {size}\nwidth = {size}\nchannels = {c0}\n\n'
    text += "".join(c.toml() for c in convs)
    out_name = convs[-1].name
    if add:
        text += f'[[layers]]\nname = "add"\ntype = "add"\ninputs = ["{add[0]}", "{add[1]}"]\nrelu = true\n\n'
        out_name = "add"
    if head:
        text += (f'[[layers]]\nname = "pool"\ntype = "avgpool"\ninput = "{out_name}"\n\n'
                 f'[[layers]]\nname = "fc"\ntype = "fc"\ninput = "pool"\nout_features = {draw(st.integers(1, 10))}\n')
    return Net(size, c0, convs, text, add, head, [c.name for c in convs])


@st.composite
def scenarios(draw: st.DrawFn, net: Net) -> dict[str, str]:
    """Scenario overrides for `net`: key -> value text (applied as --set KEY=VALUE)."""
    o = {
        "run.batch": draw(st.integers(1, 3)),
        "run.max_timesteps": MAX_TIMESTEPS,
        # 3x3 kernels of up to 8 channels have up to 72 rows and 8 columns: small crossbars split them
        "chip.crossbar_rows": draw(st.sampled_from((9, 16, 32, 64, 256))),
        "chip.crossbar_cols": draw(st.sampled_from((2, 4, 8, 256))),
        "mapping.sram_method": draw(st.sampled_from(("iwap", "klip", "plip", "auto"))),
        "chip.sram_word_bits": draw(st.sampled_from((16, 32, 64, 128))),
        "chip.sram_depth_words": draw(st.sampled_from((48, 512, 512, 4096, 4096, 4096))),
        "chip.sram_ports": draw(st.sampled_from((1, 2))),
        "chip.cycles_per_timestep": draw(st.sampled_from((12, 50))),
        "chip.clocking": draw(st.sampled_from(("timestep", "elastic"))),
        "chip.partial_sum_timesteps": draw(st.sampled_from((0, 1, 2))),
        "mapping.replica_fit": draw(st.sampled_from(("split", "assume"))),
    }
    if net.head:
        o["mapping.fc_on"] = draw(st.sampled_from(("digital", "crossbar")))
    if draw(st.booleans()):
        # at most the layer's output pixels per image (more replicas than outputs are refused)
        rates = {c.name: draw(st.sampled_from([r for r in (1, 2, 4) if r <= c.shape[0] * c.shape[1]]))
                 for c in net.convs}
        o["dataflow.layer_rates"] = "{" + ", ".join(f"{k}={v}" for k, v in rates.items()) + "}"
        o["input.pixels_per_timestep"] = draw(st.sampled_from((1, 2, 4)))
    topo = draw(st.sampled_from(("ideal", "mesh", "prism")))
    o["noc.topology"] = topo
    if topo == "ideal":
        o["noc.ideal_hop_timesteps"] = draw(st.sampled_from((0, 1)))
    else:
        o["noc.link_width_bits"] = draw(st.sampled_from((8, 32, 64)))
        o["dram.enabled"] = str(draw(st.booleans())).lower()
    if topo == "prism":
        o["noc.prism_k"] = draw(st.integers(1, 12))
    # mostly an array big enough for the splits and replicas, sometimes one that is too small
    small = draw(st.integers(0, 4)) == 0
    o["chip.array_rows"] = draw(st.integers(1, 3) if small else st.integers(6, 10))
    o["chip.array_cols"] = draw(st.integers(1, 3) if small else st.integers(6, 10))
    return {k: str(v) for k, v in o.items()}


def _write(tmp: Path, net: Net) -> Path:
    (tmp / "gen_model.toml").write_text(net.text)
    path = tmp / "gen_scenario.toml"
    path.write_text('model = "gen_model.toml"\nname = "gen"\n')
    return path


def _sets(o: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in o.items()]


def expected_mapping_errors(path: Path, model: Network, o: dict[str, str]) -> tuple[set[str], int]:
    """The mapping errors the scenario may give (and the cores it needs), derived from the mapping of the same network
    on an unbounded chip (64 x 64 cores, a huge SRAM, the ideal fabric), which must succeed:
    "cores" if it needs more cores than the array has, "sram" if a layer needs more words
    than chip.sram_depth_words, "link" if on the prism fabric a dataflow edge joins cores
    further apart than noc.prism_k along the snake (core ids are snake positions; the DRAM
    port links to the first prism_k positions)."""
    free = {**o, "chip.array_rows": "64", "chip.array_cols": "64", "chip.sram_depth_words": "1000000",
            "noc.topology": "ideal"}
    ref = map_network(model, load_scenario(path, _sets(free)))
    expected = set()
    if ref.core_count > int(o["chip.array_rows"]) * int(o["chip.array_cols"]):
        expected.add("cores")
    if any(lm.sram_words > int(o["chip.sram_depth_words"]) for lm in ref.layers.values()):
        expected.add("sram")
    if o["noc.topology"] == "prism":
        k = int(o["noc.prism_k"])
        for f in ref.flows:
            if (f.src is None and f.dst >= k) or (f.src is not None and not 1 <= f.dst - f.src <= k):
                expected.add("link")
    return expected, ref.core_count


def check_mapping_error(error: MappingError, expected: set[str], o: dict[str, str], ref_cores: int) -> str:
    """The error is one line, one of the expected ones, and names its cause and the option;
    returns its kind."""
    msg = str(error)
    assert "\n" not in msg and msg.startswith(str(Path(msg.split(":")[0]))), msg
    if "cores, the array has" in msg:
        assert "cores" in expected, msg
        assert f"needs {ref_cores} cores" in msg and "chip.array_rows x chip.array_cols" in msg, msg
        return "cores"
    elif "input SRAM" in msg:
        assert "sram" in expected, msg
        assert f"chip.sram_depth_words = {o['chip.sram_depth_words']}" in msg, msg
        return "sram"
    elif "is not a link of the topology" in msg:
        assert "link" in expected, msg
        assert f"noc.prism_k = {o['noc.prism_k']}" in msg and "edge from" in msg, msg
        return "link"
    raise AssertionError(f"unexpected mapping error: {msg}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_generated_networks(workdir: Path, data: st.DataObject) -> None:
    net = data.draw(networks(), label="network")
    o = data.draw(scenarios(net), label="scenario")
    path = _write(workdir, net)
    scenario = load_scenario(path, _sets(o))
    model = load_model(scenario.model)
    expected, cores = expected_mapping_errors(path, model, o)
    try:
        plan = map_network(model, scenario)
    except MappingError as e:
        conftest.COUNTS["refused " + check_mapping_error(e, expected, o, cores)] += 1
        conftest.COUNTS["mapping_errors"] += 1
        return
    assert not expected, f"mapped although it should fail with {expected}"
    chip = build_chip(simpy.Environment(), scenario, model, plan)
    record = chip.run()  # SimulationError on deadlock, run.max_timesteps or a broken invariant
    assert chip.drained_problems() == []
    batch = scenario.run.batch
    assert sum(c.active_timesteps for c in record.cores) > 0
    assert chip.images_done == set(range(batch))
    assert record.image_done_ts == sorted(record.image_done_ts) and len(record.image_done_ts) == batch
    conftest.COUNTS["networks"] += 1
    features = {
        "row split": any(lm.row_parts > 1 for lm in plan.layers.values()),
        "column split": any(lm.col_parts > 1 for lm in plan.layers.values()),
        "rate > 1": any(lm.rate > 1 for lm in plan.layers.values()),
        "stride 2": any(c.stride == 2 for c in net.convs),
        "residual": net.add is not None,
        "residual from the image": net.add is not None and net.add[1] == "input",
        "4 convs": len(net.convs) == 4,
        "batch 3": batch == 3,
        o["noc.topology"]: True,
        o["chip.clocking"]: True,
        o["mapping.sram_method"]: True,
    }
    conftest.COUNTS.update("ran " + k for k, v in features.items() if v)


def test_generated_networks_mostly_ran() -> None:
    """Most generated cases reached the simulation (not just the mapper's refusal), and the
    refusals include every kind of mapping error (guards the generator against drifting)."""
    total = conftest.COUNTS["networks"] + conftest.COUNTS["mapping_errors"]
    if total < EXAMPLES:
        pytest.skip("test_generated_networks did not run in this session")
    assert conftest.COUNTS["networks"] >= 500 * EXAMPLES // 800
    for kind in ("cores", "sram", "link"):
        assert conftest.COUNTS["refused " + kind] > 0, kind
    for feature in ("row split", "column split", "rate > 1", "stride 2", "residual", "residual from the image",
                    "4 convs", "batch 3", "ideal", "mesh", "prism", "timestep", "elastic", "iwap", "klip", "plip",
                    "auto"):
        assert conftest.COUNTS["ran " + feature] >= EXAMPLES // 100, (feature, conftest.COUNTS["ran " + feature])


# --- every layer kind, functional and timing-only ------------------------------------------------

FUNCTIONAL_EXAMPLES = int(os.environ.get("CIMSIM_FUNCTIONAL_EXAMPLES", "200"))
"""Generated networks of every layer kind, each run functional and timing-only."""


@st.composite
def any_networks(draw: st.DrawFn) -> str:
    """A model TOML of 2-7 layers drawn from every kind in `LayerKind`: convs (square or not,
    grouped, depthwise), maxpools and local avgpools, global avgpools, fcs after fcs or on 1 x 1 maps,
    flatten + fc on larger maps, adds of any two maps of one shape, concats of maps of one H x W, and
    branches that read an earlier layer (a fan-out, which the mapper may refuse)."""
    size = draw(st.integers(1, 6))
    maps = [("input", (size, size, draw(st.integers(1, 4))))]
    text = f'name = "any"\nbits = 8\n\n[input]\nheight = {size}\nwidth = {size}\nchannels = {maps[0][1][2]}\n\n'
    consumed: set[str] = set()
    for i in range(draw(st.integers(1, 6))):
        prev, (h, w, c) = maps[-1] if draw(st.integers(0, 4)) else draw(st.sampled_from(maps))
        kinds = ["conv"]
        if prev == "input" and draw(st.integers(0, 9)):  # a pool, fc or add on the image is refused: rarely
            pass
        elif h * w > 1 or draw(st.booleans()):
            kinds += ["avgpool", "maxpool", "local_avgpool"]
        if (h, w) == (1, 1):
            kinds.append("fc")
        elif prev != "input":
            kinds.append("flatten_fc")
        if c > 1:
            kinds += ["depthwise", "grouped"] if c % 2 == 0 else ["depthwise"]
        same = [m for m, shp in maps if shp == (h, w, c) and m != prev]
        if same and (prev != "input" or len(kinds) > 1):
            kinds.append("add")
        side = [m for m, shp in maps if shp[:2] == (h, w) and m != prev]
        if side:
            kinds.append("concat")
        kind = draw(st.sampled_from(kinds))
        name = f"{'fc' if kind == 'flatten_fc' else kind}{i}"
        relu = str(draw(st.booleans())).lower()
        if kind in ("conv", "depthwise", "grouped"):
            kernel = 3 if min(h, w) + 2 >= 3 and draw(st.booleans()) else 1
            padding = 1 if kernel == 3 and (min(h, w) < 3 or draw(st.booleans())) else 0
            kh, ph = (kernel, padding) if kind != "conv" or draw(st.integers(0, 3)) else (1, 0)  # sometimes k x 1
            out = draw(st.integers(1, 6)) if kind == "conv" else c if kind == "depthwise" else 2 * draw(st.integers(1, 3))
            groups = {"conv": 1, "depthwise": c, "grouped": 2}[kind]
            text += (f'[[layers]]\nname = "{name}"\ntype = "conv"\ninput = "{prev}"\nout_channels = {out}\n'
                     f"kernel = [{kh}, {kernel}]\npadding = [{ph}, {padding}]\ngroups = {groups}\nrelu = {relu}\n\n")
            shape = (h + 2 * ph - kh + 1, w + 2 * padding - kernel + 1, out)
            consumed.add(prev)
        elif kind in ("maxpool", "local_avgpool"):
            kernel, stride = (2, 2) if min(h, w) >= 2 and draw(st.booleans()) else (min(h, w, 3), 1)
            padding = 1 if kernel == 3 and draw(st.booleans()) else 0
            text += (f'[[layers]]\nname = "{name}"\ntype = "{kind[-7:]}"\ninput = "{prev}"\nkernel = {kernel}\n'
                     f"stride = {stride}\npadding = {padding}\n\n")
            shape = ((h + 2 * padding - kernel) // stride + 1, (w + 2 * padding - kernel) // stride + 1, c)
            consumed.add(prev)
        elif kind == "avgpool":
            text += f'[[layers]]\nname = "{name}"\ntype = "avgpool"\ninput = "{prev}"\n\n'
            shape = (1, 1, c)
            consumed.add(prev)
        elif kind in ("fc", "flatten_fc"):
            out = draw(st.integers(1, 6))
            src = prev
            if kind == "flatten_fc":
                src = f"flatten{i}"
                text += f'[[layers]]\nname = "{src}"\ntype = "flatten"\ninput = "{prev}"\n\n'
                consumed.update((prev, src))
            text += (f'[[layers]]\nname = "{name}"\ntype = "fc"\ninput = "{src}"\nout_features = {out}\n'
                     f"relu = {relu}\n\n")
            shape = (1, 1, out)
            consumed.add(prev)
        elif kind == "concat":
            other = draw(st.sampled_from(side))
            text += f'[[layers]]\nname = "{name}"\ntype = "concat"\ninputs = ["{prev}", "{other}"]\n\n'
            shape = (h, w, c + dict(maps)[other][2])
            consumed.update((prev, other))
        else:
            other = draw(st.sampled_from(same))
            text += f'[[layers]]\nname = "{name}"\ntype = "add"\ninputs = ["{prev}", "{other}"]\nrelu = {relu}\n\n'
            shape = (h, w, c)
            consumed.update((prev, other))
        maps.append((name, shape))
    # every layer but the last must be consumed: cut the model after the first one nothing reads
    return _without_dangling(text, consumed)


def _without_dangling(text: str, consumed: set[str]) -> str:
    """The model cut after the first layer no later layer consumes (it becomes the output)."""
    blocks = text.split("[[layers]]\n")
    keep = [blocks[0]]
    for block in blocks[1:]:
        keep.append(block)
        name = block.split('"', 2)[1]
        if name not in consumed:
            break
    return "[[layers]]\n".join(keep)


def _attempt(path: Path, sets: list[str]) -> tuple[str, object]:
    """("ran", record) with every invariant holding, or ("refused", error) with exit code 2."""
    from cimsim.errors import CimsimError
    from cimsim.limits import check_run

    try:
        scenario = load_scenario(path, sets)
        model = load_model(scenario.model)
        check_run(scenario, model)
        plan = map_network(model, scenario)
        chip = build_chip(simpy.Environment(), scenario, model, plan)
    except CimsimError as e:
        assert e.exit_code == 2 and "\n" not in str(e), e
        return "refused", e
    record = chip.run()  # SimulationError (exit 3, a broken invariant among them) fails the test
    assert chip.drained_problems() == []
    assert chip.images_done == set(range(scenario.run.batch))
    return "ran", record


@settings(max_examples=FUNCTIONAL_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_generated_networks_of_every_kind(workdir: Path, data: st.DataObject) -> None:
    text = data.draw(any_networks(), label="model")
    (workdir / "any_model.toml").write_text(text)
    path = workdir / "any_scenario.toml"
    path.write_text('model = "any_model.toml"\nname = "any"\n')
    sets = [f"run.batch={data.draw(st.integers(1, 2))}", f"run.max_timesteps={MAX_TIMESTEPS}",
            f"mapping.fc_on={data.draw(st.sampled_from(('digital', 'crossbar')))}",
            f"mapping.depthwise={data.draw(st.sampled_from(('digital', 'crossbar')))}",
            f"mapping.depthwise_job_channels={data.draw(st.sampled_from((0, 1)))}",
            f"chip.crossbar_rows={data.draw(st.sampled_from((16, 256)))}",
            f"chip.clocking={data.draw(st.sampled_from(('timestep', 'elastic')))}",
            "chip.array_rows=8", "chip.array_cols=8", "chip.sram_depth_words=4096",
            "functional.adc_bits=16",  # wide enough that nothing saturates: the outputs must equal the reference
            f"functional.mode={data.draw(st.sampled_from(('batched', 'per_group')))}"]
    timing = _attempt(path, [*sets, "functional.enabled=false"])
    functional = _attempt(path, [*sets, "functional.enabled=true"])
    if timing[0] == "refused":
        assert functional[0] == "refused", "functional mode ran a network the timing-only run refused"
        conftest.COUNTS["refused_exit2"] += 1
        return
    # the functional datapath runs every stage the timing model runs (issue 12), except two residual
    # adds on one digital processor (an unfused add with another add fused into it)
    assert functional[0] == "ran" or "two adds" in str(functional[1]), functional[1]
    if functional[0] == "refused":
        conftest.COUNTS["refused_exit2"] += 1
        return
    summary = functional[1].extra["functional"]  # type: ignore[attr-defined]
    assert summary["reference_match"] and summary["images_checked"] == functional[1].batch, summary  # type: ignore[attr-defined]
    assert timing[1].image_done_ts and functional[1].image_done_ts  # type: ignore[attr-defined]
    conftest.COUNTS["functional_networks"] += 1
    conftest.COUNTS.update(f"kind {k}" for k in KINDS if f'name = "{k}' in text)


KINDS = ("conv", "depthwise", "grouped", "add", "avgpool", "maxpool", "local_avgpool", "fc", "flatten", "concat")
"""Layer names the generator gives each kind (a name starts with its kind)."""


def test_generated_networks_of_every_kind_mostly_ran() -> None:
    """Most cases ran, every layer kind appeared in networks that ran."""
    total = conftest.COUNTS["functional_networks"] + conftest.COUNTS["refused_exit2"]
    if total < FUNCTIONAL_EXAMPLES:
        pytest.skip("test_generated_networks_of_every_kind did not run in this session")
    assert conftest.COUNTS["functional_networks"] >= FUNCTIONAL_EXAMPLES // 2
    for kind in KINDS:
        assert conftest.COUNTS[f"kind {kind}"] > 0, kind
