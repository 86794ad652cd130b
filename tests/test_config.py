"""Tests of the scenario loader (cimsim.config)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tomllib
import typing
from pathlib import Path

import pytest

from cimsim.config import Scenario, apply_overrides, load_scenario, scenario_to_dict
from cimsim.config.load import ENUMS, LOADER_FIELDS, field_docs
from cimsim.errors import InputError

TEMPLATE = Path(__file__).resolve().parent.parent / "scenarios" / "template.toml"


def _tables() -> dict[str, type]:
    """Scenario sub-table name -> its dataclass."""
    hints = typing.get_type_hints(Scenario)
    return {f.name: hints[f.name] for f in dataclasses.fields(Scenario)
            if dataclasses.is_dataclass(hints[f.name])}


def _top_fields() -> list[str]:
    """Top-level scalar keys a scenario file may set."""
    tables = _tables()
    return [f.name for f in dataclasses.fields(Scenario)
            if f.name not in tables and f.name not in LOADER_FIELDS]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A (dummy) model file next to the scenarios directory."""
    path = tmp_path / "models" / "m.toml"
    path.parent.mkdir()
    path.write_text("# dummy model\n")
    return path


@pytest.fixture
def write(tmp_path: Path, model: Path):
    """Write a scenario file `scenarios/x.toml` whose body follows a valid model key."""
    def _write(body: str = "", *, with_model: bool = True) -> Path:
        path = tmp_path / "scenarios" / "x.toml"
        path.parent.mkdir(exist_ok=True)
        head = 'model = "../models/m.toml"\n' if with_model else ""
        path.write_text(head + body)
        return path
    return _write


