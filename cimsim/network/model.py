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
from cimsim.network.layers import Layer, Network

TOP_KEYS: tuple[str, ...] = ("name", "description", "bits", "input", "layers")
"""Keys allowed at the top level of a model file."""
INPUT_KEYS: tuple[str, ...] = ("name", "height", "width", "channels")
"""Keys allowed in the ``[input]`` table."""
LAYER_TYPES: dict[str, tuple[str, ...]] = {
    "conv": ("out_channels", "kernel", "stride", "padding", "relu"),
    "add": ("relu",),
    "avgpool": (),
    "fc": ("out_features", "relu"),
}
"""Layer type -> keys it accepts besides ``name``, ``type`` and ``input``/``inputs``."""
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

    Raises `InputError` (one-line message) for a missing or unreadable file,
    malformed TOML, or any invalid key, value, reference or shape.
    """
    path = Path(path)
    source = str(path)
    data = parse_toml(read_limited(path, "model"), path)
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
        return InputError(_one_line(": ".join(parts + [problem])))

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
            name=name, kind="input", inputs=(),
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
            return Layer(out_h=1, out_w=1, out_channels=first.out_channels, **common)
        # fc
        if (first.out_h, first.out_w) != (1, 1):
            raise self.fail(
                where, key,
                f"{first.name!r} produces {_shape(first)} (HxWxC), an fc needs a 1x1 input "
                "(put an avgpool before it)",
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
            hint = "inputs = [main, residual]" if kind == "add" else "input = \"<layer>\""
            raise self.fail(where, "input", f"missing required key 'input' or 'inputs' ({hint})")
        key = "input" if has_one else "inputs"
        value = table[key]
        if has_one:
            producers = [self.name_str(where, key, value)]
        else:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise self.fail(where, key, f"got {_describe(value)}, expected an array of layer names")
            producers = list(value)
        if len(producers) != expected:
            need = "exactly 2 inputs [main, residual]" if kind == "add" else "exactly 1 input"
            article = "a" if kind == "conv" else "an"
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
            raise self.fail(where, key, f"got {producers!r}; an add needs two different layers")
        return key, producers

    def conv(self, where: str, table: dict[str, Any], source: Layer, common: dict[str, Any]) -> Layer:
        """A conv layer: kernel, stride and padding validated, output shape inferred."""
        out_channels = self.positive_int(
            where, "out_channels", self.require(where, table, "out_channels", "a conv"), maximum=CHANNELS_MAX
        )
        kernel = self.positive_int(where, "kernel", self.require(where, table, "kernel", "a conv"))
        stride = self.positive_int(where, "stride", table.get("stride", 1))
        padding = self.positive_int(where, "padding", table.get("padding", 0), minimum=0)
        if padding >= kernel:
            raise self.fail(where, "padding", f"got {padding}, expected less than kernel ({kernel})")
        padded_h, padded_w = source.out_h + 2 * padding, source.out_w + 2 * padding
        if kernel > min(padded_h, padded_w):
            raise self.fail(
                where, "kernel",
                f"got {kernel}, larger than the padded input {padded_h}x{padded_w} "
                f"({source.name!r} is {source.out_h}x{source.out_w}, padding {padding})",
            )
        return Layer(
            out_h=(padded_h - kernel) // stride + 1,
            out_w=(padded_w - kernel) // stride + 1,
            out_channels=out_channels,
            kernel=kernel, stride=stride, padding=padding,
            **common,
        )
