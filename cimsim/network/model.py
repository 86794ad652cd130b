"""Load and validate a model TOML into a `Network`.

The format is documented for users in ``models/README.md``. Every problem is
reported as an `InputError` with a one-line message naming the file, the layer
(``layers[i] ('name')``), the key, the bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cimsim.config.load import parse_toml, read_limited
from cimsim.errors import InputError
from cimsim.network.layers import Layer, LayerKind, Network

TOP_KEYS: tuple[str, ...] = ("name", "description", "bits", "input", "layers")
"""Keys allowed at the top level of a model file."""
INPUT_KEYS: tuple[str, ...] = ("name", "height", "width", "channels")
"""Keys allowed in the ``[input]`` table."""
LAYER_TYPES: dict[str, tuple[str, ...]] = {
    "conv": ("out_channels", "kernel", "stride", "padding", "groups", "relu"),
    "add": ("relu",),
    "avgpool": ("global", "kernel", "stride", "padding", "count_include_pad"),
    "fc": ("out_features", "relu"),
    "maxpool": ("kernel", "stride", "padding", "relu"),
    "flatten": (),
    "concat": (),
}
"""Layer type -> keys it accepts besides ``name``, ``type`` and ``input``/``inputs``."""
UNSUPPORTED_KEYS: dict[str, str] = {
    "dilation": "dilated kernels are not supported (every kernel has dilation 1)",
    "dilations": "dilated kernels are not supported (every kernel has dilation 1)",
    "ceil_mode": "ceil-mode output sizes are not supported (output sizes round down)",
    "auto_pad": "automatic padding is not supported; give padding explicitly",
}
"""Attributes of other frameworks' layers that cimsim knows and refuses, with the reason."""
POOL_WINDOW_KEYS: tuple[str, ...] = ("kernel", "stride", "padding", "count_include_pad")
"""avgpool keys that make it (or need it to be) a local pool."""
LAYER_COMMON_KEYS: tuple[str, ...] = ("name", "type", "input", "inputs")
"""Keys every ``[[layers]]`` table accepts."""
DEFAULT_INPUT_NAME = "input"
"""Name of the input layer when ``[input]`` has no ``name``."""
DEFAULT_BITS = 8
"""Activation bits when the model has no ``bits``."""
INT_MAX = 2**31 - 1
"""Largest integer any key takes (the simulator and its trace count in 32-bit integers)."""
CHANNELS_MAX = 65_536
"""Largest channel count or fc width (a pixel of more channels would not fit a NoC packet's counters)."""
BITS_MAX = 64
"""Largest activation width in bits."""
SIZE_MAX = 2**15 - 1
"""Largest image height or width (the trace stores pixel rows and columns as 16-bit integers)."""


def load_model(path: str | Path) -> Network:
    """Read the model TOML at ``path`` and return the validated `Network`.

    A path ending in ``.onnx`` is imported instead (`cimsim.onnx_import`, needs the
    ``onnx`` package): the network of the model file ``cimsim import`` would write.

    Raises `InputError` (one-line message) for a missing or unreadable file,
    malformed TOML, or any invalid key, value, reference or shape.
    """
    path = Path(path)
    source = str(path)
    if path.suffix.lower() == ".onnx":
        from cimsim.onnx_import import load_onnx_network

        return load_onnx_network(path)
    data = parse_toml(read_limited(path, "model"), path)
    return _ModelLoader(source).load(data)


def model_text(path: str | Path) -> str:
    """The model TOML text of ``path``: the file itself, or for an ``.onnx`` the TOML
    `cimsim import` would write (what a trace stores as the run's model)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from cimsim.onnx_import import render_toml
        from cimsim.onnx_import.graph import translate

        return render_toml(translate(path), str(path))
    return read_limited(path, "model").decode("utf-8", errors="replace")


def load_model_text(text: str, source: str) -> Network:
    """The validated `Network` of model TOML ``text``; ``source`` names it in messages."""
    data = parse_toml(text.encode("utf-8"), Path(source))
    return _ModelLoader(source).load(data)


def _one_line(text: str) -> str:
    """Collapse whitespace (newlines included) so a message fits on one line."""
    return " ".join(text.split())


def _describe(value: Any) -> str:
    """A short one-line rendering of a TOML value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        rendered = repr(value)
        return rendered if len(rendered) <= 60 else "an array"
    return _one_line(repr(value))


def _shape(layer: Layer) -> str:
    """``HxWxC`` of a layer's output."""
    return f"{layer.out_h}x{layer.out_w}x{layer.out_channels}"


