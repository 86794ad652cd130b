"""`cimsim sram` and `cimsim replicas`: the input-SRAM placement metrics (Dazzi Table 1) and the
shape of a collective kernel matrix (Dazzi 2.2), as calculators over their command-line options
(or, for `sram`, a scenario's layers). `cimsim.cli` dispatches to them.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from cimsim.cli import METHODS, _ArgumentError, _say

LIMITS = {"--channels": 65_536, "--height": 32_767, "--word-bits": 65_536, "--kernel": 255, "--bits": 64,
          "--c-in": 65_536, "--c-out": 65_536, "--n": 1024, "--dw": 1024, "--stride": 255,
          "--xbar-rows": 1 << 20, "--xbar-cols": 1 << 20}
"""Largest value of each numeric option: beyond these the tables take minutes or exhaust memory
(--n: the Method 2 search is quadratic in the replicas, as in the mapper)."""


MAX_WORK = 1 << 24
"""Largest SRAM table (words) or Method 2 search ((replicas x kernel)^2 steps) the commands build."""


def _positive(option: str, value: str | None, default: int | None = None) -> int:
    """`value` of `option` as a positive integer (`default` when not given) up to LIMITS[option],
    else a one-line error."""
    if value is None:
        if default is None:
            raise _ArgumentError(f"{option} is required")
        return default
    try:
        number = int(value)
    except ValueError:
        raise _ArgumentError(f"{option} {value}: must be a positive integer") from None
    if number < 1:
        raise _ArgumentError(f"{option} {value}: must be a positive integer")
    if number > LIMITS.get(option, number):
        raise _ArgumentError(f"{option} {value}: must be at most {LIMITS[option]:,}")
    return number


def _method(value: str | None) -> str | None:
    if value is not None and value.lower() not in METHODS:
        raise _ArgumentError(f"--method {value}: must be one of {', '.join(METHODS)}")
    return None if value is None else value.lower()


def sram_command(args: argparse.Namespace) -> int:
    """`cimsim sram`: Table 1 metrics of a pixel shape, or a scenario's per-layer needs."""
    method = _method(args.method)
    if args.scenario is not None:
        given = [opt for opt, v in (("--channels", args.channels), ("--height", args.height),
                                    ("--word-bits", args.word_bits), ("--kernel", args.kernel),
                                    ("--bits", args.bits)) if v is not None]
        if given:
            raise _ArgumentError(f"{given[0]}: not with a scenario (the scenario's model and chip set it; "
                                 "use --set chip.sram_word_bits=... for the SRAM)")
        return _sram_scenario(args.scenario, args.set, method, args.json)
    if args.set:
        raise _ArgumentError("--set needs a scenario")
    if args.channels is None and args.height is None and args.word_bits is None:
        raise _ArgumentError("sram: give a SCENARIO, or --channels, --height and --word-bits")
    channels = _positive("--channels", args.channels)
    height = _positive("--height", args.height)
    word_bits = _positive("--word-bits", args.word_bits)
    kernel = _positive("--kernel", args.kernel, 3)
    bits = _positive("--bits", args.bits, 8)
    words = height * kernel * -(-channels * bits // word_bits)
    if words > MAX_WORK:
        raise _ArgumentError(f"--height {height} x --kernel {kernel} pixels of --channels {channels} x --bits {bits} "
                             f"bits take {words:,} words of --word-bits {word_bits}: at most {MAX_WORK:,}")
    return _sram_table(channels, height, word_bits, kernel, bits, method, args.json)


def _sram_table(channels: int, height: int, word_bits: int, kernel: int, bits: int, method: str | None,
                as_json: bool) -> int:
    from cimsim.mapping.sram import format_range, make_layout

    methods = [method] if method else list(METHODS)
    metrics = {m: make_layout(m, channels * bits, height, kernel, word_bits).metrics(kernel) for m in methods}
    if as_json:
        _say(json.dumps({m: t.as_dict() for m, t in metrics.items()}, indent=2))
        return 0
    _say(f"N = {channels}, H = {height}, WL = {word_bits}, F = {kernel}, {bits}-bit activations "
          f"({channels * bits}-bit pixels, H x F = {height * kernel} pixels)")
    _say(f"{'method':<7} {'memory [kB]':>11} {'% empty':>8} {'# read':>8} {'# write':>8}")
    for m, t in metrics.items():
        _say(f"{m.upper():<7} {t.memory_kb:>11.3f} {t.empty_pct:>8.1f} {format_range(t.read_cycles):>8} "
              f"{format_range(t.write_cycles):>8}")
    return 0


def _sram_scenario(path: str, overrides: list[str], method: str | None, as_json: bool) -> int:
    from cimsim.config import load_scenario
    from cimsim.mapping.sram import auto_method, make_layout
    from cimsim.network import load_model

    scenario = load_scenario(path, overrides)
    net = load_model(scenario.model)
    chip = scenario.chip
    sram_kib = chip.sram_word_bits * chip.sram_depth_words / 8 / 1024
    rows: list[dict[str, Any]] = []
    for layer in net.layers:
        if layer.kind != "conv":
            continue
        pixel_bits = layer.in_channels * net.bits
        chosen = method or scenario.mapping.sram_method
        if chosen == "auto":
            chosen = auto_method(pixel_bits, chip.sram_word_bits)
        lay = make_layout(chosen, pixel_bits, layer.in_h, layer.kernel, chip.sram_word_bits)
        rows.append({
            "layer": layer.name, "pixel_bits": pixel_bits, "height": layer.in_h, "kernel": layer.kernel,
            "method": chosen, "data_words": lay.words, "words": lay.total_words,
            "kib": round(lay.total_words * chip.sram_word_bits / 8 / 1024, 3),
            "sram_words": chip.sram_depth_words, "sram_word_bits": chip.sram_word_bits,
            "sram_kib": sram_kib, "fits": lay.total_words <= chip.sram_depth_words,
        })
    if as_json:
        _say(json.dumps(rows, indent=2))
        return 0
    _say(f"scenario {scenario.name}: {net.name}, input SRAM {chip.sram_word_bits} bits x {chip.sram_depth_words} "
          f"words = {sram_kib:g} KiB per core, method {method or scenario.mapping.sram_method}")
    _say("words: H x F input pixels (whole words) + the pre-stored zero pixel; the mapper also reserves a "
          "residual area")
    _say(f"\n{'layer':<8} {'pixel':>6} {'H x F':>7} {'method':>6} {'words':>9} {'KiB':>7}  fits")
    for r in rows:
        words = f"{r['data_words']}+{r['words'] - r['data_words']}"
        _say(f"{r['layer']:<8} {r['pixel_bits']:>6} {str(r['height']) + ' x ' + str(r['kernel']):>7} "
              f"{r['method'].upper():>6} {words:>9} {r['kib']:>7.3f}  {'yes' if r['fits'] else 'NO'}")
    return 0


def replicas_command(args: argparse.Namespace) -> int:
    """`cimsim replicas`: the collective kernel matrix of replicated kernels."""
    from cimsim.mapping.replication import ReplicaShape, best_shape, collective_shape, fits

    c_in = _positive("--c-in", args.c_in)
    c_out = _positive("--c-out", args.c_out)
    kernel = _positive("--kernel", args.kernel)
    n = _positive("--n", args.n)
    dw = _positive("--dw", args.dw, 1)
    stride = _positive("--stride", args.stride, 1)
    xr = _positive("--xbar-rows", args.xbar_rows, 256)
    xc = _positive("--xbar-cols", args.xbar_cols, 256)
    if dw > n:
        raise _ArgumentError(f"--dw {dw}: must be at most --n {n}")
    if (n * kernel) ** 2 > MAX_WORK:
        raise _ArgumentError(f"--n {n} replicas of --kernel {kernel}: (n x kernel)^2 = {(n * kernel) ** 2:,} steps of "
                             f"the Method 2 search, at most {MAX_WORK:,}")
    shape = collective_shape(c_in, c_out, kernel, stride, n, dw)
    best = best_shape(c_in, c_out, kernel, stride, n, xr, xc)
    util = shape.utilisation(kernel * kernel * c_in, c_out, xr, xc)

    def describe(s: ReplicaShape) -> dict[str, object]:
        return {"method": s.method, "dw": s.dw, "rows": s.rows, "cols": s.cols,
                "aspect_ratio": round(s.aspect_ratio, 4)}

    result = {
        "c_in": c_in, "c_out": c_out, "kernel": kernel, "stride": stride, "replicas": n,
        **describe(shape), "utilisation": round(util, 4), "xbar_rows": xr, "xbar_cols": xc,
        "fits": fits(shape, xr, xc), "best": None if best is None else describe(best),
    }
    if args.json:
        _say(json.dumps(result, indent=2))
        return 0
    how = "Method 1" if shape.method == 1 else f"Method 2, dW = {shape.dw}"
    _say(f"{n} replicas of a {kernel}x{kernel}x{c_in} -> {c_out} kernel (stride {stride}), {how}")
    _say(f"collective kernel matrix  {shape.rows} rows x {shape.cols} cols, aspect ratio {shape.aspect_ratio:.3f}")
    _say(f"crossbar {xr} x {xc}: {'fits' if result['fits'] else 'does NOT fit'}, "
          f"utilisation {100 * util:.1f} % (Eq. 4, the same for every dW)")
    if best is None:
        _say("best: no layout fits (Method 1 or Method 2 with any dW)")
    else:
        best_how = "Method 1" if best.method == 1 else f"Method 2, dW = {best.dw}"
        _say(f"best: {best_how}, {best.rows} rows x {best.cols} cols, aspect ratio {best.aspect_ratio:.3f}")
    return 0
