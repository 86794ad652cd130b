"""Malformed input never produces a traceback: every bad model, scenario, `--set`, command-line
option and weight/image file gives exit code 2 and exactly one `cimsim: error:` line on stderr.

The cases are generated systematically from a valid tiny model and scenario: every scenario
key (walked from the schema, so new keys are covered automatically) gets values of the wrong
type, out of range, too large, or not among its allowed strings; every table gets an unknown
key; every required key is deleted; the TOML is truncated at many points and replaced by
random bytes; the model's layers get the same treatment plus duplicate names, dangling or
forward references and shapes that do not chain; `--set` strings and options are mangled;
.npz weight and image files are missing, not archives, or hold the wrong arrays. The count
is printed at the end of the session (tests/conftest.py).
"""

from __future__ import annotations

import dataclasses
import io
import random
import subprocess
import sys
import tomllib
import typing
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import conftest
import numpy as np
import pytest

from cimsim.cli import main
from cimsim.config.load import ENUMS, INT_MAX, LOADER_FIELDS, NON_NEGATIVE
from cimsim.config.schema import Scenario
from cimsim.errors import InputError
from cimsim.functional.weights import load_images, load_params, make_params, save_params
from cimsim.network import load_model

REPO = Path(__file__).resolve().parents[1]

# --- the valid inputs the cases are made from ------------------------------------------

MODEL: dict[str, dict[str, str] | list[dict[str, str]]] = {
    "top": {"name": '"hostile"', "bits": "8", "description": '"a residual CNN"'},
    "input": {"height": "8", "width": "8", "channels": "3"},
    "layers": [
        {"name": '"conv1"', "type": '"conv"', "input": '"input"', "out_channels": "8", "kernel": "3",
         "padding": "1", "relu": "true"},
        {"name": '"conv2"', "type": '"conv"', "input": '"conv1"', "out_channels": "8", "kernel": "3",
         "stride": "1", "padding": "1", "relu": "false"},
        {"name": '"add2"', "type": '"add"', "inputs": '["conv2", "conv1"]', "relu": "true"},
        {"name": '"conv3"', "type": '"conv"', "input": '"add2"', "out_channels": "8", "kernel": "3",
         "stride": "2", "padding": "1"},
        {"name": '"pool"', "type": '"avgpool"', "input": '"conv3"'},
        {"name": '"fc"', "type": '"fc"', "input": '"pool"', "out_features": "10", "relu": "false"},
    ],
}
"""8x8x3 -> conv1 -> conv2 (+ conv1) -> conv3 (stride 2, 4x4x8) -> avgpool -> fc 10, as raw TOML values."""


def render_model(model: dict) -> str:
    top = "".join(f"{k} = {v}\n" for k, v in model["top"].items())
    inp = "".join(f"{k} = {v}\n" for k, v in model["input"].items())
    layers = "".join("[[layers]]\n" + "".join(f"{k} = {v}\n" for k, v in lay.items()) + "\n"
                     for lay in model["layers"])
    return f"{top}\n[input]\n{inp}\n{layers}"


def render_scenario(top: dict[str, str], tables: dict[str, dict[str, str]] | None = None) -> str:
    text = "".join(f"{k} = {v}\n" for k, v in top.items())
    for name, table in (tables or {}).items():
        text += f"\n[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in table.items())
    return text


BASE_TOP = {"model": '"model.toml"', "name": '"hostile"'}


def schema_fields(cls: type = Scenario, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, type) of every scalar or dict field a scenario file may set."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        if path in LOADER_FIELDS:
            continue
        if dataclasses.is_dataclass(tp):
            yield from schema_fields(tp, path)
        else:
            yield path, tp


BAD_INTS = ["-1", "1.5", '"3"', "true", "[1]", "{a = 1}", str(INT_MAX + 1), "99999999999999999999999", "nan"]
BAD_FLOATS = ["0.0", "-1.0", "0", "-3", "inf", "-inf", "nan", '"1.0"', "false", "[1.0]", "1e400"]
BAD_BOOLS = ["1", "0", '"true"', "[]", "{}", '"yes"']
BAD_ENUM = ['"bogus"', '""', "1", "true", "[]"]
BAD_STR = ["1", "true", "[]", "{}", "1.5"]
BAD_DICT = ["3", '"x"', "[]", "true", "{conv1 = 0}", "{conv1 = -2}", '{conv1 = "2"}', "{conv1 = 1.5}",
            "{conv1 = true}", f"{{conv1 = {INT_MAX + 1}}}", "{conv1 = {a = 1}}"]