class _ModelLoader:
    """Validates the parsed TOML of one model file and builds its layers."""

    def __init__(self, source: str) -> None:
        self.source = source

    # -- reporting and typed access -------------------------------------

    def fail(self, where: str, key: str | None, problem: str) -> InputError:
        """An InputError for ``problem`` at ``where`` (may be empty), ``key``."""
        parts = [self.source]
        if where:
            parts.append(where)
        if key is not None:
            parts.append(f"key {key!r}")
        return InputError(_one_line(": ".join([*parts, problem])))

    def check_keys(self, where: str, table: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
        """Reject any key of ``table`` not in ``allowed``."""
        for key in table:
            if key not in allowed:
                raise self.fail(where, key, f"unknown key for {what}; allowed: {', '.join(allowed)}")

    def require(self, where: str, table: dict[str, Any], key: str, what: str) -> Any:
        """``table[key]``, or an error saying it is missing."""
        if key not in table:
            raise self.fail(where, key, f"missing required key for {what}")
        return table[key]

    def positive_int(self, where: str, key: str, value: Any, minimum: int = 1, maximum: int = INT_MAX) -> int:
        """``value`` if it is an int (not a bool) in ``minimum..maximum``."""
        if type(value) is not int or value < minimum:
            expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise self.fail(where, key, f"got {_describe(value)}, expected {expected}")
        if value > maximum:
            raise self.fail(where, key, f"got {value}, expected at most {maximum:,}")
        return value

    def name_str(self, where: str, key: str, value: Any) -> str:
        """``value`` if it is a non-empty string."""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, key, f"got {_describe(value)}, expected a non-empty string")
        return value

    def boolean(self, where: str, key: str, value: Any) -> bool:
        """``value`` if it is a bool."""
        if not isinstance(value, bool):
            raise self.fail(where, key, f"got {_describe(value)}, expected true or false")
        return value

    # -- the file ---------------------------------------------------------

    def load(self, data: dict[str, Any]) -> Network:
        """Validate the whole document and build the network."""
        self.check_keys("", data, TOP_KEYS, "a model")
        name = self.name_str("", "name", self.require("", data, "name", "a model"))
        description = data.get("description", "")
        if not isinstance(description, str):
            raise self.fail("", "description", f"got {_describe(description)}, expected a string")
        bits = self.positive_int("", "bits", data.get("bits", DEFAULT_BITS), maximum=BITS_MAX)

        input_table = self.require("", data, "input", "a model")
        if not isinstance(input_table, dict):
            raise self.fail("", "input", f"got {_describe(input_table)}, expected a table [input]")
        image = self.input_layer(input_table)

        raw_layers = self.require("", data, "layers", "a model")
        if not isinstance(raw_layers, list) or not all(isinstance(t, dict) for t in raw_layers):
            got = _describe(raw_layers)
            raise self.fail("", "layers", f"got {got}, expected an array of tables [[layers]]")
        if not raw_layers:
            raise self.fail("", "layers", "no layers, expected at least one [[layers]] table")

        layers: dict[str, Layer] = {image.name: image}
        for index, table in enumerate(raw_layers):
            layer = self.layer(index, table, layers)
            layers[layer.name] = layer

        self.check_single_output(layers)
        return Network.from_layers(
            name, tuple(layers.values()), description=description, bits=bits, source=self.source
        )

    def input_layer(self, table: dict[str, Any]) -> Layer:
        """The ``"input"`` layer from the ``[input]`` table."""
        where = "[input]"
        self.check_keys(where, table, INPUT_KEYS, "[input]")
        name = self.name_str(where, "name", table.get("name", DEFAULT_INPUT_NAME))
        height, width, channels = (
            self.positive_int(where, key, self.require(where, table, key, "[input]"),
                              maximum=CHANNELS_MAX if key == "channels" else SIZE_MAX)
            for key in ("height", "width", "channels")
        )
        return Layer(
            name=name, kind=LayerKind.INPUT, inputs=(),
            in_h=height, in_w=width, in_channels=channels,
            out_h=height, out_w=width, out_channels=channels,
        )

    def check_single_output(self, layers: dict[str, Layer]) -> None:
        """Exactly one layer may have no consumer: the network's output."""
        consumed = {producer for layer in layers.values() for producer in layer.inputs}
        outputs = [name for name in layers if name not in consumed]
        if len(outputs) != 1:
            listed = ", ".join(repr(name) for name in outputs) or "none"
            raise self.fail(
                "", "layers",
                f"{len(outputs)} output layers (layers no other layer consumes): {listed}; "
                "expected exactly one",
            )

    # -- one layer ------------------------------------------------------

    def layer(self, index: int, table: dict[str, Any], defined: dict[str, Layer]) -> Layer:
        """Validate ``layers[index]`` against the layers ``defined`` before it."""
        where = f"layers[{index}]"
        name = self.name_str(where, "name", self.require(where, table, "name", "a layer"))
        where = f"layers[{index}] ({name!r})"
        if name in defined:
            used_by = "the [input] name" if defined[name].kind == "input" else "an earlier layer's name"
            problem = f"duplicate name {name!r}, already {used_by}; names must be unique"
            raise self.fail(where, "name", problem)
        kind = self.require(where, table, "type", "a layer")
        if kind not in LAYER_TYPES:
            allowed_types = ", ".join(LAYER_TYPES)
            raise self.fail(where, "type", f"got {_describe(kind)}, expected one of: {allowed_types}")
        for key in table:
            if key in UNSUPPORTED_KEYS:
                raise self.fail(where, key, f"not supported for layer {name!r}: {UNSUPPORTED_KEYS[key]}")
        allowed = LAYER_COMMON_KEYS + LAYER_TYPES[kind]
        self.check_keys(where, table, allowed, f"a layer of type {kind!r}")

        key, producers = self.inputs(where, table, kind, defined)
        sources = [defined[producer] for producer in producers]
        relu = self.boolean(where, "relu", table.get("relu", False))
        first = sources[0]
        common = {
            "name": name, "kind": kind, "inputs": tuple(producers),
            "in_h": first.out_h, "in_w": first.out_w, "in_channels": first.out_channels, "relu": relu,
        }
        if kind == "conv":
            return self.conv(where, table, first, common)
        if kind == "add":
            main, residual = sources
            if (main.out_h, main.out_w, main.out_channels) != (
                residual.out_h, residual.out_w, residual.out_channels
            ):
                raise self.fail(
                    where, key,
                    f"shapes differ: {main.name!r} is {_shape(main)} (HxWxC) but {residual.name!r} "
                    f"is {_shape(residual)}; an add needs identical shapes",
                )
            return Layer(out_h=main.out_h, out_w=main.out_w, out_channels=main.out_channels, **common)
        if kind == "avgpool":
            return self.avgpool(where, table, first, common)
        if kind == "maxpool":
            return self.pool(where, table, first, {**common, "kind": LayerKind.MAXPOOL})
        if kind == "flatten":
            size = first.out_h * first.out_w * first.out_channels
            if size > INT_MAX:
                raise self.fail(where, key, f"{first.name!r} flattens to {size:,} values, at most {INT_MAX:,}")
            return Layer(out_h=1, out_w=1, out_channels=size, **common)
        if kind == "concat":
            return self.concat(where, key, sources, common)
        # fc
        if (first.out_h, first.out_w) != (1, 1):
            raise self.fail(
                where, key,
                f"{first.name!r} produces {_shape(first)} (HxWxC), an fc needs a 1x1 input "
                "(put an avgpool or a flatten before it)",
            )
        out = self.positive_int(where, "out_features", self.require(where, table, "out_features", "an fc"),
                                maximum=CHANNELS_MAX)
        return Layer(out_h=1, out_w=1, out_channels=out, **common)

    def inputs(
        self, where: str, table: dict[str, Any], kind: str, defined: dict[str, Layer]
    ) -> tuple[str, list[str]]:
        """The key used (``input`` or ``inputs``) and the producer names, validated."""
        expected = 2 if kind == "add" else 1
        has_one, has_many = "input" in table, "inputs" in table
        if has_one and has_many:
            raise self.fail(where, "inputs", "both 'input' and 'inputs' given; use exactly one of the two")
        if not has_one and not has_many:
            hint = {"add": "inputs = [main, residual]", "concat": "inputs = [a, b, ...]"}.get(
                kind, "input = \"<layer>\"")
            raise self.fail(where, "input", f"missing required key 'input' or 'inputs' ({hint})")
        key = "input" if has_one else "inputs"
        value = table[key]
        if has_one:
            producers = [self.name_str(where, key, value)]
        else:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise self.fail(where, key, f"got {_describe(value)}, expected an array of layer names")
            producers = list(value)
        if kind == "concat" and len(producers) < 2:
            raise self.fail(where, key, f"got {len(producers)} input(s) {producers!r}; a concat takes 2 or more")
        if kind != "concat" and len(producers) != expected:
            need = "exactly 2 inputs [main, residual]" if kind == "add" else "exactly 1 input"
            article = "a" if kind in ("conv", "maxpool", "flatten") else "an"
            raise self.fail(
                where, key, f"got {len(producers)} input(s) {producers!r}; {article} {kind} takes {need}"
            )
        for producer in producers:
            if producer not in defined:
                raise self.fail(
                    where, key,
                    f"{producer!r} is not defined before this layer; inputs must name [input] "
                    "or an earlier layer",
                )
        if len(set(producers)) != len(producers):
            what = "an add needs two different layers" if kind == "add" else "a concat needs different layers"
            raise self.fail(where, key, f"got {producers!r}; {what}")
        return key, producers

    def pair(self, where: str, key: str, value: Any, minimum: int = 1) -> tuple[int, int]:
        """An integer, or an array ``[height, width]`` of two, as an (H, W) pair."""
        if isinstance(value, list):
            if len(value) != 2:
                raise self.fail(where, key, f"got {_describe(value)}, expected an integer or [height, width]")
            return (self.positive_int(where, key, value[0], minimum), self.positive_int(where, key, value[1], minimum))
        number = self.positive_int(where, key, value, minimum)
        return number, number

    def window(
        self, where: str, table: dict[str, Any], source: Layer, what: str
    ) -> dict[str, Any]:
        """Kernel, stride and padding of a conv or pool, validated against ``source``, plus the output size."""
        kh, kw = self.pair(where, "kernel", self.require(where, table, "kernel", what))
        sh, sw = self.pair(where, "stride", table.get("stride", 1))
        ph, pw = self.pair(where, "padding", table.get("padding", 0), minimum=0)
        square = kh == kw and sh == sw and ph == pw
        for pad, kern, axis in ((ph, kh, "height"), (pw, kw, "width")):
            if pad >= kern:
                detail = "" if square else f" along the {axis}"
                raise self.fail(where, "padding", f"got {pad}, expected less than kernel ({kern}){detail}")
        padded_h, padded_w = source.out_h + 2 * ph, source.out_w + 2 * pw
        if kh > padded_h or kw > padded_w:
            shown = str(kh) if kh == kw else f"[{kh}, {kw}]"
            padding = str(ph) if ph == pw else f"[{ph}, {pw}]"
            raise self.fail(
                where, "kernel",
                f"got {shown}, larger than the padded input {padded_h}x{padded_w} "
                f"({source.name!r} is {source.out_h}x{source.out_w}, padding {padding})",
            )
        return {
            "out_h": (padded_h - kh) // sh + 1, "out_w": (padded_w - kw) // sw + 1,
            "kernel": kh, "stride": sh, "padding": ph,
            "kernel_w": None if kw == kh else kw, "stride_w": None if sw == sh else sw,
            "padding_w": None if pw == ph else pw,
        }

    def conv(self, where: str, table: dict[str, Any], source: Layer, common: dict[str, Any]) -> Layer:
        """A conv layer: kernel, stride, padding and groups validated, output shape inferred."""
        out_channels = self.positive_int(
            where, "out_channels", self.require(where, table, "out_channels", "a conv"), maximum=CHANNELS_MAX
        )
        geometry = self.window(where, table, source, "a conv")
        groups = self.positive_int(where, "groups", table.get("groups", 1))
        if source.out_channels % groups or out_channels % groups:
            raise self.fail(
                where, "groups",
                f"got {groups}, which must divide both the input channels ({source.out_channels}, from "
                f"{source.name!r}) and out_channels ({out_channels})",
            )
        return Layer(out_channels=out_channels, groups=groups, **geometry, **common)

    def pool(self, where: str, table: dict[str, Any], source: Layer, common: dict[str, Any]) -> Layer:
        """A maxpool or local avgpool: window validated, channels kept."""
        geometry = self.window(where, table, source, f"a {common['kind']}")
        return Layer(out_channels=source.out_channels, **geometry, **common)

    def avgpool(self, where: str, table: dict[str, Any], source: Layer, common: dict[str, Any]) -> Layer:
        """A global avgpool (no window keys, or ``global = true``) or a local one (``kernel`` given)."""
        window_keys = [k for k in POOL_WINDOW_KEYS if k in table]
        is_global = self.boolean(where, "global", table.get("global", not window_keys))
        if is_global:
            if window_keys:
                raise self.fail(where, window_keys[0], "not allowed with global = true (a global avgpool has no window)")
            return Layer(out_h=1, out_w=1, out_channels=source.out_channels, **common)
        count_pad = self.boolean(where, "count_include_pad", table.get("count_include_pad", False))
        geometry = self.window(where, table, source, "a local avgpool (global = false)")
        return Layer(out_channels=source.out_channels, count_include_pad=count_pad, **geometry,
                     **{**common, "kind": LayerKind.LOCAL_AVGPOOL})

    def concat(self, where: str, key: str, sources: list[Layer], common: dict[str, Any]) -> Layer:
        """A concat along channels: every input has the first one's H x W."""
        first = sources[0]
        for other in sources[1:]:
            if (other.out_h, other.out_w) != (first.out_h, first.out_w):
                raise self.fail(
                    where, key,
                    f"sizes differ: {first.name!r} is {_shape(first)} (HxWxC) but {other.name!r} is "
                    f"{_shape(other)}; a concat (along channels) needs equal H x W",
                )
        channels = sum(src.out_channels for src in sources)
        if channels > INT_MAX:
            raise self.fail(where, key, f"{channels:,} channels, at most {INT_MAX:,}")
        return Layer(out_h=first.out_h, out_w=first.out_w, out_channels=channels, **common)
