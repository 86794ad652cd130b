"""The README's accuracy tables of the digits CNN on the chip, and RAELLA's Fig. 7-2 ablation.

    python tools/digits_accuracy.py [--bits 5,6,7,8,9] [--policies off,always,on_failure]
                                    [--slicings fixed,adaptive] [--noise 0,0.02,...,0.12]
                                    [--ablation-noise 0,0.02,...] [--seeds 0] [--axis KEY=V1,V2,...]
                                    [--batch N] [--plot PATH] [--no-grid] [--no-ablation] [--json]

Every point is one run of `scenarios/digits_cnn.toml` (the 360 held-out images) with scenario keys
set. Two parts, each printed as Markdown (or all as JSON with --json):

- The grid: top-1 accuracy over ADC bits (`functional.adc_bits`) x weight slicing
  (`functional.weight_slicing`) x noise level E (`noise.column_sigma`), one cell per
  (bits, slicing, E) holding the accuracy of each policy (`functional.policy`), with the float and
  int8-reference baselines; then the adaptive slicings chosen per E (they depend on E and the ADC:
  the search runs on the noisy crossbar). `--axis KEY=V1,V2` adds any other scenario key to it.
- The ablation (RAELLA thesis 7.1 / Fig. 7-2), accuracy and relative rms output error against E:
  `ISAAC-like` (`functional.weight_encoding = "offset"`: unsigned w + 128 on the devices, four 2b
  weight slices, eight 1b input slices, 128 x 128 crossbars, 8-bit ADC), `Center+Offset` (RAELLA's
  encoding, 4b-2b-2b, 7-bit ADC, the scenario's 256 x 256 crossbars), `+ adaptive slicing`, and
  `+ speculation` (policy always). With several `--seeds` (run.seed: the noise draws) each point is
  the mean over them. `--plot` writes the figure (matplotlib).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "digits_cnn.toml"
PLOT = ROOT / "traces" / "figures" / "digits_accuracy_noise.png"
NOISE = "0,0.02,0.04,0.06,0.08,0.1,0.12"

ABLATION: list[tuple[str, list[str]]] = [
    ("ISAAC-like", ["functional.weight_encoding=offset", "functional.adc_bits=8", "chip.crossbar_rows=128",
                    "chip.crossbar_cols=128", "functional.policy=off", "functional.weight_slicing=fixed"]),
    ("Center+Offset", ["functional.adc_bits=7", "functional.policy=off", "functional.weight_slicing=fixed"]),
    ("+ adaptive slicing", ["functional.adc_bits=7", "functional.policy=off", "functional.weight_slicing=adaptive"]),
    ("+ speculation", ["functional.adc_bits=7", "functional.policy=always", "functional.weight_slicing=adaptive"]),
]
"""The four setups of RAELLA 7.1 as scenario overrides of the digits scenario."""


class ToolError(Exception):
    """Bad command-line input (one line, exit 2)."""


def point(overrides: list[str]) -> dict[str, Any]:
    """One run's accuracy, agreement with the reference, ADC statistics and chosen slicings."""
    from cimsim.config import load_scenario
    from cimsim.runner import run

    f = run(load_scenario(SCENARIO, overrides)).summary["functional"]
    noise = f.get("noise") or {}
    return {"accuracy": f["accuracy"], "mismatching_values": f["mismatching_values"],
            "output_values": f["output_values"], "speculation_success": f["speculation_success"],
            "adc_converts_per_column": f["adc_converts_per_column"],
            "relative_rms_error": noise.get("relative_rms_error", 0.0),
            "top1_agreement": noise.get("top1_agreement", 1.0),
            "slicings": {k: v["slicing"] for k, v in f.get("slicings", {}).items()},
            "within_budget": {k: v["within_budget"] for k, v in f.get("slicings", {}).items()}}


def _floats(text: str, what: str) -> list[str]:
    vals = [v.strip() for v in text.split(",") if v.strip()]
    try:
        [float(v) for v in vals]
    except ValueError:
        raise ToolError(f"{what} = {text!r}: expected comma-separated numbers") from None
    if not vals:
        raise ToolError(f"{what}: no values")
    return vals


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _e(v: str) -> str:
    return "0" if float(v) == 0 else f"{100 * float(v):g} %"


