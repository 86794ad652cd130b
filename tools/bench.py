"""Benchmark: wall time and simulated events per second for ResNet-32 (Dazzi scenarios).

Usage: python tools/bench.py [--quick] [--trace | --functional | --sweep]
Prints absolute figures and the ratio batch-100 / one-image time. Targets (issue 2):
one image under 2 s, a batch of 100 under 60 s on a 2-core machine.

--trace (issue 6) instead runs the speed-up scenario with batches of 100 and 1,000
(--quick: 10 and 100), each in its own process, with and without an events-level HDF5
trace, and reports the trace size, the time the writer spent in HDF5 (compression and
I/O), the run's extra wall time, and the peak resident memory of each process with the
ratio large / small batch. Target: the traced run's peak memory within 1.5x.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cimsim._threads  # noqa: F401  (single-threaded BLAS, as the CLI)
from cimsim.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent
TRACE_SCENARIO = "dazzi2021_resnet32_speedup.toml"


def bench(scenario: str, batch: int) -> tuple[float, int, int]:
    """Run once; return (wall seconds, events, simulated cycles)."""
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


def trace_bench(quick: bool) -> None:
    """Trace size, write time and peak memory for two batch sizes."""
    batches = (10, 100) if quick else (100, 1000)
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


def functional_bench(quick: bool) -> None:
    """Real arithmetic against timing only: ResNet-32 on the Dazzi chip with RAELLA speculation."""
    batch = 2 if quick else 10
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


def sweep_bench(quick: bool) -> None:
    """20 ResNet-32 points (chip.mvm_cycles = 10..29, batch 2) serially in this process, then as a
    `cimsim sweep` on a LocalCluster of 2 workers: the speed-up and the scheduler's overhead per
    point (wall time x workers minus the points' own simulation time, over the points)."""
    import logging

    import distributed

    from cimsim.sweep import load_sweep
    from cimsim.sweep.engine import run_sweep
    from cimsim.sweep.task import run_point

    n = 6 if quick else 20
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench.toml"
        spec.write_text(f'base = "{ROOT / "scenarios" / "dazzi2021_resnet32.toml"}"\n[set]\n"run.batch" = 2\n'
                        f'[axes]\n"chip.mvm_cycles" = {list(range(10, 10 + n))}\n')
        sweep = load_sweep(spec)
        t0 = time.perf_counter()
        serial = [run_point(p.scenario)["wall_s"] for p in sweep.points]
        serial_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                      silence_logs=logging.ERROR) as cluster, distributed.Client(cluster) as client:
            client.wait_for_workers(2)
            start = time.perf_counter() - t0
            outcome = run_sweep(sweep, Path(tmp) / "out", client=client)
        import pandas as pd

        points = pd.read_parquet(Path(tmp) / "out" / "results.parquet")["wall_s"].sum()
    print(f"{n} ResNet-32 points (batch 2): serial {serial_wall:.2f} s (sum of points {sum(serial):.2f} s)")
    print(f"2 local workers: {outcome.wall_s:.2f} s after a {start:.2f} s cluster start -> speed-up "
          f"{serial_wall / outcome.wall_s:.2f}x ({serial_wall / (outcome.wall_s + start):.2f}x with the start)")
    print(f"scheduler overhead per point: {(2 * outcome.wall_s - points) / n * 1000:.0f} ms "
          f"(2 x wall - points' own {points:.2f} s, over {n} points); {outcome.ok} ok")


def main() -> None:
    """Time one image and a batch of 100 for both dataflows (or, with --trace, the trace writer)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller batches (10 instead of 100; --trace: 10 and 100)")
    ap.add_argument("--trace", action="store_true", help="benchmark the HDF5 trace writer instead")
    ap.add_argument("--functional", action="store_true",
                    help="benchmark real arithmetic (functional model) against timing only")
    ap.add_argument("--sweep", action="store_true",
                    help="20 ResNet-32 points serially and on 2 local Dask workers: speed-up, overhead")
    ap.add_argument("--child", nargs=3, metavar=("SCENARIO", "BATCH", "TRACE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
    if args.trace:
        trace_bench(args.quick)
        return
    if args.functional:
        functional_bench(args.quick)
        return
    if args.sweep:
        sweep_bench(args.quick)
        return
    big = 10 if args.quick else 100
    print(f"{'scenario':<32} {'batch':>5} {'wall s':>8} {'events':>10} {'events/s':>10} {'cycles/s':>12}")
    for scenario in ("dazzi2021_resnet32.toml", "dazzi2021_resnet32_speedup.toml"):
        walls = {}
        for batch in (1, big):
            wall, events, cycles = bench(scenario, batch)
            walls[batch] = wall
            print(f"{scenario:<32} {batch:>5} {wall:>8.2f} {events:>10,} {events / wall:>10,.0f} {cycles / wall:>12,.0f}")
        print(f"{'':<32} ratio batch {big} / batch 1: {walls[big] / walls[1]:.1f}x")


if __name__ == "__main__":
    main()
