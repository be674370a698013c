"""Fixtures and props of the synthetic rooms: fridge, toilet, bath with shower curtain, basin,
pictures, other furniture and unlabelled clutter (same local frame as furniture.py).
"""

from __future__ import annotations

import numpy as np

from srkd.data.synthetic.furniture import open_box
from srkd.data.synthetic.geometry import Surfaces
from srkd.data.synthetic.materials import (
    APPLIANCE,
    BATHTUB,
    CERAMIC,
    CLUTTER,
    FABRIC,
    FRIDGE,
    METAL,
    OTHER,
    PICTURE,
    SHOWER_CURTAIN,
    SINK,
    TOILET,
    VIVID,
    WOOD,
    Ctx,
)  # fmt: skip


# ------------------------------------------------------------------------------ wall-side items
def fridge(ctx: Ctx) -> tuple[Surfaces, float, float, float]:
    """A refrigerator (box, two doors, vertical handles); returns (surfaces, w, d, h)."""
    s, inst = Surfaces(), ctx.inst()
    w, d, h = ctx.u(0.6, 0.8), ctx.u(0.6, 0.7), ctx.u(1.6, 1.95)
    mat = ctx.plain(APPLIANCE)
    s.box((0, 0, h / 2), (w, d, h), FRIDGE, inst, mat, skip=("+y",))
    split = h * ctx.u(0.3, 0.65)
    handle = ctx.plain(METAL[:2]) if ctx.chance(0.6) else mat
    for z0, z1 in ((0.02, split - 0.01), (split + 0.01, h - 0.01)):
        s.box((0, -d / 2 - 0.01, (z0 + z1) / 2), (w - 0.01, 0.02, z1 - z0), FRIDGE, inst, mat)
        s.box(
            (w / 2 - 0.06, -d / 2 - 0.04, (z0 + z1) / 2),
            (0.025, 0.03, min(0.5, z1 - z0 - 0.1)),
            FRIDGE,
            inst,
            handle,
        )
    return s, w, d, h


def toilet(ctx: Ctx) -> Surfaces:
    """A toilet with its tank at +y: foot, bowl, seat, tank."""
    s, inst = Surfaces(), ctx.inst()
    mat = ctx.plain(CERAMIC)
    r, seat = ctx.u(0.17, 0.21), ctx.u(0.38, 0.43)
    s.cylinder((0, -0.05, 0), r * 0.65, 0.2, TOILET, inst, mat, top=False)
    s.cylinder((0, -0.05, 0.2), r, seat - 0.2, TOILET, inst, mat)
    tw, td = ctx.u(0.36, 0.48), ctx.u(0.15, 0.2)
    s.box((0, r + td / 2 - 0.08, seat + 0.18), (tw, td, 0.36), TOILET, inst, mat)
    s.box((0, r - 0.06, seat / 2), (0.2, 0.12, seat), TOILET, inst, mat)
    return s


def bathtub(ctx: Ctx, length: float, width: float) -> Surfaces:
    """A bath along x (its long side at -y faces the room) with a shower curtain on that side."""
    s = Surfaces()
    h = ctx.u(0.5, 0.6)
    s.extend(
        open_box(length, width, h, BATHTUB, ctx.inst(), ctx.plain(CERAMIC), t=ctx.u(0.06, 0.1))
    )
    if ctx.chance(0.85):
        span = length * ctx.u(0.4, 1.0)
        x0 = -length / 2 if ctx.chance(0.5) else length / 2 - span
        mat = ctx.plain(CERAMIC + FABRIC) if ctx.chance(0.6) else ctx.image()
        top = ctx.u(1.9, 2.1)
        s.wave(
            (x0, -width / 2 + 0.04, h + 0.08),
            (span, 0, 0),
            (0, 0, top - h - 0.08),
            ctx.u(0.015, 0.04),
            ctx.u(0.12, 0.25),
            ctx.u(0, 6.3),
            SHOWER_CURTAIN,
            ctx.inst(),
            mat,
        )
    return s


def pedestal_sink(ctx: Ctx) -> Surfaces:
    """A wall-hung basin on a column."""
    s, inst = Surfaces(), ctx.inst()
    mat = ctx.plain(CERAMIC)
    top = ctx.u(0.8, 0.9)
    s.cylinder((0, 0.05, 0), ctx.u(0.07, 0.1), top - 0.17, SINK, inst, mat, top=False)
    s.extend(
        open_box(ctx.u(0.45, 0.6), 0.42, 0.17, SINK, inst, mat, t=0.04), 0.0, (0, 0, top - 0.17)
    )
    s.cylinder((0, 0.17, top), 0.02, 0.15, SINK, inst, ctx.plain(METAL))
    return s