def bad_values(path: str, tp: Any) -> list[str]:
    """TOML values that `path` (of schema type `tp`) must reject."""
    if tp is bool:
        return BAD_BOOLS
    if tp is int:
        return BAD_INTS + ([] if path in NON_NEGATIVE else ["0"])
    if tp is float:
        return [v for v in BAD_FLOATS if v not in ("0", "0.0")] if path in NON_NEGATIVE else BAD_FLOATS
    if tp is str:
        if path in ENUMS:
            return [*BAD_ENUM, f'"{ENUMS[path][0].upper()}"', f'" {ENUMS[path][0]}"']
        if path == "model":
            return [*BAD_STR, '"missing.toml"', '""', '"."']
        return BAD_STR
    if typing.get_origin(tp) is dict:
        extra = (["{nosuch = 2}", "{pool = 2}", "{conv1 = 65}", "{conv3 = 17}", '{"conv1.x" = 2}']
                 if path.endswith("layer_rates") else ['{abc = 2}', '{"08" = 2}', '{"0" = 2}', '{"-8" = 2}'])
        return BAD_DICT + extra
    raise AssertionError(f"no bad values for {path}: {tp}")


def scenario_cases() -> Iterator[tuple[str, str, list[str]]]:
    """(label, scenario text, extra --set) of malformed scenarios."""
    fields = list(schema_fields())
    for path, tp in fields:
        for value in bad_values(path, tp):
            if "." in path:
                table, key = path.rsplit(".", 1)
                yield f"{path} = {value}", render_scenario(BASE_TOP, {table: {key: value}}), []
            else:
                yield f"{path} = {value}", render_scenario({**BASE_TOP, path: value}), []
    tables = sorted({p.rsplit(".", 1)[0] for p, _ in fields if "." in p})
    for table in tables:
        yield f"unknown key in [{table}]", render_scenario(BASE_TOP, {table: {"bogus_key": "1"}}), []
        yield f"[{table}] not a table", render_scenario({**BASE_TOP, table: "3"}, {}), []
        yield f"[{table}] as an array", f"{render_scenario(BASE_TOP, {})}\n[[{table}]]\n", []
    yield "unknown table", render_scenario(BASE_TOP, {"bogus": {"a": "1"}}), []
    yield "unknown top-level key", render_scenario({**BASE_TOP, "bogus": "1"}, {}), []
    yield "source set by the file", render_scenario({**BASE_TOP, "source": '"x"'}, {}), []
    yield "missing model", render_scenario({"name": '"x"'}, {"chip": {"array_rows": "2"}}), []
    yield "duplicate key", render_scenario(BASE_TOP, {}) + 'model = "model.toml"\n', []
    yield "duplicate table", render_scenario(BASE_TOP, {"chip": {"array_rows": "2"}}) + "\n[chip]\narray_cols = 2\n", []
    yield "empty file", "", []
    # cross-field rules
    yield "too many cores", render_scenario(BASE_TOP, {"chip": {"array_rows": "1000", "array_cols": "1000"}}), []
    yield "mesh dram port off the edge", render_scenario(
        BASE_TOP, {"noc": {"topology": '"mesh"', "dram_row": "3", "dram_col": "3"}}), []
    yield "mesh dram port outside", render_scenario(BASE_TOP, {"noc": {"topology": '"mesh"', "dram_row": "99"}}), []
    yield "array too small", render_scenario(BASE_TOP, {"chip": {"array_rows": "1", "array_cols": "2"}}), []
    yield "sram too small", render_scenario(BASE_TOP, {"chip": {"sram_depth_words": "8"}}), []
    yield "prism too short", render_scenario(  # conv2 split over 3 cores: a partial sum skips one
        BASE_TOP, {"chip": {"crossbar_rows": "32"}, "noc": {"topology": '"prism"', "prism_k": "1"}}), []
    yield "fc rate with fc on digital", render_scenario(BASE_TOP, {"dataflow": {"layer_rates": "{fc = 2}"}}), []
    yield "replicas do not fit (error policy)", render_scenario(
        BASE_TOP, {"chip": {"crossbar_rows": "80"}, "mapping": {"replica_fit": '"error"'},
                   "dataflow": {"layer_rates": "{conv2 = 4}"}}), []
    banks = {"enabled": "true", "model": '"banks"'}
    yield "dram timing zero without a preset", render_scenario(BASE_TOP, {"dram": {**banks, "preset": '"none"'}}), []
    yield "dram row not a multiple of the burst", render_scenario(BASE_TOP, {"dram": {**banks, "row_bytes": "1000"}}), []
    yield "dram burst larger than the row", render_scenario(
        BASE_TOP, {"dram": {**banks, "t_burst": "128", "row_bytes": "1024"}}), []
    yield "dram bus not whole bytes", render_scenario(BASE_TOP, {"dram": {**banks, "bus_bits": "12"}}), []
    yield "dram smaller than one row per bank", render_scenario(
        BASE_TOP, {"dram": {**banks, "row_bytes": "1048576", "capacity_mib": "4"}}), []
    yield "dram too small for the images", render_scenario(
        BASE_TOP, {"dram": {**banks, "capacity_mib": "1"}, "run": {"batch": "6000"}}), []
    yield "elastic packet larger than a buffer", render_scenario(
        BASE_TOP, {"chip": {"clocking": '"elastic"'}, "noc": {"topology": '"mesh"', "buffer_depth_flits": "1"}}), []


