"""`python tools/bench.py --compare REV [--repeats N] [--quick] [--json]` (issue 10).

Checks REV out in a temporary git worktree (removed afterwards, also on Ctrl-C or SIGTERM)
and runs that old tree and this (working) tree interleaved: for every
scenario, child processes old, new, old, new, ... (`--repeats`, default 3), each a fresh
`python tools/bench.py --compare-child SPEC` with PYTHONPATH set to its tree's root (the
child checks that `cimsim.__file__` lies in that tree) and single-threaded BLAS. A child
measures `time.process_time()` (CPU) and wall time around `build_chip(...).run()` only:
imports, scenario and model loading, mapping and the report are outside. The table gives
the median per tree and the ratio old / new, and whether the two trees' `--json` summaries
are identical. Also printed:
- SimPy events processed: `next(env._eid) - len(env._queue)` after the run (events
  scheduled minus those still queued; SimPy numbers every scheduled event, so this costs
  nothing during the run and needs no change to cimsim).
- Pixel-hops on the router mesh: packet link traversals, the sum of `packets` over every
  row of the summary's `noc.links`, which includes the DRAM injection link (`dram->r0.0`)
  and the ejection ports into the cores (`rX.Y->core`); the figure without ejections is
  printed beside it. On the NoC one pixel travels as one packet.
- Pixel-hops on the ideal fabric (no links): one pixel delivered from a producer to one
  consumer core; the sum over `plan.flows` of the pixels per image the flow's source emits
  (`src` None: the H x W input image; a source with a fused avgpool: the pooled output;
  partial-sum flows: the layer's output pixels) times the batch.
- Bare SimPy: a 43-stage pipeline (a source, 41 forwarding stages and a sink, 43 processes)
  joined by 42 `simpy.Store(capacity=1)`; an item-hop is one item put into a store by one
  stage and got by the next. Its CPU seconds per item-hop against cimsim's CPU seconds per
  pixel-hop on the regular ResNet-32 give the overhead ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import simpy

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_STAGES = 43
def fail(message: str) -> NoReturn:
    """One `cimsim: error:` line on stderr and exit code 2."""
    print(f"cimsim: error: {message}", file=sys.stderr)
    raise SystemExit(2)


# --- --compare: pure helpers (tests/test_bench.py) -------------------------------------


@dataclass(frozen=True)
class PipelineResult:
    """One bare-SimPy pipeline run."""

    cpu_s: float
    item_hops: int
    events: int

    @property
    def cpu_per_hop(self) -> float:
        """CPU seconds per item-hop."""
        return self.cpu_s / self.item_hops


def processed_events(env: Any) -> int:
    """SimPy events an environment has processed: every scheduled event gets the next number
    of `env._eid`, and the processed ones have left `env._queue`."""
    return next(env._eid) - len(env._queue)


def simpy_pipeline(items: int, stages: int = PIPELINE_STAGES) -> PipelineResult:
    """Push `items` through `stages` SimPy processes joined by `stages - 1` Stores of capacity 1
    (stage 0 puts, the last stage gets, the others get and put); time `env.run()` only."""
    if stages < 2 or items < 1:
        raise ValueError("the pipeline needs at least 2 stages and 1 item")
    env = simpy.Environment()
    stores = [simpy.Store(env, capacity=1) for _ in range(stages - 1)]

    def source() -> Generator[simpy.Event, Any, None]:
        for i in range(items):
            yield stores[0].put(i)

    def forward(k: int) -> Generator[simpy.Event, Any, None]:
        while True:
            item = yield stores[k - 1].get()
            yield stores[k].put(item)

    def sink() -> Generator[simpy.Event, Any, None]:
        for _ in range(items):
            yield stores[-1].get()

    env.process(source())
    for k in range(1, stages - 1):
        env.process(forward(k))
    env.process(sink())
    t0 = time.process_time()
    env.run()
    cpu = time.process_time() - t0
    return PipelineResult(cpu, items * (stages - 1), processed_events(env))


def ideal_pixel_hops(net: Any, plan: Any, batch: int) -> int:
    """Pixels delivered from a producer to one consumer core over the whole batch: the sum over
    `plan.flows` of the pixels per image the flow's source emits (module docstring)."""
    total = 0
    for flow in plan.flows:
        if flow.src is None:
            layer = net.input_layer
        else:
            layer = net.layer(flow.src_layer)
            if flow.role != "partial":
                pools = [net.layer(f) for f in plan.layers[flow.src_layer].fused if net.layer(f).kind == "avgpool"]
                layer = pools[-1] if pools else layer
        total += layer.out_h * layer.out_w
    return total * batch


