"""int8 parameters, the numpy reference, and the chip arithmetic (LayerMath) against it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cimsim.errors import InputError
from cimsim.functional import (
    COUNTERS,
    CrossbarConfig,
    LayerMath,
    LayerParams,
    build_layer_maths,
    chip_forward,
    conv_accumulate,
    load_images,
    load_params,
    make_images,
    make_params,
    reference_forward,
    requantise,
    save_params,
    windows,
)
from cimsim.functional.chip_math import all_positions
from cimsim.functional.reference import global_avgpool, saturating_add
from cimsim.network.layers import Layer, Network
from cimsim.network.model import load_model

MODEL = Path(__file__).resolve().parents[1] / "models" / "resnet32_cifar10.toml"


@pytest.fixture(scope="module")
def resnet():
    net = load_model(MODEL)
    params = make_params(net, 0)
    images = make_images(net, 2, 0)
    return net, params, images, reference_forward(net, params, images)


# ---------------------------------------------------------------- reference


def _naive_conv(x, w, stride, padding):
    b, h, wd, _ = x.shape
    k, _, _, cout = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho, wo = (h + 2 * padding - k) // stride + 1, (wd + 2 * padding - k) // stride + 1
    out = np.zeros((b, ho, wo, cout), dtype=np.int64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j, :] = np.einsum("bykc,ykco->bo", patch, w.astype(np.int64))
    return out


@pytest.mark.parametrize("k, stride, padding", [(3, 1, 1), (3, 2, 1), (1, 2, 0), (1, 1, 0), (5, 2, 2)])
def test_conv_accumulate_matches_naive_loops(k, stride, padding):
    rng = np.random.default_rng(k * 10 + stride)
    x = rng.integers(-128, 128, (2, 9, 7, 5)).astype(np.int8)
    w = rng.integers(-128, 128, (k, k, 5, 4)).astype(np.int8)
    acc = conv_accumulate(x, w, stride, padding)
    assert acc.dtype == np.int32
    assert np.array_equal(acc, _naive_conv(x, w, stride, padding))


def test_requantise_rounds_half_up_and_saturates():
    p = LayerParams(
        np.zeros((1, 1, 1, 3), np.int8), np.array([0, 1, 0], np.int32), np.array([1, 1, 3], np.int32), 2
    )
    acc = np.array([[2, -3, 1000], [-2, 5, -1000], [6, -7, 1]], dtype=np.int32)
    # (acc + bias) * mult / 4 rounded half up: 0.5->1, -0.5->0, 1.5->2, -1.5->-1
    out = requantise(acc, p, relu=False)
    assert out.tolist() == [[1, 0, 127], [0, 2, -128], [2, -1, 1]]
    assert requantise(acc, p, relu=True).tolist() == [[1, 0, 127], [0, 2, 0], [2, 0, 1]]


def test_avgpool_rounds_half_to_even_and_add_saturates():
    x = np.zeros((1, 2, 2, 4), dtype=np.int8)
    x[0, :, :, 0] = [[1, 1], [0, 0]]  # 0.5 -> 0
    x[0, :, :, 1] = [[1, 1], [1, 0]]  # 0.75 -> 1
    x[0, :, :, 2] = [[3, 3], [0, 0]]  # 1.5 -> 2
    x[0, :, :, 3] = [[-3, -3], [0, 0]]  # -1.5 -> -2
    assert global_avgpool(x).reshape(-1).tolist() == [0, 1, 2, -2]
    a = np.array([100, -100, 5], dtype=np.int8)
    b = np.array([100, -100, -9], dtype=np.int8)
    assert saturating_add(a, b, relu=False).tolist() == [127, -128, -4]
    assert saturating_add(a, b, relu=True).tolist() == [127, 0, 0]


# ---------------------------------------------------------------- parameters and images


def test_make_params_is_deterministic_and_realistic(resnet):
    net, params, _, _ = resnet
    again = make_params(net, 0)
    other = make_params(net, 1)
    convs = [layer for layer in net.layers if layer.kind in ("conv", "fc")]
    assert set(params) == {layer.name for layer in convs}
    for layer in convs:
        p = params[layer.name]
        k = layer.kernel if layer.kind == "conv" else 1
        assert p.weights.dtype == np.int8 and p.weights.shape == (k, k, layer.in_channels, layer.out_channels)
        assert p.bias.dtype == np.int32 and p.multiplier.dtype == np.int32
        assert p.bias.shape == p.multiplier.shape == (layer.out_channels,)
        assert np.array_equal(p.weights, again[layer.name].weights) and p.shift == again[layer.name].shift
        # per-channel symmetric quantisation: every channel reaches +-127, most weights are small
        assert (np.abs(p.weights.astype(int)).max(axis=(0, 1, 2)) == 127).all()
        assert np.median(np.abs(p.weights.astype(int))) < 40
    assert not np.array_equal(params["conv5"].weights, other["conv5"].weights)


def test_calibrated_activations_use_int8_without_saturating(resnet):
    net, params, _, _ = resnet
    images = make_images(net, 2, 123)  # not the calibration batch
    out = reference_forward(net, params, images)
    for layer in net.layers[1:]:
        y = out[layer.name].astype(int)
        assert y.dtype == np.int64 and out[layer.name].shape[1:] == (layer.out_h, layer.out_w, layer.out_channels)
        assert np.mean((y == 127) | (y == -128)) < 0.01, layer.name
        if layer.kind == "conv" and layer.relu:
            assert 0.1 < np.mean(y == 0) < 0.9, layer.name
            assert y.std() > 3, layer.name


def test_make_images_are_smooth_int8(resnet):
    net = resnet[0]
    img = make_images(net, 3, 4)
    assert img.dtype == np.int8 and img.shape == (3, 32, 32, 3)
    assert np.array_equal(img, make_images(net, 3, 4))
    f = img.astype(float)
    corr = np.corrcoef(f[:, :, :-1].ravel(), f[:, :, 1:].ravel())[0, 1]
    assert corr > 0.8 and 25 < f.std() < 60


def test_params_and_images_round_trip(tmp_path, resnet):
    net, params, images, _ = resnet
    path = tmp_path / "p.npz"
    save_params(path, params)
    loaded = load_params(path, net)
    for name, p in params.items():
        q = loaded[name]
        assert np.array_equal(p.weights, q.weights) and np.array_equal(p.bias, q.bias)
        assert np.array_equal(p.multiplier, q.multiplier) and p.shift == q.shift
    np.savez(tmp_path / "i.npz", images=images)
    assert np.array_equal(load_images(tmp_path / "i.npz", net), images)


def _params_file(tmp_path, params, **changes):
    arrays = {}
    for name, p in params.items():
        arrays.update({f"{name}.weights": p.weights, f"{name}.bias": p.bias,
                       f"{name}.multiplier": p.multiplier, f"{name}.shift": np.array(p.shift)})
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"conv2__bias": None}, "missing array 'conv2.bias'"),
        ({"conv2__weights": np.zeros((3, 3, 16, 15), np.int8)}, "'conv2.weights' has shape"),
        ({"conv2__weights": np.zeros((3, 3, 16, 16), np.float32)}, "dtype float32"),
        ({"conv2__weights": np.full((3, 3, 16, 16), 300, np.int16)}, "outside int8"),
        ({"conv2__multiplier": -np.ones(16, np.int32)}, "negative"),
        ({"conv2__shift": np.array(70)}, "'conv2.shift' is 70"),
        ({"conv99__weights": np.zeros(1, np.int8)}, "unexpected array 'conv99.weights'"),
    ],
)
def test_load_params_errors_are_one_line_and_name_the_array(tmp_path, resnet, change, message):
    net, params, _, _ = resnet
    path = _params_file(tmp_path, params, **change)
    with pytest.raises(InputError) as info:
        load_params(path, net)
    assert message in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_errors_for_files_and_images(tmp_path, resnet):
    net = resnet[0]
    with pytest.raises(InputError, match="file not found"):
        load_params(tmp_path / "nope.npz", net)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(InputError, match=r"not an \.npz archive"):
        load_params(tmp_path / "junk.npz", net)
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(InputError, match=r"not an \.npz archive"):
        load_params(tmp_path / "a.npy", net)
    np.savez(tmp_path / "i.npz", images=np.zeros((2, 32, 32, 4), np.int8))
    with pytest.raises(InputError, match="'images' has shape"):
        load_images(tmp_path / "i.npz", net)
    np.savez(tmp_path / "j.npz", pictures=np.zeros((2, 32, 32, 3), np.int8))
    with pytest.raises(InputError, match="missing array 'images'"):
        load_images(tmp_path / "j.npz", net)


# ---------------------------------------------------------------- windows and LayerMath


def test_windows_match_im2col_with_stride_and_padding():
    from cimsim.functional.reference import im2col

    rng = np.random.default_rng(0)
    act = rng.integers(-128, 128, (9, 8, 3)).astype(np.int8)
    cols = im2col(act[None], 3, 2, 1)[0]
    pos = [(r, c) for r in range(cols.shape[0]) for c in range(cols.shape[1])]
    win = windows(act, pos, 3, 2, 1)
    assert win.dtype == np.int8 and win.shape == (len(pos), 27)
    assert np.array_equal(win, cols.reshape(-1, 27))
    assert np.array_equal(windows(act, [(0, 0)], 3, 1, 1)[0].reshape(3, 3, 3)[0], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="outside"):
        windows(act, [(9, 0)], 3, 1, 1)


def test_layer_math_row_split_and_residual_finish():
    rng = np.random.default_rng(2)
    layer = Layer("c", "conv", ("x",), 6, 6, 30, 6, 6, 20, kernel=3, stride=1, padding=1, relu=False)
    w = np.clip(np.rint(rng.laplace(0, 20, (3, 3, 30, 20))), -127, 127).astype(np.int8)
    p = LayerParams(w, rng.integers(-500, 500, 20).astype(np.int32), np.full(20, 3000, np.int32), 16)
    act = np.clip(np.rint(rng.exponential(10, (6, 6, 30))), 0, 127).astype(np.int8)
    acc_ref = conv_accumulate(act[None], w, 1, 1)[0].reshape(36, 20)
    win = windows(act, all_positions(layer), 3, 1, 1)
    cfg = CrossbarConfig(512, 256, adc_bits=12, policy="always")
    for parts, rows in [(1, 270), (2, 135), (3, 100), (11, 25)]:
        lm = LayerMath(layer, p, cfg, parts, rows)
        res = lm.compute(win)
        assert np.array_equal(res.acc, acc_ref), parts
        assert res.crossbar_cycles == 11 and res.mvms == 36 * parts
        assert res.column_mvms == 36 * parts * 20 * 3
    residual = rng.integers(-128, 128, (36, 20)).astype(np.int8)
    expected = saturating_add(requantise(acc_ref, p, relu=False), residual, relu=True)
    assert np.array_equal(lm.finish(res.acc, True, residual), expected)
    assert np.array_equal(lm.finish(res.acc), requantise(acc_ref, p, relu=False))
    narrow = LayerMath(layer, p, CrossbarConfig(256, 8, adc_bits=12), 2, 135)  # 20 columns over 3 crossbars
    assert len(narrow.parts) == 6 and np.array_equal(narrow.compute(win).acc, acc_ref)
    with pytest.raises(ValueError, match="cannot be split"):
        LayerMath(layer, p, cfg, 1, 256)
    with pytest.raises(ValueError, match="cannot be split"):
        LayerMath(layer, p, cfg, 4, 135)


# ---------------------------------------------------------------- the chip against the reference


def _layerwise(net, params, images, ref, cfg, xbar_rows=256):
    """Every conv/fc on the reference's inputs; returns (clipped converts, mismatching values) per layer."""
    maths = build_layer_maths(net, params, cfg, xbar_rows)
    report = {}
    for layer in net.layers:
        if layer.kind not in ("conv", "fc"):
            continue
        lm = maths[layer.name]
        stride, padding = (layer.stride, layer.padding) if layer.kind == "conv" else (1, 0)
        clipped = mismatches = 0
        for i in range(images.shape[0]):
            src = ref[layer.inputs[0]][i]
            res = lm.compute(windows(src, all_positions(layer), lm.kernel, stride, padding))
            exact = conv_accumulate(src[None], params[layer.name].weights, stride, padding)[0]
            exact = exact.reshape(-1, layer.out_channels)
            # exact wherever no accepted conversion clipped
            assert np.array_equal(res.acc[~res.clipped_mask], exact[~res.clipped_mask]), layer.name
            out = lm.finish(res.acc).reshape(ref[layer.name][i].shape)
            consumers = [c for c in net.consumers(layer.name) if net.layer(c).kind == "add"]
            for add_name in consumers:
                add = net.layer(add_name)
                if add.inputs[0] == layer.name:
                    residual = ref[add.inputs[1]][i].reshape(-1, layer.out_channels)
                    fused = lm.finish(res.acc, add.relu, residual).reshape(ref[add_name][i].shape)
                    mismatches += int((fused != ref[add_name][i]).sum())
            clipped += res.clipped_converts
            mismatches += int((out != ref[layer.name][i]).sum())
        if clipped == 0:
            assert mismatches == 0, layer.name
        report[layer.name] = (clipped, mismatches)
    return report


