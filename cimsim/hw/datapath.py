"""Real pixel values through the simulated chip (issue 5's functional model).

The cores call the datapath when they fire a group: it reads the group's input windows
from the producing layer's outputs *as the simulated cores have written them so far*
(a read of a pixel not yet produced is an error: the dataflow would have read garbage),
runs them through the layer's bit-sliced crossbars (`cimsim.functional.LayerMath`, with
speculation and recovery), and returns the crossbar cycles the MVM took, so MVM time
depends on the data. The merging core's digital processor then requantises, adds the
residual, applies ReLU, pools and runs a digital FC, and writes the outputs where the
consumers will read them. Each image's network output is compared with the numpy
reference forward pass.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.config.schema import Scenario
from cimsim.energy.actions import Action, Component
from cimsim.errors import InputError, SimulationError
from cimsim.functional.chip_math import GroupResult, LayerMath, windows
from cimsim.functional.crossbar import COUNTERS, CrossbarConfig
from cimsim.functional.images import ImageStream
from cimsim.functional.reference import (
    conv_accumulate,
    global_avgpool,
    reference_forward,
    requantise,
)
from cimsim.functional.weights import load_params, make_params
from cimsim.hw.geometry import LayerGeometry
from cimsim.mapping.plan import MappingPlan, dataflow_order
from cimsim.mapping.stages import Unit
from cimsim.network import Network
from cimsim.sim.probe import Probe


class Datapath:
    """Weights on the crossbars, activations in flight, counters and the reference check."""

    def __init__(self, net: Network, plan: MappingPlan, scenario: Scenario, geoms: dict[str, LayerGeometry]) -> None:
        cfg = scenario.functional
        base = Path(scenario.source).parent if scenario.source else Path(".")
        batch, seed = scenario.run.batch, scenario.run.seed
        self.net, self.plan, self.geoms = net, plan, geoms
        self.params = load_params(base / cfg.weights, net) if cfg.weights else make_params(net, seed)
        # image i depends on (seed, i) only, so a batch's first images do not change with its size;
        # images are made (or read) as the run consumes them and dropped once compared
        self.images = ImageStream(net, batch, seed, base / cfg.images if cfg.images else None)
        self._inputs: dict[int, np.ndarray] = {}
        self.cycle_cycles = cfg.crossbar_cycle_cycles
        chip = scenario.chip
        xcfg = CrossbarConfig(rows=chip.crossbar_rows, cols=chip.crossbar_cols, adc_bits=cfg.adc_bits,
                              policy=cfg.policy, weight_encoding=cfg.weight_encoding)
        self.policy = cfg.policy
        self.mode = cfg.mode
        self.adc_bits = cfg.adc_bits
        self.probe: Probe | None = None
        """Where the data-dependent action events go (set by the chip; None: nowhere)."""
        self._slicing = _Slicing(xcfg)
        self._xbar_cycles: dict[tuple[str, int], list[int]] = {}
        """(layer, image) -> [crossbar cycles, of which recovery] of its groups so far."""
        self.pre: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        """batched mode: (layer, image) -> (outputs (H, W, C) or pooled, per-window crossbar cycles (H, W))."""
        self.base_mvm_cycles = xcfg.base_cycles * cfg.crossbar_cycle_cycles
        """MVM cycles without (data-dependent) recovery: a longer MVM is a recovery."""
        self.maths: dict[str, LayerMath] = {}
        self.post: dict[str, dict[str, Any]] = {}
        for name, lm in plan.layers.items():
            layer = net.layer(name)
            if lm.unit is not Unit.CROSSBAR or len(lm.main_inputs) > 1 or layer.groups > 1 or not layer.is_square \
                    or lm.jobs > 1 or (layer.kind == "fc" and lm.window is not None and lm.window.in_h * lm.window.in_w > 1):
                raise InputError(f"{scenario.source}: functional.enabled: layer '{name}' ({layer.kind}"
                                 f"{', ' + lm.unit if lm.unit is not Unit.CROSSBAR else ''}) is not run by the functional "
                                 "datapath yet (it runs square, ungrouped convs and fcs on crossbars)")
            parts = -(-layer.kernel_rows // chip.crossbar_rows)
            self.maths[name] = LayerMath(layer, self.params[name], xcfg, parts, chip.crossbar_rows)
            fused = [net.layer(f) for f in lm.fused]
            add = next((f for f in fused if f.kind == "add"), None)
            fc = next((f for f in fused if f.kind == "fc"), None)
            tail = [f for f in fused if f.kind in ("avgpool", "fc")]
            if add is not None and tail and fused.index(add) > fused.index(tail[0]):
                raise InputError(f"{net.source}: add '{add.name}' after '{tail[0].name}' in the digital processor "
                                 f"of '{name}': functional mode adds residuals before pooling only")
            self.post[name] = {
                "relu": add.relu if add is not None else layer.relu, "add": add is not None,
                "pool": bool(tail), "fc": fc, "tail": tail,
                "net_output": fused[-1].name if fused else name,
            }
        self.order = dataflow_order(plan)
        self.act: dict[tuple[str, int], np.ndarray] = {}
        self.filled: dict[tuple[str, int], np.ndarray] = {}
        self.pending: dict[tuple[str, int, int], list[Any]] = {}
        self.counters: dict[str, dict[str, int]] = {n: dict.fromkeys(COUNTERS, 0) for n in plan.layers}
        self.group_cycles: dict[str, list[int]] = defaultdict(list)
        self.readers: dict[str, int] = defaultdict(int)
        for src, _dst, _role in plan.edges:
            self.readers[src] += 1
        self.done_readers: dict[tuple[str, int], int] = defaultdict(int)
        self.outputs_checked = 0
        self.mismatches = 0
        self.output_values = 0
        self.max_abs_error = 0
        self.input_name = net.input_layer.name

    def _image(self, image: int) -> np.ndarray:
        """Input image `image`, kept from its first use until its output has been compared."""
        img = self._inputs.get(image)
        if img is None:
            img = self._inputs[image] = self.images[image]
        return img

    # --- called by the cores ------------------------------------------------------------------
    def _positions(self, geom: LayerGeometry, gi: int) -> list[tuple[int, int]]:
        r0, c0 = (int(v) for v in geom.group_origin[gi])
        nr, nc = (int(v) for v in geom.group_shape[gi])
        return [(r, c) for c in range(c0, c0 + nc) for r in range(r0, r0 + nr)]

    def _read(self, layer: str, image: int, who: str) -> np.ndarray:
        if layer == self.input_name:
            return self._image(image)
        try:
            return self.act[(layer, image)]
        except KeyError:
            raise SimulationError(f"functional: {who} read image {image} of '{layer}' before it was produced "
                                  "or after it was freed") from None

    def _check_window(self, layer: str, image: int, positions: list[tuple[int, int]]) -> None:
        """The group may only read input pixels its producer has already written."""
        lm = self.plan.layers[layer]
        if lm.main_inputs[0] == self.input_name:  # the image source streams every pixel of the image
            return
        layer_obj = self.net.layer(layer)
        filled = self.filled.get((lm.main_inputs[0], image))
        if filled is None:
            raise SimulationError(f"functional: {layer} read image {image} of '{lm.main_inputs[0]}' before it was "
                                  "produced or after it was freed")
        if layer_obj.kind != "conv":
            ok = bool(filled.all())
        else:
            k, s, p = layer_obj.kernel, layer_obj.stride, layer_obj.padding
            h, w = filled.shape
            ok = all(filled[max(0, r * s - p):min(h, r * s - p + k), max(0, c * s - p):min(w, c * s - p + k)].all()
                     for r, c in positions)
        if not ok:
            raise SimulationError(f"functional: {layer} image {image} read input pixels of '{lm.main_inputs[0]}' "
                                  "that were not produced yet")

    def _batched(self, image: int) -> None:
        """Evaluate the whole image layer by layer in batched numpy (the values the cores will write)."""
        inp = self.net.input_layer
        values: dict[str, np.ndarray] = {inp.name: self._image(image)}
        for name in self.order:
            lm = self.plan.layers[name]
            layer = self.net.layer(name)
            geom = self.geoms[name]
            src = values[lm.main_inputs[0]]
            if layer.kind == "conv":
                positions = [(r, c) for c in range(geom.out_w) for r in range(geom.out_h)]
                win = windows(src, positions, layer.kernel, layer.stride, layer.padding)
            else:
                positions = [(0, 0)]
                win = src.reshape(1, -1)
            res = self.maths[name].compute(win)
            self._count(name, res)
            self._emit(name, image, res, win)
            post = self.post[name]
            residual = (values[str(lm.residual_input)].transpose(1, 0, 2).reshape(-1, layer.out_channels)
                        if post["add"] else None)  # column-major, like the positions
            shape = (geom.out_h, geom.out_w) if layer.kind == "conv" else (1, 1)
            y = self.maths[name].finish(res.acc, post["relu"], residual)
            # column-major positions -> (H, W, C)
            out = y.reshape(shape[1], shape[0], -1).transpose(1, 0, 2)
            cycles = np.asarray(res.cycles).reshape(shape[1], shape[0]).T
            values[name] = self._pool_fc(name, out) if post["pool"] else out
            self.pre[(name, image)] = (out, cycles)

    def _count(self, layer: str, res: GroupResult) -> None:
        for name, value in res.counters().items():
            self.counters[layer][name] += value

    def _emit(self, layer: str, image: int, res: GroupResult, win: np.ndarray) -> None:
        """Action events of windows `win` of `image` through `layer`'s crossbars: ADC converts,
        DAC drives per input slice and crossbar pulses, each from the data (`_Slicing`)."""
        probe = self.probe
        if probe is None or not probe.counts_actions:
            return
        act = probe.action
        rec = res.recovery_converts if self.policy != "off" else 0
        act(image, layer, Component.ADC, Action.CONVERT, self.adc_bits, res.adc_converts - rec, False)
        if rec:
            act(image, layer, Component.ADC, Action.CONVERT, self.adc_bits, rec, True)
        sl = self._slicing
        u = np.ascontiguousarray(win, dtype=np.int8).view(np.uint8)
        n = u.shape[0]
        if self.policy == "off":
            recovered = 0
            mask = None
        else:
            mask = (np.asarray(res.cycles) > sl.speculative_cycles) if self.policy == "on_failure" else None
            recovered = n if mask is None else int(mask.sum())
        base_widths = sl.recovery_widths if self.policy == "off" else sl.speculative_widths
        base_pulses = rec_pulses = 0
        for rs, cs, _xbar in self.maths[layer].parts:
            sub = u[:, rs]
            rows, dcols = sub.shape[1], (cs.stop - cs.start) * sl.weight_slices
            base_table = sl.recovery_table if self.policy == "off" else sl.speculative_table
            hist = np.bincount(sub.ravel(), minlength=256)  # how often each input byte occurs
            base_pulses += int(hist @ base_table) * dcols
            if recovered:
                rec_hist = hist if mask is None else np.bincount(sub[mask].ravel(), minlength=256)
                rec_pulses += int(rec_hist @ sl.recovery_table) * dcols
            for width, k in base_widths.items():
                act(image, layer, Component.DAC, Action.DRIVE, width, k * rows * n, False)
            if recovered:
                for width, k in sl.recovery_widths.items():
                    act(image, layer, Component.DAC, Action.DRIVE, width, k * rows * recovered, True)
        act(image, layer, Component.CROSSBAR, Action.PULSE, 0, base_pulses, False)
        if rec_pulses:
            act(image, layer, Component.CROSSBAR, Action.PULSE, 0, rec_pulses, True)

    def _emit_cycles(self, layer: str, image: int) -> None:
        """Crossbar cycles (input slices) of an image's MVMs on each of the layer's cores."""
        acc = self._xbar_cycles.pop((layer, image), None)
        if self.probe is None or acc is None:
            return
        act = self.probe.action
        cycles, rec = acc
        for cid in self.plan.layers[layer].cores:
            spec = self.plan.cores[cid]
            cells = spec.rows_used * spec.cols_used
            act(image, layer, Component.CROSSBAR, Action.CYCLE, cells, cycles - rec, False)
            if rec:
                act(image, layer, Component.CROSSBAR, Action.CYCLE, cells, rec, True)

    def mvm(self, layer: str, image: int, gi: int, cores: int) -> int:
        """Group `gi` of `image` on `layer`'s crossbars (once for all `cores` of the layer);
        return the clock cycles of the MVM."""
        key = (layer, image, gi)
        entry = self.pending.get(key)
        if entry is None:
            lm = self.plan.layers[layer]
            geom = self.geoms[layer]
            positions = self._positions(geom, gi)
            self._check_window(layer, image, positions)
            if self.mode == "batched":
                if (layer, image) not in self.pre:
                    self._batched(image)
                out, cyc = self.pre[(layer, image)]
                cycles = max(int(cyc[r, c]) for r, c in positions)
                entry = [(np.stack([out[r, c] for r, c in positions]), None), positions, cores, cycles]
            else:
                layer_obj = self.net.layer(layer)
                src = self._read(lm.main_inputs[0], image, layer)
                if layer_obj.kind == "conv":
                    win = windows(src, positions, layer_obj.kernel, layer_obj.stride, layer_obj.padding)
                else:
                    win = src.reshape(1, -1)
                res = self.maths[layer].compute(win)
                self._count(layer, res)
                self._emit(layer, image, res, win)
                entry = [(None, res), positions, cores, res.crossbar_cycles]
            self.pending[key] = entry
            self.group_cycles[layer].append(entry[3])
            if self.probe is not None and self.probe.counts_actions:  # emitted at the image's last group
                acc = self._xbar_cycles.setdefault((layer, image), [0, 0])
                acc[0] += entry[3]
                if self.policy != "off":
                    acc[1] += max(0, entry[3] - self._slicing.speculative_cycles)
        entry[2] -= 1
        return entry[3] * self.cycle_cycles

    def finish(self, layer: str, image: int, gi: int) -> None:
        """The merging core's digital processor: requantise, residual add, ReLU; pool and FC
        at the end of the image; write the outputs for the consumers."""
        key = (layer, image, gi)
        (ready, res), positions, cores_left, _cycles = self.pending[key]
        if cores_left <= 0:
            del self.pending[key]
        lm = self.plan.layers[layer]
        geom = self.geoms[layer]
        post = self.post[layer]
        layer_obj = self.net.layer(layer)
        if ready is not None:
            y = ready
        else:
            residual = None
            if post["add"]:
                assert lm.residual_input is not None
                rsrc = self._read(lm.residual_input, image, layer)
                residual = np.stack([rsrc[r, c] for r, c in positions])
            y = self.maths[layer].finish(res.acc, post["relu"], residual)
        out = self.act.get((layer, image))
        if out is None:
            shape = (geom.out_h, geom.out_w, layer_obj.out_channels) if layer_obj.kind == "conv" else (
                1, 1, layer_obj.out_channels)
            out = self.act[(layer, image)] = np.zeros(shape, dtype=np.int8)
            self.filled[(layer, image)] = np.zeros(shape[:2], dtype=bool)
        filled = self.filled[(layer, image)]
        for (r, c), v in zip(positions, y, strict=False):
            out[r, c] = v
            filled[r, c] = True
        if gi == geom.n_groups - 1:
            self._emit_cycles(layer, image)
            self._image_done_reading(lm, image)
            self.pre.pop((layer, image), None)
            if post["pool"]:
                self.act[(layer, image)] = self._pool_fc(layer, out)
                self.filled[(layer, image)] = np.ones((1, 1), dtype=bool)
            if layer == self.plan.output_layer:
                self._check(image, self.act[(layer, image)], post["net_output"])

    def _pool_fc(self, layer: str, out: np.ndarray) -> np.ndarray:
        """The fused global average pooling and digital FCs, in model order (exact integer arithmetic)."""
        x = out
        for f in self.post[layer]["tail"]:
            if f.kind == "avgpool":
                x = global_avgpool(x[None])[0]
            else:
                acc = conv_accumulate(x[None], self.params[f.name].weights)
                x = requantise(acc, self.params[f.name], f.relu)[0]
        return x

    def _image_done_reading(self, lm: Any, image: int) -> None:
        for src in (lm.main_inputs[0], lm.residual_input):
            if src is None:
                continue
            self.done_readers[(src, image)] += 1
            readers = self.readers.get(src, 0)
            if self.done_readers[(src, image)] >= readers:
                self.act.pop((src, image), None)
                self.filled.pop((src, image), None)
                self.done_readers.pop((src, image), None)

    def _check(self, image: int, chip_out: np.ndarray, name: str) -> None:
        ref = reference_forward(self.net, self.params, self._image(image)[None])[name][0]
        self._inputs.pop(image, None)
        diff = np.abs(chip_out.astype(np.int32).reshape(-1) - ref.astype(np.int32).reshape(-1))
        self.outputs_checked += 1
        self.output_values += diff.size
        self.mismatches += int(np.count_nonzero(diff))
        self.max_abs_error = max(self.max_abs_error, int(diff.max(initial=0)))
        self.act.pop((self.plan.output_layer, image), None)

    # --- summary ------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counters per layer and overall, speculation success, converts, reference match."""
        layers: dict[str, dict[str, Any]] = {}
        total = dict.fromkeys(COUNTERS, 0)
        for name, c in self.counters.items():
            layers[name] = dict(c)
            for k, v in c.items():
                total[k] += v
            layers[name]["speculation_success"] = _success(c)
            layers[name]["adc_converts_per_column"] = _per_column(c)
        return {
            "enabled": True,
            "policy": self.policy,
            "reference_match": self.mismatches == 0 and self.outputs_checked > 0,
            "images_checked": self.outputs_checked,
            "output_values": self.output_values,
            "mismatching_values": self.mismatches,
            "max_abs_error": self.max_abs_error,
            "saturations_accepted": total["saturations_accepted"],
            "speculation_success": _success(total),
            "adc_converts_per_column": _per_column(total),
            "recovery_only_converts_per_column": 8,
            "totals": total,
            "layers": layers,
        }


