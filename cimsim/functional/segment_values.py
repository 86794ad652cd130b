"""Real values across a reloading run's segments (`mapping.weights = "reload"`, `cimsim.reload`).

Every segment is simulated as a network of its own, but its values are those of the whole
network: its crossbars hold the whole network's weights (generated once from the whole network
and `run.seed`, or read from `functional.weights` or the `.onnx` model), a split-sign or
adaptively sliced layer is decided on the whole network, its noise is drawn from the layer's
number in the whole network, and its input is the map the previous segment's chip wrote to DRAM
(segment 0: the images; a slice of a stage too large for the array holds its band of the
layer's weights, and the next segment reads the slices' bands side by side; a row band of a
layer split by input rows reads its input channels only, adds the previous band's int32 partial
sums to its accumulators and writes them on, and only the last band requantises). Each
segment's output is checked against the whole network's int8 reference on the original image,
at that tensor (a row band's partial sums: against the exact accumulators over its rows so far); the last segment's check is the run's
(accuracy and ONNX agreement included). So reloading changes no value: a noiseless reloading run
gives exactly the stationary run's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimsim.config.schema import Scenario
from cimsim.errors import SimulationError
from cimsim.functional.images import ImageStream
from cimsim.functional.onnx_agreement import OnnxSource
from cimsim.functional.reference import conv_accumulate
from cimsim.functional.weights import LayerParams, load_params, make_params
from cimsim.hw.datapath_summary import converts_per_column, speculation_success
from cimsim.mapping.segments import Segment
from cimsim.network import Network


def network_params(scenario: Scenario, net: Network, onnx: OnnxSource | None) -> dict[str, LayerParams]:
    """The int8 parameters of `net`: `functional.weights`, else the imported `.onnx` model's
    (`onnx`, `onnx_source(scenario.model)`), else generated from `run.seed`."""
    cfg = scenario.functional
    if cfg.weights:
        base = Path(scenario.source).parent if scenario.source else Path(".")
        return load_params(base / cfg.weights, net)
    if onnx is not None and onnx.params is not None:
        return onnx.params
    return make_params(net, scenario.run.seed)


class SpilledMaps:
    """Image i of a segment's input: the map the previous segment wrote (int8, (H, W, C))."""

    def __init__(self, maps: dict[int, np.ndarray], shape: tuple[int, int, int], batch: int) -> None:
        self.maps, self.shape, self.batch = maps, shape, batch

    def __len__(self) -> int:
        return self.batch

    def __getitem__(self, i: int) -> np.ndarray:
        return self.maps[i].reshape(self.shape)

    def close(self) -> None:
        """Nothing to close (the maps are in memory)."""


class ChannelBand:
    """Image i of `maps` (a `SpilledMaps` or the images), only input channels [first, end): what a
    row band of a layer split by input rows reads."""

    def __init__(self, maps: Any, rows: tuple[int, int]) -> None:
        self.maps, self.rows = maps, rows

    def __len__(self) -> int:
        return len(self.maps)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.ascontiguousarray(self.maps[i][..., self.rows[0]:self.rows[1]])

    def close(self) -> None:
        """Nothing to close (the maps it reads are closed by their owner)."""


def sliced_params(p: LayerParams, band: tuple[int, int], rows: tuple[int, int] | None = None) -> LayerParams:
    """A layer's parameters for output channels [first, end) only (and input channels `rows`)."""
    lo, hi = band
    w = p.weights[..., lo:hi] if rows is None else p.weights[:, :, rows[0]:rows[1], lo:hi]
    return LayerParams(np.ascontiguousarray(w), p.bias[lo:hi], p.multiplier[lo:hi], p.shift)


@dataclass
class SegmentValues:
    """What one segment's datapath takes from the whole network, and what it hands on."""

    network: Network
    """The whole network (its reference, layer numbers and input signs)."""
    params: dict[str, LayerParams]
    originals: ImageStream
    """The run's images (the whole network's input)."""
    inputs: Any
    """The segment's input, image by image: `originals` (segment 0) or a `SpilledMaps`."""
    last: bool
    """The last segment: its outputs are the network's (accuracy, ONNX agreement)."""
    band: tuple[int, int] | None = None
    """A slice (`cimsim.mapping.segments.Segment.channels`): the output channels its stage computes."""
    rows: tuple[int, int] | None = None
    """A row band (`Segment.rows`): the input channels its stage reads."""
    partials_in: dict[int, np.ndarray] | None = None
    """A row band after the first: the previous band's int32 partial sums per image, (H, W, C)."""
    partials_out: bool = False
    """A row band before the last: it writes its int32 partial sums, not requantised outputs."""
    outputs: dict[int, np.ndarray] = field(default_factory=dict)
    """The segment's chip outputs per image (filled unless `last`): the next segment's input."""

    def layer_params(self, name: str) -> LayerParams:
        """The parameters programmed for layer `name` (a slice's band of them)."""
        p = self.params[name]
        return p if self.band is None else sliced_params(p, self.band, self.rows)

    def accumulate(self, image: int, acc: np.ndarray, positions: list[tuple[int, int]]) -> np.ndarray:
        """A row band's accumulators (n, C) at `positions` with the previous bands' partial sums added."""
        if self.partials_in is None:
            return acc
        rc = np.array(positions, dtype=np.int64).reshape(-1, 2)
        return acc.astype(np.int64) + self.partials_in[image][rc[:, 0], rc[:, 1]]

    def reference(self, refs: dict[str, np.ndarray], name: str, layer: str) -> np.ndarray:
        """The whole network's reference at the segment's output `name` (one image), for the channels it
        computes; a row band writing partial sums: the exact accumulators of stage `layer` over the
        input channels of every band so far."""
        if self.partials_out:
            assert self.band is not None and self.rows is not None
            lay = self.network.layer(layer)
            w = self.params[layer].weights[:, :, :self.rows[1], self.band[0]:self.band[1]]
            x = refs[lay.inputs[0]][..., :self.rows[1]]
            if lay.kind == "fc":
                x = x.reshape(x.shape[0], 1, 1, -1)
            return conv_accumulate(x, w, lay.stride_hw, lay.padding_hw)[0]
        ref = refs[name][0]
        return ref if self.band is None else ref[..., self.band[0]:self.band[1]]

    def layer_index(self, name: str) -> int:
        """Layer `name`'s number in the whole network (the noise streams are drawn from it)."""
        return [layer.name for layer in self.network.layers].index(name)