@pytest.mark.parametrize("policy", ["off", "always"])
def test_resnet32_layers_match_reference_unless_saturation_was_accepted(resnet, policy):
    net, params, images, ref = resnet
    report = _layerwise(net, params, images[:1], {k: v[:1] for k, v in ref.items()}, CrossbarConfig(256, 256, policy=policy))
    clipped = sum(c for c, _ in report.values())
    wrong = sum(m for _, m in report.values())
    print(f"\nResNet-32 layer by layer, policy {policy}: {clipped} clipped conversions, {wrong} mismatching int8 values")
    assert wrong <= 2 * clipped  # a clipped psum changes at most its output and its fused add
    assert sum(1 for c, _ in report.values() if c == 0) >= 25  # most layers bit-exact


def test_resnet32_end_to_end_bit_exact_without_accepted_saturation(resnet):
    """The whole chip path on its own outputs equals the reference when no conversion clipped (8-bit ADC)."""
    net, params, images, ref = resnet
    cfg = CrossbarConfig(256, 256, adc_bits=8, policy="always")
    out, results = chip_forward(net, params, images[0], cfg, 256)
    clipped = sum(r.clipped_converts for r in results.values())
    wrong = sum(int((out[layer.name][0] != ref[layer.name][0]).sum()) for layer in net.layers)
    print(f"\nResNet-32 end to end, 8-bit ADC: {clipped} clipped conversions, {wrong} mismatching values")
    assert (wrong == 0) == (clipped == 0)
    assert clipped == 0  # seed 0: no 8-bit ADC saturation is accepted, so the chip is bit-exact
    # 7-bit ADC: saturations are rare but propagate; report them
    out7, res7 = chip_forward(net, params, images[0], CrossbarConfig(256, 256), 256)
    clipped7 = sum(r.clipped_converts for r in res7.values())
    wrong7 = sum(int((out7[layer.name][0] != ref[layer.name][0]).sum()) for layer in net.layers)
    print(f"ResNet-32 end to end, 7-bit ADC: {clipped7} clipped conversions, {wrong7} mismatching values")
    assert (wrong7 == 0) == (clipped7 == 0)


