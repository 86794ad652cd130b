"""The README's reproduction tables, measured (`cimsim validate --markdown --table NAME`).

Each `Table` builds its rows from the same runs as the checks (`cimsim.validate.measure.run` runs a
scenario once per process) and prints, under the Markdown table, one line saying what it ran. The
paper's values come from `CHECKS` where a check holds them, so a table and its checks cannot disagree.
`tools/readme_tables.py` writes every table into the README between its markers (and `--check`s them);
`tests/test_validate.py` checks the tables marked `ci` against the README.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cimsim.validate import checks
from cimsim.validate import measure as m
from cimsim.validate import meng_lu as ml

Rows = list[list[str]]


@dataclass(frozen=True)
class Table:
    """One reproduction table of the README."""

    header: tuple[str, ...]
    build: Callable[[], Rows]
    ran: str
    """What the rows come from (printed under the table)."""
    ci: bool
    """Fast enough for the test suite (the others: `tools/readme_tables.py --check`)."""


def _paper(measurement: str, value: str) -> float:
    return next(c.paper for c in checks.CHECKS if c.measurement == measurement and c.value == value)


def _n(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def _pct(v: float) -> str:
    return f"{100 * v:+.1f} %"


# --- Dazzi 2021 -----------------------------------------------------------------------------------

def _dazzi_rows() -> Rows:
    reg, fast = m.MEASUREMENTS["dazzi_regular"][1](), m.MEASUREMENTS["dazzi_speedup"][1]()
    arr = m.MEASUREMENTS["dazzi_array"][1]()
    factor = reg["latency_timesteps"] / fast["latency_timesteps"]
    p_factor = _paper("dazzi_factor", "speedup")

    def tp(d: dict[str, float], kind: str, paper: float, latency: float) -> str:
        return (f"simulated at batch 100 (`{kind}`): an image every {_n(d['image_interval'], 1)} timesteps; the "
                f"paper's figure implies {m.paper_interval(latency, paper):,.1f} (latency + 99 intervals)")

    p_reg, p_fast = _paper("dazzi_regular", "throughput_batch100"), _paper("dazzi_speedup", "throughput_batch100")
    p_reg_lat, p_fast_lat = _paper("dazzi_regular", "latency_timesteps"), _paper("dazzi_speedup", "latency_timesteps")
    return [
        ["IMC cores", _n(_paper("dazzi_regular", "cores")), f"**{_n(reg['cores'])}**", "both"],
        ["latency, regular dataflow", f"{_n(p_reg_lat)} timesteps",
         f"**{_n(reg['latency_timesteps'])}** timesteps ({reg['latency_timesteps'] * m.TIMESTEP_S * 1e6:.1f} us)",
         "`dazzi2021_resnet32.toml`, one image"],
        ["throughput, regular, batch 100", f"{_n(p_reg)} images/s", f"**{_n(reg['throughput_batch100'])}** images/s",
         tp(reg, "dazzi2021_resnet32.toml", p_reg, p_reg_lat)],
        ["latency, speed-up dataflow", f"{_n(p_fast_lat)} timesteps ({p_factor:g}x)",
         f"**{_n(fast['latency_timesteps'])}** timesteps ({factor:.3f}x)", "`dazzi2021_resnet32_speedup.toml`, one image"],
        ["throughput, speed-up, batch 100", f"{_n(p_fast)} images/s", f"**{_n(fast['throughput_batch100'])}** images/s",
         tp(fast, "dazzi2021_resnet32_speedup.toml", p_fast, p_fast_lat)],
        ["energy efficiency per array, at peak", f"{_paper('dazzi_array', 'tops_per_w'):g} TOPS/W at 1.008 TOPS",
         (f"**{arr['tops_per_w']:.1f}** TOPS/W ({arr['tops_per_w_long_read']:.1f}-{arr['tops_per_w_survey_adc']:.1f} "
          f"over the sources' spread) at {arr['tops']:.3f} TOPS, {arr['power_mW']:.1f} mW: without the PWM, digital "
          "processor and regulators, which no source gives"),
         "one 256 x 256 core at peak, priced with `dazzi2021_14nm` (`cimsim.energy.peak`)"],
    ]


# --- RAELLA ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RaellaRun:
    """A group of rows of the RAELLA table: one scenario family, its three policies (or two)."""

    label: str
    inputs: str
    scenario: str
    """With `{policy}` in it."""
    overrides: tuple[str, ...] = ()
    policies: tuple[str, ...] = ("off", "always", "on_failure")


SPLIT = "functional.input_encoding=split_sign"
RAELLA_FAST = (
    RaellaRun("`raella_resnet32_<policy>_fast.toml`: 100 ns timestep, 2 pixels per timestep, conv1 x 2",
              "split-sign", "raella_resnet32_{policy}_fast.toml"),
    RaellaRun("the same, conv1 x 1, 1 pixel per timestep", "split-sign", "raella_resnet32_{policy}_fast.toml",
              m.UNREPLICATED),
    RaellaRun("the same, conv1 x 1, 1 pixel per timestep", "two's complement", "raella_resnet32_{policy}_fast.toml",
              (*m.UNREPLICATED, m.TWOS)),
)
"""The `raella` table's runs: the image source out of the way."""
RAELLA_SOURCE = (
    RaellaRun("`raella_resnet32_<policy>.toml`: one pixel per 1.2 us, as shipped", "two's complement",
              "raella_resnet32_{policy}.toml"),
    RaellaRun("the same", "split-sign", "raella_resnet32_{policy}.toml", (SPLIT,)),
    RaellaRun("`dazzi2021_resnet32_functional.toml` / `_speculation.toml`: 256 x 256, 1 clock per crossbar cycle, "
              "100 ns timestep clocking", "two's complement", "dazzi2021_resnet32_{policy}.toml", (),
              ("functional", "speculation")),
)
"""The `raella_source` table's runs: the shipped scenarios, whose image source sets the rate."""
THESIS_ROW = ["RAELLA thesis (4.3.2, 6.1, 7.2)", "signed: two passes", "always / off", "-", "-",
              "11 / 8; x 2 for signed inputs", "~98 %", "3 + ~0.3 (~60 % fewer)", "0.018 / 0.047", "-"]
