"""Benchmark: wall time and simulated events per second for ResNet-32 (Dazzi scenarios).

Usage: python tools/bench.py [--quick] [--trace | --functional | --energy | --dram | --memory | --sweep | --compare REV
                             [--repeats N]]

Default mode: absolute figures and the ratio batch-100 / one-image time. Targets (issue 2):
one image under 2 s, a batch of 100 under 60 s on a 2-core machine.

--trace (issue 6) instead runs the speed-up scenario with batches of 100 and 1,000
(--quick: 10 and 100), each in its own process, with and without an events-level HDF5
trace, and reports the trace size, the time the writer spent in HDF5 (compression and
I/O), the run's extra wall time, and the peak resident memory of each process with the
ratio large / small batch. Target: the traced run's peak memory within 1.5x.

--energy (issue 13) runs ResNet-32 with and without `energy.enabled`, interleaved child
processes, with invariant checks on and off, and prints the CPU-time ratio. Target: <= 1.10.

--dram (issue 14) runs the DRAM-fed mesh scenario with dram.model = "bandwidth" and "banks",
interleaved child processes, and prints the CPU-time ratio (target: banks <= 1.5x), then the
CPU cost per request of each model alone on a stream of pixel reads.

--functional times real arithmetic (functional model) against timing only.

--compare REV (issue 10): this tree against an older revision, see tools/bench_compare.py.

--sweep (issue 15) runs 20 ResNet-32 points serially and as a `cimsim sweep` on 2 local
workers, and prints the speed-up (target: at least 1.7x on 2 cores), the scheduler's overhead
per point and where the CPU time went; `--repeats N` runs N serial/cluster pairs in turn.

--memory (issue 11) runs the inputs that once grew without bound, each in its own process
(peak resident memory from os.wait4's rusage), and a functional batch of 1,000 against one of
10 on a small model. Targets: each refused (or, for the zip bomb, run) within a few seconds
under 500 MB; batch 1,000 within 1.5x the peak memory of batch 10.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # single-threaded BLAS, as the CLI (cimsim/_threads.py), before numpy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

from bench_compare import compare_bench, compare_child, ideal_pixel_hops  # noqa: E402  (tools/ on the path first)

TRACE_SCENARIO = "dazzi2021_resnet32_speedup.toml"


def bench(scenario: str, batch: int) -> tuple[float, int, int]:
    """Run once; return (wall seconds, events, simulated cycles)."""
    from cimsim.runner import run_scenario

    t0 = time.perf_counter()
    report = run_scenario(ROOT / "scenarios" / scenario, [f"run.batch={batch}"])
    return time.perf_counter() - t0, report.summary["events"], report.summary["simulated_cycles"]


def child(scenario: str, batch: int, trace: str) -> None:
    """One run in this process (traced unless `trace` is "-"); print its figures as JSON."""
    import simpy

    from cimsim.config import load_scenario
    from cimsim.hw.chip import build_chip
    from cimsim.mapping import map_network
    from cimsim.network import load_model
    from cimsim.report import make_report
    from cimsim.trace import TraceWriter

    t0 = time.perf_counter()
    sc = load_scenario(ROOT / "scenarios" / scenario, [f"run.batch={batch}"])
    net = load_model(sc.model)
    plan = map_network(net, sc)
    write_s, size = 0.0, 0
    if trace == "-":
        record = build_chip(simpy.Environment(), sc, net, plan).run()
        events = make_report(record).summary["events"]
    else:
        with TraceWriter(trace, sc, net, plan) as writer:
            record = build_chip(simpy.Environment(), sc, net, plan, [writer]).run()
            report = make_report(record)
            writer.finish(record, report)
        events, write_s, size = report.summary["events"], writer.write_seconds, Path(trace).stat().st_size
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"wall_s": wall, "write_s": write_s, "bytes": size, "events": events, "peak_kib": peak_kib}))


def _spawn(batch: int, trace: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", TRACE_SCENARIO, str(batch), trace],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def trace_bench(args: argparse.Namespace) -> None:
    """Trace size, write time and peak memory for two batch sizes."""
    batches = (10, 100) if args.quick else (100, 1000)
    print(f"{TRACE_SCENARIO}, events-level trace, each run in its own process")
    print(f"{'batch':>5} {'events':>10} {'trace MB':>9} {'B/event':>8} {'HDF5 s':>7} {'wall s':>7} "
          f"{'untraced s':>10} {'peak MB':>8} {'untraced MB':>11}")
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in batches:
            traced = _spawn(batch, str(Path(tmp) / f"b{batch}.h5"))
            plain = _spawn(batch, "-")
            peaks[batch] = (traced["peak_kib"], plain["peak_kib"])
            print(f"{batch:>5} {traced['events']:>10,} {traced['bytes'] / 1e6:>9.1f} "
                  f"{traced['bytes'] / traced['events']:>8.2f} {traced['write_s']:>7.2f} {traced['wall_s']:>7.1f} "
                  f"{plain['wall_s']:>10.1f} {traced['peak_kib'] / 1024:>8.1f} {plain['peak_kib'] / 1024:>11.1f}")
    small, big = batches
    ratio = peaks[big][0] / peaks[small][0]
    print(f"peak memory batch {big} / batch {small}: traced {ratio:.2f}x, untraced "
          f"{peaks[big][1] / peaks[small][1]:.2f}x (target: traced within 1.5x) -> {'ok' if ratio <= 1.5 else 'OVER'}")


def functional_bench(args: argparse.Namespace) -> None:
    """Real arithmetic against timing only: ResNet-32 on the Dazzi chip with RAELLA speculation."""
    from cimsim.runner import run_scenario

    batch = 2 if args.quick else 10
    scenario = ROOT / "scenarios" / "dazzi2021_resnet32_speculation.toml"
    walls = {}
    for label, overrides in (("timing only", ["functional.enabled=false"]), ("functional, batched", []),
                             ("functional, per_group", ["functional.mode=per_group"])):
        t0 = time.perf_counter()
        run_scenario(scenario, [f"run.batch={batch}", *overrides])
        walls[label] = time.perf_counter() - t0
        print(f"{label:<24} batch {batch:>3} {walls[label]:>8.2f} s  ({walls[label] / batch:.2f} s per image)")
    base = walls["timing only"]
    for label in ("functional, batched", "functional, per_group"):
        print(f"{label:<24} / timing only: {walls[label] / base:.1f}x")


ENERGY_SCENARIO = "dazzi2021_resnet32.toml"
ENERGY_ON = ["energy.enabled=true", "energy.table=dazzi2021_14nm"]


def energy_child(batch: int, energy: bool, checked: bool) -> None:
    """One run in this process with energy on or off; print its CPU seconds as JSON."""
    from cimsim.runner import run_scenario

    overrides = [f"run.batch={batch}", f"run.check_invariants={str(checked).lower()}", *(ENERGY_ON if energy else [])]
    t0 = time.process_time()
    report = run_scenario(ROOT / "scenarios" / ENERGY_SCENARIO, overrides)
    cpu = time.process_time() - t0
    print(json.dumps({"cpu_s": cpu, "events": report.summary["events"], "energy": "energy" in report.summary}))


def energy_bench(args: argparse.Namespace) -> None:
    """CPU time of counting actions (issue 13): runs with energy on and off, interleaved, each in
    its own process; the ratio of the medians (target: at most 1.10)."""
    batch, repeats = (3, 3) if args.quick else (10, 5)
    print(f"{ENERGY_SCENARIO}, batch {batch}, {repeats} interleaved child processes per variant")
    worst = 0.0
    for checked in (True, False):
        cpu: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(repeats):
            for energy in (False, True):
                out = subprocess.run([sys.executable, __file__, "--energy-child", str(batch), str(int(energy)),
                                      str(int(checked))], check=True, capture_output=True, text=True).stdout
                cpu[energy].append(json.loads(out.splitlines()[-1])["cpu_s"])
        off, on = sorted(cpu[False])[repeats // 2], sorted(cpu[True])[repeats // 2]
        ratio = on / off
        worst = max(worst, ratio)
        print(f"check_invariants={str(checked).lower():<5} energy off {off:6.2f} s, on {on:6.2f} s CPU (medians): "
              f"ratio {ratio:.3f}")
    print(f"counting actions costs at most {100 * (worst - 1):+.1f} % CPU (target <= +10 %) -> "
          f"{'ok' if worst <= 1.10 else 'OVER'}")


DRAM_SCENARIO = "noc_mesh_regular.toml"


def dram_child(batch: int, model: str) -> None:
    """One run of the DRAM scenario with `dram.model`; print its CPU seconds as JSON."""
    from cimsim.runner import run_scenario

    t0 = time.process_time()
    report = run_scenario(ROOT / "scenarios" / DRAM_SCENARIO, [f"run.batch={batch}", f"dram.model={model}"])
    cpu = time.process_time() - t0
    d = report.summary["dram"]
    print(json.dumps({"cpu_s": cpu, "events": report.summary["events"], "timesteps": report.summary["total_timesteps"],
                      "reads": d.get("reads", 0), "stall_timesteps": d["stall_timesteps"]}))


def dram_stream_cpu(model: str, n: int) -> float:
    """CPU microseconds per read of `n` sequential 3-byte reads, 4 in flight, on one DRAM model."""
    import simpy

    from cimsim.config.schema import DramConfig
    from cimsim.hw.dram import make_dram

    env = simpy.Environment()
    dram = make_dram(env, DramConfig(enabled=True, model=model), 500.0)

    def reader():  # SimPy generator
        for _ in range(n // 4):
            events = [dram.read(3) for _ in range(4)]
            yield env.all_of(events)
            yield env.timeout(50)

    env.process(reader())
    t0 = time.process_time()
    env.run()
    return (time.process_time() - t0) / n * 1e6


def dram_bench(args: argparse.Namespace) -> None:
    """CPU time of the banks DRAM model against the bandwidth model (issue 14): the same run,
    interleaved child processes; the ratio of the medians (target: at most 1.5)."""
    batch, repeats = (3, 3) if args.quick else (10, 5)
    print(f"{DRAM_SCENARIO}, batch {batch}, {repeats} interleaved child processes per model")
    runs: dict[str, list[dict[str, float]]] = {"bandwidth": [], "banks": []}
    for _ in range(repeats):
        for model in runs:
            out = subprocess.run([sys.executable, __file__, "--dram-child", str(batch), model], check=True,
                                 capture_output=True, text=True).stdout
            runs[model].append(json.loads(out.splitlines()[-1]))
    med = {m: sorted(r["cpu_s"] for r in rs)[repeats // 2] for m, rs in runs.items()}
    for model, rs in runs.items():
        r = rs[0]
        print(f"{model:<9} {med[model]:6.2f} s CPU (median), {r['events']:,} events, {r['timesteps']:,} timesteps, "
              f"{r['reads']:,} reads timed, {r['stall_timesteps']} dram stall timesteps")
    ratio = med["banks"] / med["bandwidth"]
    print(f"banks / bandwidth CPU time: {ratio:.3f} (target <= 1.5) -> {'ok' if ratio <= 1.5 else 'OVER'}")
    n = 4_000 if args.quick else 40_000
    for model in runs:
        print(f"{model:<9} alone: {dram_stream_cpu(model, n):6.2f} us CPU per 3-byte read ({n:,} reads, 4 in flight)")


MEMORY_MODEL = """name = "mem"
[input]
height = 16
width = 16
channels = 3
[[layers]]
name = "conv1"
type = "conv"
input = "input"
out_channels = 8
kernel = 3
padding = 1
relu = true
[[layers]]
name = "conv2"
type = "conv"
input = "conv1"
out_channels = 8
kernel = 3
padding = 1
[[layers]]
name = "pool"
type = "avgpool"
input = "conv2"
[[layers]]
name = "fc"
type = "fc"
input = "pool"
out_features = 10
"""


def _measured(argv: list[str], cwd: str) -> tuple[int, float, float]:
    """Run `python -m cimsim argv` in `cwd`; return (exit code, wall seconds, peak RSS in MB)."""
    import os

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cimsim", *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, usage.ru_maxrss / 1024  # KiB on Linux


def memory_bench(args: argparse.Namespace) -> None:
    """Peak memory of the once-unbounded inputs, and of functional batch 1,000 against batch 10."""
    import io
    import zipfile

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "mem.toml").write_text(MEMORY_MODEL)
        (d / "s.toml").write_text('model = "mem.toml"\nname = "mem"\n')
        big = MEMORY_MODEL.replace("height = 16\nwidth = 16", "height = 32767\nwidth = 32767")
        (d / "big.toml").write_text(big)
        (d / "sbig.toml").write_text('model = "big.toml"\n')
        (d / "nested.toml").write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "|i1", "fortran_order": False,
                                                       "shape": (10**9, 16, 16, 3)})
        with zipfile.ZipFile(d / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as z, z.open("images.npy", "w",
                                                                                        force_zip64=True) as f:
            f.write(header.getvalue())
            for _ in range(256):  # 256 MiB of zeros inflated from ~250 kB; the declared rest does not exist
                f.write(bytes(1 << 20))
        run = ["run", "s.toml", "--no-trace", "--json"]
        func = [*run, "--set", "functional.enabled=true"]
        cases = [
            ("scenario path /dev/zero", ["run", "/dev/zero", "--no-trace"], 2),
            ("5,000 nested TOML arrays", ["run", "nested.toml", "--no-trace"], 2),
            ("32,767 x 32,767 image", ["run", "sbig.toml", "--no-trace", "--set", "run.max_timesteps=2147483647"], 2),
            ("prism_k maximum, 32,767 cores", [*run, "--set", "noc.topology=prism", "--set", "noc.prism_k=2147483647",
                                               "--set", "chip.array_rows=32767", "--set", "chip.array_cols=1"], 2),
            ("functional run.batch = 1,000,000", [*func, "--set", "run.batch=1000000"], 2),
            ("zip-bomb functional.images (runs)", [*func, "--set", "functional.images=bomb.npz",
                                                   "--set", "run.batch=2"], 0),
        ]
        print(f"{'case':<38} {'exit':>4} {'wall s':>7} {'peak MB':>8}  target")
        for label, argv, want in cases:
            code, wall, peak = _measured(argv, tmp)
            ok = code == want and peak < 500
            print(f"{label:<38} {code:>4} {wall:>7.2f} {peak:>8.1f}  exit {want}, < 500 MB -> {'ok' if ok else 'OVER'}")
        small, large = (10, 100) if args.quick else (10, 1000)
        peaks = {}
        for batch in (small, large):
            code, wall, peaks[batch] = _measured([*func, "--set", f"run.batch={batch}", "--set",
                                                  "run.max_timesteps=100000000"], tmp)
            print(f"{'functional batch ' + f'{batch:,}':<38} {code:>4} {wall:>7.2f} {peaks[batch]:>8.1f}")
        ratio = peaks[large] / peaks[small]
        print(f"peak memory functional batch {large:,} / batch {small}: {ratio:.2f}x (target within 1.5x) -> "
              f"{'ok' if ratio <= 1.5 else 'OVER'}")


def sweep_bench(args: argparse.Namespace) -> None:
    """20 ResNet-32 points (chip.mvm_cycles = 10..29, batch 2) serially in this process, then as a
    `cimsim sweep` on the LocalCluster of 2 workers `cimsim sweep --workers 2` starts: the speed-up,
    the scheduler's overhead per point (wall time x workers minus the points' own wall time, over
    the points) and where the CPU time went (the points' threads, the workers' other threads, this
    process: client, scheduler, nannies and the table writer). `--repeats N` runs N such pairs in
    turn (a fresh cluster each) and ends with the median and the spread, for a shared machine."""
    from cimsim.sweep import load_sweep
    from cimsim.sweep.worker import WARM_MODULES

    n = 6 if args.quick else 20
    repeats = max(1, args.repeats if args.repeats is not None else 1)
    speedups: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench.toml"
        spec.write_text(f'base = "{ROOT / "scenarios" / "dazzi2021_resnet32.toml"}"\n[set]\n"run.batch" = 2\n'
                        f'[axes]\n"chip.mvm_cycles" = {list(range(10, 10 + n))}\n')
        sweep = load_sweep(spec)
        for module in WARM_MODULES:  # as the workers have before their first point: no imports in the serial time
            importlib.import_module(module)
        for r in range(repeats):
            if repeats > 1:
                print(f"pair {r + 1}/{repeats} (load average {os.getloadavg()[0]:.2f})")
            speedups.append(_sweep_pair(sweep, Path(tmp) / f"out{r}", n))
    if repeats > 1:
        print(f"speed-up over {repeats} pairs: median {statistics.median(speedups):.2f}x, "
              f"min {min(speedups):.2f}x, max {max(speedups):.2f}x")


def _sweep_pair(sweep: Any, out: Path, n: int, workers: int = 2) -> float:
    """One serial run and one cluster run of `sweep`; print them; return the speed-up."""
    from cimsim.sweep.engine import connect, run_sweep
    from cimsim.sweep.task import run_point

    t0 = time.perf_counter()
    serial = [run_point(p.scenario) for p in sweep.points]
    serial_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    client, cluster = connect("", workers, sweep.options.retries, sweep.options.connect_timeout_s)
    try:
        client.wait_for_workers(workers)
        start = time.perf_counter() - t0
        w0, p0 = client.run(_cpu_s), _cpu_s()
        outcome = run_sweep(sweep, out, client=client)
        w1, p1 = client.run(_cpu_s), _cpu_s()
    finally:
        client.close()
        cluster.close()
    import pandas as pd

    table = pd.read_parquet(out / "results.parquet")
    points, points_cpu = float(table["wall_s"].sum()), float(table["cpu_s"].sum())
    serial_points, serial_cpu = sum(r["wall_s"] for r in serial), sum(r["cpu_s"] for r in serial)
    worker_cpu = sum(w1[k] - w0[k] for k in w1 if k in w0)
    print(f"{n} ResNet-32 points (batch 2): serial {serial_wall:.2f} s (sum of points {serial_points:.2f} s, "
          f"CPU {serial_cpu:.2f} s)")
    print(f"{workers} local workers: {outcome.wall_s:.2f} s after a {start:.2f} s cluster start (cimsim imported on "
          f"the workers) -> speed-up {serial_wall / outcome.wall_s:.2f}x "
          f"({serial_wall / (outcome.wall_s + start):.2f}x with the start)")
    print(f"scheduler overhead per point: {(workers * outcome.wall_s - points) / n * 1000:.0f} ms "
          f"({workers} x wall - points' own {points:.2f} s, over {n} points); {outcome.ok} ok")
    print(f"CPU during the sweep ({workers} x wall = {workers * outcome.wall_s:.2f} s): points' threads "
          f"{points_cpu:.2f} s ({points_cpu / serial_cpu - 1:+.0%} on serial), workers' other threads "
          f"{worker_cpu - points_cpu:.2f} s, client + scheduler process {p1 - p0:.2f} s; "
          f"points' wall in the workers {points / serial_points - 1:+.0%} on serial")
    return serial_wall / outcome.wall_s


def _cpu_s() -> float:
    """CPU time (user + system) of the calling process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