# --- running one case ------------------------------------------------------------------


def cli_problem(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str | None:
    """Run the CLI; None if it exited 2 with one `cimsim: error:` line and no traceback, else what went wrong."""
    try:
        code = main(argv)
    except BaseException as e:
        capsys.readouterr()
        return f"raised {type(e).__name__}: {e}"
    out, err = capsys.readouterr()
    lines = err.splitlines()
    if code != 2 or len(lines) != 1 or not lines[0].startswith("cimsim: error: ") or "Traceback" in err + out:
        return f"exit {code}, stderr {err!r}"
    conftest.COUNTS["hostile"] += 1
    return None


def run_cases(capsys: pytest.CaptureFixture[str], cases: list[tuple[str, list[str]]]) -> None:
    """Run (label, argv) cases; fail listing every case that misbehaved."""
    bad = [f"{label}: {problem}" for label, argv in cases if (problem := cli_problem(capsys, argv))]
    assert not bad, f"{len(bad)} of {len(cases)} cases:\n" + "\n".join(bad)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    (tmp_path / "model.toml").write_text(render_model(MODEL))
    return tmp_path


def test_base_inputs_are_valid(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The cases below fail because of their mutation, not because the base is broken."""
    (model_dir / "s.toml").write_text(render_scenario(BASE_TOP, {}))
    assert main(["run", str(model_dir / "s.toml"), "--no-trace", "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_malformed_scenarios(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = []
    for i, (label, text, sets) in enumerate(scenario_cases()):
        path = model_dir / f"s{i}.toml"
        path.write_text(text)
        cases.append((label, ["run", str(path), "--no-trace", "--json", *sets]))
    assert len(cases) >= 250
    run_cases(capsys, cases)


def test_truncated_and_random_scenarios(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = (REPO / "scenarios" / "dazzi2021_resnet32.toml").read_text().replace(
        "../models/resnet32_cifar10.toml", "model.toml")
    cases = []
    for cut in range(1, len(full), max(1, len(full) // 60)):
        text = full[:cut]
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            pass
        else:
            if "model =" in text:  # a valid prefix (missing keys take defaults): not malformed
                continue
        path = model_dir / f"t{cut}.toml"
        path.write_text(text)
        cases.append((f"truncated at {cut}", ["run", str(path), "--no-trace"]))
    rng = random.Random(7)
    for i in range(25):
        path = model_dir / f"r{i}.toml"
        path.write_bytes(rng.randbytes(rng.randint(1, 400)))
        cases.append((f"random bytes {i}", ["run", str(path), "--no-trace"]))
    for i, junk in enumerate(["\x00", "model = \"model.toml\"\n\x00", "\ufeffmodel = 1", "[[[", "model = '''",
                              "a.b.c = 1\na = 2\n"]):
        path = model_dir / f"j{i}.toml"
        path.write_text(junk)
        cases.append((f"junk {junk!r}", ["run", str(path), "--no-trace"]))
    assert len(cases) >= 60
    run_cases(capsys, cases)


# --- models ----------------------------------------------------------------------------


def model_cases() -> Iterator[tuple[str, dict]]:
    """(label, model dict) of malformed models."""
    import copy

    def mutated(fn: typing.Callable[[dict], None]) -> dict:
        m = copy.deepcopy(MODEL)
        fn(m)
        return m

    for key in ("name", "input", "layers"):
        def drop(m: dict, key: str = key) -> None:
            if key == "name":
                del m["top"]["name"]
            elif key == "input":
                m["input"] = None
            else:
                m["layers"] = []
        yield f"missing {key}", mutated(drop)
    for key, values in {"name": ['""', '"  "', "1", "[]"], "bits": ["0", "-8", "8.0", '"8"', "true", str(INT_MAX + 1)],
                        "description": ["1", "[]"], "bogus": ["1"]}.items():
        for v in values:
            yield f"top {key} = {v}", mutated(lambda m, k=key, v=v: m["top"].__setitem__(k, v))
    for key in ("height", "width", "channels"):
        yield f"input missing {key}", mutated(lambda m, k=key: m["input"].pop(k))
        for v in ["0", "-1", "2.5", '"8"', "true", "[8]", str(INT_MAX + 1), "40000" if key != "channels" else "0"]:
            yield f"input {key} = {v}", mutated(lambda m, k=key, v=v: m["input"].__setitem__(k, v))
    yield "input unknown key", mutated(lambda m: m["input"].__setitem__("depth", "3"))
    yield "input name empty", mutated(lambda m: m["input"].__setitem__("name", '""'))
    per_type = {
        "conv": {"out_channels": ["0", "-1", "1.5", '"8"', "true", str(INT_MAX + 1)],
                 "kernel": ["0", "-3", "2.0", '"3"', "false", "99", str(INT_MAX + 1)],
                 "stride": ["0", "-1", "1.0", '"1"', "true"],
                 "padding": ["-1", "3", "1.0", '"1"', "true"],
                 "relu": ["1", '"true"', "[]"],
                 "input": ["1", '""', '"nosuch"', '"fc"', "[]", '["conv1"]']},
        "add": {"inputs": ['["conv2"]', '["conv2", "conv2"]', '["conv2", "nosuch"]', '"conv2"', "[1, 2]",
                           '["conv2", "conv1", "input"]', '["conv2", "input"]', "[]"],
                "relu": ["0"]},
        "fc": {"out_features": ["0", "-10", "1.5", '"10"'], "input": ['"conv3"']},
    }
    for index, layer in enumerate(MODEL["layers"]):
        kind = layer["type"].strip('"')
        for key in [k for k in layer if k not in ("relu", "stride", "padding")]:
            yield f"layers[{index}] missing {key}", mutated(lambda m, i=index, k=key: m["layers"][i].pop(k))
        yield f"layers[{index}] unknown key", mutated(lambda m, i=index: m["layers"][i].__setitem__("bogus", "1"))
        for v in ['"bogus"', '"Conv"', "1", '""', '"input"']:
            yield f"layers[{index}] type = {v}", mutated(lambda m, i=index, v=v: m["layers"][i].__setitem__("type", v))
        for v in ['""', "1", '"input"', '"conv1"' if index else '"conv2"']:
            yield f"layers[{index}] name = {v}", mutated(lambda m, i=index, v=v: m["layers"][i].__setitem__("name", v))
        for key, values in per_type.get(kind, {}).items():
            for v in values:
                yield (f"layers[{index}] ({kind}) {key} = {v}",
                       mutated(lambda m, i=index, k=key, v=v: m["layers"][i].__setitem__(k, v)))
        other = {"conv": ("inputs", '["input", "conv1"]'), "add": ("kernel", "3"), "avgpool": ("kernel", "2"),
                 "fc": ("kernel", "1")}[kind]
        yield f"layers[{index}] ({kind}) key of another type", mutated(
            lambda m, i=index, kv=other: m["layers"][i].__setitem__(*kv))
        if "input" in layer:
            yield f"layers[{index}] both input and inputs", mutated(
                lambda m, i=index: m["layers"][i].__setitem__("inputs", '["input"]'))
    # structure
    yield "forward reference", mutated(lambda m: m["layers"].reverse())
    yield "dangling layer (two outputs)", mutated(lambda m: m["layers"].append(
        {"name": '"extra"', "type": '"conv"', "input": '"conv1"', "out_channels": "2", "kernel": "1"}))
    yield "add shapes differ", mutated(lambda m: m["layers"][1].__setitem__("out_channels", "4"))
    yield "add shapes differ (stride)", mutated(lambda m: m["layers"][1].__setitem__("stride", "2"))
    yield "fc on a spatial input", mutated(lambda m: m["layers"].__delitem__(4))
    yield "layers not tables", mutated(lambda m: m.__setitem__("layers", [])) | {"layers_raw": "3"}
    yield "add reads the image directly", mutated(lambda m: m["layers"][2].__setitem__("inputs", '["input", "conv2"]'))
    yield "pool reads the image directly", mutated(lambda m: m["layers"][4].__setitem__("input", '"input"'))


def test_malformed_models(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = []
    for i, (label, model) in enumerate(model_cases()):
        if model["input"] is None:
            text = render_model({**model, "input": {}}).replace("\n[input]\n", "\n")
        elif "layers_raw" in model:
            text = render_model(model) + f"layers = {model['layers_raw']}\n"
            text = text.replace("\n[input]\n", f"layers = {model['layers_raw']}\n[input]\n", 1)
        elif not model["layers"]:
            text = render_model(model) + "layers = []\n"
            text = text.replace("\n[input]\n", "layers = []\n[input]\n", 1)
        else:
            text = render_model(model)
        (model_dir / f"m{i}.toml").write_text(text)
        (model_dir / f"sm{i}.toml").write_text(f'model = "m{i}.toml"\n')
        cases.append((label, ["run", str(model_dir / f"sm{i}.toml"), "--no-trace", "--json"]))
    full = render_model(MODEL)
    for cut in range(1, len(full), 23):
        text = full[:cut]
        (model_dir / f"mt{cut}.toml").write_text(text)
        (model_dir / f"smt{cut}.toml").write_text(f'model = "mt{cut}.toml"\n')
        try:
            load_model(model_dir / f"mt{cut}.toml")
        except InputError:
            cases.append((f"model truncated at {cut}", ["run", str(model_dir / f"smt{cut}.toml"), "--no-trace"]))
    rng = random.Random(11)
    for i in range(10):
        (model_dir / f"mr{i}.toml").write_bytes(rng.randbytes(rng.randint(0, 300)))
        (model_dir / f"smr{i}.toml").write_text(f'model = "mr{i}.toml"\n')
        cases.append((f"model random bytes {i}", ["run", str(model_dir / f"smr{i}.toml"), "--no-trace"]))
    (model_dir / "smd.toml").write_text('model = "."\n')
    cases.append(("model is a directory", ["run", str(model_dir / "smd.toml"), "--no-trace"]))
    assert len(cases) >= 150
    run_cases(capsys, cases)


# --- --set and options -----------------------------------------------------------------

BAD_SETS = [
    "", "=", "=1", "chip", "chip=", "chip.=1", ".chip=1", "chip..array_rows=1", "chip.array_rows",
    "nosuch=1", "chip.nosuch=1", "chip.array_rows.x=1", "chip=1", "chip={array_rows=2, bogus=1}",
    "chip.array_rows=abc", "chip.array_rows=-1", "chip.array_rows=0", "chip.array_rows=1.5",
    "chip.array_rows=true", "chip.array_rows=[1]", f"chip.array_rows={INT_MAX + 1}", "chip.clock_mhz=0",
    "chip.clock_mhz=nan", "chip.clock_mhz=inf", "chip.clocking=bogus", "chip.clocking=", "noc.topology=torus",
    "run.batch=0", "run.batch=-3", "run.batch=x", "run.seed=-1", "dataflow.layer_rates=3",
    "dataflow.layer_rates.conv1=0", "dataflow.layer_rates.conv1.x=1", "dataflow.layer_rates.nosuch=2",
    "dataflow.layer_rates={conv1=2, pool=2}", "dataflow.speedup_rates.abc=2", "dataflow.speedup_rates={16=0}",
    "source=x", "model=missing.toml", "model=", '"chip.array_rows"=2', "chip.'array rows'=2", "[chip]=1",
    "chip.array_rows==2", "mapping.sram_method=IWAP", "mapping.replica_fit=maybe", "dram.enabled=yes",
    "noc.prism_k=0", "noc.dram_row=-1", "input.pixels_per_timestep=0", "run.max_timesteps=0",
]

BAD_OPTIONS = [
    [], ["bogus"], ["--bogus"], ["run"], ["run", "{s}", "--bogus"], ["run", "{s}", "--batch"],
    ["run", "{s}", "--batch", "x"], ["run", "{s}", "--batch", "0"], ["run", "{s}", "--batch", "-2"],
    ["run", "{s}", "--batch", "1.5"], ["run", "{s}", "--set"], ["run", "{s}", "--trace-level", "all"],
    ["run", "{s}", "--trace", "{d}/t.h5", "--no-trace"], ["run", "{s}", "--trace", "{d}"], ["run", "{d}"],
    ["run", "{d}/missing.toml"], ["run", "{s}", "{s}"], ["report"], ["report", "{d}/missing.h5"],
    ["report", "{s}"], ["report", "{d}"], ["report", "{t}", "--json", "--csv"], ["plot", "{t}"],
    ["plot", "{t}", "--kind", "bogus", "-o", "{d}/p.png"], ["plot", "{t}", "--kind", "progress"],
    ["plot", "{s}", "--kind", "progress", "-o", "{d}/p.png"], ["export", "{t}"], ["export", "{s}", "--perfetto", "x"],
    ["export", "{t}", "--perfetto", "{d}"], ["sram"], ["sram", "--channels", "0", "--height", "3", "--word-bits", "8"],
    ["sram", "--channels", "x", "--height", "3", "--word-bits", "8"], ["sram", "--channels", "3"],
    ["sram", "--channels", "3", "--height", "3", "--word-bits", "8", "--method", "bogus"],
    ["sram", "--channels", "99999999999", "--height", "3", "--word-bits", "8"],
    ["sram", "--channels", "4096", "--height", "30000", "--word-bits", "1", "--kernel", "200"],
    ["sram", "{s}", "--channels", "3"], ["sram", "{s}", "--set", "chip.bogus=1"], ["sram", "--set", "a=1"],
    ["sram", "{s}", "--method", "x"], ["sram", "{d}/missing.toml"], ["replicas"], ["replicas", "--c-in", "3"],
    ["replicas", "--c-in", "3", "--c-out", "3", "--kernel", "3", "--n", "0"],
    ["replicas", "--c-in", "3", "--c-out", "3", "--kernel", "3", "--n", "4", "--dw", "5"],
    ["replicas", "--c-in", "3", "--c-out", "3", "--kernel", "3", "--n", "99999999999"],
    ["replicas", "--c-in", "3", "--c-out", "3", "--kernel", "200", "--n", "1000"],
    ["replicas", "--c-in", "3", "--c-out", "3", "--kernel", "3", "--n", "4", "--xbar-rows", "-1"],
    ["replicas", "--c-in", "3", "--c-out", "3", "--kernel", "3", "--n", "4", "--stride", "x"],
    ["--debug"], ["--debug", "run"], ["run", "--json"],
]


@pytest.fixture
def valid(model_dir: Path) -> dict[str, str]:
    """{s}: a valid scenario, {t}: a file that is not a trace, {d}: a directory."""
    (model_dir / "s.toml").write_text(render_scenario(BASE_TOP, {}))
    (model_dir / "t.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))  # an HDF5 signature, then nothing
    return {"s": str(model_dir / "s.toml"), "t": str(model_dir / "t.h5"), "d": str(model_dir)}


def test_bad_set_strings(valid: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    cases = [(f"--set {item!r}", ["run", valid["s"], "--no-trace", "--set", item]) for item in BAD_SETS]
    cases += [(f"sram --set {item!r}", ["sram", valid["s"], "--set", item]) for item in BAD_SETS[:20]]
    run_cases(capsys, cases)


def test_bad_options(valid: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    cases = [(" ".join(argv), [a.format(**valid) for a in argv]) for argv in BAD_OPTIONS]
    run_cases(capsys, cases)


# --- weight and image files ------------------------------------------------------------


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_bad_npz_files(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = load_model(model_dir / "model.toml")
    params = make_params(net, 0)
    good = model_dir / "good.npz"
    save_params(good, params)
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    images = np.zeros((2, 8, 8, 3), np.int8)
    rng = random.Random(3)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("images.npy", b"not an npy header")
    w_cases: dict[str, bytes | None] = {
        "missing": None, "empty": b"", "random bytes": rng.randbytes(200), "text": b"weights\n",
        "zip of junk": zipped.getvalue(), "truncated": good.read_bytes()[:300],
        "no arrays": npz_bytes(), "extra array": npz_bytes(**arrays, bogus=np.zeros(3)),
        "object array": npz_bytes(**{**arrays, "conv1.weights": np.array([None, 1], dtype=object)}),
    }
    for key in list(arrays)[:8]:
        a = arrays[key]
        others = {k: v for k, v in arrays.items() if k != key}
        w_cases[f"without {key}"] = npz_bytes(**others)
        w_cases[f"{key} float"] = npz_bytes(**others, **{key: a.astype(np.float32)})
        w_cases[f"{key} reshaped"] = npz_bytes(**others, **{key: np.zeros(a.size + 1, a.dtype)})
        w_cases[f"{key} out of range"] = npz_bytes(**others, **{key: np.full(a.shape, 2**40, np.int64)})
        w_cases[f"{key} bool"] = npz_bytes(**others, **{key: np.zeros(a.shape, bool)})
    w_cases["negative multiplier"] = npz_bytes(**{**arrays, "conv1.multiplier": -arrays["conv1.multiplier"] - 1})
    w_cases["shift 63"] = npz_bytes(**{**arrays, "conv1.shift": np.int32(63)})
    i_cases: dict[str, bytes | None] = {
        "missing": None, "empty": b"", "random bytes": rng.randbytes(300), "no images": npz_bytes(x=images),
        "3-d": npz_bytes(images=images[0]), "wrong size": npz_bytes(images=np.zeros((1, 4, 4, 3), np.int8)),
        "wrong channels": npz_bytes(images=np.zeros((1, 8, 8, 1), np.int8)),
        "empty batch": npz_bytes(images=np.zeros((0, 8, 8, 3), np.int8)),
        "float": npz_bytes(images=images.astype(float)), "int16 out of range": npz_bytes(
            images=np.full((1, 8, 8, 3), 300, np.int16)), "strings": npz_bytes(images=np.array(["a"])),
    }
    bad = []
    for kind, cases, loader in (("weights", w_cases, load_params), ("images", i_cases, load_images)):
        for label, data in cases.items():
            path = model_dir / f"{kind}_{len(bad)}_{abs(hash(label))}.npz"
            if data is not None:
                path.write_bytes(data)
            try:
                loader(path, net)
            except InputError as e:
                if "\n" in str(e) or str(path) not in str(e):
                    bad.append(f"{kind} {label}: message {e!r}")
                else:
                    conftest.COUNTS["hostile"] += 1
            except Exception as e:
                bad.append(f"{kind} {label}: {type(e).__name__}: {e}")
            else:
                bad.append(f"{kind} {label}: accepted")
    assert not bad, "\n".join(bad)
    # and through the command line, as functional.weights / functional.images
    (model_dir / "garbage.npz").write_bytes(b"garbage")
    cli = [(f"functional.{kind} = {name}", ["run", str(model_dir / "s.toml"), "--no-trace", "--set",
                                             "functional.enabled=true", "--set", f"functional.{kind}={name}"])
           for kind in ("weights", "images") for name in ("garbage.npz", "missing.npz")]
    (model_dir / "s.toml").write_text(render_scenario(BASE_TOP, {}))
    run_cases(capsys, cli)


# --- no traceback reaches a real terminal ----------------------------------------------


def test_subprocess_errors_have_no_traceback(valid: dict[str, str], model_dir: Path) -> None:
    (model_dir / "junk.toml").write_bytes(bytes(range(256)))
    (model_dir / "badmodel.toml").write_text(render_model(MODEL).replace('kernel = 3', 'kernel = "3"', 1))
    (model_dir / "sbad.toml").write_text('model = "badmodel.toml"\n')
    for argv in (["run", str(model_dir / "junk.toml")], ["run", valid["s"], "--batch", "x"],
                 ["run", str(model_dir / "sbad.toml"), "--no-trace"],
                 ["run", valid["s"], "--no-trace", "--set", "dataflow.layer_rates.nosuch=2"],
                 ["report", valid["t"]]):
        r = subprocess.run([sys.executable, "-m", "cimsim", *argv], check=False, capture_output=True, text=True,
                           timeout=60,
                           cwd=model_dir)
        assert r.returncode == 2, (argv, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout, r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("cimsim: error: "), (argv, r.stderr)
        conftest.COUNTS["hostile"] += 1