"""What the thesis reports, in the table's columns."""


def _raella_row(scenario: str, overrides: tuple[str, ...], off_tp: float | None) -> tuple[list[str], float]:
    s = m.run(scenario, *overrides, m.BATCH)
    f = s["functional"]
    tp = m.steady_throughput(s)
    policy = f["policy"]
    vs = "" if off_tp is None or policy == "off" else f" ({_pct(tp / off_tp - 1)})"
    conv = f["adc_converts_per_column"]
    conv_txt = f"{conv:.3f}" + ("" if policy == "off" else f" ({_pct(conv / f['recovery_only_converts_per_column'] - 1)})")
    success = "-" if f["speculation_success"] is None else f"{100 * f['speculation_success']:.1f} %"
    lat = s["latency_timesteps"]
    off_ref = f"{f['mismatching_values']} of {f['output_values']} ({_n(f['saturations_accepted'])})"
    row = [policy, f"{_n(lat)} ({lat * s['timestep_ns'] * 1e-6:.2f} ms)", f"{_n(tp)}{vs}",
           f"{m.cycles_per_mvm(s, 'conv1'):.3g}", success, conv_txt,
           f"{m.converts_per_mac(scenario, s):.4f}", off_ref]
    return row, tp


def _raella_rows(groups: tuple[RaellaRun, ...]) -> Rows:
    rows: Rows = [THESIS_ROW]
    for group in groups:
        off_tp = None
        for i, policy in enumerate(group.policies):
            row, tp = _raella_row(group.scenario.format(policy=policy), group.overrides, off_tp)
            off_tp = tp if off_tp is None else off_tp
            rows.append([group.label if i == 0 else "same", group.inputs if i == 0 else "", *row])
    return rows


# --- Meng & Lu 2024 -------------------------------------------------------------------------------

def _stationary(model: str) -> dict[str, Any]:
    from cimsim.config import load_scenario
    from cimsim.network import load_model
    from cimsim.roofline import network_macs, network_weight_bytes

    scenario = f"zoo/meng_lu2024_{model}.toml"
    s = m.run(scenario, "run.batch=2")
    net = load_model(load_scenario(m.SCENARIOS / scenario).model)
    macs = network_macs(net)
    tp = m.throughput_at(s, 100)
    return {"cores": s["cores"], "latency": s["latency_timesteps"], "tp": tp, "tops": 2 * macs * tp / 1e12,
            "macs": macs, "weights": network_weight_bytes(net)}