class _Slicing:
    """Input slices of a crossbar config, as tables over an int8 input's byte (0..255):
    the pulses a row gets (|slice value| summed over the slices applied), and the slices'
    widths (the DAC drives' bits)."""

    def __init__(self, cfg: CrossbarConfig) -> None:
        self.speculative_cycles = cfg.speculative_cycles
        self.weight_slices = len(cfg.weight_slice_bits)  # type: ignore[arg-type]
        top = cfg.input_bits - 1
        byte = np.arange(256, dtype=np.int64)
        signed = np.where(byte >= 128, byte - 256, byte)

        def table(ranges: tuple[tuple[int, int], ...]) -> np.ndarray:
            out = np.zeros(256, dtype=np.int64)
            for high, low in ranges:
                width = high - low + 1
                v = (signed >> low) & ((1 << width) - 1)
                if high == top:  # the slice holding the sign bit is a signed number
                    v = np.where(v >= 1 << (width - 1), v - (1 << width), v)
                out += np.abs(v)
            return out

        def widths(ranges: tuple[tuple[int, int], ...]) -> dict[int, int]:
            out: dict[int, int] = {}
            for high, low in ranges:
                out[high - low + 1] = out.get(high - low + 1, 0) + 1
            return out

        spec = cfg.speculative_slice_ranges
        rec = tuple((h, lo) for h, lo, _s in cfg.recovery_slice_ranges)
        self.speculative_table, self.recovery_table = table(spec), table(rec)
        self.speculative_widths, self.recovery_widths = widths(spec), widths(rec)


def _success(c: dict[str, int]) -> float | None:
    """Fraction of speculative column conversions that did not saturate."""
    conv = c.get("speculative_converts", 0)
    return None if not conv else round(1 - c.get("failed_slices", 0) / conv, 5)


def _per_column(c: dict[str, int]) -> float | None:
    cols = c.get("column_mvms", 0)
    return None if not cols else round(c.get("adc_converts", 0) / cols, 4)


__all__ = ["Datapath", "GroupResult"]
