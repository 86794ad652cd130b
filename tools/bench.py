"""Benchmark: wall time and simulated events per second for ResNet-32 (Dazzi scenarios).

Usage: python tools/bench.py [--quick]
Prints absolute figures and the ratio batch-100 / one-image time. Targets (issue 2):
one image under 2 s, a batch of 100 under 60 s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cimsim.runner import run_scenario

ROOT = Path(__file__).resolve().parent.parent


def bench(scenario: str, batch: int) -> tuple[float, int, int]:
    """Run once; return (wall seconds, events, simulated cycles)."""
    t0 = time.perf_counter()
    report = run_scenario(ROOT / "scenarios" / scenario, [f"run.batch={batch}"])
    return time.perf_counter() - t0, report.summary["events"], report.summary["simulated_cycles"]


def main() -> None:
    """Time one image and a batch of 100 for both dataflows."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch of 10 instead of 100")
    args = ap.parse_args()
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
