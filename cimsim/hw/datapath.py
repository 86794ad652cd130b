"""Real pixel values through the simulated chip (issue 5's functional model).

The cores call the datapath when they fire a group: it reads the group's input windows
from the producing stages' outputs *as the simulated cores have written them so far*
(a read of a pixel not yet produced is an error: the dataflow would have read garbage;
a concat's consumer reads every producer, their pixels side by side along channels),
runs a crossbar stage's windows through its bit-sliced crossbars
(`cimsim.functional.LayerMath`, with speculation and recovery; a grouped or depthwise
conv as its block-diagonal matrix, split into jobs if the mapping says so) and returns
the crossbar cycles the MVM took, so MVM time depends on the data; a digital stage
(`cimsim.functional.digital`) takes no crossbar cycles. The merging core's digital
processor then requantises, adds the residual, applies ReLU, pools and runs a digital
FC, and writes the outputs where the consumers will read them. Each image's network
output is compared with the numpy reference forward pass (and, for a model imported
from ONNX, collected for `cimsim.functional.onnx_agreement`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.config.schema import Scenario
from cimsim.energy.actions import Action, Component
from cimsim.errors import InputError, SimulationError
from cimsim.functional.accuracy import Accuracy
from cimsim.functional.centers import fixed_weight_slices
from cimsim.functional.chip_math import GroupResult, LayerMath, combine_passes, windows
from cimsim.functional.crossbar import COUNTERS, CrossbarConfig
from cimsim.functional.digital import DIGITAL_KINDS, DigitalMath
from cimsim.functional.encoding import sign_passes
from cimsim.functional.images import ImageStream
from cimsim.functional.noise import crossbar_factory, noisy
from cimsim.functional.onnx_agreement import OnnxAgreement, onnx_source
from cimsim.functional.options import SignedSlicing, choose_layer_slicings
from cimsim.functional.pcm_pwm import mvm_clock_cycles
from cimsim.functional.reference import (
    conv_accumulate,
    global_avgpool,
    reference_forward,
    requantise,
    saturating_add,
)
from cimsim.functional.segment_values import SegmentValues, network_params
from cimsim.hw.datapath_actions import Slicing, emit_mvm
from cimsim.hw.datapath_summary import datapath_summary
from cimsim.mapping.geometry import LayerGeometry
from cimsim.mapping.plan import MappingPlan, dataflow_order
from cimsim.mapping.stages import Unit, Window
from cimsim.network import Layer, Network
from cimsim.network.layers import LayerKind
from cimsim.sim.probe import Probe

PIXEL = Window(1, 1, (1, 1), (1, 1), (0, 0))
"""The window of a stage without one (a hand-built plan): one 1 x 1 pixel."""


@dataclass
class _Post:
    """What the digital processor does after the stage's own layer."""

    add_relu: bool | None
    """The residual add (fused, or the stage's own): its ReLU; None: no add."""
    tail: list[Layer]
    """Fused global avgpool and fc, in model order (run at the image's last group)."""
    net_output: str
    """The layer whose values the stage emits."""


@dataclass(frozen=True, eq=False)
class _Group:
    """A parallel group's output positions (column by column) and the input pixels it reads."""

    positions: list[tuple[int, int]]
    rows: np.ndarray
    cols: np.ndarray
    """The positions' rows and columns (index arrays)."""
    reads: np.ndarray
    """int32 flat indices (row * input width + column) of the in-image input pixels its windows read."""


@dataclass
class _Pending:
    """A group computed by the first of the stage's cores to fire it."""

    values: np.ndarray
    """int8 (n, C): the stage's own outputs, or already with the residual added (`added`)."""
    added: bool
    group: _Group
    cores_left: int
    cycles: int
    """Crossbar cycles of the group (0 on a digital stage)."""


