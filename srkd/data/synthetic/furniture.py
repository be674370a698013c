"""Furniture of the synthetic rooms (tables, seats, beds, casework), built from boxes and
cylinders in a local frame.

Local frame of every piece: x across its width, y across its depth with its back at +y (the side
that goes against a wall) and its front facing -y, z up from the floor. Colours come from the
shared palettes of materials.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from srkd.data.synthetic.geometry import Material, Surfaces
from srkd.data.synthetic.materials import (
    BED,
    BOOKSHELF,
    CABINET,
    CERAMIC,
    CHAIR,
    CLUTTER,
    COUNTER,
    FABRIC,
    METAL,
    SINK,
    SOFA,
    STONE,
    VIVID,
    WOOD,
    Ctx,
)  # fmt: skip


# --------------------------------------------------------------------------------- tables, seats
def table(ctx: Ctx, w: float, d: float, h: float, label: int, mat: Material, legs: str) -> Surfaces:
    """A top slab on four legs, two side panels ('panel') or a central column ('pedestal')."""
    s, inst = Surfaces(), ctx.inst()
    t = ctx.u(0.025, 0.05)
    s.box((0, 0, h - t / 2), (w, d, t), label, inst, mat)
    leg_mat = mat if ctx.chance(0.6) else ctx.plain(METAL + WOOD[-2:])
    if legs == "panel":
        for x in (-w / 2 + 0.02, w / 2 - 0.02):
            s.box((x, 0, (h - t) / 2), (0.03, d - 0.04, h - t), label, inst, mat)
    elif legs == "pedestal":
        s.cylinder((0, 0, 0.02), ctx.u(0.04, 0.07), h - t - 0.02, label, inst, leg_mat, top=False)
        s.box((0, 0, 0.01), (min(w, 0.6), min(d, 0.6), 0.02), label, inst, leg_mat)
    else:
        inset, lw = ctx.u(0.03, 0.08), ctx.u(0.03, 0.06)
        for sx in (-1, 1):
            for sy in (-1, 1):
                pos = (sx * (w / 2 - inset), sy * (d / 2 - inset), (h - t) / 2)
                s.box(pos, (lw, lw, h - t), label, inst, leg_mat)
    return s


def chair(ctx: Ctx, style: str, mat: Material | None = None) -> Surfaces:
    """A chair facing -y (backrest at +y): 'wood' (four legs), 'office' (column and star base)
    or 'arm' (an upholstered armchair, built like a small sofa)."""
    s, inst = Surfaces(), ctx.inst()
    if style == "arm":
        w, d, seat = ctx.u(0.7, 0.9), ctx.u(0.7, 0.85), ctx.u(0.38, 0.45)
        mat = mat or ctx.plain(FABRIC)
        s.box((0, 0, seat / 2), (w, d, seat), CHAIR, inst, mat)
        back_h = ctx.u(0.75, 0.9)
        s.box((0, d / 2 - 0.09, back_h / 2), (w, 0.18, back_h), CHAIR, inst, mat)
        arm_h = ctx.u(0.55, 0.65)
        for x in (-w / 2 + 0.07, w / 2 - 0.07):
            s.box((x, -0.09, arm_h / 2), (0.14, d - 0.18, arm_h), CHAIR, inst, mat)
        return s
    w, d, seat = ctx.u(0.4, 0.5), ctx.u(0.4, 0.5), ctx.u(0.43, 0.5)
    mat = mat or ctx.plain(WOOD + FABRIC[:3])
    s.box((0, 0, seat - 0.025), (w, d, 0.05), CHAIR, inst, mat)
    back_h = ctx.u(0.3, 0.5)
    s.box((0, d / 2 - 0.02, seat + back_h / 2), (w, 0.04, back_h), CHAIR, inst, mat)
    if style == "office":
        base = ctx.plain(METAL[:2] + WOOD[-2:])
        s.cylinder((0, 0, 0.08), 0.03, seat - 0.13, CHAIR, inst, base, top=False)
        for a in np.linspace(0, 2 * np.pi, 5, endpoint=False) + ctx.u(0, 1.2):
            arm = Surfaces()
            arm.box((0.15, 0, 0.05), (0.3, 0.04, 0.04), CHAIR, inst, base)
            s.extend(arm, float(a))
    else:
        for sx in (-1, 1):
            for sy in (-1, 1):
                s.cylinder(
                    (sx * (w / 2 - 0.03), sy * (d / 2 - 0.03), 0),
                    0.018,
                    seat - 0.05,
                    CHAIR,
                    inst,
                    mat,
                    top=False,
                )
    return s


def sofa(ctx: Ctx, w: float, mat: Material) -> Surfaces:
    """A sofa facing -y: seat base, backrest against +y, two armrests; pillows are clutter."""
    s, inst = Surfaces(), ctx.inst()
    d, seat, back_h = ctx.u(0.8, 1.0), ctx.u(0.4, 0.46), ctx.u(0.75, 0.92)
    bd, aw, arm_h = ctx.u(0.15, 0.25), ctx.u(0.1, 0.22), ctx.u(0.55, 0.65)
    s.box((0, 0, seat / 2), (w, d, seat), SOFA, inst, mat)
    s.box((0, d / 2 - bd / 2, back_h / 2), (w, bd, back_h), SOFA, inst, mat)
    for x in (-w / 2 + aw / 2, w / 2 - aw / 2):
        s.box((x, 0, arm_h / 2), (aw, d, arm_h), SOFA, inst, mat)
    for _ in range(int(ctx.rng.integers(0, 4))):
        x = ctx.u(-w / 2 + aw + 0.25, w / 2 - aw - 0.25)
        pillow = ctx.plain(FABRIC + VIVID)
        s.box((x, d / 2 - bd - 0.07, seat + 0.2), (0.4, 0.12, 0.4), CLUTTER, ctx.inst(), pillow)
    return s


def bed(ctx: Ctx, w: float, length: float) -> Surfaces:
    """A bed with its head at +y: frame, mattress, a blanket, a headboard; pillows are clutter."""
    s, inst = Surfaces(), ctx.inst()
    frame = ctx.plain(WOOD + FABRIC)
    fh, mh = ctx.u(0.2, 0.35), ctx.u(0.18, 0.28)
    s.box((0, 0, fh / 2), (w, length, fh), BED, inst, frame)
    top = fh + mh
    s.box(
        (0, 0.01, fh + mh / 2),
        (w - 0.05, length - 0.06, mh),
        BED,
        inst,
        ctx.plain(CERAMIC + FABRIC),
    )
    blanket = (
        ctx.plain(FABRIC)
        if ctx.chance(0.6)
        else ctx.striped(ctx.colour(FABRIC), ctx.colour(FABRIC), ctx.u(0.1, 0.4))
    )
    cover = length * ctx.u(0.55, 0.8)
    s.box(
        (0, -length / 2 + cover / 2 - 0.02, top - 0.03),
        (w + 0.02, cover + 0.02, 0.08),
        BED,
        inst,
        blanket,
    )
    hb = ctx.u(0.8, 1.2)
    s.box((0, length / 2 + 0.03, hb / 2), (w + 0.04, 0.06, hb), BED, inst, frame)
    for x in (-w / 4, w / 4) if w > 1.2 else (0.0,):
        s.box(
            (x, length / 2 - 0.25, top + 0.07),
            (min(0.6, w / 2 - 0.1), 0.35, 0.14),
            CLUTTER,
            ctx.inst(),
            ctx.plain(CERAMIC + FABRIC),
        )
    return s


# ------------------------------------------------------------------------------------ casework
def cabinet(
    ctx: Ctx,
    w: float,
    d: float,
    h: float,
    mat: Material,
    label: int = CABINET,
    z0: float = 0.0,
    drawers: bool = False,
) -> Surfaces:
    """A closed box with door (or drawer) fronts and handles on its -y face."""
    s, inst = Surfaces(), ctx.inst()
    s.box((0, 0, z0 + h / 2), (w, d, h), label, inst, mat, skip=("+y",))
    front = mat if ctx.chance(0.7) else ctx.plain(WOOD + STONE)
    handle = ctx.plain(METAL)
    if drawers:
        n = max(2, int(h / ctx.u(0.18, 0.3)))
        for i in range(n):
            zc = z0 + (i + 0.5) * h / n
            s.box((0, -d / 2 - 0.008, zc), (w - 0.01, 0.016, h / n - 0.008), label, inst, front)
            s.box(
                (0, -d / 2 - 0.03, zc + h / n / 4),
                (min(0.2, w / 3), 0.025, 0.02),
                label,
                inst,
                handle,
            )
        return s
    n = max(1, int(round(w / ctx.u(0.4, 0.6))))
    for i in range(n):
        xc = -w / 2 + (i + 0.5) * w / n
        s.box(
            (xc, -d / 2 - 0.008, z0 + h / 2), (w / n - 0.008, 0.016, h - 0.01), label, inst, front
        )
        hx = xc + (w / n / 2 - 0.06) * (1 if i % 2 == 0 else -1)
        hz = z0 + (h - 0.12 if z0 > 0.5 else min(h - 0.12, 1.0))
        s.box((hx, -d / 2 - 0.03, hz), (0.02, 0.025, 0.14), label, inst, handle)
    return s


def bookshelf(ctx: Ctx, w: float, d: float, h: float, mat: Material) -> Surfaces:
    """An open-front shelf unit: sides, top, plinth, back and shelves carrying blocks of books
    (books are labelled bookshelf, as is usual in ScanNet annotations)."""
    s, inst = Surfaces(), ctx.inst()
    t = 0.02
    for x in (-w / 2 + t / 2, w / 2 - t / 2):
        s.box((x, 0, h / 2), (t, d, h), BOOKSHELF, inst, mat)
    s.box((0, d / 2 - 0.005, h / 2), (w - 2 * t, 0.01, h), BOOKSHELF, inst, mat)
    s.box((0, 0, h - t / 2), (w - 2 * t, d, t), BOOKSHELF, inst, mat)
    n = max(2, int(h / ctx.u(0.3, 0.4)))
    gap = (h - 0.08) / n
    for i in range(n):
        z = 0.08 + i * gap
        s.box((0, 0, z - t / 2), (w - 2 * t, d, t), BOOKSHELF, inst, mat)
        x = -w / 2 + t
        while x < w / 2 - t - 0.1 and ctx.chance(0.85):
            bw = min(ctx.u(0.1, 0.45), w / 2 - t - x)
            bh = min(ctx.u(0.15, 0.3), gap - t - 0.02)
            books = ctx.striped(ctx.colour(VIVID), ctx.colour(VIVID + WOOD), ctx.u(0.02, 0.05))
            s.box(
                (x + bw / 2, 0.03, z + bh / 2),
                (bw, d * ctx.u(0.6, 0.85), bh),
                BOOKSHELF,
                inst,
                books,
            )
            x += bw + ctx.u(0.0, 0.15)
    return s


def counter_run(ctx: Ctx, w: float, sink: bool, wall_cabinets: bool, top_h: float) -> Surfaces:
    """Kitchen or bathroom casework: base cabinets (cabinet), a stone or wood top (counter),
    an optional sunk basin with a tap (sink) and optional wall cabinets (cabinet)."""
    s = Surfaces()
    d, t = ctx.u(0.55, 0.65), ctx.u(0.03, 0.05)
    body = ctx.plain(WOOD + STONE)
    top_mat = ctx.plain(STONE + WOOD)
    sink_inst = ctx.inst() if sink else -1
    cab = Surfaces()
    cab.extend(cabinet(ctx, w, d - 0.04, top_h - t - 0.1, body, z0=0.1), 0.0, (0, 0.02, 0))
    cab.box(
        (0, 0.04, 0.05),
        (w, d - 0.08, 0.1),
        CABINET,
        cab.instance[0],
        ctx.plain(WOOD[-2:] + STONE[1:3]),
    )
    if sink:  # the basin hangs into the cabinet: spare it from the cabinet's cutters
        cab.cutters = [dataclasses.replace(c, spare=(sink_inst,)) for c in cab.cutters]
    s.extend(cab)
    inst = ctx.inst()
    z = top_h - t / 2
    if not sink:
        s.box((0, 0, z), (w, d, t), COUNTER, inst, top_mat)
    else:
        bw, bd = min(ctx.u(0.4, 0.6), w - 0.3), ctx.u(0.35, 0.42)
        bx = ctx.u(-w / 2 + bw / 2 + 0.12, w / 2 - bw / 2 - 0.12)
        left, right = bx - bw / 2 + w / 2, w / 2 - bx - bw / 2
        s.box((-w / 2 + left / 2, 0, z), (left, d, t), COUNTER, inst, top_mat)
        s.box((w / 2 - right / 2, 0, z), (right, d, t), COUNTER, inst, top_mat)
        front, back = (d - bd) / 2 - 0.04, (d - bd) / 2 + 0.04
        s.box((bx, -d / 2 + front / 2, z), (bw, front, t), COUNTER, inst, top_mat)
        s.box((bx, d / 2 - back / 2, z), (bw, back, t), COUNTER, inst, top_mat)
        basin_mat = ctx.plain(METAL[:1] + CERAMIC)
        depth = ctx.u(0.14, 0.2)
        s.extend(
            open_box(bw, bd, depth, SINK, sink_inst, basin_mat), 0.0, (bx, -0.04, top_h - depth)
        )
        s.cylinder(
            (bx, d / 2 - back / 2 + 0.02, top_h),
            0.02,
            ctx.u(0.18, 0.3),
            SINK,
            sink_inst,
            ctx.plain(METAL),
        )
    if wall_cabinets:
        z0 = top_h + ctx.u(0.5, 0.6)
        s.extend(cabinet(ctx, w, 0.33, ctx.u(0.6, 0.8), body, z0=z0), 0.0, (0, d / 2 - 0.165, 0))
    return s


def open_box(
    w: float, d: float, h: float, label: int, inst: int, mat: Material, t: float = 0.025
) -> Surfaces:
    """A container open at the top (bath, basin, bin), its base at z=0: bottom slab and four walls
    of thickness t, so its inside is visible."""
    s = Surfaces()
    s.box((0, 0, t / 2), (w, d, t), label, inst, mat)
    for x in (-w / 2 + t / 2, w / 2 - t / 2):
        s.box((x, 0, h / 2), (t, d, h), label, inst, mat)
    for y in (-d / 2 + t / 2, d / 2 - t / 2):
        s.box((0, y, h / 2), (w - 2 * t, t, h), label, inst, mat)
    return s