def _reloading(model: str) -> dict[str, Any]:
    rows, cols = ml.TPU_ARRAY[model]
    batches = MENG_LU_BATCHES[model]
    s = m.run(f"zoo/meng_lu2024_{model}.toml", *m.MENG_LU_RELOAD, f"chip.array_rows={rows}",
              f"chip.array_cols={cols}", "run.batch=1")
    return {"array": f"{rows} x {cols}", "segments": len(s["segments"]), "batches": batches.split(","),
            "points": m.roofline_points(model, rows, cols, batches)}


MENG_LU_BATCHES = {"mlp": "1,8,32,128,200,512,1024,2048", "cnn": "1,2,4,5,8"}
"""Model -> the batches of the reloading roofline."""


def _per_batch(d: dict[str, Any], key: str, digits: int) -> str:
    return " / ".join(f"{p[key]:.{digits}f}" for p in d["points"])


def _fws_rows() -> Rows:
    mlp, copies, bal = ml.fws("mlp"), ml.predicted("cnn_copies"), ml.fws("cnn_balanced")
    bal_map = ml.mapped("cnn_balanced")
    rates = ", ".join(f"{n} {r}" for n, r in bal_map["rates"].items())
    conv_copies = "/".join(str(copies["rates"].get(f"conv{i}", 1)) for i in range(1, 13))

    def peak(d: dict[str, Any]) -> str:
        return f"**{d['tops_at_peak']:.3g}** ({100 * d['utilisation']:.3g} %)"

    return [
        ["FWS-CIM mapping", "the zoo scenario: one copy (an image per timestep already)",
         (f"copies: the paper's {conv_copies} (conv1-conv12) as kernel replicas (`zoo/meng_lu2024_cnn_fws.toml`); "
          f"balanced: the balancer within 852 cores = 55.8 M weights (`zoo/meng_lu2024_cnn_balanced.toml`: {rates}, "
          f"input {bal_map['input_rate']})")],
        ["FWS-CIM mapped weights (paper 55.9 M / 55.8 M), cores",
         f"{mlp['mapped_weights'] / 1e6:.1f} M, {mlp['cores']} cores",
         (f"copies {copies['mapped_weights'] / 1e6:.1f} M, {_n(copies['cores'])} cores "
          f"({copies['devices'] / 1e6:,.0f} M devices); balanced {bal['mapped_weights'] / 1e6:.1f} M, "
          f"{bal['cores']} cores")],
        ["FWS-CIM image interval (timesteps)", f"{_n(mlp['interval'])} (simulated)",
         (f"copies: at least {_n(copies['floor_interval'])} ({', '.join(copies['floor_layers'])}: one pixel per "
          f"timestep), {_n(copies['predicted_interval'])} in the mapper's step model "
          f"({', '.join(copies['predicted_slowest'])}), not simulated; balanced {_n(bal['interval'])} simulated "
          f"({_n(bal_map['predicted_interval'])} predicted)")],
        ["FWS-CIM TOPS at batch 1 on cimsim's chip (one MVM per 100 ns)", f"{mlp['tops']:.1f}",
         f"copies at most {copies['tops_bound']:.1f} (step model {copies['tops']:.1f}); balanced {bal['tops']:.1f}"],
        ["FWS-CIM TOPS at batch 1 at the paper's 92 TOPS peak (utilisation of the mapped weights)", peak(mlp),
         (f"copies at most **{copies['tops_at_peak_bound']:.3g}** ({100 * copies['utilisation_bound']:.2g} %; "
          f"step model {copies['tops_at_peak']:.3g}); balanced {peak(bal)}")],
    ]


