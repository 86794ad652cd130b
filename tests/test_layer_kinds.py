"""The layer kinds beyond conv/add/global avgpool/fc: model format, numpy reference, parameters and
the mapper's refusal of what the simulated cores cannot run yet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cimsim.cli import main
from cimsim.errors import InputError
from cimsim.functional.reference import (
    conv_accumulate,
    local_avgpool,
    maxpool,
    reference_forward,
)
from cimsim.functional.weights import (
    float_layer,
    load_params,
    make_images,
    make_params,
    save_params,
    weight_shape,
)
from cimsim.network import Layer, load_model
from cimsim.network.layers import LayerKind
from cimsim.runner import run_scenario

# -- naive loops, the ground truth of the vectorised reference -------------------------


def naive_conv(x, w, stride, padding, groups):
    """Direct loops: x (B, H, W, C_in) int, w (kh, kw, C_in/g, C_out)."""
    b, h, wd, _ = x.shape
    kh, kw, cin_g, cout = w.shape
    (sh, sw), (ph, pw) = stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    cout_g = cout // groups
    out = np.zeros((b, ho, wo, cout), dtype=np.int64)
    for oy in range(ho):
        for ox in range(wo):
            for o in range(cout):
                g = o // cout_g
                acc = np.zeros(b, dtype=np.int64)
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = oy * sh + ky - ph, ox * sw + kx - pw
                        if 0 <= iy < h and 0 <= ix < wd:
                            for c in range(cin_g):
                                acc += x[:, iy, ix, g * cin_g + c].astype(np.int64) * int(w[ky, kx, c, o])
                out[:, oy, ox, o] = acc
    return out


def naive_pool(x, kernel, stride, padding, op, count_include_pad=False):
    b, h, wd, c = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((b, ho, wo, c), dtype=np.int64)
    for n in range(b):
        for oy in range(ho):
            for ox in range(wo):
                for ch in range(c):
                    vals = [int(x[n, iy, ix, ch]) for ky in range(kh) for kx in range(kw)
                            if 0 <= (iy := oy * sh + ky - ph) < h and 0 <= (ix := ox * sw + kx - pw) < wd]
                    if op == "max":
                        out[n, oy, ox, ch] = max(vals)
                    else:
                        count = kh * kw if count_include_pad else len(vals)
                        # round half to even, with exact fractions
                        from fractions import Fraction
                        out[n, oy, ox, ch] = round(Fraction(sum(vals), count))
    return out


@pytest.mark.parametrize(("kernel", "stride", "padding", "groups", "cin", "cout"), [
    ((3, 3), (1, 1), (1, 1), 4, 4, 4),      # depthwise
    ((3, 3), (2, 2), (1, 1), 4, 4, 8),      # depthwise, channel multiplier 2
    ((3, 1), (1, 1), (1, 0), 1, 3, 5),      # non-square kernel
    ((1, 3), (2, 1), (0, 1), 2, 4, 6),      # grouped, non-square stride and padding
    ((2, 3), (1, 2), (1, 2), 3, 6, 3),
])
def test_grouped_and_non_square_conv_match_naive_loops(kernel, stride, padding, groups, cin, cout):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=(2, 7, 6, cin), dtype=np.int8)
    w = rng.integers(-127, 128, size=(*kernel, cin // groups, cout), dtype=np.int8)
    got = conv_accumulate(x, w, stride, padding, groups)
    np.testing.assert_array_equal(got, naive_conv(x, w, stride, padding, groups))


@pytest.mark.parametrize(("kernel", "stride", "padding"), [
    ((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 0)), ((3, 3), (1, 1), (2, 1)),
])
def test_pools_match_naive_loops(kernel, stride, padding):
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, size=(2, 7, 8, 3), dtype=np.int8)
    np.testing.assert_array_equal(maxpool(x, kernel, stride, padding), naive_pool(x, kernel, stride, padding, "max"))
    for include in (False, True):
        np.testing.assert_array_equal(local_avgpool(x, kernel, stride, padding, include),
                                      naive_pool(x, kernel, stride, padding, "avg", include))


def test_local_avgpool_rounds_half_to_even_and_maxpool_ignores_padding():
    x = np.array([1, 2, 3, 4, -1, -2, -3, -4], dtype=np.int8).reshape(1, 1, 8, 1)
    # windows of 2: 1.5 -> 2, 3.5 -> 4, -1.5 -> -2, -3.5 -> -4
    assert local_avgpool(x, (1, 2), (1, 2), 0).ravel().tolist() == [2, 4, -2, -4]
    # padding counts only with count_include_pad: [pad, 1, 2] / 2 = 0.5 -> 0 ; / 3 -> 1
    y = np.array([1, 2], dtype=np.int8).reshape(1, 1, 2, 1)
    assert local_avgpool(y, (1, 3), (1, 1), (0, 1), True).ravel().tolist() == [1, 1]
    assert local_avgpool(y, (1, 3), (1, 1), (0, 1), False).ravel().tolist() == [2, 2]  # 1.5 -> 2, 1.5 -> 2
    neg = np.full((1, 2, 2, 1), -100, dtype=np.int8)
    assert maxpool(neg, 3, 1, 1).ravel().tolist() == [-100] * 4
    assert maxpool(neg, 3, 1, 1, relu=True).ravel().tolist() == [0] * 4


# -- the model format ----------------------------------------------------------------

ZOO_LIKE = """\
name = "kinds"
[input]
height = 12
width = 10
channels = 3