class ValueFlow:
    """Hands each segment of a reloading run its values and collects what it wrote (module docstring)."""

    def __init__(self, network: Network, params: dict[str, LayerParams], originals: ImageStream,
                 segments: list[Segment]) -> None:
        self.network, self.params, self.originals, self.segments = network, params, originals, segments
        self.inputs: Any = originals
        self._bands: list[SegmentValues] = []
        self._partials: dict[int, np.ndarray] | None = None

    def values(self, seg: Segment) -> SegmentValues:
        """Segment `seg`'s values: its input maps (a row band: its channels of them), its band, the
        partial sums it adds, whether it is the last."""
        inputs = self.inputs if seg.rows is None else ChannelBand(self.inputs, seg.rows)
        return SegmentValues(self.network, self.params, self.originals, inputs,
                             last=seg.index == len(self.segments) - 1, band=seg.channels, rows=seg.rows,
                             partials_in=self._partials if seg.partials_in else None,
                             partials_out=seg.partials_out)

    def done(self, seg: Segment, values: SegmentValues, batch: int) -> None:
        """After `seg` ran: its maps (all slices of a stage side by side) are the next segment's input."""
        if values.last:
            return
        if len(values.outputs) != batch:
            raise SimulationError(f"functional: segment {seg.index} wrote {len(values.outputs)} output maps of "
                                  f"'{seg.output}', the batch is {batch}")
        self._partials = None
        if seg.partials_out:  # the next row band adds them
            self._partials = {i: o.reshape(*o.shape[:2], -1) if o.ndim == 3 else o.reshape(1, 1, -1)
                              for i, o in values.outputs.items()}
            return
        self._bands.append(values)
        nxt = self.segments[seg.index + 1]
        if nxt.channels is not None and nxt.layers == seg.layers:
            return  # another slice of this stage follows, reading the same input
        out = self.network.layer(seg.output)
        parts = self._bands
        maps = {i: np.concatenate([p.outputs[i].reshape(out.out_h, out.out_w, -1) for p in parts], axis=-1)
                for i in range(batch)}
        inp = self.network.layer(nxt.input)  # the map itself, or a flatten of it
        self.inputs = SpilledMaps(maps, (inp.out_h, inp.out_w, inp.out_channels), batch)
        self._bands = []


def merge_functional(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One `functional` summary of a reloading run from its segments' (in order): the last
    segment's check of the network outputs (reference match, errors, accuracy, ONNX agreement,
    noise), the counters of every layer and their totals over all segments, and per segment
    its own check of the map it wrote."""
    out = dict(parts[-1])
    totals = {k: sum(p["totals"][k] for p in parts) for k in parts[-1]["totals"]}
    out["totals"] = totals
    out["layers"] = {name: row for p in parts for name, row in p["layers"].items()}
    out["saturations_accepted"] = totals["saturations_accepted"]
    out["speculation_success"] = speculation_success(totals)
    out["adc_converts_per_column"] = converts_per_column(totals)
    out["reference_match"] = all(p["reference_match"] for p in parts)
    if "macs" in out:
        macs = sum(p["macs"] for p in parts)
        out["macs"] = macs
        out["adc_converts_per_mac"] = round(totals["adc_converts"] / macs, 5) if macs else None
    if "split_sign_layers" in out:
        out["split_sign_layers"] = [n for p in parts for n in p["split_sign_layers"]]
    if "slicings" in out:
        out["slicings"] = {n: c for p in parts for n, c in p["slicings"].items()}
    out["segments"] = [{k: p[k] for k in ("reference_match", "images_checked", "mismatching_values",
                                          "max_abs_error")} for p in parts]
    return out


__all__ = ["ChannelBand", "SegmentValues", "SpilledMaps", "ValueFlow", "merge_functional", "network_params", "sliced_params"]