def _meng_lu_rows() -> Rows:
    st = {k: _stationary(k) for k in ("mlp", "cnn")}
    rl = {k: _reloading(k) for k in ("mlp", "cnn")}
    both = ("mlp", "cnn")
    return [
        ["weights (int8), MACs per image", *(f"{st[k]['weights'] / 1e6:.1f} M, {_n(st[k]['macs'] / 1e6, 1)} M" for k in both)],
        ["stationary (zoo scenario, all weights on chip): cores, one image",
         *(f"{st[k]['cores']} cores; {_n(st[k]['latency'])} timesteps" for k in both)],
        ["stationary, batch 100 (latency + 99 image intervals of a batch-2 run)",
         *(f"{st[k]['tops']:.3g} TOPS ({_n(st[k]['tp'])} images/s)" for k in both)],
        *_fws_rows(),
        ["reloading on a tenth of the crossbars: array, segments",
         *(f"{rl[k]['array']}: {rl[k]['segments']} segments" for k in both)],
        ["reloading: batches", *(" / ".join(f"{int(b):,}" for b in rl[k]["batches"]) for k in both)],
        ["reloading: TOPS at those batches", _per_batch(rl["mlp"], "tops", 3), _per_batch(rl["cnn"], "tops", 2)],
        ["the simulated chip's roofline at those batches (TOPS)", _per_batch(rl["mlp"], "roofline_tops", 3),
         _per_batch(rl["cnn"], "roofline_tops", 1)],
        ["the TPU's roofline (92 TOPS, 34 GB/s) at those batches (TOPS)", _per_batch(rl["mlp"], "reference_tops", 3),
         _per_batch(rl["cnn"], "reference_tops", 1)],
        ["ridge (MACs per weight byte): simulated chip; TPU (its batch)",
         *(f"{_n(rl[k]['points'][0]['ridge'])}; {_n(rl[k]['points'][0]['tpu_ridge'])} (batch "
           f"{_n(rl[k]['points'][0]['tpu_ridge_batch'], 2 if rl[k]['points'][0]['tpu_ridge_batch'] < 100 else 0)})"
           for k in both)],
        ["paper", "FWS-CIM 91.6 TOPS at batch 1; TPU 0.068 TOPS at batch 1, still memory-bound at batch 200",
         "FWS-CIM 83 TOPS at batch 1; TPU 19 TOPS at batch 1, compute-bound from batch 8"],
    ]


RAELLA_HEADER = ("run", "inputs", "policy", "latency, timesteps", "throughput, images/s (vs off)",
                 "crossbar cycles per conv1 MVM", "speculation success", "ADC converts per column (vs off)", "per MAC",
                 "outputs off the reference (saturations accepted)")
RAELLA_COMMON = (f"ResNet-32 / CIFAR-10, {m.FAST_BATCH} images (`--batch {m.FAST_BATCH}`), seed 0; unless stated 512 x "
                 "512 crossbars, 7-bit ADCs, Center+Offset weights, 100 ns crossbar cycle, elastic clocking; latency "
                 "of image 0, throughput 1 / image interval (steady state)")

TABLES: dict[str, Table] = {
    "dazzi": Table(("", "paper", "cimsim", "run"), _dazzi_rows,
                   ("Dazzi 2021 3.1.3-3.1.4 and 3.2; ideal fabric, 100 ns timestep, regular and speed-up dataflows; "
                    "the array at peak analytical"), ci=False),
    "raella": Table(RAELLA_HEADER, lambda: _raella_rows(RAELLA_FAST), (
        f"{RAELLA_COMMON}; conv1 x 1: `--set {' --set '.join(m.UNREPLICATED)}`, two's complement: `--set {m.TWOS}`"),
        ci=True),
    "raella_source": Table(RAELLA_HEADER, lambda: _raella_rows(RAELLA_SOURCE), (
        f"{RAELLA_COMMON}; split-sign: `--set {SPLIT}`"), ci=False),
    "meng_lu": Table(("", "MLP (zoo/meng_lu2024_mlp.toml)", "CNN (zoo/meng_lu2024_cnn.toml)"), _meng_lu_rows,
                     ("the zoo scenarios; FWS-CIM: the MLP's zoo scenario and `zoo/meng_lu2024_cnn_balanced.toml` at "
                      "batch 2 (the image interval), `zoo/meng_lu2024_cnn_fws.toml` by dry run (its run takes over 15 "
                      "minutes; its bound: the interval its layers without replicas set), TOPS at the peak = 92 x MACs per image / (image interval x mapped weights); "
                      "reloading: `cimsim roofline --reference-roof 92` with `--set " + " --set ".join(m.MENG_LU_RELOAD)
                      + "` and the array's `chip.array_rows` / `chip.array_cols`"), ci=False),
}
"""Table name -> the table."""


def table_markdown(name: str) -> str:
    """The table as Markdown, and the line saying what it ran and the command that prints it."""
    t = TABLES[name]
    lines = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(row) + " |" for row in t.build()]
    return "\n".join([*lines, "", f"(`cimsim validate --markdown --table {name}`: {t.ran}.)"])


def table_json(name: str) -> dict[str, Any]:
    """The table's header and rows."""
    t = TABLES[name]
    return {"table": name, "header": list(t.header), "rows": t.build(), "ran": t.ran}


__all__ = ["RAELLA_FAST", "RAELLA_SOURCE", "TABLES", "Table", "table_json", "table_markdown"]
