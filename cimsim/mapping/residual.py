"""Where an adding stage gets its residual pixels (Dazzi 2021 2.4.1, Algorithm 1 lines 21-22).

Dazzi's Dataflow Controller "checks whether the conditions to send the residual pixel to other
IMC cores are met ... and in case they are verified reads the data from the Input Memory and
makes it available to the inter-core communication fabric": `read_res` is executed by the core
whose Input Memory holds the block input, the block's first conv, and the adding core stores
no copy (3.1.2 sizes every Input Memory at the H x F pixels of its own input). So with
`mapping.residual_source = "read_res"`:

- `ResidualPath.READ_RES`: the adding stage S reaches the residual X through a chain of stages
  with one main input each, S <- M ... <- F, where F reads X itself. F's cores send each pixel of
  X, read from their own input memory, to S's merging cores, and F keeps the pixel's slot until
  it is sent. S holds the pixels only in a residual inbox of two groups' worth.
- `ResidualPath.OWN_INPUT`: S reads X itself (it adds its own input); it reads each pixel from
  its own input memory for the add, and keeps the slot until that output is computed.
- `ResidualPath.ADDER_COPY` (also every add with `"adder_copy"`): X's producer sends X to S,
  which writes each pixel into the free part of its own input memory and reads it back. With
  `"read_res"` this is the path of a residual that no first core holds (a resampling layer's
  output, which exists only as the resampling core's output) and of one whose first core's
  H x F buffer cannot hold each pixel until S needs it (`residual_lag_fits` is False: the first
  core could not store the pixels S's inputs are computed from, a deadlock).

Pure: no SimPy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimsim.config.schema import Scenario
from cimsim.mapping.geometry import LayerGeometry, build_geometry
from cimsim.mapping.plan import ResidualPath
from cimsim.mapping.stages import Stage
from cimsim.network import Network
from cimsim.network.layers import LayerKind


@dataclass(frozen=True)
class ResidualRoute:
    """How one adding stage gets its residual pixels."""

    path: ResidualPath
    source: str
    """The stage whose cores send the pixels (READ_RES: the first conv; OWN_INPUT: the stage
    itself; ADDER_COPY: the residual's producer)."""
    inbox: int = 0
    """READ_RES: residual pixels the adding stage's inbox holds."""
    note: str = ""
    """Why an add with `"read_res"` keeps a copy (empty otherwise; the layer's mapping note)."""
    chain: tuple[str, ...] = ()
    """READ_RES: the stages from the adding stage back to the first (S, M, ..., F)."""


def first_core_chain(net: Network, stages: dict[str, Stage], name: str) -> list[Stage] | None:
    """[S, M, ..., F]: the stages from the adding stage `name` back to the block's first stage F,
    whose single main input is S's residual input; None when there is no such chain of single-input
    stages with windows (a resampled residual, a concat, a pooled stage on the way)."""
    st = stages[name]
    x = st.residual_input
    order = {n: i for i, n in enumerate(stages)}
    floor = order.get(str(x), -1)
    chain = [st]
    cur = st
    while True:
        pooled = cur is not st and any(net.layer(f).kind is LayerKind.AVGPOOL for f in cur.fused)
        if len(cur.main_inputs) != 1 or pooled:  # a concat's consumer, or a stage whose output is pooled
            return None
        m = cur.main_inputs[0]
        if m == x:
            break
        if m not in stages or order[m] <= floor:
            return None
        cur = stages[m]
        chain.append(cur)
    first = chain[-1].window
    if (first.in_h, first.in_w) != (st.window.out_h, st.window.out_w):
        return None
    return chain


def residual_inbox(geom: LayerGeometry) -> int:
    """Pixels the adding stage's residual inbox holds: two of its largest steps' new residual needs."""
    prev = np.concatenate(([0], geom.group_released[:-1]))
    return 2 * max(1, int((geom.group_out_need - prev).max()))


def chain_need(geoms: list[LayerGeometry]) -> np.ndarray:
    """need[g]: the newest pixel of the block input (the first stage's input) that the adding stage's
    group g depends on through the chain `geoms` = [S, M, ..., F] (S's input index -> the producer's
    group that releases it -> that group's input need, and so on)."""
    need = np.maximum.accumulate(geoms[0].group_need.astype(np.int64))
    for geom in geoms[1:]:
        groups = np.searchsorted(geom.group_released, need, side="right")
        need = np.maximum.accumulate(geom.group_need)[np.minimum(groups, geom.n_groups - 1)]
    return need


def send_schedule(geoms: list[LayerGeometry]) -> np.ndarray:
    """schedule[k]: pixels of the image the first core has stored when it sends residual pixel k
    (`conditions_to_residual(pointer_in)`): those the adding stage's group that adds pixel k depends
    on, so that in a pipeline without stalls the pixel arrives in the timestep it is added."""
    s = geoms[0]
    groups = np.searchsorted(s.group_out_need, np.arange(s.n_out), side="right")
    return chain_need(geoms)[np.minimum(groups, s.n_groups - 1)] + 1


def residual_lag_fits(geoms: list[LayerGeometry], inbox: int) -> bool:
    """Whether the first core F (geoms[-1]) can keep every pixel of the block input until the adding
    stage S (geoms[0]) takes it. Before S's group g, F must have stored the input pixels it depends
    on (`chain_need`); each overwrites the slot of the pixel H x F before it, which must have been
    read already: S has consumed the residuals of its released outputs and its inbox holds `inbox`
    more (READ_RES), or S itself has released it (OWN_INPUT, one stage), and (READ_RES) its send
    condition must hold with fewer pixels stored."""
    s = geoms[0]
    need = chain_need(geoms)
    slots = geoms[-1].slot_columns * geoms[-1].in_h
    prev = np.concatenate(([0], s.group_released[:-1]))
    if len(geoms) == 1:
        return bool(np.all(need - slots < prev))
    owed = need - slots
    early = owed >= 0
    schedule = send_schedule(geoms)
    return bool(np.all(owed < prev + inbox) and np.all(schedule[owed[early]] <= need[early]))


def stage_geometry(stage: Stage, rate: int, dw: int) -> LayerGeometry:
    """The dataflow tables of a stage at its rate and replica block width."""
    win = stage.window
    return build_geometry(win.in_h, win.in_w, win.kernel, win.stride, win.padding, rate, dw)


def residual_routes(net: Network, stages: dict[str, Stage], shapes: dict[str, tuple[int, int]],
                    source: str) -> dict[str, ResidualRoute]:
    """Adding stage -> its residual route, under `mapping.residual_source` = `source`;
    `shapes`: stage -> (rate, replica block width dw)."""
    routes: dict[str, ResidualRoute] = {}
    for name, st in stages.items():
        x = st.residual_input
        if x is None:
            continue
        if source == ResidualPath.ADDER_COPY:
            routes[name] = ResidualRoute(ResidualPath.ADDER_COPY, x)
            continue
        chain = first_core_chain(net, stages, name)
        if chain is None:
            routes[name] = ResidualRoute(ResidualPath.ADDER_COPY, x, note=(
                f"its residual '{x}' is held by no first core's input memory (a resampling layer's output): "
                "the adding core keeps a copy"))
            continue
        geoms = [stage_geometry(s, *shapes[s.name]) for s in chain]
        inbox = residual_inbox(geoms[0]) if len(chain) > 1 else 0
        if not residual_lag_fits(geoms, inbox):
            routes[name] = ResidualRoute(ResidualPath.ADDER_COPY, x, note=(
                f"'{chain[-1].name}' cannot keep the pixels of '{x}' in its H x F buffer until '{name}' adds them: "
                "the adding core keeps a copy"))
            continue
        if len(chain) == 1:
            routes[name] = ResidualRoute(ResidualPath.OWN_INPUT, name)
        else:
            routes[name] = ResidualRoute(ResidualPath.READ_RES, chain[-1].name, inbox,
                                         chain=tuple(s.name for s in chain))
    return routes


@dataclass(frozen=True)
class ResidualRoles:
    """A stage's part in residual adds, by the network's structure (the balancer's estimate)."""

    copy: bool = False
    """It keeps a copy of its residual pixels (`ResidualPath.ADDER_COPY`)."""
    reads: bool = False
    """It reads residual pixels from its input memory (a block's first conv, or an add of its own input)."""


def residual_roles(net: Network, scenario: Scenario, stages: dict[str, Stage]) -> dict[str, ResidualRoles]:
    """Every stage's `ResidualRoles`, from the chains above (without the check that the first
    core's buffer holds the residual long enough, which needs the rates)."""
    copies: set[str] = set()
    readers: set[str] = set()
    for name, st in stages.items():
        if st.residual_input is None:
            continue
        chain = None if scenario.mapping.residual_source == ResidualPath.ADDER_COPY else first_core_chain(net, stages,
                                                                                                         name)
        if chain is None:
            copies.add(name)
        else:
            readers.add(chain[-1].name)  # the first core (the adder itself when it adds its own input)
    return {n: ResidualRoles(n in copies, n in readers) for n in stages}


__all__ = [
    "ResidualRoles",
    "ResidualRoute",
    "chain_need",
    "first_core_chain",
    "residual_inbox",
    "residual_lag_fits",
    "residual_roles",
    "residual_routes",
    "send_schedule",
    "stage_geometry",
]
