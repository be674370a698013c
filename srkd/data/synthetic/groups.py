"""Furniture groups of the synthetic rooms: pieces arranged the way people arrange them.

A group (a dining table with its chairs, a sofa with its coffee table, a desk with its chair and
monitor, a kitchen run, ...) is what carries context: a table and a desk share shape, height
and colour, but a desk stands against a wall with one chair and a monitor while a table stands
free with chairs around it (and sometimes against a wall, to keep that cue imperfect).

Each builder returns a `Group` in its local frame: footprint centred on the origin in x and y,
back at +y (towards the wall for wall-anchored groups), front towards -y, z up from the floor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from srkd.data.synthetic import fixtures as fx
from srkd.data.synthetic import furniture as fu
from srkd.data.synthetic import materials as ma
from srkd.data.synthetic.geometry import CYLINDER, DISK, Surfaces
from srkd.data.synthetic.materials import DESK, TABLE, Ctx


@dataclass
class Group:
    """Surfaces of a group plus its footprint (width along x, depth along y), height, how it is
    placed ('wall': back to a wall; 'corner': back to a wall, side to another; 'free'), and
    whether a picture may hang on the wall above it."""

    surf: Surfaces
    width: float
    depth: float
    height: float
    anchor: str
    picture: bool = False


def _finish(surf: Surfaces, anchor: str, picture: bool = False) -> Group:
    """Centre the group's footprint on the origin and measure it."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for k, o, u, v in zip(surf.kind, surf.o, surf.u, surf.v):
        if k == CYLINDER:
            r = np.linalg.norm(u)
            pts = [o - (r, r, 0), o + (r, r, 0) + v]
        elif k == DISK:
            r = np.linalg.norm(u)
            pts = [o - (r, r, 0), o + (r, r, 0)]
        else:  # rectangles and curtains (their small wave amplitude is ignored)
            pts = [o, o + u, o + v, o + u + v]
        lo = np.minimum(lo, np.min(pts, axis=0))
        hi = np.maximum(hi, np.max(pts, axis=0))
    centred = Surfaces()
    centred.extend(surf, 0.0, (-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, 0.0))
    return Group(centred, float(hi[0] - lo[0]), float(hi[1] - lo[1]), float(hi[2]), anchor, picture)


def _props_on(ctx: Ctx, s: Surfaces, top: tuple[float, float, float, float, float], n: int) -> None:
    """Scatter `n` small unlabelled props on a top (centre x, centre y, width, depth, height)."""
    cx, cy, w, d, z = top
    for _ in range(n):
        kind = "box" if ctx.chance(0.5) else "bottle"
        x, y = ctx.u(-w / 2 + 0.12, w / 2 - 0.12), ctx.u(-d / 2 + 0.12, d / 2 - 0.12)
        s.extend(fx.clutter(ctx, kind), ctx.u(0, np.pi), (cx + x, cy + y, z))


def dining(ctx: Ctx) -> Group:
    """A table with chairs around it; a quarter of them stand against a wall."""
    s = Surfaces()
    walled = ctx.chance(0.25)
    h, mat = ctx.u(0.7, 0.78), ctx.plain(ma.WOOD + ma.STONE[:2])
    if not walled and ctx.chance(0.3):  # round table on a column
        r = ctx.u(0.45, 0.65)
        w = d = 2 * r
        inst, t = ctx.inst(), ctx.u(0.025, 0.045)
        s.cylinder((0, 0, h - t), r, t, TABLE, inst, mat)
        s.cylinder((0, 0, 0), ctx.u(0.05, 0.08), h - t, TABLE, inst, mat, top=False)
        s.cylinder((0, 0, 0), 0.25, 0.03, TABLE, inst, mat)
    else:
        w, d = ctx.u(0.9, 1.8), ctx.u(0.7, 1.0)
        legs = "pedestal" if ctx.chance(0.15) else "four"
        s.extend(fu.table(ctx, w, d, h, TABLE, mat, legs))
    style = "office" if ctx.chance(0.15) else "wood"
    chair_mat = ctx.plain(ma.WOOD + ma.FABRIC) if ctx.chance(0.5) else mat
    # (x, y, outward direction, yaw that turns the chair's front towards the table)
    slots = []
    for x in np.linspace(-w / 2, w / 2, max(1, int(w / 0.6)) + 2)[1:-1]:
        slots.append((x, -d / 2, (0, -1), np.pi))
        if not walled:
            slots.append((x, d / 2, (0, 1), 0.0))
    slots += [(-w / 2, 0.0, (-1, 0), np.pi / 2), (w / 2, 0.0, (1, 0), -np.pi / 2)]
    keep = ctx.rng.permutation(len(slots))[: int(ctx.rng.integers(2, len(slots) + 1))]
    for i in sorted(keep):
        x, y, (ox, oy), yaw = slots[i]
        out = ctx.u(0.0, 0.4)  # how far the chair is pulled out from the table's edge
        s.extend(
            fu.chair(ctx, style, chair_mat),
            yaw + ctx.u(-0.25, 0.25),
            (x + ox * out, y + oy * out, 0),
        )
    _props_on(ctx, s, (0, 0, min(w, 1.2), min(d, 0.8), h), int(ctx.rng.integers(0, 4)))
    return _finish(s, "wall" if walled else "free")


