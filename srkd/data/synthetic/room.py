"""Room layout of a synthetic scene: floor, four walls with doors, windows, curtains and
pictures ON the wall plane, and furniture groups placed without overlaps.

Room frame: x in [0, W], y in [0, L], floor at z = 0, walls up to H. Wall k runs from its start
corner along `direction`; a position on it is (s, z) with s in [0, length]. Wall-mounted items and
wall-anchored groups are built in a "wall frame" (x along the wall, y = 0 on the wall plane with
the room at -y, z up) and moved into the room by one yaw and one translation.

A door differs from its wall by little: a frame that is sometimes absent, a recess of 0-4 cm, a
colour that is sometimes the wall's own colour slightly shifted. Windows sit on the wall plane
too (glass recessed a few cm), often behind curtains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from srkd.data.synthetic import fixtures as fx
from srkd.data.synthetic import materials as ma
from srkd.data.synthetic.geometry import Material, Surfaces
from srkd.data.synthetic.groups import GROUPS, THEMES, Group
from srkd.data.synthetic.materials import CURTAIN, DOOR, FLOOR, WALL, WINDOW, Ctx

Rect = tuple[float, float, float, float]


@dataclass
class Room:
    """The room's size, the surfaces built so far and what is already taken on the floor
    (x0, y0, x1, y1) and on each wall (s0, s1, z0, z1)."""

    width: float
    length: float
    height: float
    surf: Surfaces = field(default_factory=Surfaces)
    floor_taken: list[Rect] = field(default_factory=list)
    wall_taken: list[list[Rect]] = field(default_factory=lambda: [[], [], [], []])
    wall_inst: list[int] = field(default_factory=list)
    wall_paint: list[Material] = field(default_factory=list)

    def wall(self, k: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Start corner (2,), unit direction (2,) and length of wall k (counter-clockwise)."""
        w, ln = self.width, self.length
        start = [(0, 0), (w, 0), (w, ln), (0, ln)][k]
        direction = [(1, 0), (0, 1), (-1, 0), (0, -1)][k]
        return np.asarray(start, float), np.asarray(direction, float), (w if k % 2 == 0 else ln)

    def to_wall_frame(
        self, k: int, s: float, out: float = 0.0, z: float = 0.0
    ) -> tuple[float, tuple[float, float, float]]:
        """(yaw, offset) that put a wall-frame object at position s on wall k, `out` metres into
        the room and `z` up. Local -y becomes the wall's inward normal, local +x the wall's -s."""
        start, d, _ = self.wall(k)
        n = np.array([-d[1], d[0]])
        yaw = float(np.arctan2(n[0], -n[1]))
        p = start + s * d + out * n
        return yaw, (float(p[0]), float(p[1]), float(z))

    def floor_rect(self, k: int, s0: float, s1: float, depth: float) -> Rect:
        """Axis-aligned floor rectangle in front of wall k over [s0, s1], `depth` into the room."""
        start, d, _ = self.wall(k)
        n = np.array([-d[1], d[0]])
        pts = np.array(
            [start + s0 * d, start + s1 * d, start + s0 * d + depth * n, start + s1 * d + depth * n]
        )
        return (*pts.min(axis=0), *pts.max(axis=0))

    def floor_free(self, r: Rect, margin: float = 0.0) -> bool:
        inside = (
            r[0] >= -1e-6
            and r[1] >= -1e-6
            and r[2] <= self.width + 1e-6
            and r[3] <= self.length + 1e-6
        )
        return inside and not any(_overlap(r, t, margin) for t in self.floor_taken)

    def wall_free(self, k: int, r: Rect) -> bool:
        return not any(_overlap(r, t, 0.03) for t in self.wall_taken[k])


def _overlap(a: Rect, b: Rect, margin: float) -> bool:
    return (
        a[0] < b[2] + margin
        and b[0] < a[2] + margin
        and a[1] < b[3] + margin
        and b[1] < a[3] + margin
    )


def _shifted(ctx: Ctx, c: tuple[float, float, float], sigma: float) -> Material:
    """A colour close to `c` (a door painted like its wall)."""
    x = np.asarray(c) * ctx.u(0.93, 1.04) + ctx.rng.normal(0, sigma, 3)
    return Material(tuple(np.clip(x, 0, 255).tolist()))