def link_pixel_hops(summary: dict[str, Any]) -> tuple[int, int] | None:
    """(packet link traversals over every `noc.links` row, the same without the `->core`
    ejection ports), or None when the fabric reports no packets (ideal fabric)."""
    links = summary.get("noc", {}).get("links", [])
    if not any("packets" in row for row in links):
        return None
    total = sum(row.get("packets", 0) for row in links)
    ejected = sum(row.get("packets", 0) for row in links if row["link"].endswith("->core"))
    return total, total - ejected


def median(values: Sequence[float]) -> float:
    """The median (the mean of the middle two for an even count)."""
    return float(statistics.median(values))


# --- --compare: child process ----------------------------------------------------------


def compare_child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measurement in this process (a scenario of `spec["tree"]`, or the bare pipeline)."""
    if spec["kind"] == "pipeline":
        res = simpy_pipeline(spec["items"], spec["stages"])
        return {"cpu_s": res.cpu_s, "item_hops": res.item_hops, "simpy_events": res.events}
    import cimsim

    tree = Path(spec["tree"]).resolve()
    where = Path(cimsim.__file__).resolve()
    if not where.is_relative_to(tree):
        fail(f"child imported {where}, not the cimsim of {tree}")

    from cimsim.config import load_scenario
    from cimsim.hw.chip import build_chip
    from cimsim.mapping import map_network
    from cimsim.network import load_model
    from cimsim.report import make_report

    sc = load_scenario(tree / spec["scenario"], spec["overrides"])
    net = load_model(sc.model)
    plan = map_network(net, sc)
    env = simpy.Environment()
    c0, w0 = time.process_time(), time.perf_counter()
    record = build_chip(env, sc, net, plan).run()
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    summary = make_report(record).summary
    links = link_pixel_hops(summary)
    text = json.dumps(summary, sort_keys=True, default=str)
    return {
        "cimsim": str(where.parent), "cpu_s": cpu, "wall_s": wall, "simpy_events": processed_events(env),
        "probe_events": summary["events"], "simulated_cycles": summary["simulated_cycles"],
        "ideal_pixel_hops": ideal_pixel_hops(net, plan, sc.run.batch),
        "link_pixel_hops": None if links is None else links[0],
        "link_pixel_hops_no_ejection": None if links is None else links[1],
        "summary_sha": hashlib.sha256(text.encode()).hexdigest()[:16],
    }


def _run_child(tree: Path, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh process importing `tree`'s cimsim."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONHASHSEED="0",
               OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "bench.py"), "--compare-child",
                           json.dumps(dict(spec, tree=str(tree)))],
                          cwd=tree, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        fail(f"benchmark child in {tree} failed: {last.removeprefix('cimsim: error: ')}")
    return json.loads(proc.stdout.splitlines()[-1])


# --- --compare: parent -----------------------------------------------------------------


@dataclass(frozen=True)
class CompareScenario:
    """One scenario of --compare: a file of each tree's scenarios/ and its overrides."""

    key: str
    label: str
    file: str
    overrides: tuple[str, ...]
    batch: int
    quick_batch: int

    def spec(self, quick: bool) -> dict[str, Any]:
        """The child's JSON spec (without the tree)."""
        batch = self.quick_batch if quick else self.batch
        return {"kind": "scenario", "scenario": f"scenarios/{self.file}",
                "overrides": [*self.overrides, f"run.batch={batch}"]}


COMPARE_SCENARIOS = (
    CompareScenario("regular", "ResNet-32 regular", "dazzi2021_resnet32.toml", (), 100, 10),
    CompareScenario("speedup", "ResNet-32 speed-up", "dazzi2021_resnet32_speedup.toml", (), 100, 10),
    # batch 4 (quick 2): about 9 s (4 s) of CPU on the pre-issue-10 tree
    CompareScenario("mesh_elastic", "8x6 mesh, elastic", "noc_mesh_regular.toml", ("chip.clocking=elastic",), 4, 2),
)
PIPELINE_ITEMS = (10_000, 3_000)
"""Items pushed through the bare-SimPy pipeline (full, --quick)."""


def _git(*argv: str) -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        fail(f"git {' '.join(argv)}: {last}")
    return proc.stdout.strip()


@contextmanager
def _worktree(rev: str) -> Iterator[Path]:
    """A detached git worktree of `rev` in a temporary directory, removed on exit, Ctrl-C or SIGTERM."""
    sha = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    tmp = Path(tempfile.mkdtemp(prefix="cimsim-bench-"))
    old_term = signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM -> KeyboardInterrupt
    try:
        _git("worktree", "add", "--detach", str(tmp), sha)
        yield tmp
    finally:
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        try:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp)],
                           capture_output=True, check=False)
            shutil.rmtree(tmp, ignore_errors=True)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True, check=False)
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)