[[layers]]
name = "stem"
type = "conv"
input = "input"
out_channels = 8
kernel = [3, 1]
padding = [1, 0]
relu = true

[[layers]]
name = "mp"
type = "maxpool"
input = "stem"
kernel = 2
stride = 2

[[layers]]
name = "dw"
type = "conv"
input = "mp"
out_channels = 8
kernel = 3
padding = 1
groups = 8
relu = true

[[layers]]
name = "pw"
type = "conv"
input = "dw"
out_channels = 4
kernel = 1
groups = 2

[[layers]]
name = "cat"
type = "concat"
inputs = ["pw", "mp"]

[[layers]]
name = "ap"
type = "avgpool"
input = "cat"
kernel = 3
stride = [2, 1]
padding = 1

[[layers]]
name = "flat"
type = "flatten"
input = "ap"

[[layers]]
name = "fc"
type = "fc"
input = "flat"
out_features = 5
"""


def write(tmp_path: Path, text: str, name: str = "model.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_new_kind_loads_with_its_shape(tmp_path):
    net = load_model(write(tmp_path, ZOO_LIKE))
    kinds = {layer.name: layer.kind for layer in net.layers}
    assert kinds["mp"] == LayerKind.MAXPOOL and kinds["ap"] == LayerKind.LOCAL_AVGPOOL
    assert kinds["flat"] == LayerKind.FLATTEN and kinds["cat"] == LayerKind.CONCAT
    stem = net.layer("stem")
    assert (stem.kernel_hw, stem.padding_hw, stem.out_h, stem.out_w) == ((3, 1), (1, 0), 12, 10)
    assert stem.kernel_rows == 9 and not stem.is_square
    assert (net.layer("mp").out_h, net.layer("mp").out_w) == (6, 5)
    dw = net.layer("dw")
    assert dw.is_depthwise and weight_shape(dw) == (3, 3, 1, 8) and dw.kernel_rows == 72
    assert weight_shape(net.layer("pw")) == (1, 1, 4, 4) and not net.layer("pw").is_depthwise
    assert net.layer("cat").out_channels == 12
    ap = net.layer("ap")
    assert (ap.out_h, ap.out_w, ap.out_channels, ap.stride_hw) == (3, 5, 12, (2, 1))
    assert net.layer("flat").out_channels == 3 * 5 * 12 and net.layer("fc").kernel_rows == 180
    assert list(net.graph.predecessors("cat")) == ["pw", "mp"]


def test_existing_layers_keep_their_fields():
    old = Layer(name="c", kind="conv", inputs=("i",), in_h=8, in_w=8, in_channels=3, out_h=8, out_w=8,
                out_channels=4, kernel=3, stride=1, padding=1)
    assert (old.kernel_hw, old.stride_hw, old.padding_hw, old.groups) == ((3, 3), (1, 1), (1, 1), 1)
    assert old.is_square and old.kernel_rows == 27 and old.kernel_cols == 4


HEAD = 'name = "bad"\n[input]\nheight = 8\nwidth = 8\nchannels = 4\n'


from harness import layer

BAD = [
    ("dilation", layer(name='"c"', type='"conv"', input='"input"', out_channels="4", kernel="3", dilation="2"),
     ["('c')", "'dilation'", "not supported"]),
    ("ceil_mode", layer(name='"p"', type='"maxpool"', input='"input"', kernel="2", ceil_mode="true"),
     ["('p')", "'ceil_mode'", "not supported"]),
    ("groups not dividing", layer(name='"c"', type='"conv"', input='"input"', out_channels="6", kernel="1",
                                  groups="4"), ["'groups'", "got 4", "divide"]),
    ("kernel pair of 3", layer(name='"c"', type='"conv"', input='"input"', out_channels="4", kernel="[3, 3, 3]"),
     ["'kernel'", "[height, width]"]),
    ("zero in pair", layer(name='"c"', type='"conv"', input='"input"', out_channels="4", kernel="[3, 0]"),
     ["'kernel'", "got 0"]),
    ("padding >= kernel along W", layer(name='"c"', type='"conv"', input='"input"', out_channels="4",
                                        kernel="[3, 1]", padding="[1, 1]"), ["'padding'", "along the width"]),
    ("maxpool without kernel", layer(name='"p"', type='"maxpool"', input='"input"'), ["'kernel'", "missing"]),
    ("global avgpool with kernel", layer(name='"p"', type='"avgpool"', input='"input"', kernel="2",
                                         **{"global": "true"}), ["'kernel'", "global = true"]),
    ("local avgpool without kernel", layer(name='"p"', type='"avgpool"', input='"input"', **{"global": "false"}),
     ["'kernel'", "missing", "local avgpool"]),
    ("concat of one", layer(name='"k"', type='"concat"', inputs='["input"]'), ["'k'", "2 or more"]),
    ("concat sizes differ", layer(name='"p"', type='"maxpool"', input='"input"', kernel="2", stride="2")
     + layer(name='"k"', type='"concat"', inputs='["p", "input"]'), ["'k'", "4x4x4", "8x8x4", "equal H x W"]),
    ("concat twice the same", layer(name='"k"', type='"concat"', inputs='["input", "input"]'), ["different"]),
    ("relu on flatten", layer(name='"f"', type='"flatten"', input='"input"', relu="true"), ["'relu'", "unknown"]),
    ("fc on a map", layer(name='"f"', type='"fc"', input='"input"', out_features="3"), ["flatten"]),
]


@pytest.mark.parametrize(("text", "fragments"), [(t, f) for _, t, f in BAD], ids=[b[0] for b in BAD])
def test_bad_new_keys_are_one_line_errors(tmp_path, text, fragments):
    with pytest.raises(InputError) as info:
        load_model(write(tmp_path, HEAD + text))
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# -- parameters and the reference forward pass ---------------------------------------


def test_make_params_and_reference_on_every_kind(tmp_path):
    net = load_model(write(tmp_path, ZOO_LIKE))
    params = make_params(net, seed=3)
    again = make_params(net, seed=3)
    for name, p in params.items():
        assert p.weights.shape == weight_shape(net.layer(name))
        np.testing.assert_array_equal(p.weights, again[name].weights)
    save_params(tmp_path / "w.npz", params)
    loaded = load_params(tmp_path / "w.npz", net)
    images = make_images(net, 4, seed=5)
    out = reference_forward(net, params, images)
    same = reference_forward(net, loaded, images)
    for lay in net.layers:
        assert out[lay.name].shape == (4, lay.out_h, lay.out_w, lay.out_channels), lay.name
        assert out[lay.name].dtype == np.int8
        np.testing.assert_array_equal(out[lay.name], same[lay.name])
    np.testing.assert_array_equal(out["flat"], out["ap"].reshape(4, 1, 1, -1))
    np.testing.assert_array_equal(out["cat"][..., :4], out["pw"])
    np.testing.assert_array_equal(out["cat"][..., 4:], out["mp"])
    assert (out["dw"] >= 0).all() and (out["stem"] >= 0).all()
    assert np.abs(out["fc"].astype(int)).max() > 20  # the calibrated logits use the int8 range


def test_int8_reference_tracks_the_float_network(tmp_path):
    """Quantising real weights with scales calibrated on a float forward pass gives an int8 network
    whose dequantised outputs follow the float one: the shared scales of pools, flatten and concat
    are consistent with the reference semantics."""
    from cimsim.functional.weights import IMAGE_STD, calibrate_scales, quantise_params

    net = load_model(write(tmp_path, ZOO_LIKE))
    rng = np.random.default_rng(0)
    images = make_images(net, 32, seed=9)
    real = {net.input_layer.name: images / IMAGE_STD}
    w_real, b_real = {}, {}
    for lay in net.layers[1:]:
        x = [real[n] for n in lay.inputs]
        if lay.kind in ("conv", "fc"):
            shape = weight_shape(lay)
            fan_in = shape[0] * shape[1] * shape[2]
            w_real[lay.name] = rng.normal(0, np.sqrt(2 / fan_in), size=shape)
            b_real[lay.name] = rng.normal(0, 0.1, size=shape[3])
            real[lay.name] = float_layer(lay, x, w_real[lay.name], b_real[lay.name])
        else:
            real[lay.name] = float_layer(lay, x)
    scales = calibrate_scales(net, real, {net.input_layer.name: 1 / IMAGE_STD})
    assert scales["cat"] == scales["pw"] == scales["mp"] == scales["ap"] == scales["flat"] == scales["stem"]
    params = quantise_params(net, w_real, b_real, scales)
    ref = reference_forward(net, params, images)
    for name in ("stem", "dw", "cat", "ap", "fc"):
        deq = ref[name].astype(float) * scales[name]
        err = np.linalg.norm(deq - real[name]) / np.linalg.norm(real[name])
        assert err < 0.1, (name, err)


# -- the mapper refuses what the cores cannot run yet ----------------------------------


@pytest.mark.parametrize(("model", "stage"), [
    (HEAD + layer(name='"c"', type='"conv"', input='"input"', out_channels="4", kernel="3", padding="1")
     + layer(name='"p"', type='"maxpool"', input='"c"', kernel="2", stride="2"), ("p", "digital")),
    (HEAD + layer(name='"c"', type='"conv"', input='"input"', out_channels="4", kernel="3", padding="1",
                  groups="4"), ("c", "crossbar")),
    (HEAD + layer(name='"c"', type='"conv"', input='"input"', out_channels="4", kernel="[3, 1]"), ("c", "crossbar")),
    (HEAD + layer(name='"c"', type='"conv"', input='"input"', out_channels="4", kernel="1")
     + layer(name='"f"', type='"flatten"', input='"c"') + layer(name='"o"', type='"fc"', input='"f"',
                                                               out_features="2"), ("o", "digital")),
    (HEAD.replace("height = 8\nwidth = 8", "height = 1\nwidth = 1") + layer(
        name='"o"', type='"fc"', input='"input"', out_features="2"), ("o", "digital")),
])
def test_new_kinds_run_on_the_simulated_cores(tmp_path, capsys, model, stage):
    """What the mapper once refused now runs, on the unit `stage` names (tests/test_stage_timing.py
    derives their timing)."""
    write(tmp_path, model)
    scenario = write(tmp_path, 'model = "model.toml"\n', "s.toml")
    assert main(["run", str(scenario), "--no-trace", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["batch"] == 1
    plan = run_scenario(scenario).record.plan
    assert plan.layers[stage[0]].unit == stage[1]


def test_mlp_runs_with_fc_on_crossbar_and_depthwise_key_validated(tmp_path, capsys):
    write(tmp_path, HEAD.replace("height = 8\nwidth = 8", "height = 1\nwidth = 1")
          + layer(name='"f1"', type='"fc"', input='"input"', out_features="8", relu="true")
          + layer(name='"f2"', type='"fc"', input='"f1"', out_features="2"))
    ok = write(tmp_path, 'model = "model.toml"\n[mapping]\nfc_on = "crossbar"\ndepthwise = "digital"\n', "s.toml")
    assert main(["run", str(ok), "--no-trace", "--json"]) == 0
    capsys.readouterr()
    bad = write(tmp_path, 'model = "model.toml"\n[mapping]\ndepthwise = "dsp"\n', "b.toml")
    assert main(["run", str(bad), "--no-trace"]) == 2
    assert "mapping.depthwise" in capsys.readouterr().err