def _random_network(rng) -> Network:
    h = int(rng.integers(5, 10))
    c0, c1, c2 = (int(v) for v in rng.integers(2, 12, 3))
    s = int(rng.integers(1, 3))
    h2 = (h + 2 - 3) // s + 1
    layers = [
        Layer("x", "input", (), h, h, c0, h, h, c0),
        Layer("a", "conv", ("x",), h, h, c0, h, h, c1, kernel=3, stride=1, padding=1, relu=True),
        Layer("b", "conv", ("a",), h, h, c1, h, h, c1, kernel=3, stride=1, padding=1, relu=False),
        Layer("ab", "add", ("b", "a"), h, h, c1, h, h, c1, relu=True),
        Layer("d", "conv", ("ab",), h, h, c1, h2, h2, c2, kernel=3, stride=s, padding=1, relu=True),
        Layer("p", "avgpool", ("d",), h2, h2, c2, 1, 1, c2),
        Layer("f", "fc", ("p",), 1, 1, c2, 1, 1, 7, relu=False),
    ]
    return Network.from_layers("random", layers)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_small_random_networks_match_reference(seed):
    rng = np.random.default_rng(seed)
    net = _random_network(rng)
    params = make_params(net, seed)
    images = make_images(net, 2, seed + 100)
    ref = reference_forward(net, params, images)
    xbar_rows = int(rng.integers(8, 40))  # forces row splits
    for policy in ("off", "always", "on_failure"):
        cfg = CrossbarConfig(64, 64, policy=policy, weight_encoding=("differential", "center_offset")[seed % 2])
        _layerwise(net, params, images, ref, cfg, xbar_rows)
        maths = build_layer_maths(net, params, cfg, xbar_rows)
        for i in range(2):
            out, results = chip_forward(net, params, images[i], cfg, xbar_rows, maths)
            clipped = sum(r.clipped_converts for r in results.values())
            if clipped == 0:
                for layer in net.layers:
                    assert np.array_equal(out[layer.name][0], ref[layer.name][i]), (policy, layer.name)
            if policy == "on_failure":
                assert all(r.crossbar_cycles in (3, 11) for r in results.values())