def _stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median CPU and wall seconds of a tree's runs, and the counts (identical in every run)."""
    first = runs[0]
    out: dict[str, Any] = {"cpu_s": [r["cpu_s"] for r in runs], "median_cpu_s": median([r["cpu_s"] for r in runs])}
    out["min_cpu_s"] = min(out["cpu_s"])
    out["cpu_range"] = (max(out["cpu_s"]) - min(out["cpu_s"])) / out["median_cpu_s"]
    if "wall_s" in first:
        out["wall_s"] = [r["wall_s"] for r in runs]
        out["median_wall_s"] = median(out["wall_s"])
    for key in ("simpy_events", "probe_events", "simulated_cycles", "ideal_pixel_hops", "link_pixel_hops",
                "link_pixel_hops_no_ejection", "item_hops", "summary_sha", "cimsim"):
        if key in first:
            out[key] = first[key]
    out["events_per_cpu_s"] = first["simpy_events"] / out["median_cpu_s"]
    return out


def compare_results(rev: str, repeats: int, quick: bool, log: Any = sys.stderr) -> dict[str, Any]:
    """Measure REV's tree and this tree interleaved; the results as a JSON-able dict."""
    if repeats < 1:
        fail("--repeats must be at least 1")
    head = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    result: dict[str, Any] = {
        "old": {"rev": rev, "commit": _git("rev-parse", "--short", f"{rev}^{{commit}}")},
        "new": {"tree": str(ROOT), "commit": head, "uncommitted_changes": dirty},
        "repeats": repeats, "quick": quick, "scenarios": [],
    }
    with _worktree(rev) as old_tree:
        trees = {"old": old_tree, "new": ROOT}
        items = PIPELINE_ITEMS[1] if quick else PIPELINE_ITEMS[0]
        pipe = [_run_child(ROOT, {"kind": "pipeline", "items": items, "stages": PIPELINE_STAGES})
                for _ in range(repeats)]
        cpus = ", ".join(f"{r['cpu_s']:.2f}" for r in pipe)
        print(f"bare SimPy pipeline: CPU s {cpus}", file=log, flush=True)
        result["pipeline"] = dict(_stats(pipe), stages=PIPELINE_STAGES, items=items)
        for sc in COMPARE_SCENARIOS:
            runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
            for i in range(repeats):
                for side in ("old", "new"):
                    runs[side].append(_run_child(trees[side], sc.spec(quick)))
                    print(f"{sc.label}: {side} run {i + 1}/{repeats}: CPU {runs[side][-1]['cpu_s']:.2f} s",
                          file=log, flush=True)
            old, new = _stats(runs["old"]), _stats(runs["new"])
            result["scenarios"].append({
                "key": sc.key, "label": sc.label, "scenario": sc.file, "overrides": sc.spec(quick)["overrides"],
                "old": old, "new": new, "cpu_ratio_old_new": old["median_cpu_s"] / new["median_cpu_s"],
                "min_cpu_ratio_old_new": old["min_cpu_s"] / new["min_cpu_s"],
                "summaries_identical": old["summary_sha"] == new["summary_sha"],
            })
    _derived(result)
    return result


def _derived(result: dict[str, Any]) -> None:
    """Events per pixel-hop on the mesh and the overhead against bare SimPy (added to `result`)."""
    by_key = {s["key"]: s for s in result["scenarios"]}
    pipe_hop = result["pipeline"]["median_cpu_s"] / result["pipeline"]["item_hops"]
    result["pipeline"]["cpu_s_per_item_hop"] = pipe_hop
    result["pipeline"]["events_per_item_hop"] = result["pipeline"]["simpy_events"] / result["pipeline"]["item_hops"]
    for s in result["scenarios"]:
        for side in ("old", "new"):
            t = s[side]
            t["events_per_pixel_hop_ideal"] = t["simpy_events"] / t["ideal_pixel_hops"]
            if t.get("link_pixel_hops"):
                t["events_per_pixel_hop"] = t["simpy_events"] / t["link_pixel_hops"]
                t["events_per_pixel_hop_no_ejection"] = t["simpy_events"] / t["link_pixel_hops_no_ejection"]
    reg = by_key["regular"]
    result["overhead"] = {
        "scenario": reg["label"], "bare_simpy_cpu_s_per_item_hop": pipe_hop,
        **{f"{side}_cpu_s_per_pixel_hop": reg[side]["median_cpu_s"] / reg[side]["ideal_pixel_hops"]
           for side in ("old", "new")},
    }
    for side in ("old", "new"):
        result["overhead"][f"{side}_ratio_to_bare_simpy"] = result["overhead"][f"{side}_cpu_s_per_pixel_hop"] / pipe_hop