def _opening(
    ctx: Ctx,
    room: Room,
    k: int,
    s: float,
    w: float,
    z0: float,
    z1: float,
    label: int,
    fill: Material,
    frame: Material,
    recess: float,
    density: float,
) -> None:
    """Cut [s-w/2, s+w/2] x [z0, z1] out of wall k and fill it: a panel `recess` behind the wall
    plane, reveals joining it to the wall, and (often) a casing frame proud of the wall."""
    part, inst = Surfaces(), ctx.inst()
    part.cut((0, 0.05, (z0 + z1) / 2), (w, 0.1 + 2 * recess, z1 - z0), only=room.wall_inst[k])
    h = z1 - z0
    part.rect((-w / 2, recess, z0), (w, 0, 0), (0, 0, h), (0, -1, 0), label, inst, fill, density)
    if recess > 0.005:
        reveal = frame if ctx.chance(0.5) else room.wall_paint[k]
        part.rect((-w / 2, 0, z0), (0, recess, 0), (0, 0, h), (1, 0, 0), label, inst, reveal)
        part.rect((w / 2, 0, z0), (0, recess, 0), (0, 0, h), (-1, 0, 0), label, inst, reveal)
        part.rect((-w / 2, 0, z1), (w, 0, 0), (0, recess, 0), (0, 0, -1), label, inst, reveal)
        if z0 > 0.01:
            part.rect((-w / 2, 0, z0), (w, 0, 0), (0, recess, 0), (0, 0, 1), label, inst, reveal)
    if ctx.chance(0.65):  # casing
        fw, ft = ctx.u(0.04, 0.09), ctx.u(0.01, 0.025)
        lo = z0 - fw if z0 > 0.01 else 0.0
        for x in (-w / 2 - fw / 2, w / 2 + fw / 2):
            part.box((x, -ft / 2, (lo + z1 + fw) / 2), (fw, ft, z1 + fw - lo), label, inst, frame)
        part.box((0, -ft / 2, z1 + fw / 2), (w, ft, fw), label, inst, frame)
        if z0 > 0.01:
            part.box((0, -ft / 2, z0 - fw / 2), (w, ft, fw), label, inst, frame)
    if label == DOOR:
        part.box(
            (w / 2 - 0.09, recess - 0.035, 1.0),
            (0.12, 0.05, 0.025),
            DOOR,
            inst,
            ctx.plain(ma.METAL),
        )
    else:
        if ctx.chance(0.5):  # mullion
            part.box((0, recess - 0.015, (z0 + z1) / 2), (0.05, 0.03, h), WINDOW, inst, frame)
        if ctx.chance(0.6):  # sill
            sd = ctx.u(0.04, 0.15)
            part.box(
                (0, -sd / 2 + recess / 2, z0 - 0.015),
                (w + 0.1, sd + recess, 0.03),
                WINDOW,
                inst,
                frame,
            )
    room.surf.extend(part, *room.to_wall_frame(k, s))


def _free_span(ctx: Ctx, room: Room, k: int, w: float, z0: float, z1: float) -> float | None:
    """A random position s on wall k where [s-w/2, s+w/2] x [z0, z1] is free, or None."""
    _, _, length = room.wall(k)
    for _ in range(20):
        if length < w + 0.3:
            return None
        s = ctx.u(w / 2 + 0.15, length - w / 2 - 0.15)
        if room.wall_free(k, (s - w / 2, z0, s + w / 2, z1)):
            return s
    return None


def add_doors(ctx: Ctx, room: Room) -> None:
    """1-2 doors, each with a clear floor area in front."""
    for _ in range(int(ctx.rng.integers(1, 3))):
        k, w, h = int(ctx.rng.integers(4)), ctx.u(0.78, 0.95), ctx.u(1.98, 2.1)
        s = _free_span(ctx, room, k, w + 0.2, 0.0, h)
        if s is None:
            continue
        r = ctx.rng.random()
        wall_c = room.wall_paint[k].c1
        fill = (
            _shifted(ctx, wall_c, 6) if r < 0.35 else ctx.plain(ma.WOOD if r < 0.7 else ma.CERAMIC)
        )
        frame = fill if ctx.chance(0.5) else ctx.plain(ma.CERAMIC + ma.WOOD)
        recess = ctx.u(0.0, 0.04) if ctx.chance(0.7) else 0.0
        _opening(ctx, room, k, s, w, 0.0, h, DOOR, fill, frame, recess, 1.0)
        room.wall_taken[k].append((s - w / 2 - 0.1, 0.0, s + w / 2 + 0.1, h + 0.1))
        room.floor_taken.append(room.floor_rect(k, s - w / 2 - 0.1, s + w / 2 + 0.1, 0.95))