def _error(path: Path, overrides: tuple[str, ...] = ()) -> str:
    """Load `path` expecting an InputError; return its (checked one-line) message."""
    with pytest.raises(InputError) as info:
        load_scenario(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- the template -------------------------------------------------------------


@pytest.fixture
def template_copy(tmp_path: Path) -> Path:
    """The template copied to tmp_path/scenarios with the model it names."""
    (tmp_path / "scenarios").mkdir()
    copy = tmp_path / "scenarios" / "template.toml"
    shutil.copy(TEMPLATE, copy)
    raw = tomllib.loads(TEMPLATE.read_text())
    model = (copy.parent / raw["model"]).resolve()
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("# dummy model\n")
    return copy


def test_template_loads_and_equals_defaults(template_copy: Path) -> None:
    s = load_scenario(template_copy)
    model = (template_copy.parent / "../models/resnet32_cifar10.toml").resolve()
    assert s == Scenario(model=str(model), name="template", source=str(template_copy))


def test_template_has_every_field() -> None:
    raw = tomllib.loads(TEMPLATE.read_text())
    for name in _top_fields():
        assert name in raw, f"template.toml lacks top-level key {name!r}"
    for table, cls in _tables().items():
        assert isinstance(raw.get(table), dict), f"template.toml lacks [{table}]"
        for f in dataclasses.fields(cls):
            assert f.name in raw[table], f"template.toml lacks {table}.{f.name}"


def test_template_mirrors_docstrings() -> None:
    comments = " ".join(
        line.strip().lstrip("#").strip()
        for line in TEMPLATE.read_text().splitlines()
        if line.strip().startswith("#")
    )
    comments = " ".join(comments.split())
    classes = [Scenario, *_tables().values()]
    for cls in classes:
        for name, doc in field_docs(cls).items():
            if cls is Scenario and name in LOADER_FIELDS:
                continue
            assert " ".join(doc.split()) in comments, f"template lacks the doc of {name}"


def test_every_field_documented() -> None:
    for cls in [Scenario, *_tables().values()]:
        docs = field_docs(cls)
        tables = _tables() if cls is Scenario else {}
        for f in dataclasses.fields(cls):
            assert f.name in docs or f.name in tables, f"{cls.__name__}.{f.name} lacks a docstring"


# --- loading ------------------------------------------------------------------


def test_minimal_scenario(write, model: Path) -> None:
    path = write()
    s = load_scenario(path)
    assert s.model == str(model.resolve())
    assert s.name == "x"
    assert s.source == str(path)
    assert s.chip == Scenario(model="m").chip


def test_values_and_float_accepts_int(write) -> None:
    s = load_scenario(write('name = "n"\n[chip]\nclock_mhz = 250\ncrossbar_rows = 128\n'
                            '[dataflow]\nlayer_rates = { conv1 = 2 }\n[run]\nseed = 0\n'))
    assert s.name == "n"
    assert s.chip.clock_mhz == 250.0 and isinstance(s.chip.clock_mhz, float)
    assert s.chip.crossbar_rows == 128
    assert s.dataflow.layer_rates == {"conv1": 2}


def test_scenario_to_dict_is_json(write) -> None:
    d = scenario_to_dict(load_scenario(write()))
    assert d["chip"]["crossbar_rows"] == 256
    assert json.loads(json.dumps(d)) == d


# --- overrides ----------------------------------------------------------------


def test_overrides(write, tmp_path: Path) -> None:
    other = tmp_path / "models" / "other.toml"
    other.write_text("")
    s = load_scenario(write("[chip]\ncrossbar_rows = 128\n"), (
        "chip.crossbar_rows=512", "run.batch=100", "dataflow.mode=speedup",
        "dataflow.layer_rates={conv1=2}", "model=../models/other.toml",
        "dataflow.speedup_rates.16=8", "name=2024", "description=a b c",
    ))
    assert s.chip.crossbar_rows == 512
    assert s.run.batch == 100
    assert s.dataflow.mode == "speedup"
    assert s.dataflow.layer_rates == {"conv1": 2}
    assert s.dataflow.speedup_rates == {"16": 8, "28": 2, "56": 1}
    assert s.model == str(other.resolve())
    assert s.name == "2024"
    assert s.description == "a b c"


def test_apply_overrides_leaves_input_alone() -> None:
    raw = {"model": "m", "chip": {"array_rows": 2}}
    out = apply_overrides(raw, [
        "chip.array_cols=3", 'dataflow.layer_rates."a.b"=4', "dataflow.layer_rates.l1.0.c=5",
    ])
    assert raw == {"model": "m", "chip": {"array_rows": 2}}
    assert out["chip"] == {"array_rows": 2, "array_cols": 3}
    assert out["dataflow"]["layer_rates"] == {"a.b": 4, "l1.0.c": 5}


@pytest.mark.parametrize("item, expected", [
    ("chip.foo=1", "--set chip.foo=1: unknown key 'chip.foo'"),
    ("foo=1", "--set foo=1: unknown key 'foo'"),
    ("source=x", "--set source=x: unknown key 'source'"),
    ("xyz", "--set xyz: expected KEY=VALUE"),
    ("=3", "--set =3: expected KEY=VALUE"),
    ("chip..rows=3", "--set chip..rows=3: expected KEY=VALUE"),
    ("model.x=1", "--set model.x=1: 'model' is not a table"),
])
def test_bad_override_keys(write, item: str, expected: str) -> None:
    assert _error(write(), (item,)).startswith(expected)


@pytest.mark.parametrize("item, fragment", [
    ("chip.crossbar_rows=-3", "chip.crossbar_rows = -3"),
    ("run.batch=1.5", "run.batch = 1.5"),
    ("dataflow.mode=fast", "dataflow.mode = 'fast'"),
    ("dataflow.layer_rates={conv1=0}", "dataflow.layer_rates.conv1 = 0"),
    ("dataflow.layer_rates.conv1=true", "dataflow.layer_rates.conv1 = true"),
])
def test_override_values_are_validated(write, item: str, fragment: str) -> None:
    path = write()
    message = _error(path, (item,))
    assert message.startswith(f"{path}: {fragment}")
    assert f"--set {item}" in message


# --- errors -------------------------------------------------------------------


@pytest.mark.parametrize("body, fragment, why", [
    ("[chip]\ncrossbar_rows = -3\n", "chip.crossbar_rows = -3", "positive integer"),
    ("[chip]\ncrossbar_rows = 0\n", "chip.crossbar_rows = 0", "positive integer"),
    ("[chip]\ncrossbar_rows = '256'\n", "chip.crossbar_rows = '256'", "positive integer"),
    ("[chip]\ncrossbar_rows = true\n", "chip.crossbar_rows = true", "positive integer"),
    ("[chip]\ncrossbar_rows = 256.0\n", "chip.crossbar_rows = 256.0", "positive integer"),
    ("[run]\nseed = -1\n", "run.seed = -1", "non-negative integer"),
    ("[noc]\nideal_hop_timesteps = -1\n", "noc.ideal_hop_timesteps = -1", "non-negative"),
    ("[chip]\nclock_mhz = 0\n", "chip.clock_mhz = 0", "positive number"),
    ("[chip]\nclock_mhz = -1.5\n", "chip.clock_mhz = -1.5", "positive number"),
    ("[chip]\nclock_mhz = inf\n", "chip.clock_mhz = inf", "positive number"),
    ("[chip]\nclock_mhz = false\n", "chip.clock_mhz = false", "positive number"),
    ("[chip]\nclocking = 'async'\n", "chip.clocking = 'async'", '"timestep", "elastic"'),
    ("[noc]\ntopology = 'torus'\n", "noc.topology = 'torus'", '"mesh"'),
    ("[mapping]\nsram_method = 3\n", "mapping.sram_method = 3", '"iwap", "klip"'),
    ("[mapping]\nfc_on = 'cpu'\n", "mapping.fc_on = 'cpu'", '"digital", "crossbar"'),
    ("[mapping]\nreplica_fit = 'x'\n", "mapping.replica_fit = 'x'", '"split", "error"'),
    ("[dataflow]\nmode = 'fast'\n", "dataflow.mode = 'fast'", '"regular", "speedup"'),
    ("name = 3\n", "name = 3", "string"),
    ("chip = 3\n", "chip = 3", "table"),
    ("[dataflow]\nlayer_rates = 3\n", "dataflow.layer_rates = 3", "table"),
    ("[dataflow.layer_rates]\nconv1 = 0\n", "dataflow.layer_rates.conv1 = 0", "positive integer"),
    ("[dataflow.layer_rates]\n'a.b' = 1.5\n", 'dataflow.layer_rates."a.b" = 1.5', "positive"),
    ("[dataflow.speedup_rates]\n16 = 'x'\n", "dataflow.speedup_rates.16 = 'x'", "positive"),
])
def test_bad_values(write, body: str, fragment: str, why: str) -> None:
    path = write(body)
    message = _error(path)
    assert message.startswith(f"{path}: {fragment}: must be ")
    assert why in message


def test_enums_cover_schema_defaults() -> None:
    for key, allowed in ENUMS.items():
        table, name = key.split(".")
        default = getattr(getattr(Scenario(model="m"), table), name)
        assert default in allowed, key


@pytest.mark.parametrize("body, expected", [
    ("[chip]\nfoo = 1\n", "unknown key 'chip.foo' (known keys in [chip]: array_rows, "),
    ("foo = 1\n", "unknown key 'foo' (known keys in the top level: model, name, "),
    ("[gpu]\nx = 1\n", "unknown key 'gpu'"),
    ("source = 'x'\n", "key 'source' is set by the loader"),
])
def test_unknown_keys(write, body: str, expected: str) -> None:
    path = write(body)
    assert _error(path).startswith(f"{path}: {expected}")


def test_missing_model_key(write) -> None:
    path = write("name = 'n'\n", with_model=False)
    assert _error(path).startswith(f"{path}: missing required key 'model'")


def test_missing_model_file(write, tmp_path: Path) -> None:
    path = write('model = "../models/nope.toml"\n', with_model=False)
    resolved = (tmp_path / "models" / "nope.toml").resolve()
    assert _error(path) == f"{path}: model = '../models/nope.toml': file not found ({resolved})"


def test_missing_model_file_from_override(write) -> None:
    path = write()
    message = _error(path, ("model=nope.toml",))
    assert message.startswith(f"{path}: model = 'nope.toml' (from --set model=nope.toml)")
    assert "file not found" in message


def test_malformed_toml(write) -> None:
    path = write("[chip\ncrossbar_rows = \n")
    assert _error(path).startswith(f"{path}: malformed TOML: ")


def test_duplicate_key_is_malformed(write) -> None:
    path = write("[run]\nbatch = 1\nbatch = 2\n")
    assert _error(path).startswith(f"{path}: malformed TOML: ")


def test_scenario_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "none.toml"
    assert _error(path) == f"scenario file not found: {path}"


def test_scenario_path_is_directory(tmp_path: Path) -> None:
    assert _error(tmp_path).startswith(f"cannot read scenario file {tmp_path}")
