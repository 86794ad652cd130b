"""Export a trace as Chrome trace-event JSON, for ui.perfetto.dev (or chrome://tracing).

One process per layer with two threads (tracks) per core, its compute steps and its
stalls, one process of NoC links with a thread per link, and one of image completions.
Compute steps and stalls are "X" (complete) events, image completions instant events;
`ts`/`dur` are microseconds of simulated time. A compute slice is the step as the
clocking defines it (its start cycle and its cycles, from the probe's contract: under
timestep clocking it starts at its timestep's start); stalls are whole timesteps, on
their own track because a step longer than a timestep overlaps the stall it causes.
Written as a stream: memory does not grow with the trace. `check_perfetto` checks an
exported file: every track named, no two slices on one track partially overlapping.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cimsim.io_safety import AtomicOutput

if TYPE_CHECKING:
    from cimsim.trace import Trace


class _Out:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.count = 0

    def __call__(self, event: dict[str, Any]) -> None:
        self.stream.write((",\n" if self.count else "") + json.dumps(event, separators=(",", ":")))
        self.count += 1


def export_perfetto(trace: Trace, out: str | Path) -> int:
    """Write the trace-event JSON of `trace` to `out`; return the number of events written."""
    out = Path(out)
    with AtomicOutput(out, [trace.path], what="--perfetto") as dest:
        stream = io.TextIOWrapper(dest.stream, encoding="utf-8")  # type: ignore[type-var]  # a binary file object
        stream.write('{"displayTimeUnit":"ns","traceEvents":[\n')
        count = _events(trace, _Out(stream))
        stream.write("\n]}\n")
        stream.flush()
        stream.detach()
        dest.commit()
    return count


def _events(trace: Trace, emit: _Out) -> int:
    us = 1.0 / trace.scenario["chip"]["clock_mhz"]
    layers = trace.layer_names
    cores = trace.mapping["cores"]
    pid_of_core = {int(c["id"]): int(c["layer"]) + 1 for c in cores}
    images_pid, links_pid = len(layers) + 1, len(layers) + 2

    def meta(name: str, pid: int, value: object, tid: int | None = None) -> None:
        key = "name" if name.endswith("_name") else "sort_index"
        event: dict[str, Any] = {"ph": "M", "name": name, "pid": pid, "args": {key: value}}
        if tid is not None:
            event["tid"] = tid
        emit(event)

    for i, name in enumerate(layers):
        meta("process_name", i + 1, f"layer {name}")
        meta("process_sort_index", i + 1, i)
    for c in cores:
        cid = int(c["id"])
        meta("thread_name", pid_of_core[cid], f"{c['name']} (core {cid})", _compute_tid(cid))
        meta("thread_sort_index", pid_of_core[cid], 2 * cid, _compute_tid(cid))
        meta("thread_name", pid_of_core[cid], f"{c['name']} (core {cid}) stalls", _stall_tid(cid))
        meta("thread_sort_index", pid_of_core[cid], 2 * cid + 1, _stall_tid(cid))
    meta("process_name", images_pid, "images")
    meta("process_sort_index", images_pid, len(layers))
    meta("thread_name", images_pid, "network outputs", 1)
    if trace.level == "events" and trace.n_links:
        meta("process_name", links_pid, "NoC links")
        meta("process_sort_index", links_pid, len(layers) + 1)
        for i, name in enumerate(trace.link_names):
            meta("thread_name", links_pid, name, i + 1)
    if trace.level != "events":
        return emit.count
    kinds, causes = trace.kind_names, trace.cause_names
    for block in trace.iter_events():
        for cycle, ts, kind, cause, core, layer, image, x, y, first, count, cycles in block.tolist():
            k = kinds[kind]
            if k == "compute":
                emit({"ph": "X", "cat": "compute", "name": layers[layer], "pid": pid_of_core[core],
                      "tid": _compute_tid(core), "ts": cycle * us, "dur": cycles * us,
                      "args": {"image": image, "outputs": [first, first + count], "row": x, "col": y,
                               "cycles": cycles, "timestep": ts}})
            elif k == "stall":
                emit({"ph": "X", "cat": "stall", "name": f"stall: {causes[cause]}", "pid": pid_of_core[core],
                      "tid": _stall_tid(core), "ts": cycle * us, "dur": cycles * us,
                      "args": {"timesteps": count, "first_timestep": ts}})
            elif k == "image_done":
                emit({"ph": "i", "s": "p", "cat": "image", "name": f"image {image} done", "pid": images_pid,
                      "tid": 1, "ts": cycle * us, "args": {"timestep": ts}})
    if trace.n_links:
        names = trace.link_names
        for block in trace.iter_links():
            for cycle, link, source, flits, cycles, _buffer in block.tolist():
                emit({"ph": "X", "cat": "link", "name": f"{flits} flits", "pid": links_pid, "tid": link + 1,
                      "ts": cycle * us, "dur": cycles * us, "args": {"source_core": source, "link": names[link]}})
    return emit.count



def _compute_tid(core: int) -> int:
    return 2 * core + 1


def _stall_tid(core: int) -> int:
    return 2 * core + 2


def check_perfetto(path: str | Path) -> list[str]:
    """Problems of an exported trace-event file (empty: none): a slice on a track that
    has no name, or two slices on one track that overlap without nesting. Times are
    compared in whole nanoseconds, as Perfetto stores them."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    named: set[tuple[int, int]] = set()
    slices: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for ev in data["traceEvents"]:
        track = (int(ev.get("pid", 0)), int(ev.get("tid", 0)))
        if ev.get("ph") == "M" and ev.get("name") == "thread_name" and ev.get("args", {}).get("name"):
            named.add(track)
        elif ev.get("ph") == "X":
            start = round(float(ev["ts"]) * 1000)
            slices.setdefault(track, []).append((start, start + round(float(ev["dur"]) * 1000)))
        elif ev.get("ph") == "i":
            slices.setdefault(track, [])
    problems = [f"track pid {p} tid {t} has no thread_name" for p, t in sorted(slices) if (p, t) not in named]
    for track, spans in sorted(slices.items()):
        stack: list[int] = []  # ends of the open (enclosing) slices
        for start, end in sorted(spans, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1] <= start:
                stack.pop()
            if stack and end > stack[-1]:
                problems.append(f"track pid {track[0]} tid {track[1]}: slice [{start}, {end}) ns partially "
                                f"overlaps one ending at {stack[-1]} ns")
                break
            stack.append(end)
    return problems