def add_windows(ctx: Ctx, room: Room) -> None:
    """1-3 windows where the wall is free from sill to lintel, some with curtains."""
    for _ in range(int(ctx.rng.integers(1, 4))):
        k, w = int(ctx.rng.integers(4)), ctx.u(0.6, 2.0)
        z0 = ctx.u(0.7, 1.1)
        z1 = min(z0 + ctx.u(0.9, 1.5), room.height - 0.2)
        s = _free_span(ctx, room, k, w + 0.2, z0 - 0.04, z1 + 0.1)
        if s is None:
            continue
        glass = ctx.image() if ctx.chance(0.25) else ctx.plain(ma.GLASS)
        frame = ctx.plain(ma.CERAMIC + ma.WOOD + ma.METAL[:2])
        _opening(ctx, room, k, s, w, z0, z1, WINDOW, glass, frame, ctx.u(0.03, 0.12), 0.35)
        room.wall_taken[k].append((s - w / 2 - 0.1, z0 - 0.04, s + w / 2 + 0.1, z1 + 0.1))
        if ctx.chance(0.45):
            _curtains(ctx, room, k, s, w, z0, z1)


def _curtains(ctx: Ctx, room: Room, k: int, s: float, w: float, z0: float, z1: float) -> None:
    """One or two curtain panels hanging in front of a window, hiding what is behind them."""
    top = min(z1 + ctx.u(0.05, 0.3), room.height - 0.02)
    bottom = ctx.u(0.0, 0.03) if ctx.chance(0.6) else max(z0 - 0.1, 0.0)
    out = ctx.u(0.06, 0.15)
    mat = (
        ctx.plain(ma.FABRIC)
        if ctx.chance(0.7)
        else (
            ctx.image()
            if ctx.chance(0.5)
            else ctx.striped(ctx.colour(ma.FABRIC), ctx.colour(ma.FABRIC), ctx.u(0.05, 0.3))
        )
    )
    over = ctx.u(0.05, 0.3)
    sides = (-1, 1) if ctx.chance(0.7) else (int(ctx.rng.choice([-1, 1])),)
    _, _, length = room.wall(k)
    for side in sides:
        pw = w * ctx.u(0.2, 0.55) + over
        x0 = -w / 2 - over if side < 0 else w / 2 + over - pw
        part, inst = Surfaces(), ctx.inst()
        part.wave(
            (x0, -out, bottom),
            (pw, 0, 0),
            (0, 0, top - bottom),
            ctx.u(0.02, 0.05),
            ctx.u(0.1, 0.25),
            ctx.u(0, 6.3),
            CURTAIN,
            inst,
            mat,
        )
        # everything between the curtain and (just behind) the wall is hidden by it
        part.cut(
            (x0 + pw / 2, (0.2 - out) / 2, (top + bottom) / 2),
            (pw, out + 0.2, top - bottom),
            spare=(inst,),
        )
        room.surf.extend(part, *room.to_wall_frame(k, s))
        # local +x runs against the wall's s direction (see Room.to_wall_frame)
        s0, s1 = s - (x0 + pw), s - x0
        room.wall_taken[k].append((s0, bottom, s1, top))
        if bottom < 0.1:
            room.floor_taken.append(room.floor_rect(k, max(s0, 0), min(s1, length), out + 0.08))


def place_group(ctx: Ctx, room: Room, g: Group, tries: int = 100) -> bool:
    """Put a group against a wall (or in a corner, or free in the room) where nothing is yet."""
    for _ in range(tries):
        if g.anchor == "free":
            yaw = float(ctx.rng.integers(4)) * np.pi / 2 + (
                ctx.u(-0.2, 0.2) if ctx.chance(0.4) else 0.0
            )
            c, sn = abs(np.cos(yaw)), abs(np.sin(yaw))
            hx, hy = (c * g.width + sn * g.depth) / 2, (sn * g.width + c * g.depth) / 2
            if hx + 0.3 > room.width - hx - 0.3 or hy + 0.3 > room.length - hy - 0.3:
                continue  # this orientation does not fit the room at all
            x, y = ctx.u(hx + 0.3, room.width - hx - 0.3), ctx.u(hy + 0.3, room.length - hy - 0.3)
            r = (x - hx, y - hy, x + hx, y + hy)
            if room.floor_free(r, 0.25):
                room.surf.extend(g.surf, yaw, (x, y, 0.0))
                room.floor_taken.append(r)
                return True
            continue
        k = int(ctx.rng.integers(4))
        _, _, length = room.wall(k)
        if g.width > length - 0.1:
            continue
        gap = ctx.u(0.0, 0.04)
        if g.anchor == "corner":
            s = g.width / 2 + gap if ctx.chance(0.5) else length - g.width / 2 - gap
        else:
            s = ctx.u(g.width / 2 + gap, length - g.width / 2 - gap)
        r = room.floor_rect(k, s - g.width / 2, s + g.width / 2, gap + g.depth)
        wr = (s - g.width / 2, 0.0, s + g.width / 2, g.height)
        if room.floor_free(r, 0.1) and room.wall_free(k, wr):
            room.surf.extend(g.surf, *room.to_wall_frame(k, s, gap + g.depth / 2))
            room.floor_taken.append(r)
            room.wall_taken[k].append(wr)
            if g.picture and ctx.chance(0.6):
                _picture(ctx, room, k, s, g.width, g.height + ctx.u(0.15, 0.4))
            return True
    return False