class Datapath:
    """Weights on the crossbars, activations in flight, counters and the reference check."""

    def __init__(self, net: Network, plan: MappingPlan, scenario: Scenario, geoms: dict[str, LayerGeometry],
                 values: SegmentValues | None = None) -> None:
        cfg = scenario.functional
        self.scenario_functional = cfg
        base = Path(scenario.source).parent if scenario.source else Path(".")
        batch = scenario.run.batch
        self.net, self.plan, self.geoms = net, plan, geoms
        self.values = values
        """A reloading run's segment (`cimsim.functional.segment_values`): the whole network's weights,
        reference and images; None: the network is the whole network."""
        self.whole = net if values is None else values.network
        onnx = onnx_source(scenario.model) if values is None or values.last else None
        self.params = network_params(scenario, self.whole, onnx) if values is None else values.params
        last = values is None or values.last
        self.agreement: OnnxAgreement | None = OnnxAgreement(onnx) if onnx is not None else None
        """Chip outputs vs onnxruntime (a model imported from ONNX); None: not an imported model."""
        # image i depends on (seed, i) only, so a batch's first images do not change with its size;
        # images are made (or read) as the run consumes them and dropped once compared
        self.images = ImageStream.of(scenario, net) if values is None else values.inputs
        self.accuracy = Accuracy.from_files(base / cfg.labels if cfg.labels else None,
                                            base / cfg.images if cfg.images else None, batch) if last else None
        """Top-1 accuracy against the images' labels (None: no labels)."""
        self._inputs: dict[int, np.ndarray] = {}
        self.cycle_cycles = cfg.crossbar_cycle_cycles
        chip = scenario.chip
        xcfg = CrossbarConfig(rows=chip.crossbar_rows, cols=chip.crossbar_cols, adc_bits=cfg.adc_bits,
                              policy=cfg.policy, weight_encoding=cfg.weight_encoding,
                              weight_slice_bits=fixed_weight_slices(cfg.weight_encoding))
        self.policy = cfg.policy
        self.pcm = cfg.crossbar == "pcm_pwm"
        """Dazzi's PCM/PWM crossbar (`cimsim.functional.pcm_pwm`): one pass per MVM, no energy actions."""
        self.noisy = noisy(scenario)
        """Noisy crossbars: outputs are compared with the reference but need not match it."""
        if self.pcm:
            if scenario.energy.enabled:
                raise InputError(f"{scenario.source}: functional.crossbar = \"pcm_pwm\": energy accounting of "
                                 "the PCM/PWM crossbar is not modelled (set energy.enabled = false)")
            self.cycle_cycles = mvm_clock_cycles(cfg.pwm_steps_per_cycle)
        self.mode = cfg.mode
        self.adc_bits = cfg.adc_bits
        self.probe: Probe | None = None
        """Where the data-dependent action events go (set by the chip; None: nowhere)."""
        self._slicing = Slicing(xcfg)
        self.sign_passes = {n: sign_passes(cfg.input_encoding, self.whole, n) for n, m in plan.layers.items()
                            if m.unit is Unit.CROSSBAR}
        """Crossbar stages: passes per MVM (2: split-sign inputs, `cimsim.functional.encoding`)."""
        self._signed = SignedSlicing(xcfg, self._slicing)
        self.slicings = choose_layer_slicings(scenario, self.whole, plan, self.params, xcfg, self.sign_passes)
        """Adaptive weight slicing's choice per crossbar stage (`cimsim.functional.slicing`); {}: fixed."""
        self._xbar_cycles: dict[tuple[str, int], list[int]] = {}
        """(layer, image) -> [crossbar cycles, of which recovery] of its groups so far."""
        self.pre: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
        """batched mode: (layer, image) -> (outputs (H, W, C) before any fused pool, per-window crossbar
        cycles (H, W))."""
        self.base_mvm_cycles = (1 if self.pcm else xcfg.base_cycles) * self.cycle_cycles
        """MVM cycles of one crossbar MVM without (data-dependent) recovery: a longer MVM is a
        recovery (a stage of `jobs` MVMs: jobs times this; a digital stage: no MVM)."""
        self.maths: dict[str, LayerMath] = {}
        self.digital: dict[str, DigitalMath] = {}
        self.windows: dict[str, Window] = {}
        self.post: dict[str, _Post] = {}
        self._groups: dict[str, dict[int, _Group]] = {}
        for name in plan.layers:
            self._program(name, scenario, xcfg)
        self.order = dataflow_order(plan)
        self.act: dict[tuple[str, int], np.ndarray] = {}
        self.filled: dict[tuple[str, int], np.ndarray] = {}
        self.pending: dict[tuple[str, int, int], _Pending] = {}
        self.counters: dict[str, dict[str, int]] = {n: dict.fromkeys(COUNTERS, 0) for n in self.maths}
        self.group_cycles: dict[str, list[int]] = defaultdict(list)
        """Crossbar stages: the crossbar cycles of every group, in firing order."""
        self.readers: dict[str, int] = defaultdict(int)
        for src, _dst, _role in plan.edges:
            self.readers[src] += 1
        self.done_readers: dict[tuple[str, int], int] = defaultdict(int)
        self.outputs_checked = 0
        self.mismatches = 0
        self.output_values = 0
        self.max_abs_error = 0
        self.abs_error_sum = 0
        self.top1_agree = 0
        self.sq_error_sum = self.sq_ref_sum = 0.0
        """Images whose largest output (the predicted class) is the reference's."""
        noise = scenario.noise
        self.noise_params: dict[str, Any] = {"column_sigma": noise.column_sigma}
        if self.pcm and noise.pcm:
            self.noise_params.update(pcm_program_sigma=noise.pcm_program_sigma, pcm_read_sigma=noise.pcm_read_sigma,
                                     pcm_drift_nu=noise.pcm_drift_nu, pcm_drift_nu_sigma=noise.pcm_drift_nu_sigma,
                                     time_since_program_s=noise.time_since_program_s,
                                     pcm_drift_compensation=noise.pcm_drift_compensation)
        self.input_name = net.input_layer.name

    def _program(self, name: str, scenario: Scenario, xcfg: CrossbarConfig) -> None:
        """Weights of stage `name` on its crossbars (or its digital processor), and what follows it."""
        net, lm = self.net, self.plan.layers[name]
        layer = net.layer(name)
        win = self.windows[name] = lm.window or PIXEL
        where = f"{scenario.source}: functional.enabled: layer '{name}' ({layer.kind}, {lm.unit})"
        try:
            if lm.unit is Unit.CROSSBAR:
                if layer.kind not in (LayerKind.CONV, LayerKind.FC):
                    raise ValueError("only a conv or an fc runs on crossbars")
                rows = scenario.chip.crossbar_rows
                choice = self.slicings.get(name)
                lcfg = xcfg if choice is None else replace(xcfg, weight_slice_bits=choice.slicing)
                params = self.params[name] if self.values is None else self.values.layer_params(name)
                self.maths[name] = LayerMath(layer, params, lcfg, -(-layer.kernel_rows // rows), rows,
                                             jobs=lm.jobs, sign_passes=self.sign_passes[name],
                                             crossbar_factory=crossbar_factory(scenario, self._layer_index(name)))
            elif layer.kind in DIGITAL_KINDS:
                self.digital[name] = DigitalMath(layer, self.params.get(name), (win.in_h, win.in_w), win.kernel,
                                                 win.stride, win.padding)
            else:
                raise ValueError("is not run by the functional datapath")
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        fused = [net.layer(f) for f in lm.fused]
        adds = [f for f in fused if f.kind is LayerKind.ADD]
        tail = [f for f in fused if f.kind in (LayerKind.AVGPOOL, LayerKind.FC)]
        if layer.kind is LayerKind.ADD:
            adds.insert(0, layer)
        if len(adds) > 1:
            raise InputError(f"{where}: two adds ({adds[0].name}, {adds[1].name}) in one digital processor: "
                             "functional mode adds one residual per stage")
        if adds and tail and fused.index(tail[0]) < (fused.index(adds[0]) if adds[0] in fused else -1):
            raise InputError(f"{net.source}: add '{adds[0].name}' after '{tail[0].name}' in the digital processor "
                             f"of '{name}': functional mode adds residuals before pooling only")
        self.post[name] = _Post(adds[0].relu if adds else None, tail, fused[-1].name if fused else name)

    def _layer_index(self, name: str) -> int:
        """Layer `name`'s number in the whole network (its noise streams)."""
        return self.net.layers.index(self.net.layer(name)) if self.values is None else self.values.layer_index(name)

    def _image(self, image: int) -> np.ndarray:
        """Input image `image`, kept from its first use until its output has been compared."""
        img = self._inputs.get(image)
        if img is None:
            img = self._inputs[image] = self.images[image]
        return img

    # --- called by the cores ------------------------------------------------------------------
    def _group(self, layer: str, gi: int) -> _Group:
        """Group `gi` of `layer`: its output positions and the input pixels its windows read (cached)."""
        cache = self._groups.setdefault(layer, {})
        g = cache.get(gi)
        if g is None:
            geom, win = self.geoms[layer], self.windows[layer]
            r0, c0 = (int(v) for v in geom.group_origin[gi])
            nr, nc = (int(v) for v in geom.group_shape[gi])
            positions = [(r, c) for c in range(c0, c0 + nc) for r in range(r0, r0 + nr)]
            rc = np.array(positions, dtype=np.int64)
            g = cache[gi] = _Group(positions, rc[:, 0], rc[:, 1], _window_pixels(win, positions))
        return g

    def _read(self, layer: str, image: int, who: str) -> np.ndarray:
        if layer == self.input_name:
            return self._image(image)
        try:
            return self.act[(layer, image)]
        except KeyError:
            raise SimulationError(f"functional: {who} read image {image} of '{layer}' before it was produced "
                                  "or after it was freed") from None

    def _input_map(self, layer: str, read: Any) -> np.ndarray:
        """The stage's input map (H, W, C): its main inputs side by side along channels."""
        maps = [read(m) for m in self.plan.layers[layer].main_inputs]
        return maps[0] if len(maps) == 1 else np.concatenate(maps, axis=2)

    def _check_filled(self, layer: str, image: int, src: str, pixels: np.ndarray) -> None:
        """Every pixel (flat index row * width + column) of `src` is written."""
        if src == self.input_name:  # the image source streams every pixel of the image
            return
        filled = self.filled.get((src, image))
        if filled is None:
            raise SimulationError(f"functional: {layer} read image {image} of '{src}' before it was "
                                  "produced or after it was freed")
        if not filled.reshape(-1)[pixels].all():
            raise SimulationError(f"functional: {layer} image {image} read input pixels of '{src}' "
                                  "that were not produced yet")

    def _check_window(self, layer: str, image: int, positions: list[tuple[int, int]] | int) -> None:
        """A group (its output `positions`, or its index) may only read input pixels its producers
        have already written (every main input of a concat, over the stage's window)."""
        pixels = (self._group(layer, positions).reads if isinstance(positions, int)
                  else _window_pixels(self.windows[layer], positions))
        for src in dict.fromkeys(self.plan.layers[layer].main_inputs):
            self._check_filled(layer, image, src, pixels)

    def _own(self, layer: str, image: int, x: np.ndarray,
             positions: list[tuple[int, int]]) -> tuple[np.ndarray, GroupResult | None]:
        """The stage's own int8 outputs (n, C) at `positions` of input map `x`, and the crossbars'
        result (None on a digital stage)."""
        math = self.maths.get(layer)
        if math is None:
            return self.digital[layer].compute(x, positions), None
        win = self.windows[layer]
        w = windows(x, positions, win.kernel, win.stride, win.padding)
        passes = math.compute_passes(w)
        res = combine_passes(passes)
        for key, value in res.counters().items():
            self.counters[layer][key] += value
        probe = self.probe
        if probe is not None and probe.counts_actions and not self.pcm:
            sl = self._signed.of(math)
            for pw, pres in passes:
                emit_mvm(probe, sl, self.policy, self.adc_bits, image, layer, math, pres, pw)
        acc = res.acc
        if self.values is not None and self.values.rows is not None:  # a reloading run's row band
            acc = self.values.accumulate(image, acc, positions)
            if self.values.partials_out:
                return acc, res
        return requantise(acc, math.params, math.layer.relu), res

    def _batched(self, image: int) -> None:
        """Evaluate the whole image stage by stage in batched numpy (the values the cores will write)."""
        values: dict[str, np.ndarray] = {self.input_name: self._image(image)}
        for name in self.order:
            lm = self.plan.layers[name]
            geom = self.geoms[name]
            positions = [(r, c) for c in range(geom.out_w) for r in range(geom.out_h)]  # column-major
            y, res = self._own(name, image, self._input_map(name, values.__getitem__), positions)
            post = self.post[name]
            if post.add_relu is not None:
                residual = values[str(lm.residual_input)].transpose(1, 0, 2).reshape(len(positions), -1)
                y = saturating_add(y, residual, post.add_relu)
            shape = (geom.out_h, geom.out_w)
            out = y.reshape(shape[1], shape[0], -1).transpose(1, 0, 2)  # column-major positions -> (H, W, C)
            cycles = (np.asarray(res.cycles).reshape(shape[1], shape[0]).T if res is not None
                      else np.zeros(shape, dtype=np.int64))
            values[name] = self._pool_fc(name, out) if post.tail else out
            self.pre[(name, image)] = (out, cycles)

    def mvm(self, layer: str, image: int, gi: int, cores: int) -> int:
        """Group `gi` of `image` on `layer`'s crossbars (once for all `cores` of the layer);
        return the clock cycles of the MVM (0 on a digital stage: it has none)."""
        key = (layer, image, gi)
        entry = self.pending.get(key)
        if entry is None:
            g = self._group(layer, gi)
            self._check_window(layer, image, gi)
            if self.mode == "batched":
                if (layer, image) not in self.pre:
                    self._batched(image)
                out, cyc = self.pre[(layer, image)]
                entry = _Pending(out[g.rows, g.cols], True, g, cores, int(cyc[g.rows, g.cols].max()))
            else:
                x = self._input_map(layer, lambda m: self._read(m, image, layer))
                y, res = self._own(layer, image, x, g.positions)
                entry = _Pending(y, False, g, cores, res.crossbar_cycles if res is not None else 0)
            self.pending[key] = entry
            math = self.maths.get(layer)
            if math is not None:
                self.group_cycles[layer].append(entry.cycles)
                if self.probe is not None and self.probe.counts_actions and not self.pcm:  # emitted at the image's last group
                    acc = self._xbar_cycles.setdefault((layer, image), [0, 0])
                    acc[0] += entry.cycles
                    if self.policy != "off":
                        acc[1] += max(0, entry.cycles - math.jobs * math.sign_passes * self._slicing.speculative_cycles)
        entry.cores_left -= 1
        return entry.cycles * self.cycle_cycles

    def _emit_cycles(self, layer: str, image: int) -> None:
        """Crossbar cycles (input slices) of an image's MVMs on each of the layer's cores (a job
        drives 1 / jobs of a core's cells)."""
        acc = self._xbar_cycles.pop((layer, image), None)
        if self.probe is None or acc is None:
            return
        act = self.probe.action
        cycles, rec = acc
        lm = self.plan.layers[layer]
        for cid in lm.cores:
            spec = self.plan.cores[cid]
            cells = spec.rows_used * spec.cols_used // lm.jobs
            act(image, layer, Component.CROSSBAR, Action.CYCLE, cells, cycles - rec, False)
            if rec:
                act(image, layer, Component.CROSSBAR, Action.CYCLE, cells, rec, True)

    def finish(self, layer: str, image: int, gi: int) -> None:
        """The merging core's digital processor: requantise, residual add, ReLU; pool and FC
        at the end of the image; write the outputs for the consumers."""
        key = (layer, image, gi)
        entry = self.pending[key]
        if entry.cores_left <= 0:
            del self.pending[key]
        lm = self.plan.layers[layer]
        geom = self.geoms[layer]
        post = self.post[layer]
        g = entry.group
        y = entry.values
        if post.add_relu is not None:
            assert lm.residual_input is not None
            self._check_filled(layer, image, lm.residual_input, g.rows * geom.out_w + g.cols)
            if not entry.added:
                rsrc = self._read(lm.residual_input, image, layer)
                y = saturating_add(y, rsrc[g.rows, g.cols], post.add_relu)
        out = self.act.get((layer, image))
        if out is None:
            shape = (geom.out_h, geom.out_w, y.shape[1])
            out = self.act[(layer, image)] = np.zeros(shape, dtype=y.dtype)  # (a row band's partial sums: int64)
            self.filled[(layer, image)] = np.zeros(shape[:2], dtype=bool)
        out[g.rows, g.cols] = y
        self.filled[(layer, image)][g.rows, g.cols] = True
        if gi == geom.n_groups - 1:
            self._emit_cycles(layer, image)
            self._image_done_reading(layer, image)
            self.pre.pop((layer, image), None)
            if post.tail:
                self.act[(layer, image)] = self._pool_fc(layer, out)
                self.filled[(layer, image)] = np.ones((1, 1), dtype=bool)
            if layer == self.plan.output_layer:
                self._check(image, self.act[(layer, image)], post.net_output)

    def _pool_fc(self, layer: str, out: np.ndarray) -> np.ndarray:
        """The fused global average pooling and digital FCs, in model order (exact integer arithmetic)."""
        x = out
        for f in self.post[layer].tail:
            if f.kind is LayerKind.AVGPOOL:
                x = global_avgpool(x[None])[0]
            else:
                acc = conv_accumulate(x[None], self.params[f.name].weights)
                x = requantise(acc, self.params[f.name], f.relu)[0]
        return x

    def _image_done_reading(self, layer: str, image: int) -> None:
        lm = self.plan.layers[layer]
        for src in (*lm.main_inputs, lm.residual_input):
            if src is None:
                continue
            self.done_readers[(src, image)] += 1
            readers = self.readers.get(src, 0)
            if self.done_readers[(src, image)] >= readers:
                self.act.pop((src, image), None)
                self.filled.pop((src, image), None)
                self.done_readers.pop((src, image), None)

    def _check(self, image: int, chip_out: np.ndarray, name: str) -> None:
        img = self._image(image) if self.values is None else self.values.originals[image]
        refs = reference_forward(self.whole, self.params, img[None])
        self._inputs.pop(image, None)
        ref = refs[name][0] if self.values is None else self.values.reference(refs, name, self.plan.output_layer)
        if self.values is not None and not self.values.last:
            self.values.outputs[image] = chip_out.copy()
        diff = np.abs(chip_out.astype(np.int32).reshape(-1) - ref.astype(np.int32).reshape(-1))
        self.outputs_checked += 1
        self.output_values += diff.size
        self.mismatches += int(np.count_nonzero(diff))
        self.max_abs_error = max(self.max_abs_error, int(diff.max(initial=0)))
        self.abs_error_sum += int(diff.sum())
        self.sq_error_sum += float((diff.astype(np.float64) ** 2).sum())
        self.sq_ref_sum += float((ref.astype(np.float64) ** 2).sum())
        self.top1_agree += int(np.argmax(chip_out.reshape(-1)) == np.argmax(ref.reshape(-1)))
        if self.agreement is not None:
            self.agreement.add(image, img, chip_out)
        if self.accuracy is not None:
            self.accuracy.add(image, chip_out, ref)
        self.act.pop((self.plan.output_layer, image), None)

    # --- summary ------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Counters per layer and overall, speculation success, converts, reference match
        (`cimsim.hw.datapath_summary`)."""
        return datapath_summary(self)


def _window_pixels(win: Window, positions: list[tuple[int, int]]) -> np.ndarray:
    """int32 flat indices (row * in_w + column) of the in-image input pixels the windows of `positions` read."""
    (kh, kw), (sh, sw), (ph, pw) = win.kernel, win.stride, win.padding
    read = {y * win.in_w + x for r, c in positions for y in range(max(0, r * sh - ph), min(win.in_h, r * sh - ph + kh))
            for x in range(max(0, c * sw - pw), min(win.in_w, c * sw - pw + kw))}
    return np.array(sorted(read), dtype=np.int32)


__all__ = ["Datapath", "GroupResult"]