def lounge(ctx: Ctx) -> Group:
    """A sofa against the wall, a low table in front, maybe an armchair and an ottoman."""
    s = Surfaces()
    sw, fabric = ctx.u(1.5, 2.4), ctx.plain(ma.FABRIC)
    sofa = fu.sofa(ctx, sw, fabric)
    sd = _finish(sofa, "wall").depth
    s.extend(sofa, 0.0, (0, -sd / 2, 0))  # back of the sofa at y = 0
    tw, td, th = ctx.u(0.8, min(1.3, sw)), ctx.u(0.45, 0.7), ctx.u(0.35, 0.5)
    ty = -sd - ctx.u(0.3, 0.5) - td / 2
    legs = "panel" if ctx.chance(0.4) else "four"
    s.extend(
        fu.table(ctx, tw, td, th, TABLE, ctx.plain(ma.WOOD + ma.STONE[:2]), legs), 0.0, (0, ty, 0)
    )
    _props_on(ctx, s, (0, ty, tw, td, th), int(ctx.rng.integers(0, 3)))
    if ctx.chance(0.5):
        side = 1 if ctx.chance(0.5) else -1
        arm = fu.chair(ctx, "arm", fabric if ctx.chance(0.5) else None)
        s.extend(arm, side * np.pi / 2 + ctx.u(-0.3, 0.3), (side * (tw / 2 + 0.75), ty, 0))
    if ctx.chance(0.25):
        s.extend(fx.other_furniture(ctx, "ottoman"), ctx.u(0, 1), (-tw / 2 - 0.5, ty - 0.5, 0))
    return _finish(s, "wall", picture=True)


def sleep(ctx: Ctx) -> Group:
    """A bed with its head to the wall, nightstands (cabinets) with lamps beside it."""
    s = Surfaces()
    w = ctx.u(0.9, 1.05) if ctx.chance(0.4) else ctx.u(1.35, 1.8)
    length = ctx.u(1.95, 2.1)
    s.extend(fu.bed(ctx, w, length), 0.0, (0, -length / 2 - 0.06, 0))
    stand = ctx.plain(ma.WOOD)
    for side in (-1, 1):
        if ctx.chance(0.65):
            nw, nd, nh = ctx.u(0.4, 0.55), ctx.u(0.35, 0.45), ctx.u(0.45, 0.62)
            x = side * (w / 2 + 0.05 + nw / 2)
            s.extend(
                fu.cabinet(ctx, nw, nd, nh, stand, drawers=ctx.chance(0.6)), 0.0, (x, -nd / 2, 0)
            )
            if ctx.chance(0.6):
                s.extend(fx.clutter(ctx, "lamp"), 0.0, (x, -nd / 2, nh))
    return _finish(s, "wall", picture=True)


def work(ctx: Ctx) -> Group:
    """A desk against the wall with a chair, often a monitor, sometimes a drawer unit."""
    s = Surfaces()
    w, d, h = ctx.u(1.0, 1.6), ctx.u(0.55, 0.8), ctx.u(0.7, 0.78)
    mat = ctx.plain(ma.WOOD + ma.STONE[:2])
    s.extend(
        fu.table(ctx, w, d, h, DESK, mat, "panel" if ctx.chance(0.4) else "four"),
        0.0,
        (0, -d / 2, 0),
    )
    if ctx.chance(0.4):
        uw = ctx.u(0.35, 0.45)
        side = 1 if ctx.chance(0.5) else -1
        unit = fu.cabinet(ctx, uw, d - 0.1, h - 0.08, mat, label=DESK, drawers=True)
        s.extend(unit, 0.0, (side * (w / 2 - uw / 2 - 0.04), -d / 2 - 0.03, 0))
    if ctx.chance(0.7):
        s.extend(fx.clutter(ctx, "monitor"), ctx.u(-0.2, 0.2), (ctx.u(-0.2, 0.2), -d / 2 + 0.05, h))
    _props_on(ctx, s, (0, -d / 2 - 0.05, w, d - 0.1, h), int(ctx.rng.integers(0, 3)))
    if ctx.chance(0.85):
        style = "office" if ctx.chance(0.6) else "wood"
        s.extend(
            fu.chair(ctx, style),
            np.pi + ctx.u(-0.5, 0.5),
            (ctx.u(-0.2, 0.2), -d - ctx.u(0.0, 0.35), 0),
        )
    return _finish(s, "wall", picture=ctx.chance(0.5))


