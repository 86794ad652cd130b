"""Hostile inputs, continued: path, size and nesting limits, counts known before anything is
allocated, extreme floats, and damaged traces given to `report`, `export` and `plot`. Every case
must end with exit code 2 and one `cimsim: error:` line (counted with tests/test_hostile.py's)."""

from __future__ import annotations

import io
import json
import time
import typing
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_hostile import BASE_TOP, MODEL, model_dir, render_model, render_scenario, run_cases

from cimsim.cli import main
from cimsim.config.load import INT_MAX

__all__ = ["model_dir"]  # the fixture, shared with tests/test_hostile.py


# --- limits: paths, sizes, nesting, counts known before anything is allocated -------------------


def _zip_bomb(path: Path, images: int) -> None:
    """An .npz whose `images` member declares `images` 8x8x3 images: a few kB on disk, gigabytes inflated."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|i1", "fortran_order": False,
                                                   "shape": (images, 8, 8, 3)})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z, z.open("images.npy", "w",
                                                                                     force_zip64=True) as f:
        f.write(header.getvalue())
        block = bytes(1 << 20)
        for _ in range(64):  # 64 MiB of zeros: the rest is missing (truncated), never read
            f.write(block)


def test_limits_and_paths(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = model_dir
    (d / "s.toml").write_text(render_scenario(BASE_TOP, {}))
    (d / "nested_a.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    (d / "nested_t.toml").write_text("x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n")
    (d / "loop").symlink_to(d / "loop")
    (d / "s_loop.toml").write_text('model = "loop"\n')
    (d / "s_nul.toml").write_text('model = "m\\u0000.toml"\n')
    (d / "s_long.toml").write_text(f'model = "{"x" * 5000}.toml"\n')
    (d / "m16.toml").write_text(render_model(MODEL).replace("bits = 8", "bits = 16"))
    (d / "s16.toml").write_text('model = "m16.toml"\n[functional]\nenabled = true\n')
    (d / "big_image.toml").write_text(render_model({**MODEL, "input": {"height": "32767", "width": "32767",
                                                                       "channels": "3"}}))
    (d / "s_big.toml").write_text('model = "big_image.toml"\n')
    np.savez(d / "two.npz", images=np.zeros((2, 8, 8, 3), np.int8))
    _zip_bomb(d / "bomb.npz", 10**9)
    run = ["run", str(d / "s.toml"), "--no-trace", "--json"]
    func = [*run, "--set", "functional.enabled=true"]
    cases = [
        ("scenario is /dev/zero", ["run", "/dev/zero", "--no-trace"]),
        ("scenario nested arrays", ["run", str(d / "nested_a.toml"), "--no-trace"]),
        ("scenario nested tables", ["run", str(d / "nested_t.toml"), "--no-trace"]),
        ("model is /dev/zero", [*run, "--set", "model=/dev/zero"]),
        ("model nested arrays", [*run, "--set", f"model={d / 'nested_a.toml'}"]),
        ("model symlink loop", ["run", str(d / "s_loop.toml"), "--no-trace"]),
        ("model name with NUL", ["run", str(d / "s_nul.toml"), "--no-trace"]),
        ("model name too long", ["run", str(d / "s_long.toml"), "--no-trace"]),
        ("scenario name with NUL", ["run", str(d / "s\x00.toml"), "--no-trace"]),
        ("scenario name too long", ["run", str(d / ("y" * 5000)), "--no-trace"]),
        ("32767 x 32767 image", ["run", str(d / "s_big.toml"), "--no-trace"]),
        ("32767 x 32767 image, no step limit", ["run", str(d / "s_big.toml"), "--no-trace", "--set",
                                                 f"run.max_timesteps={INT_MAX}"]),
        ("batch past max_timesteps", [*run, "--set", "run.batch=1000000"]),
        ("functional batch 10**6", [*func, "--set", "run.batch=1000000"]),
        ("prism_k at its maximum on 32767 cores", [*run, "--set", "noc.topology=prism", "--set",
                                                   f"noc.prism_k={INT_MAX}", "--set", "chip.array_rows=32767",
                                                   "--set", "chip.array_cols=1"]),
        ("functional bits = 16", ["run", str(d / "s16.toml"), "--no-trace"]),
        ("too few functional.images", [*func, "--set", "functional.images=two.npz", "--set", "run.batch=3"]),
        ("--set value with a newline", [*run, "--set", "chip.clocking=elastic\nx"]),
        ("--set key with a newline", [*run, "--set", "chip.\nclocking=elastic"]),
        ("--trace /", [*run[:-1], "--trace", "/"]),
    ]
    for key, values in {"chip.clock_mhz": ["5e-324", "1.7e308", "1e-4", "2e6"],
                        "dram.latency_ns": ["1e308", "1e-320"], "dram.bandwidth_gbps": ["1e-320", "1e308"],
                        "chip.cycles_per_timestep": [str(INT_MAX)], "functional.crossbar_cycle_cycles": [str(INT_MAX)],
                        "chip.mvm_cycles": [str(INT_MAX)], "chip.crossbar_rows": [str(INT_MAX)],
                        "noc.buffer_depth_flits": ["40000"], "noc.link_cycles": [str(INT_MAX)]}.items():
        for v in values:
            cases.append((f"{key} = {v}", [*run, "--set", "dram.enabled=true", "--set", f"{key}={v}"]))
    for key, value in (("bits", "65"), ("channels", "70000")):
        text = render_model(MODEL)
        text = text.replace("bits = 8", f"bits = {value}") if key == "bits" else text.replace(
            "channels = 3", f"channels = {value}")
        (d / f"m_{key}.toml").write_text(text)
        (d / f"s_{key}.toml").write_text(f'model = "m_{key}.toml"\n')
        cases.append((f"model {key} = {value}", ["run", str(d / f"s_{key}.toml"), "--no-trace"]))
    t0 = time.monotonic()
    run_cases(capsys, cases)
    assert time.monotonic() - t0 < 120  # refused, not simulated (a guard against hangs, not a benchmark)
    # a zip bomb of 10**9 declared images: only the batch's images are ever inflated, so it simply runs
    # (tools/bench.py --memory measures its peak memory)
    assert main([*func, "--set", "functional.images=bomb.npz", "--set", "run.batch=2"]) == 0
    assert json.loads(capsys.readouterr().out)["functional"]["images_checked"] == 2


def test_no_infinity_in_json(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The extreme clock frequencies the loader accepts still give finite JSON numbers."""
    (model_dir / "s.toml").write_text(render_scenario(BASE_TOP, {}))
    for clock in ("1e-3", "1e6"):
        assert main(["run", str(model_dir / "s.toml"), "--no-trace", "--json", "--set", f"chip.clock_mhz={clock}"]) == 0
        out = capsys.readouterr().out
        json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in --json"))