HOP_SCENARIOS = (("ResNet-32 CIFAR-10", "dazzi2021_resnet32.toml"), ("ResNet-18 ImageNet", "zoo/resnet18_imagenet.toml"))
"""The per-hop comparison of issue 12: the cost of a pixel delivered should not grow with the network."""


def hop_bench() -> None:
    """CPU seconds per pixel-hop (a pixel delivered from its producer to one consumer core) of
    ResNet-32 and ResNet-18 at batch 1, each in this process, `build_chip(...).run()` only."""
    import simpy

    from cimsim.config import load_scenario
    from cimsim.hw.chip import build_chip
    from cimsim.mapping import map_network
    from cimsim.mapping.sizing import resolve_array
    from cimsim.network import load_model

    print(f"{'network (batch 1)':<22} {'cores':>5} {'pixel-hops':>11} {'CPU s':>7} {'us/hop':>7} {'events/hop':>10}")
    for label, scenario in HOP_SCENARIOS:
        sc = load_scenario(ROOT / "scenarios" / scenario, ["run.batch=1"])
        net = load_model(sc.model)
        sc = resolve_array(net, sc)
        plan = map_network(net, sc)
        env = simpy.Environment()
        chip = build_chip(env, sc, net, plan)
        t0 = time.process_time()
        chip.run()
        cpu = time.process_time() - t0
        hops = ideal_pixel_hops(net, plan, 1)
        events = next(env._eid) - len(env._queue)
        print(f"{label:<22} {plan.core_count:>5} {hops:>11,} {cpu:>7.2f} {cpu / hops * 1e6:>7.2f} {events / hops:>10.2f}")


