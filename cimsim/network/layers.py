"""The network as data: frozen layers and the dataflow graph between them.

A `Network` is a DAG of `Layer`s. Every layer produces a feature map of
``out_h x out_w x out_channels`` activations; a *pixel* is one position on the
H, W plane across all channels (Dazzi et al. 2021, section 2). Layers are
built by `cimsim.network.model.load_model` from a model TOML, or directly with
`Network.from_layers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import networkx as nx


class LayerKind(StrEnum):
    """Every value `Layer.kind` can take.

    They are the model file's ``type`` strings, except that ``type = "avgpool"`` with a
    ``kernel`` (a local average pool) becomes `LOCAL_AVGPOOL`; ``AVGPOOL`` is always the
    global one (``H x W x C -> 1 x 1 x C``).
    """

    INPUT = "input"
    CONV = "conv"
    ADD = "add"
    AVGPOOL = "avgpool"
    """Global average pooling."""
    FC = "fc"
    MAXPOOL = "maxpool"
    LOCAL_AVGPOOL = "local_avgpool"
    """Average pooling over a kernel window (kernel, stride, padding)."""
    FLATTEN = "flatten"
    """``H x W x C -> 1 x 1 x (H*W*C)``, flattened in (h, w, c) order."""
    CONCAT = "concat"
    """Concatenation of two or more inputs of equal H x W along channels."""


WINDOWED_KINDS: frozenset[LayerKind] = frozenset({LayerKind.CONV, LayerKind.MAXPOOL, LayerKind.LOCAL_AVGPOOL})
"""Kinds that slide a kernel window (their kernel, stride and padding are meaningful)."""


LAYER_KINDS: tuple[str, ...] = tuple(k.value for k in LayerKind)
"""Every value `Layer.kind` can take, as strings (for messages)."""


class EdgeRole(StrEnum):
    """What a stream of pixels is to its consumer."""

    MAIN = "main"
    """A layer's (first) input: the pixels its crossbar reads."""
    RESIDUAL = "residual"
    """The second input of an add (the shortcut), added by the digital processor."""
    PARTIAL = "partial"
    """Partial sums between the row parts of a split layer (mapping flows only, Dazzi Eq. 5)."""


ROLE_MAIN = EdgeRole.MAIN
ROLE_RESIDUAL = EdgeRole.RESIDUAL


@dataclass(frozen=True)
class Layer:
    """One layer of a CNN with its input and output feature-map shapes.

    ``inputs`` names the producer layers; for an ``"add"`` it is
    ``(main, residual)``. The ``"input"`` layer has no inputs and equal input and
    output shapes (the image).
    """

    name: str
    kind: LayerKind
    inputs: tuple[str, ...]
    in_h: int
    in_w: int
    in_channels: int
    out_h: int
    out_w: int
    out_channels: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    relu: bool = False
    kernel_w: int | None = None
    stride_w: int | None = None
    padding_w: int | None = None
    groups: int = 1
    count_include_pad: bool = False

    def __post_init__(self) -> None:
        # a kind given as a string becomes the enum; a misspelt one fails here
        object.__setattr__(self, "kind", LayerKind(self.kind))

    @property
    def kernel_hw(self) -> tuple[int, int]:
        """Kernel (height, width)."""
        return self.kernel, self.kernel if self.kernel_w is None else self.kernel_w

    @property
    def stride_hw(self) -> tuple[int, int]:
        """Stride (along H, along W)."""
        return self.stride, self.stride if self.stride_w is None else self.stride_w

    @property
    def padding_hw(self) -> tuple[int, int]:
        """Zero padding (rows above and below, columns left and right)."""
        return self.padding, self.padding if self.padding_w is None else self.padding_w

    @property
    def is_square(self) -> bool:
        """Kernel, stride and padding are the same along H and W."""
        kh, kw = self.kernel_hw
        (sh, sw), (ph, pw) = self.stride_hw, self.padding_hw
        return kh == kw and sh == sw and ph == pw

    @property
    def is_depthwise(self) -> bool:
        """A conv with one group per input channel."""
        return self.kind == "conv" and self.groups > 1 and self.groups == self.in_channels

    @property
    def kernel_rows(self) -> int:
        """Rows of the kernel matrix (crossbar inputs): Fh*Fw*C_in for a conv, C_in for an fc, else 0.

        For a grouped conv this is the dense, block-diagonal matrix (each group's
        Fh*Fw*C_in/groups rows feed only its own C_out/groups columns).
        """
        if self.kind == "conv":
            kh, kw = self.kernel_hw
            return kh * kw * self.in_channels
        if self.kind == "fc":
            return self.in_channels
        return 0

    @property
    def kernel_cols(self) -> int:
        """Columns of the kernel matrix (crossbar outputs): C_out for a conv or fc, else 0."""
        if self.kind in ("conv", "fc"):
            return self.out_channels
        return 0

    @property
    def pixels_out(self) -> int:
        """Output pixels per image: out_h * out_w."""
        return self.out_h * self.out_w

    def pixel_bits(self, bits: int) -> int:
        """Size in bits of one output pixel with ``bits``-bit activations."""
        return self.out_channels * bits


@dataclass(frozen=True)
class Network:
    """A CNN as layers in topological order plus its dataflow graph.

    ``graph`` has one node per layer name (attribute ``layer``: the `Layer`) and
    an edge producer -> consumer with attribute ``role``: ``"main"``, or
    ``"residual"`` for the second input of an add.
    """

    name: str
    description: str
    bits: int
    source: str
    layers: tuple[Layer, ...]
    graph: nx.DiGraph = field(compare=False, hash=False, repr=False)

    @classmethod
    def from_layers(
        cls,
        name: str,
        layers: tuple[Layer, ...] | list[Layer],
        *,
        description: str = "",
        bits: int = 8,
        source: str = "",
    ) -> Network:
        """Build a network and its graph from layers already in topological order.

        Shapes are taken as given (no validation beyond the graph being
        consistent); `load_model` is the validating entry point.
        """
        layers = tuple(layers)
        graph: nx.DiGraph[str] = nx.DiGraph()
        for layer in layers:
            graph.add_node(layer.name, layer=layer)
        for layer in layers:
            for position, producer in enumerate(layer.inputs):
                if producer not in graph:
                    raise ValueError(f"layer {layer.name!r}: input {producer!r} is not a layer")
                role = ROLE_RESIDUAL if layer.kind == "add" and position == 1 else ROLE_MAIN
                graph.add_edge(producer, layer.name, role=role)
        return cls(
            name=name, description=description, bits=bits, source=source, layers=layers, graph=graph
        )

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (KeyError if there is none)."""
        try:
            return self.graph.nodes[name]["layer"]
        except KeyError:
            raise KeyError(f"network {self.name!r} has no layer {name!r}") from None

    def consumers(self, name: str) -> list[str]:
        """Names of the layers that take ``name``'s output, in definition order."""
        order = self._order()
        return sorted(self.graph.successors(name), key=order.__getitem__)

    @property
    def input_layer(self) -> Layer:
        """The ``"input"`` layer (the image)."""
        return self.layers[0]

    @property
    def output_layer(self) -> Layer:
        """The single layer whose output no layer consumes."""
        outputs = [layer for layer in self.layers if self.graph.out_degree(layer.name) == 0]
        if len(outputs) != 1:
            names = ", ".join(repr(layer.name) for layer in outputs)
            raise ValueError(f"network {self.name!r} has {len(outputs)} output layers: {names}")
        return outputs[0]

    def _order(self) -> dict[str, int]:
        """Layer name -> position in definition order."""
        return {layer.name: index for index, layer in enumerate(self.layers)}