def picture(ctx: Ctx, w: float, h: float) -> Surfaces:
    """A framed picture in the local x-z plane, its back at y=0 and its face towards -y."""
    s, inst = Surfaces(), ctx.inst()
    t = ctx.u(0.01, 0.03)
    s.box((0, -t / 2, h / 2), (w, t, h), PICTURE, inst, ctx.image())
    if ctx.chance(0.7):
        fm, f = ctx.plain(WOOD + METAL), ctx.u(0.02, 0.05)
        for x in (-w / 2 + f / 2, w / 2 - f / 2):
            s.box((x, -t / 2 - 0.005, h / 2), (f, t + 0.01, h), PICTURE, inst, fm)
        for z in (f / 2, h - f / 2):
            s.box((0, -t / 2 - 0.005, z), (w - 2 * f, t + 0.01, f), PICTURE, inst, fm)
    return s


# ------------------------------------------------------------------------ other furniture, props
def other_furniture(ctx: Ctx, kind: str) -> Surfaces:
    """Benchmark class 'otherfurniture': ottoman, stool, bin, coat rack, piano."""
    s, inst = Surfaces(), ctx.inst()
    if kind == "ottoman":
        w, h = ctx.u(0.4, 0.7), ctx.u(0.38, 0.46)
        s.box((0, 0, h / 2), (w, ctx.u(0.4, 0.7), h), OTHER, inst, ctx.plain(FABRIC))
    elif kind == "stool":
        h, mat = ctx.u(0.45, 0.7), ctx.plain(WOOD + METAL)
        s.cylinder((0, 0, h - 0.04), ctx.u(0.15, 0.2), 0.04, OTHER, inst, mat)
        for a in (0.0, 2.1, 4.2):
            s.cylinder(
                (0.11 * np.cos(a), 0.11 * np.sin(a), 0),
                0.015,
                h - 0.04,
                OTHER,
                inst,
                mat,
                top=False,
            )
    elif kind == "bin":
        s.cylinder(
            (0, 0, 0),
            ctx.u(0.12, 0.18),
            ctx.u(0.3, 0.5),
            OTHER,
            inst,
            ctx.plain(METAL + VIVID + CERAMIC),
            top=False,
        )
    elif kind == "rack":
        mat = ctx.plain(WOOD + METAL)
        s.cylinder((0, 0, 0), 0.15, 0.02, OTHER, inst, mat)
        s.cylinder((0, 0, 0.02), 0.02, ctx.u(1.6, 1.8), OTHER, inst, mat)
    else:  # an upright piano: a cabinet-like box with a keyboard shelf
        w, d, h = ctx.u(1.3, 1.5), ctx.u(0.5, 0.6), ctx.u(1.1, 1.3)
        mat = ctx.plain(WOOD[2:4] + WOOD[6:7])
        s.box((0, 0.1, h / 2), (w, d - 0.2, h), OTHER, inst, mat, skip=("+y",))
        s.box(
            (0, -d / 2 + 0.1, 0.72),
            (w, 0.2, 0.06),
            OTHER,
            inst,
            ctx.striped((240, 240, 240), (20, 20, 20), 0.025),
        )
    return s


def clutter(ctx: Ctx, kind: str) -> Surfaces:
    """Unlabelled props (label -1): 'box', 'bottle', 'monitor', 'lamp', 'floor_lamp'."""
    s, inst = Surfaces(), ctx.inst()
    mat = ctx.plain(VIVID + FABRIC + METAL + WOOD)
    if kind == "box":
        size = (ctx.u(0.1, 0.4), ctx.u(0.1, 0.35), ctx.u(0.05, 0.3))
        s.box((0, 0, size[2] / 2), size, CLUTTER, inst, mat)
    elif kind == "bottle":
        s.cylinder((0, 0, 0), ctx.u(0.03, 0.07), ctx.u(0.08, 0.3), CLUTTER, inst, mat)
    elif kind == "monitor":
        dark = ctx.plain(((30, 30, 32), (45, 45, 48), (200, 200, 200)))
        w, h = ctx.u(0.45, 0.7), ctx.u(0.28, 0.42)
        s.box((0, 0.05, 0.01), (0.2, 0.15, 0.02), CLUTTER, inst, dark)
        s.box((0, 0.08, 0.1), (0.04, 0.03, 0.18), CLUTTER, inst, dark)
        s.box((0, 0.05, 0.12 + h / 2), (w, 0.03, h), CLUTTER, inst, dark)
        s.box((0, -0.2, 0.01), (0.44, 0.14, 0.02), CLUTTER, ctx.inst(), dark)
    else:
        h = ctx.u(0.3, 0.5) if kind == "lamp" else ctx.u(1.4, 1.8)
        s.cylinder((0, 0, 0), 0.08 if kind == "lamp" else 0.14, 0.02, CLUTTER, inst, mat)
        s.cylinder((0, 0, 0.02), 0.012, h, CLUTTER, inst, mat, top=False)
        s.cylinder(
            (0, 0, h - 0.05),
            ctx.u(0.1, 0.2),
            ctx.u(0.15, 0.25),
            CLUTTER,
            inst,
            ctx.plain(CERAMIC + FABRIC),
        )
    return s