def _picture(ctx: Ctx, room: Room, k: int, s: float | None, max_w: float, z0: float) -> None:
    w, h = ctx.u(0.3, max(0.35, min(1.2, max_w))), ctx.u(0.3, 0.9)
    if z0 + h > room.height - 0.15:
        return
    if s is None:
        s = _free_span(ctx, room, k, w, z0, z0 + h)
    if s is None or not room.wall_free(k, (s - w / 2, z0, s + w / 2, z0 + h)):
        return
    room.surf.extend(fx.picture(ctx, w, h), *room.to_wall_frame(k, s, z=z0))
    room.wall_taken[k].append((s - w / 2, z0, s + w / 2, z0 + h))


FLOORS = ma.WOOD[:5] + ma.STONE[:3] + ma.FABRIC[:3] + ((200, 200, 195), (160, 160, 155))


def build_room(ctx: Ctx, theme: int) -> Room:
    """A furnished room: shell and doors, the theme's groups, windows, 3-6 random extra groups
    (those that fit), a rug and a few more pictures. Returns the `Room` with all surfaces in room
    coordinates."""
    room = Room(ctx.u(3.8, 6.5), ctx.u(3.3, 5.5), ctx.u(2.3, 2.8))
    surf = room.surf
    floor_mat = (
        ctx.plain(FLOORS)
        if ctx.chance(0.7)
        else ctx.striped(ctx.colour(FLOORS), ctx.colour(FLOORS), ctx.u(0.1, 0.3))
    )
    # walls and floor get fewer points per m2 than furniture, so that the objects keep enough
    surf.rect(
        (0, 0, 0),
        (room.width, 0, 0),
        (0, room.length, 0),
        (0, 0, 1),
        FLOOR,
        ctx.inst(),
        floor_mat,
        0.7,
    )
    wall_c = ctx.colour(ma.WALLS)
    for k in range(4):
        start, d, length = room.wall(k)
        inst = ctx.inst()
        room.wall_inst.append(inst)
        # one wall in four gets its own (accent) colour, as painted rooms often have
        mat = Material(wall_c) if ctx.chance(0.75) else ctx.plain(ma.WALLS)
        o = (start[0], start[1], 0.0)
        n = (-d[1], d[0], 0.0)
        surf.rect(
            o, (d[0] * length, d[1] * length, 0), (0, 0, room.height), n, WALL, inst, mat, 0.6
        )
        room.wall_paint.append(mat)
    if ctx.chance(0.3):  # a pillar or duct casing: a wall-coloured box standing out of a wall
        k = int(ctx.rng.integers(4))
        w, dp = ctx.u(0.3, 0.6), ctx.u(0.15, 0.45)
        s = _free_span(ctx, room, k, w, 0.0, room.height)
        if s is not None:
            part = Surfaces()
            part.box(
                (0, -dp / 2, room.height / 2),
                (w, dp, room.height),
                WALL,
                room.wall_inst[k],
                room.wall_paint[k],
                skip=("+y", "+z"),
            )
            surf.extend(part, *room.to_wall_frame(k, s))
            room.wall_taken[k].append((s - w / 2, 0.0, s + w / 2, room.height))
            room.floor_taken.append(room.floor_rect(k, s - w / 2, s + w / 2, dp))
    add_doors(ctx, room)
    # the theme's groups go first, windows where the wall is still free above them, then extras
    for name in THEMES[theme % len(THEMES)]:
        for _ in range(4):  # a theme group that does not fit is rebuilt (other sizes) and retried
            if place_group(ctx, room, GROUPS[name](ctx)):
                break
    add_windows(ctx, room)
    for name in ctx.rng.choice(sorted(GROUPS), int(ctx.rng.integers(3, 7))):
        place_group(ctx, room, GROUPS[str(name)](ctx))
    if ctx.chance(0.4):  # a rug: floor class, in a fabric colour
        rw, rl = ctx.u(1.2, 2.5), ctx.u(0.8, 2.0)
        x, y = ctx.u(rw / 2, room.width - rw / 2), ctx.u(rl / 2, room.length - rl / 2)
        rug = ctx.plain(ma.FABRIC) if ctx.chance(0.6) else ctx.image()
        surf.box((x, y, 0.006), (rw, rl, 0.012), FLOOR, surf.instance[0], rug)
    for _ in range(int(ctx.rng.integers(0, 3))):
        _picture(ctx, room, int(ctx.rng.integers(4)), None, 1.0, ctx.u(1.1, 1.6))
    return room