def compare_table(result: dict[str, Any]) -> str:
    """The human-readable report of `compare_results`."""
    old, new = result["old"], result["new"]
    lines = [
        (f"old: {old['rev']} ({old['commit']}); new: working tree {new['commit']}"
        f"{' with uncommitted changes' if new['uncommitted_changes'] else ''}; "
        f"{result['repeats']} interleaved runs per tree{' (--quick)' if result['quick'] else ''}, medians; "
        "CPU = process_time of build_chip(...).run(); min o/n: ratio of the fastest runs; "
        "rng = (max - min) / median of a tree's CPU times"),
        (f"{'scenario':<20} {'batch':>5} {'old CPU s':>9} {'new CPU s':>9} {'old/new':>7} {'min o/n':>7} "
        f"{'old rng':>7} {'new rng':>7} "
        f"{'old wall s':>10} {'new wall s':>10}  summaries"),
    ]
    for s in result["scenarios"]:
        batch = s["overrides"][-1].split("=")[1]
        lines.append(f"{s['label']:<20} {batch:>5} {s['old']['median_cpu_s']:>9.2f} {s['new']['median_cpu_s']:>9.2f} "
                     f"{s['cpu_ratio_old_new']:>7.2f} {s['min_cpu_ratio_old_new']:>7.2f} "
                     f"{s['old']['cpu_range']:>7.0%} {s['new']['cpu_range']:>7.0%} "
                     f"{s['old']['median_wall_s']:>10.2f} "
                     f"{s['new']['median_wall_s']:>10.2f}  {'identical' if s['summaries_identical'] else 'DIFFER'}")
    lines += ["", (f"{'SimPy events':<20} {'old events':>11} {'new events':>11} {'old ev/CPU s':>12} "
              f"{'new ev/CPU s':>12} {'old ev/px-hop':>13} {'new ev/px-hop':>13}  pixel-hops")]
    for s in result["scenarios"]:
        o, n = s["old"], s["new"]
        key = "events_per_pixel_hop" if "events_per_pixel_hop" in n else "events_per_pixel_hop_ideal"
        hops = n["link_pixel_hops"] if key == "events_per_pixel_hop" else n["ideal_pixel_hops"]
        lines.append(f"{s['label']:<20} {o['simpy_events']:>11,} {n['simpy_events']:>11,} "
                     f"{o['events_per_cpu_s']:>12,.0f} "
                     f"{n['events_per_cpu_s']:>12,.0f} {o[key]:>13.2f} {n[key]:>13.2f}  "
                     f"{hops:,} ({'link traversals' if key == 'events_per_pixel_hop' else 'ideal deliveries'})")
    mesh = next(s for s in result["scenarios"] if s["key"] == "mesh_elastic")
    o, n = mesh["old"], mesh["new"]
    lines += ["", f"{mesh['label']}: SimPy events per pixel-hop (old / new):"]
    for what, key, hops in (
            ("link traversal, DRAM link and ejection into the core included", "events_per_pixel_hop",
             "link_pixel_hops"),
            ("router-to-router or DRAM link traversal (ejections excluded)", "events_per_pixel_hop_no_ejection",
             "link_pixel_hops_no_ejection"),
            ("pixel delivered from its producer to one consumer core", "events_per_pixel_hop_ideal",
             "ideal_pixel_hops")):
        lines.append(f"  per {what:<64} {o[key]:>6.2f} / {n[key]:>6.2f}  ({n[hops]:,} hops)")
    p, ov = result["pipeline"], result["overhead"]
    lines += [
        (f"bare SimPy: {p['stages']}-stage Store pipeline, {p['items']:,} items = {p['item_hops']:,} item-hops, "
        f"{p['median_cpu_s']:.2f} CPU s, {p['cpu_s_per_item_hop'] * 1e6:.2f} us per item-hop, "
        f"{p['events_per_item_hop']:.2f} events per item-hop, {p['events_per_cpu_s']:,.0f} events/s"),
        (f"{ov['scenario']} (ideal fabric; pixel-hop = one pixel delivered from a producer to one consumer core): "
        f"CPU per pixel-hop old {ov['old_cpu_s_per_pixel_hop'] * 1e6:.2f} us = {ov['old_ratio_to_bare_simpy']:.1f}x "
        f"bare SimPy, new {ov['new_cpu_s_per_pixel_hop'] * 1e6:.2f} us = {ov['new_ratio_to_bare_simpy']:.1f}x"),
    ]
    return "\n".join(lines)


def compare_bench(args: argparse.Namespace) -> None:
    """Old tree (REV) against this tree, interleaved; a table, or JSON with --json."""
    result = compare_results(args.compare, 3 if args.repeats is None else args.repeats, args.quick)
    print(json.dumps(result, indent=2) if args.json else compare_table(result))