# --- damaged traces --------------------------------------------------------------------------------


def _damages() -> Iterator[tuple[str, typing.Callable[[Any], None]]]:
    import h5py

    def drop(name: str) -> typing.Callable[[Any], None]:
        return lambda f: f.__delitem__(name)

    def attr(obj: str, name: str, value: Any) -> typing.Callable[[Any], None]:
        def fn(f: Any) -> None:
            f[obj].attrs[name] = value
        return fn

    def del_attr(obj: str, name: str) -> typing.Callable[[Any], None]:
        return lambda f: f[obj].attrs.__delitem__(name)

    def replace(name: str, data: Any) -> typing.Callable[[Any], None]:
        def fn(f: Any) -> None:
            del f[name]
            f[name] = data
        return fn

    for name in ("config", "config/scenario_json", "config/model_toml", "mapping", "mapping/layers", "mapping/cores",
                 "mapping/edges", "events", "links", "run", "run/image_start_timestep", "run/image_done_timestep",
                 "run/cores", "run/core_stalls", "summary", "summary/layers"):
        yield f"no {name}", drop(name)
    for name, value in (("complete", "false"), ("complete", "true"), ("complete", 1), ("schema_version", "one"),
                        ("trace_level", "everything"), ("trace_level", 3), ("kind_names", 7),
                        ("format", b"\xff\xfe")):
        yield f"root {name} = {value!r}", attr("/", name, value)
    for name in ("trace_level", "kind_names", "cause_names", "complete", "schema_version"):
        yield f"no root {name}", del_attr("/", name)
    yield "plan_json not JSON", attr("mapping", "plan_json", "{not json")
    yield "plan_json a list", attr("mapping", "plan_json", "[1, 2]")
    yield "no plan_json", del_attr("mapping", "plan_json")
    yield "summary json not JSON", attr("summary", "json", "{")
    yield "summary json empty object", attr("summary", "json", "{}")
    yield "no summary json", del_attr("summary", "json")
    yield "scenario_json not JSON", replace("config/scenario_json", "nope")
    yield "scenario_json without chip", replace("config/scenario_json", "{}")
    yield "events not records", replace("events", np.zeros(10))
    yield "events of another layout", replace("events", np.zeros(3, [("a", "<i4")]))
    yield "layer index out of range", lambda f: f["events"].__setitem__(
        0, tuple([0, 0, 0, 0, 0, 30000] + [0] * 6))
    yield "run batch 0", attr("run", "batch", 0)
    yield "run batch a string", attr("run", "batch", "x")
    yield "mapping layers not a table", replace("mapping/layers", np.arange(4))
    yield "image_start_timestep empty", replace("run/image_start_timestep", np.zeros(0, np.int64))
    yield "run batch missing", del_attr("run", "batch")
    yield "config a dataset", lambda f: (f.__delitem__("config"), f.__setitem__("config", np.zeros(2)))
    del h5py


def test_damaged_traces(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    import h5py

    (model_dir / "s.toml").write_text(render_scenario(BASE_TOP, {}))
    good = model_dir / "good.h5"
    assert main(["run", str(model_dir / "s.toml"), "--trace", str(good), "--json"]) == 0
    capsys.readouterr()
    cases = []
    for i, (label, damage) in enumerate(_damages()):
        path = model_dir / f"d{i}.h5"
        shutil.copy(good, path)
        with h5py.File(path, "a") as f:
            damage(f)
        for argv in (["report", str(path), "--json"], ["report", str(path), "--csv"],
                     ["export", str(path), "--perfetto", str(model_dir / f"d{i}.json")],
                     ["plot", str(path), "--kind", "progress", "-o", str(model_dir / f"d{i}.png")]):
            if argv[0] == "plot" and "complete" not in label:
                continue  # plotting reads what report reads; the picture itself is slow to draw
            cases.append((f"{label}: {argv[0]}", argv))
    assert len(cases) >= 100
    run_cases(capsys, cases)
    assert not list(model_dir.glob("d*.json")) and not list(model_dir.glob("*.partial"))
