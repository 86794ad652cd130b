"""Export a trace as Chrome trace-event JSON, for ui.perfetto.dev (or chrome://tracing).

One process per layer with one thread (track) per core, one process of NoC links with a
thread per link, and one of image completions. Compute steps and stalls are "X"
(complete) events, image completions instant events; `ts`/`dur` are microseconds of
simulated time. In timestep clocking a compute slice covers its timestep (a longer step
shows as the `sram`/`compute` stall that follows it). Written as a stream: memory does
not grow with the trace.
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
        stream = io.TextIOWrapper(dest.stream, encoding="utf-8")  # type: ignore[arg-type]
        stream.write('{"displayTimeUnit":"ns","traceEvents":[\n')
        count = _events(trace, _Out(stream))
        stream.write("\n]}\n")
        stream.flush()
        stream.detach()
        dest.commit()
    return count


def _events(trace: Trace, emit: _Out) -> int:
    chip = trace.scenario["chip"]
    us = 1.0 / chip["clock_mhz"]
    cpt = chip["cycles_per_timestep"]
    elastic = chip["clocking"] == "elastic"
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
        meta("thread_name", pid_of_core[int(c["id"])], f"{c['name']} (core {int(c['id'])})", int(c["id"]) + 1)
        meta("thread_sort_index", pid_of_core[int(c["id"])], int(c["id"]), int(c["id"]) + 1)
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
                start, dur = (cycle, cycles) if elastic else (ts * cpt, cpt)
                emit({"ph": "X", "cat": "compute", "name": layers[layer], "pid": pid_of_core[core], "tid": core + 1,
                      "ts": start * us, "dur": dur * us,
                      "args": {"image": image, "outputs": [first, first + count], "row": x, "col": y,
                               "cycles": cycles, "timestep": ts}})
            elif k == "stall":
                emit({"ph": "X", "cat": "stall", "name": f"stall: {causes[cause]}", "pid": pid_of_core[core],
                      "tid": core + 1, "ts": cycle * us, "dur": cycles * us,
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