# ---------------------------------------------------------------- speculation statistics


def _totals(results):
    tot = dict.fromkeys(COUNTERS, 0)
    for r in results.values():
        for name in COUNTERS:
            tot[name] += getattr(r, name)
    return tot


def test_resnet32_speculation_statistics(resnet):
    """Center+Offset, 4b-2b-2b weights, 4b-2b-2b speculation, 7-bit ADC, 256-row crossbars (seed 0, 2 images).

    RAELLA reports ~98 % speculation success, ~60 % fewer converts than recovery-only
    and ~3 speculative + 0.3 recovery converts per column (thesis 3.4, 4.3.2, 7.2).
    """
    net, params, images, _ = resnet
    stats = {}
    for policy in ("always", "off"):
        cfg = CrossbarConfig(256, 256, policy=policy)
        maths = build_layer_maths(net, params, cfg, 256)
        runs = [chip_forward(net, params, images[i], cfg, 256, maths)[1] for i in range(images.shape[0])]
        stats[policy] = _totals({f"{i}.{k}": v for i, r in enumerate(runs) for k, v in r.items()})
    spec, off = stats["always"], stats["off"]
    cm = spec["column_mvms"]
    success_sums = 1 - spec["failed_slices"] / (3 * cm)
    success_columns = 1 - spec["failed_columns"] / cm
    converts = spec["adc_converts"] / cm
    saving = 1 - spec["adc_converts"] / off["adc_converts"]
    print(
        f"\nspeculation success {success_sums:.4f} per column sum, {success_columns:.4f} per column-MVM; "
        f"converts/column/MVM {converts:.3f} (3 + {spec['recovery_converts'] / cm:.3f}) vs 8.000 off "
        f"({saving:.1%} fewer); MVMs needing recovery {spec['recovery_mvms'] / spec['mvms']:.3f}"
    )
    assert off["adc_converts"] == 8 * off["column_mvms"]
    assert 0.96 < success_sums < 0.995
    assert 0.9 < success_columns < success_sums
    assert 3.0 < converts < 3.5 and spec["speculative_converts"] == 3 * cm
    assert 0.55 < saving < 0.625