def speed_bench(args: argparse.Namespace) -> None:
    """Time one image and a batch of 100 (--quick: 10) for both dataflows."""
    big = 10 if args.quick else 100
    print(f"{'scenario':<32} {'batch':>5} {'wall s':>8} {'events':>10} {'events/s':>10} {'cycles/s':>12}")
    for scenario in ("dazzi2021_resnet32.toml", "dazzi2021_resnet32_speedup.toml", "dazzi2021_resnet32_reload.toml"):
        walls = {}
        for batch in (1, big):
            wall, events, cycles = bench(scenario, batch)
            walls[batch] = wall
            print(f"{scenario:<32} {batch:>5} {wall:>8.2f} {events:>10,} {events / wall:>10,.0f} "
                  f"{cycles / wall:>12,.0f}")
        print(f"{'':<32} ratio batch {big} / batch 1: {walls[big] / walls[1]:.1f}x")
    hop_bench()


def main(argv: Sequence[str] | None = None) -> None:
    """Pick the mode: one function per mode (default: `speed_bench`)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller batches (10 instead of 100; --trace: 10 and 100)")
    modes = ap.add_mutually_exclusive_group()
    modes.add_argument("--trace", action="store_true", help="benchmark the HDF5 trace writer instead")
    modes.add_argument("--functional", action="store_true",
                       help="benchmark real arithmetic (functional model) against timing only")
    modes.add_argument("--energy", action="store_true",
                       help="CPU time with energy counting on against off (interleaved child processes)")
    modes.add_argument("--dram", action="store_true",
                       help="CPU time of the DRAM banks model against the bandwidth model (interleaved child processes)")
    modes.add_argument("--memory", action="store_true",
                       help="peak memory of once-unbounded inputs, and functional batch 1,000 against 10")
    modes.add_argument("--sweep", action="store_true",
                       help="20 ResNet-32 points serially and on 2 local Dask workers: speed-up, overhead")
    modes.add_argument("--compare", metavar="REV",
                       help="run REV (a git worktree) and this tree interleaved; CPU-time ratios per scenario")
    ap.add_argument("--repeats", type=int, default=None,
                    help="--compare: runs per tree and scenario (default 3); --sweep: serial/cluster pairs (default 1)")
    ap.add_argument("--json", action="store_true", help="--compare: print the results as JSON")
    ap.add_argument("--child", nargs=3, metavar=("SCENARIO", "BATCH", "TRACE"), help=argparse.SUPPRESS)
    ap.add_argument("--compare-child", metavar="SPEC", help=argparse.SUPPRESS)
    ap.add_argument("--energy-child", nargs=3, metavar=("BATCH", "ENERGY", "CHECKED"), help=argparse.SUPPRESS)
    ap.add_argument("--dram-child", nargs=2, metavar=("BATCH", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
    if args.compare_child:
        print(json.dumps(compare_child(json.loads(args.compare_child))))
        return
    if args.energy_child:
        energy_child(int(args.energy_child[0]), args.energy_child[1] == "1", args.energy_child[2] == "1")
        return
    if args.dram_child:
        dram_child(int(args.dram_child[0]), args.dram_child[1])
        return
    mode = trace_bench if args.trace else functional_bench if args.functional else \
        energy_bench if args.energy else dram_bench if args.dram else memory_bench if args.memory else \
        sweep_bench if args.sweep else compare_bench if args.compare else speed_bench
    try:
        mode(args)
    except KeyboardInterrupt:
        print("cimsim: error: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