def storage(ctx: Ctx) -> Group:
    """One of: bookshelf (or two), wardrobe, sideboard or chest of drawers, upright piano."""
    s = Surfaces()
    kind = ctx.rng.choice(
        ["bookshelf", "bookshelf2", "wardrobe", "sideboard", "piano"],
        p=[0.3, 0.1, 0.25, 0.28, 0.07],
    )
    mat = ctx.plain(ma.WOOD)
    if kind.startswith("bookshelf"):
        d, h = ctx.u(0.28, 0.4), ctx.u(0.8, 2.0)
        for i in range(2 if kind == "bookshelf2" else 1):
            w = ctx.u(0.6, 1.1)
            s.extend(fu.bookshelf(ctx, w, d, h, mat), 0.0, (i * (w + 0.02), -d / 2, 0))
    elif kind == "wardrobe":
        d = ctx.u(0.5, 0.65)
        s.extend(fu.cabinet(ctx, ctx.u(0.8, 2.0), d, ctx.u(1.8, 2.2), mat), 0.0, (0, -d / 2, 0))
    elif kind == "sideboard":
        w, d, h = ctx.u(0.7, 2.0), ctx.u(0.4, 0.55), ctx.u(0.5, 1.1)
        s.extend(fu.cabinet(ctx, w, d, h, mat, drawers=ctx.chance(0.4)), 0.0, (0, -d / 2, 0))
        _props_on(ctx, s, (0, -d / 2, w, d, h), int(ctx.rng.integers(0, 3)))
    else:
        s.extend(fx.other_furniture(ctx, "piano"), 0.0, (0, -0.3, 0))
    g = _finish(s, "wall")
    g.picture = g.height < 1.3
    return g


def kitchen(ctx: Ctx) -> Group:
    """A counter run on base cabinets, often with a sink, wall cabinets and a fridge at one end."""
    s = Surfaces()
    w, top = ctx.u(1.2, 3.0), ctx.u(0.86, 0.94)
    run = fu.counter_run(ctx, w, sink=ctx.chance(0.8), wall_cabinets=ctx.chance(0.6), top_h=top)
    s.extend(run, 0.0, (0, -0.33, 0))
    _props_on(ctx, s, (0, -0.33, w, 0.45, top), int(ctx.rng.integers(0, 4)))
    if ctx.chance(0.7):
        fridge, fw, fd, _ = fx.fridge(ctx)
        side = 1 if ctx.chance(0.5) else -1
        s.extend(fridge, 0.0, (side * (w / 2 + fw / 2 + 0.03), -fd / 2, 0))
    return _finish(s, "wall")


def tub(ctx: Ctx) -> Group:
    """A bath in a corner with its shower curtain."""
    return _finish(fx.bathtub(ctx, ctx.u(1.5, 1.8), ctx.u(0.7, 0.8)), "corner")


def toilet(ctx: Ctx) -> Group:
    """A toilet, tank to the wall, sometimes with a bin beside it."""
    s = Surfaces()
    s.extend(fx.toilet(ctx), 0.0, (0, -0.35, 0))
    if ctx.chance(0.4):
        s.extend(fx.other_furniture(ctx, "bin"), 0.0, (0.45, -0.2, 0))
    return _finish(s, "wall")


def washbasin(ctx: Ctx) -> Group:
    """A vanity (cabinet + counter + sunk basin) or a pedestal sink."""
    s = Surfaces()
    if ctx.chance(0.6):
        run = fu.counter_run(
            ctx, ctx.u(0.7, 1.3), sink=True, wall_cabinets=False, top_h=ctx.u(0.8, 0.9)
        )
        s.extend(run, 0.0, (0, -0.3, 0))
    else:
        s.extend(fx.pedestal_sink(ctx), 0.0, (0, -0.25, 0))
    return _finish(s, "wall")


def misc(ctx: Ctx) -> Group:
    """A lone item: other furniture, a spare chair, a floor lamp or boxes on the floor."""
    kind = ctx.rng.choice(["ottoman", "stool", "bin", "rack", "chair", "floor_lamp", "boxes"])
    s = Surfaces()
    if kind == "chair":
        s.extend(fu.chair(ctx, ctx.rng.choice(["wood", "office", "arm"])))
    elif kind == "floor_lamp":
        s.extend(fx.clutter(ctx, "floor_lamp"))
    elif kind == "boxes":
        for _ in range(int(ctx.rng.integers(1, 4))):
            s.extend(fx.clutter(ctx, "box"), ctx.u(0, 1), (ctx.u(-0.3, 0.3), ctx.u(-0.3, 0.3), 0))
    else:
        s.extend(fx.other_furniture(ctx, str(kind)))
    return _finish(s, "free" if kind in ("ottoman", "stool", "boxes") else "wall")


GROUPS: dict[str, Callable[[Ctx], Group]] = {
    "dining": dining, "lounge": lounge, "sleep": sleep, "work": work, "storage": storage,
    "kitchen": kitchen, "tub": tub, "toilet": toilet, "washbasin": washbasin, "misc": misc,
}  # fmt: skip
"""Group builders by name."""

THEMES: tuple[tuple[str, ...], ...] = (
    ("lounge", "dining", "storage", "misc"),
    ("sleep", "work", "storage", "misc"),
    ("kitchen", "dining", "storage"),
    ("tub", "toilet", "washbasin", "work"),
)
"""Scene i starts from theme i % 4, so every few consecutive scenes cover every class."""