def grid(args: argparse.Namespace, axes: list[tuple[str, list[str]]]) -> list[dict[str, Any]]:
    """Every (bits, slicing, E, extra axes) point, each with one run per policy."""
    rows = []
    for bits, slicing, sigma, *extra in itertools.product(args.bits.split(","), args.slicings.split(","),
                                                          args.noise_values, *[vals for _, vals in axes]):
        sets = [f"run.batch={args.batch}", f"functional.adc_bits={bits}", f"functional.weight_slicing={slicing}",
                f"noise.column_sigma={sigma}"]
        sets += [f"{key}={val}" for (key, _), val in zip(axes, extra, strict=True)]
        runs = {p: point([*sets, f"functional.policy={p}"]) for p in args.policies.split(",")}
        rows.append({"adc_bits": int(bits), "weight_slicing": slicing, "E": float(sigma),
                     **{k: v for (k, _), v in zip(axes, extra, strict=True)}, "runs": runs})
    return rows


def ablation(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """RAELLA 7.1's four setups against E, each point averaged over the seeds."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, sets in ABLATION:
        pts = []
        for sigma in args.ablation_values:
            runs = [point([f"run.batch={args.batch}", *sets, f"noise.column_sigma={sigma}", f"run.seed={seed}"])
                    for seed in args.seed_values]
            n = len(runs)
            pts.append({"E": float(sigma), "accuracy": sum(r["accuracy"]["chip"] for r in runs) / n,
                        "accuracy_per_seed": [r["accuracy"]["chip"] for r in runs],
                        "relative_rms_error": sum(r["relative_rms_error"] for r in runs) / n,
                        "top1_agreement": sum(r["top1_agreement"] for r in runs) / n,
                        "mismatching_values": sum(r["mismatching_values"] for r in runs) / n,
                        "slicings": runs[0]["slicings"]})
        out[name] = pts
    return out


def print_grid(rows: list[dict[str, Any]], args: argparse.Namespace, keys: list[str]) -> None:
    """The accuracy table (cells: one accuracy per policy) and the adaptive slicings chosen."""
    policies = args.policies.split(",")
    sigmas = list(dict.fromkeys(r["E"] for r in rows))
    print(f"top-1 accuracy, cells `{' / '.join(policies)}`, by E (noise.column_sigma):\n")
    print("| ADC bits | weight slicing | " + " | ".join(keys + [_e(str(s)) for s in sigmas]) + " |")
    print("|---" * (2 + len(keys) + len(sigmas)) + "|")
    seen: dict[tuple, dict[float, dict[str, Any]]] = {}
    for r in rows:
        seen.setdefault((r["adc_bits"], r["weight_slicing"], *[r[k] for k in keys]), {})[r["E"]] = r["runs"]
    for key, by_e in seen.items():
        cells = [" / ".join(f"{100 * by_e[s][p]['accuracy']['chip']:.2f}" for p in policies) for s in sigmas]
        print("| " + " | ".join([str(k) for k in key] + cells) + " |")
    quiet = [(k, v[0.0]) for k, v in seen.items() if 0.0 in v]
    if quiet:
        spec = "always" if "always" in policies else policies[0]
        print(f"\nwithout noise: outputs off the reference (`{'` / `'.join(policies)}`, of "
              f"{next(iter(quiet[0][1].values()))['output_values']:,}), speculation success and ADC converts per "
              f"column (`{spec}`):\n")
        print("| ADC bits | weight slicing | " + " | ".join(keys) + (" | " if keys else "")
              + "outputs off the reference | speculation success | ADC converts per column |")
        print("|---" * (5 + len(keys)) + "|")
        for key, runs in quiet:
            r = runs[spec]
            cells = [*map(str, key), " / ".join(f"{runs[p]['mismatching_values']:,}" for p in policies),
                     "-" if r["speculation_success"] is None else f"{100 * r['speculation_success']:.1f} %",
                     f"{r['adc_converts_per_column']:.2f}"]
            print("| " + " | ".join(cells) + " |")
    adaptive = [(k, v) for k, v in seen.items() if k[1] == "adaptive"]
    if adaptive:
        print("\nadaptive slicing chosen per layer (policy off run; * = no slicing within the error budget):\n")
        first_runs = next(iter(adaptive[0][1].values()))
        layers = next(iter(first_runs.values()))["slicings"]
        print("| ADC bits | E | " + " | ".join(f"`{n}`" for n in layers) + " |")
        print("|---" * (2 + len(layers)) + "|")
        for key, by_e in adaptive:
            for s in sigmas:
                run = next(iter(by_e[s].values()))
                cells = ["".join(map(str, run["slicings"][n])) + ("" if run["within_budget"][n] else "*") for n in layers]
                print(f"| {key[0]} | {_e(str(s))} | " + " | ".join(cells) + " |")


def print_ablation(abl: dict[str, list[dict[str, Any]]]) -> None:
    """Accuracy and relative rms output error of the four setups against E."""
    sigmas = [p["E"] for p in next(iter(abl.values()))]
    print("| setup | " + " | ".join(_e(str(s)) for s in sigmas) + " |")
    print("|---" * (1 + len(sigmas)) + "|")
    for name, pts in abl.items():
        print(f"| {name}, top-1 | " + " | ".join(f"{100 * p['accuracy']:.2f} %" for p in pts) + " |")
    for name, pts in abl.items():
        print(f"| {name}, relative rms error | " + " | ".join(f"{p['relative_rms_error']:.3f}" for p in pts) + " |")


def plot(abl: dict[str, list[dict[str, Any]]], baselines: dict[str, float], path: Path) -> None:
    """Fig. 7-2's shape: accuracy and relative rms output error against E, one line per setup."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, pts in abl.items():
        e = [100 * p["E"] for p in pts]
        ax1.plot(e, [100 * p["accuracy"] for p in pts], marker="o", label=name)
        ax2.plot(e, [p["relative_rms_error"] for p in pts], marker="o", label=name)
    ax1.axhline(100 * baselines["int8_reference"], color="grey", linestyle="--", label="int8 reference")
    ax1.axhline(100 * baselines["float"], color="grey", linestyle=":", label="float")
    ax1.axvline(12, color="black", linewidth=0.5)
    ax2.axvline(12, color="black", linewidth=0.5)
    ax1.set(xlabel="noise level E (%)", ylabel="top-1 accuracy (%)", title="digits CNN on the chip")
    ax2.set(xlabel="noise level E (%)", ylabel="rms(output error) / rms(reference)", title="logit error")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[tuple[str, list[str]]]]:
    """The command line, checked (`ToolError` on bad values)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="5,6,7,8,9")
    ap.add_argument("--policies", default="off,always,on_failure")
    ap.add_argument("--slicings", default="fixed,adaptive")
    ap.add_argument("--noise", default=NOISE, help="grid E values (noise.column_sigma)")
    ap.add_argument("--ablation-noise", default=NOISE, help="ablation E values")
    ap.add_argument("--seeds", default="0", help="ablation run.seed values (points are their mean)")
    ap.add_argument("--axis", action="append", default=[], metavar="KEY=V1,V2")
    ap.add_argument("--batch", type=int, default=360)
    ap.add_argument("--plot", type=Path, default=None, help=f"write the ablation figure (e.g. {PLOT.relative_to(ROOT)})")
    ap.add_argument("--no-grid", action="store_true")
    ap.add_argument("--no-ablation", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if any("=" not in a for a in args.axis):
        raise ToolError(f"--axis {next(a for a in args.axis if '=' not in a)!r}: expected KEY=V1,V2,...")
    axes = [(a.split("=", 1)[0], a.split("=", 1)[1].split(",")) for a in args.axis]
    args.noise_values = _floats(args.noise, "--noise")
    args.ablation_values = _floats(args.ablation_noise, "--ablation-noise")
    try:
        args.seed_values = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise ToolError(f"--seeds = {args.seeds!r}: expected comma-separated integers") from None
    if args.batch < 1:
        raise ToolError(f"--batch = {args.batch}: expected a positive integer")
    return args, axes


def main(argv: list[str] | None = None) -> int:
    """Run the grid and the ablation; print the tables; write the plot."""
    from cimsim.errors import InputError

    try:
        args, axes = parse(argv)
        t0 = time.perf_counter()
        rows = [] if args.no_grid else grid(args, axes)
        t1 = time.perf_counter()
        abl = {} if args.no_ablation else ablation(args)
        t2 = time.perf_counter()
    except (ToolError, InputError) as e:
        print(f"digits_accuracy: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    base = point([f"run.batch={args.batch}", "functional.adc_bits=9"])["accuracy"]
    if args.plot and abl:
        plot(abl, base, args.plot)
    if args.json:
        print(json.dumps({"baselines": base, "grid": rows, "ablation": abl,
                          "seconds": {"grid": round(t1 - t0, 1), "ablation": round(t2 - t1, 1)}}, indent=2))
        return 0
    print(f"float {_pct(base['float'])}, int8 reference {_pct(base['int8_reference'])}, {base['images']} images\n")
    if rows:
        print_grid(rows, args, [k for k, _ in axes])
        print(f"\n(grid: {len(rows) * len(args.policies.split(','))} runs, {t1 - t0:.0f} s)\n")
    if abl:
        print_ablation(abl)
        print(f"\n(ablation: {len(ABLATION) * len(args.ablation_values) * len(args.seed_values)} runs, "
              f"{t2 - t1:.0f} s; seeds {args.seeds})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
