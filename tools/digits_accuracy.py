"""The README's accuracy table of the digits CNN: top-1 on the chip over ADC bits and slicing policy.

    python tools/digits_accuracy.py [--bits 3,4,5,6,7,8,9] [--policies off,always,on_failure]
                                    [--axis KEY=V1,V2,...] [--batch N] [--json]

Every point is one run of `scenarios/digits_cnn.toml` with `functional.adc_bits` and
`functional.policy` set (and, with `--axis`, any further scenario key swept over its values:
e.g. `--axis noise.column_sigma=0,0.04,0.08,0.12` for RAELLA's noise level E once that key
exists, or `--axis functional.weight_encoding=center_offset,differential`). Prints a Markdown
table (or JSON): chip accuracy per policy, outputs off the reference, speculation success and ADC
converts per column of the `always` run, with the int8-reference and float baselines.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "digits_cnn.toml"


def point(overrides: list[str]) -> dict[str, Any]:
    """One run's accuracy and ADC statistics."""
    from cimsim.config import load_scenario
    from cimsim.runner import run

    f = run(load_scenario(SCENARIO, overrides)).summary["functional"]
    return {"accuracy": f["accuracy"], "mismatching_values": f["mismatching_values"],
            "output_values": f["output_values"], "speculation_success": f["speculation_success"],
            "adc_converts_per_column": f["adc_converts_per_column"]}


def main(argv: list[str] | None = None) -> int:
    """Run the grid and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", default="3,4,5,6,7,8,9")
    ap.add_argument("--policies", default="off,always,on_failure")
    ap.add_argument("--axis", action="append", default=[], metavar="KEY=V1,V2")
    ap.add_argument("--batch", type=int, default=360)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    axes = [(a.split("=", 1)[0], a.split("=", 1)[1].split(",")) for a in args.axis]
    policies = args.policies.split(",")
    rows = []
    for bits, *extra in itertools.product(args.bits.split(","), *[vals for _, vals in axes]):
        sets = [f"run.batch={args.batch}", f"functional.adc_bits={bits}"]
        sets += [f"{key}={val}" for (key, _), val in zip(axes, extra, strict=True)]
        runs = {p: point([*sets, f"functional.policy={p}"]) for p in policies}
        rows.append({"adc_bits": int(bits), **{k: v for (k, _), v in zip(axes, extra, strict=True)}, "runs": runs})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    first = rows[0]["runs"][policies[0]]["accuracy"]
    print(f"float {100 * first['float']:.2f} %, int8 reference {100 * first['int8_reference']:.2f} %, "
          f"{first['images']} images\n")
    keys = [k for k, _ in axes]
    print("| ADC bits | " + " | ".join(keys + [f"`{p}`" for p in policies])
          + " | outputs off the reference | speculation success | ADC converts per column |")
    print("|---" * (1 + len(keys) + len(policies) + 3) + "|")
    for r in rows:
        spec = r["runs"].get("always", next(iter(r["runs"].values())))
        cells = [str(r["adc_bits"]), *[str(r[k]) for k in keys],
                 *[f"{100 * r['runs'][p]['accuracy']['chip']:.2f} %" for p in policies],
                 f"{spec['mismatching_values']:,} of {spec['output_values']:,}",
                 "-" if spec["speculation_success"] is None else f"{100 * spec['speculation_success']:.1f} %",
                 f"{spec['adc_converts_per_column']:.2f}"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
