"""Which layers get cores of their own (stages), which run fused in another core's digital
processor, and which are only a renaming of their inputs. Pure: no SimPy.

A *stage* is a layer computed by the cores given to it, on one of two units:
- `Unit.CROSSBAR`: its kernel matrix on crossbars (conv, grouped and depthwise conv with
  `mapping.depthwise = "crossbar"`, fc with `mapping.fc_on = "crossbar"`);
- `Unit.DIGITAL`: on the digital processor of a core of its own, whose crossbar is unused
  (maxpool, local avgpool, depthwise conv with `mapping.depthwise = "digital"`, and an add,
  global avgpool or digital fc that cannot be fused). Its input SRAM and dataflow controller
  work as for a crossbar layer (the same window, circular buffer and stream order); the step
  costs the SRAM reads plus `digital_step_cycles` per output pixel instead of an MVM.
A layer is *fused* into the stage that emits its main input when the digital processor
there can run it on the pixels as they leave (Dazzi's add, global avgpool and FC): a single
emitting stage, the only consumer of that input, and for an fc a 1 x 1 input, a crossbar stage
and no fc fused there yet. (A fused fc costs no cycles beyond the pool's digital_cycles, as in
Dazzi's ResNet-32; an fc on a digital stage of its own is charged its MACs.) `flatten` and `concat` are *aliases*: the consumer reads the emitters of their
inputs (a concat's consumer has one main source per input, each sending its channels; a
pixel is complete when every source has delivered it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from cimsim.config.schema import Scenario
from cimsim.errors import MappingError
from cimsim.network import Layer, Network
from cimsim.network.layers import LayerKind


class Unit(StrEnum):
    """Where a stage computes."""

    CROSSBAR = "crossbar"
    DIGITAL = "digital"


@dataclass(frozen=True)
class Window:
    """The window a stage's dataflow controller slides over its input map."""

    in_h: int
    in_w: int
    kernel: tuple[int, int]
    """(rows, columns)."""
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def out_h(self) -> int:
        """Output rows."""
        return (self.in_h + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_w(self) -> int:
        """Output columns."""
        return (self.in_w + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1

    @property
    def out_pixels(self) -> int:
        """Output pixels per image."""
        return self.out_h * self.out_w

    @classmethod
    def of_layer(cls, layer: Layer) -> Window:
        """A conv's, maxpool's or local avgpool's own window."""
        return cls(layer.in_h, layer.in_w, layer.kernel_hw, layer.stride_hw, layer.padding_hw)

    @classmethod
    def whole(cls, h: int, w: int) -> Window:
        """One window over the whole H x W map (one output: a global pool, an fc after a flatten)."""
        return cls(h, w, (h, w), (1, 1), (0, 0))

    @classmethod
    def pointwise(cls, h: int, w: int) -> Window:
        """A 1 x 1 window over an H x W map (an add: one output per input pixel)."""
        return cls(h, w, (1, 1), (1, 1), (0, 0))


@dataclass(frozen=True)
class Stage:
    """A layer with cores of its own."""

    name: str
    unit: Unit
    window: Window
    in_channels: int
    """Channels of one input pixel (summed over a concat's inputs)."""
    out_channels: int
    """Channels of the layer's own output pixel (before anything fused)."""
    main_inputs: tuple[str, ...]
    """Stages (or the network input) whose pixels are this stage's input, in channel order."""
    fused: tuple[str, ...] = ()
    """Layers run by this stage's digital processor on its outputs, in order."""
    residual_input: str | None = None
    """Stage whose pixels an add (fused, or this stage itself) adds."""
    digital_step_cycles: int = 0
    """DIGITAL: digital-processor cycles per output pixel (the crossbar layer's are chip.digital_cycles)."""
    jobs: int = 1
    """CROSSBAR depthwise split into jobs (`mapping.depthwise_job_channels`, Ottavi's C / C_job): the
    jobs sit side by side in column bands of C_job columns and share K^2 x C_job rows, which are
    driven with one job's inputs at a time, so an output pixel takes `jobs` MVMs."""

    @property
    def out_layer(self) -> str:
        """The layer whose values the stage emits (its last fused layer, or itself)."""
        return self.fused[-1] if self.fused else self.name

    @property
    def replicable(self) -> bool:
        """Whether the stage may compute more than one output per timestep (crossbar replicas)."""
        return self.unit is Unit.CROSSBAR and self.jobs == 1


FUSABLE: frozenset[LayerKind] = frozenset({LayerKind.ADD, LayerKind.AVGPOOL, LayerKind.FC})
"""Kinds a digital processor can run fused, on the outputs of the stage before it."""


class _Builder:
    """Walks the layers in order and assigns each to a stage, a fusion or an alias."""

    def __init__(self, net: Network, scenario: Scenario) -> None:
        self.net, self.scenario = net, scenario
        chip = scenario.chip
        self.ops, self.macs = chip.digital_ops_per_cycle, chip.digital_macs_per_cycle
        self.emit: dict[str, tuple[str, ...]] = {}
        """Layer -> the stages (or input) that emit its values, in channel order."""
        self.stages: dict[str, Stage] = {}

    def fail(self, layer: Layer, problem: str) -> MappingError:
        return MappingError(f"{self.net.source}: layer '{layer.name}' ({layer.kind}): {problem}")

    def emitted(self, name: str) -> tuple[int, int, int]:
        """(H, W, C) of the pixels stage or input `name` emits."""
        if name == self.net.input_layer.name:
            inp = self.net.input_layer
            return inp.out_h, inp.out_w, inp.out_channels
        out = self.net.layer(self.stages[name].out_layer)
        return out.out_h, out.out_w, out.out_channels

    def fusable_into(self, layer: Layer) -> Stage | None:
        """The stage `layer` can be fused into, or None."""
        if layer.kind not in FUSABLE:
            return None
        src = self.emit[layer.inputs[0]]
        if len(src) != 1 or src[0] not in self.stages or len(self.net.consumers(layer.inputs[0])) > 1:
            return None
        stage = self.stages[src[0]]
        h, w, _ = self.emitted(stage.name)
        done = {self.net.layer(f).kind for f in stage.fused}
        if layer.kind is LayerKind.ADD:  # one residual input per stage (an add stage has its own)
            ok = not done & {LayerKind.AVGPOOL, LayerKind.FC, LayerKind.ADD} and stage.residual_input is None
        elif layer.kind is LayerKind.AVGPOOL:
            ok = not done & {LayerKind.AVGPOOL, LayerKind.FC}
        else:  # Dazzi's fc after the global pool: one 1 x 1 pixel, the first fc on a crossbar stage's processor
            ok = (self.scenario.mapping.fc_on == "digital" and (h, w) == (1, 1) and LayerKind.FC not in done
                  and stage.unit is Unit.CROSSBAR)
        return stage if ok else None

    def residual(self, layer: Layer) -> str:
        src = self.emit[layer.inputs[1]]
        if len(src) != 1:
            raise self.fail(layer, f"its residual input '{layer.inputs[1]}' is a concat of {len(src)} stages; "
                            "a residual from one producer only is simulated")
        return src[0]

    def add(self, layer: Layer) -> None:
        kind = layer.kind
        if kind is LayerKind.INPUT:
            self.emit[layer.name] = (layer.name,)
            return
        if kind in (LayerKind.FLATTEN, LayerKind.CONCAT):
            self.emit[layer.name] = tuple(e for i in layer.inputs for e in self.emit[i])
            return
        for i in layer.inputs:
            src = self.net.layer(i)
            if src.kind is LayerKind.FLATTEN and kind is not LayerKind.FC and src.in_h * src.in_w > 1:
                raise self.fail(layer, f"reads '{i}', a flattened {src.in_h} x {src.in_w} map; only an fc may")
        target = self.fusable_into(layer)
        if target is not None:
            residual = self.residual(layer) if kind is LayerKind.ADD else target.residual_input
            self.stages[target.name] = replace(target, fused=(*target.fused, layer.name), residual_input=residual)
            self.emit[layer.name] = (target.name,)
            return
        mains = self.emit[layer.inputs[0]]
        shapes = [self.emitted(m) for m in mains]
        h, w = shapes[0][:2]
        channels = sum(s[2] for s in shapes)
        self.stages[layer.name] = self.stage(layer, mains, h, w, channels)
        self.emit[layer.name] = (layer.name,)

    def stage(self, layer: Layer, mains: tuple[str, ...], h: int, w: int, c: int) -> Stage:
        """A stage of its own for `layer`, whose input is an H x W x C map from `mains`."""
        kind, mapping, digital = layer.kind, self.scenario.mapping, self.scenario.chip.digital_cycles
        if kind is LayerKind.CONV:
            win = Window.of_layer(layer)
            if layer.is_depthwise and mapping.depthwise == "digital":
                kh, kw = layer.kernel_hw
                return Stage(layer.name, Unit.DIGITAL, win, c, layer.out_channels, mains,
                             digital_step_cycles=math.ceil(kh * kw * c / self.macs) + digital)
            jobs = 1
            if layer.is_depthwise and 0 < mapping.depthwise_job_channels < layer.out_channels:
                if layer.out_channels % mapping.depthwise_job_channels:
                    raise self.fail(layer, f"mapping.depthwise_job_channels = {mapping.depthwise_job_channels} "
                                    f"does not divide its {layer.out_channels} channels")
                jobs = layer.out_channels // mapping.depthwise_job_channels
            return Stage(layer.name, Unit.CROSSBAR, win, c, layer.out_channels, mains, jobs=jobs)
        if kind in (LayerKind.MAXPOOL, LayerKind.LOCAL_AVGPOOL):
            kh, kw = layer.kernel_hw
            return Stage(layer.name, Unit.DIGITAL, Window.of_layer(layer), c, layer.out_channels, mains,
                         digital_step_cycles=math.ceil(kh * kw * c / self.ops))
        if kind is LayerKind.AVGPOOL:
            return Stage(layer.name, Unit.DIGITAL, Window.whole(h, w), c, layer.out_channels, mains,
                         digital_step_cycles=math.ceil(h * w * c / self.ops))
        if kind is LayerKind.ADD:
            return Stage(layer.name, Unit.DIGITAL, Window.pointwise(h, w), c, layer.out_channels, mains,
                         residual_input=self.residual(layer),
                         digital_step_cycles=math.ceil(c / self.ops))
        if kind is LayerKind.FC:
            if h * w * c != layer.in_channels:
                raise self.fail(layer, f"reads a {h} x {w} x {c} map but has {layer.in_channels} inputs")
            win = Window.whole(h, w)
            if mapping.fc_on == "crossbar":
                return Stage(layer.name, Unit.CROSSBAR, win, c, layer.out_channels, mains)
            return Stage(layer.name, Unit.DIGITAL, win, c, layer.out_channels, mains,
                         digital_step_cycles=math.ceil(layer.in_channels * layer.out_channels / self.macs) + digital)
        raise self.fail(layer, "is not simulated")


def _build(net: Network, scenario: Scenario) -> _Builder:
    builder = _Builder(net, scenario)
    for layer in net.layers:
        builder.add(layer)
    return builder


def plan_stages(net: Network, scenario: Scenario) -> dict[str, Stage]:
    """Every stage of the network, in network order (fused layers and aliases resolved)."""
    return _build(net, scenario).stages


def emitters(net: Network, scenario: Scenario) -> dict[str, tuple[str, ...]]:
    """Every layer -> the stages (or the input) that emit its values."""
    return _build(net, scenario).emit
