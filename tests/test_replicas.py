"""Kernel replication (Dazzi 2021 section 2.2, Eqs. 2-4) and `cimsim replicas`."""

from __future__ import annotations

import itertools
import json

import pytest

from cimsim.cli import main
from cimsim.mapping.replication import aspect_ratio_method1, best_shape, collective_shape


def test_dazzi_2_2_3_twenty_replicas() -> None:
    """"a collective kernel matrix of 20 kernels requires 1,056 rows with Method 1, and only 672 with
    Method 2 and dW = 5" (C_in = C_out = 16, F = 3)."""
    m1 = collective_shape(16, 16, 3, 1, 20)
    m2 = collective_shape(16, 16, 3, 1, 20, dw=5)
    assert (m1.method, m1.rows, m1.cols) == (1, 1056, 320)
    assert (m2.method, m2.dw, m2.rows, m2.cols) == (2, 5, 672, 320)


def test_method1_aspect_ratio_tends_to_f() -> None:
    assert collective_shape(16, 16, 3, 1, 1).aspect_ratio == 9
    ratios = [collective_shape(16, 16, 3, 1, n).aspect_ratio for n in range(1, 200)]
    assert all(a > b for a, b in itertools.pairwise(ratios))
    assert ratios[-1] == pytest.approx(3, abs=0.05)
    assert collective_shape(16, 16, 3, 1, 2000).aspect_ratio == pytest.approx(3, abs=0.005)
    assert aspect_ratio_method1(16, 16, 3, 10**6) == pytest.approx(3, abs=1e-5)


@pytest.mark.parametrize(("c_in", "c_out", "kernel"), [(16, 16, 3), (3, 16, 3), (28, 56, 3), (8, 8, 5), (4, 2, 1)])
def test_eq2_closed_form_equals_exact_shape(c_in: int, c_out: int, kernel: int) -> None:
    for n in range(1, 30):
        assert collective_shape(c_in, c_out, kernel, 1, n).aspect_ratio == pytest.approx(
            aspect_ratio_method1(c_in, c_out, kernel, n))


def test_method2_reduces_rows() -> None:
    """Fig. 6: dW >= 2 needs fewer rows than Method 1; Fig. 5's 6 outputs (dW = 3) cover a 4 x 5 input area."""
    assert collective_shape(1, 1, 3, 1, 6, dw=3).rows == 20
    for n in range(4, 30):
        m1 = collective_shape(16, 16, 3, 1, n).rows
        assert all(collective_shape(16, 16, 3, 1, n, dw).rows <= m1 for dw in range(2, n + 1))


def test_utilisation_independent_of_dw() -> None:
    """Eq. 4: u = N x D_K / D_A, the same for every dW."""
    kernel_rows, kernel_cols = 3 * 3 * 16, 16
    values = {collective_shape(16, 16, 3, 1, 20, dw).utilisation(kernel_rows, kernel_cols, 256, 256)
              for dw in range(1, 21)}
    assert values == {20 * 144 * 16 / 65536}


def test_best_shape_resnet32_speedup() -> None:
    """3.1.4's replicas on 256 x 256 crossbars."""
    s16 = best_shape(16, 16, 3, 1, 4, 256, 256)
    assert s16 is not None and (s16.method, s16.dw, s16.rows) == (2, 2, 256)
    assert collective_shape(16, 16, 3, 1, 4).rows == 288  # Method 1 does not fit
    assert best_shape(28, 28, 3, 1, 2, 256, 256) is None
    assert collective_shape(28, 28, 3, 1, 2).rows == collective_shape(28, 28, 3, 1, 2, 2).rows == 336
    s1 = best_shape(3, 16, 3, 1, 4, 256, 256)
    assert s1 is not None and (s1.method, s1.dw, s1.rows) == (1, 1, 54)
    assert best_shape(16, 16, 3, 1, 1, 256, 256) == collective_shape(16, 16, 3, 1, 1)
    assert best_shape(16, 200, 3, 1, 2, 1024, 256) is None  # too wide for any dW


def test_best_shape_picks_smallest_fitting_dw() -> None:
    # 20 replicas of a 16-channel kernel on 700 rows: Method 1 needs 1,056; several dW fit, the smallest wins
    fitting = [dw for dw in range(2, 21) if collective_shape(16, 16, 3, 1, 20, dw).rows <= 700]
    best = best_shape(16, 16, 3, 1, 20, 700, 512)
    assert fitting == [4, 5]  # both 672 rows (the paper quotes dW = 5)
    assert best is not None and (best.dw, best.rows) == (4, 672)


# --- `cimsim replicas` ------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_replicas_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, ["replicas", "--c-in", "16", "--c-out", "16", "--kernel", "3", "--n", "20",
                                   "--dw", "5", "--json"])
    assert code == 0 and err == ""
    data = json.loads(out)
    assert (data["method"], data["dw"], data["rows"], data["cols"]) == (2, 5, 672, 320)
    assert data["aspect_ratio"] == pytest.approx(2.1)
    assert data["utilisation"] == pytest.approx(20 * 144 * 16 / 65536, abs=1e-4)
    assert data["fits"] is False and data["best"] is None

    code, out, _ = _run(capsys, ["replicas", "--c-in", "16", "--c-out", "16", "--kernel", "3", "--n", "4", "--json"])
    data = json.loads(out)
    assert code == 0 and (data["method"], data["rows"], data["fits"]) == (1, 288, False)
    assert data["best"] == {"method": 2, "dw": 2, "rows": 256, "cols": 64, "aspect_ratio": 4.0}

    code, out, _ = _run(capsys, ["replicas", "--c-in", "3", "--c-out", "16", "--kernel", "3", "--n", "4",
                                 "--xbar-rows", "54", "--xbar-cols", "64", "--json"])
    data = json.loads(out)
    assert code == 0 and data["fits"] is True and data["best"]["rows"] == 54
    assert data["utilisation"] == pytest.approx(4 * 27 * 16 / (54 * 64), abs=1e-4)


def test_cli_replicas_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, ["replicas", "--c-in", "16", "--c-out", "16", "--kernel", "3", "--n", "20"])
    assert code == 0 and "1056 rows" in out and "does NOT fit" in out


@pytest.mark.parametrize(("argv", "needle"), [
    (["replicas", "--c-in", "16", "--c-out", "16", "--kernel", "3"], "--n is required"),
    (["replicas", "--c-in", "0", "--c-out", "16", "--kernel", "3", "--n", "2"], "--c-in 0"),
    (["replicas", "--c-in", "16", "--c-out", "x", "--kernel", "3", "--n", "2"], "--c-out x"),
    (["replicas", "--c-in", "16", "--c-out", "16", "--kernel", "3", "--n", "2", "--dw", "3"], "--dw 3"),
    (["replicas", "--c-in", "16", "--c-out", "16", "--kernel", "3", "--n", "2", "--stride", "0"], "--stride 0"),
    (["replicas", "--c-in", "16", "--c-out", "16", "--kernel", "3", "--n", "2", "--xbar-rows", "-1"], "--xbar-rows"),
])
def test_cli_replicas_errors(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cimsim: error: ") and needle in lines[0], err
