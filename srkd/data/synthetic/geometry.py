"""Analytic surfaces for the synthetic rooms: parametric patches, sampled as points with normals.

A `Surfaces` object collects primitives (rectangles, boxes, cylinders, disks and wavy sheets such
as curtains), each with a class label, an instance id and a material (two colours and a pattern).
`sample_surfaces` draws points uniformly by area (times a per-primitive density factor) and
returns each point's position, its analytic unit normal and its primitive index. "Cutters"
(oriented boxes) remove the points a scanner could not see: the floor under a bed, the wall behind
a wardrobe, the top of a cabinet under a counter, the wall inside a door opening. A solid box's
cutter is slightly larger than the box, so surfaces that touch it (the floor it stands on, the
seat under a backrest) lose their hidden part; its own faces are spared by their solid id.

Every primitive is stored in a local frame and can be moved into the room with one yaw about z
plus a translation (`Surfaces.extend`), so furniture is built once around its own origin.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

RECT, CYLINDER, DISK, WAVE = 0, 1, 2, 3
"""Primitive kinds. RECT: o + s*u + t*v, s, t in [0, 1], normal along u x v. CYLINDER: side of a
vertical cylinder, o = base centre, u = radius vector, v = axis (height) vector; normal outward.
DISK: o = centre, u = radius vector, v = unit normal. WAVE: a RECT displaced along its normal by
amp * sin(k * s_metres + phase) (a hanging curtain); extra = (amp, k, phase)."""

UNIFORM, STRIPES, IMAGE = 0, 1, 2
"""Colour patterns: f(s, t) in [0, 1] mixes colour c1 (f=0) and c2 (f=1). STRIPES is
0.5 + 0.5 sin(a s + b t + phi); IMAGE multiplies two such waves (a picture's content)."""


@dataclass(frozen=True)
class Material:
    """Surface colour: RGB `c1`, `c2` in [0, 255] mixed by `pattern` with wave parameters `wave`
    = (a1, b1, phi1, a2, b2, phi2) in radians per metre / radians."""

    c1: tuple[float, float, float]
    c2: tuple[float, float, float] | None = None
    pattern: int = UNIFORM
    wave: tuple[float, float, float, float, float, float] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


SOLID_MARGIN = 0.006
"""Metres by which a solid's cutter exceeds the box: what touches it is hidden too."""


@dataclass(frozen=True)
class Cutter:
    """An oriented box (centre, half extents, yaw about z) that hides points inside it.

    It hides the points of every primitive except: faces of the solid `solid` (the box itself),
    instances listed in `spare`, and, when `only` >= 0, every instance other than `only` (an
    opening cut into one wall).
    """

    centre: np.ndarray
    half: np.ndarray
    yaw: float
    solid: int
    spare: tuple[int, ...]
    only: int


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Surfaces:
    """A growing list of primitives and cutters (see module docstring), all in one frame."""

    kind: list[int] = field(default_factory=list)
    o: list[np.ndarray] = field(default_factory=list)
    u: list[np.ndarray] = field(default_factory=list)
    v: list[np.ndarray] = field(default_factory=list)
    extra: list[tuple[float, float, float]] = field(default_factory=list)
    label: list[int] = field(default_factory=list)
    instance: list[int] = field(default_factory=list)
    material: list[Material] = field(default_factory=list)
    density: list[float] = field(default_factory=list)
    solid: list[int] = field(default_factory=list)  # id of the solid box a face belongs to, or -1
    cutters: list[Cutter] = field(default_factory=list)
    n_solids: int = 0

    def __len__(self) -> int:
        return len(self.kind)

    def _add(
        self, kind: int, o: ArrayLike, u: ArrayLike, v: ArrayLike, label: int, inst: int,
        mat: Material, density: float, extra: tuple[float, ...] = (0, 0, 0), solid: int = -1,
    ) -> None:  # fmt: skip
        self.kind.append(kind)
        self.o.append(np.asarray(o, dtype=np.float64))
        self.u.append(np.asarray(u, dtype=np.float64))
        self.v.append(np.asarray(v, dtype=np.float64))
        self.extra.append(tuple(float(x) for x in extra))
        self.label.append(int(label))
        self.instance.append(int(inst))
        self.material.append(mat)
        self.density.append(float(density))
        self.solid.append(int(solid))

    def rect(
        self, o: ArrayLike, u: ArrayLike, v: ArrayLike, normal: ArrayLike, label: int, inst: int,
        mat: Material, density: float = 1.0, solid: int = -1,
    ) -> None:  # fmt: skip
        """Rectangle o + s u + t v (edges swapped if needed so its normal points along `normal`)."""
        o, u, v = (np.asarray(x, dtype=np.float64) for x in (o, u, v))
        n = np.asarray(normal, dtype=np.float64)
        # (u x v) . n written out: np.cross costs more than the whole rest of this method
        triple = (
            (u[1] * v[2] - u[2] * v[1]) * n[0]
            + (u[2] * v[0] - u[0] * v[2]) * n[1]
            + (u[0] * v[1] - u[1] * v[0]) * n[2]
        )
        if triple < 0:
            o, u = o + u, -u
        self._add(RECT, o, u, v, label, inst, mat, density, solid=solid)

    def box(
        self, centre: ArrayLike, size: ArrayLike, label: int, inst: int, mat: Material,
        skip: tuple[str, ...] = (), density: float = 1.0, solid: bool = True,
        spare: tuple[int, ...] = (),
    ) -> None:  # fmt: skip
        """Axis-aligned box: its six faces (minus the `skip` ones, named '+x', '-z', ...).

        With `solid`, a cutter hides the points of other surfaces inside or touching the box,
        except those of the instances in `spare` (a sink basin sunk into a cabinet). The bottom
        face of a box standing on the floor is never drawn.
        """
        c = np.asarray(centre, dtype=np.float64)
        h = np.asarray(size, dtype=np.float64) / 2.0
        sid = -1
        if solid:
            sid = self.n_solids
            self.n_solids += 1
        if c[2] - h[2] < 0.01:
            skip = (*skip, "-z")
        for axis in range(3):
            a, b = [i for i in range(3) if i != axis]
            for sign in (1.0, -1.0):
                name = ("+" if sign > 0 else "-") + "xyz"[axis]
                if name in skip:
                    continue
                n = np.zeros(3)
                n[axis] = sign
                u = np.zeros(3)
                u[a] = 2 * h[a]
                v = np.zeros(3)
                v[b] = 2 * h[b]
                o = c + sign * h * n - u / 2 - v / 2
                d = density * (0.15 if name == "-z" else 1.0)  # undersides are rarely scanned
                self.rect(o, u, v, n, label, inst, mat, d, solid=sid)
        if solid:
            self.cut(c, 2 * h + 2 * SOLID_MARGIN, solid=sid, spare=spare)

    def cylinder(
        self, base: ArrayLike, radius: float, height: float, label: int, inst: int,
        mat: Material, top: bool = True, density: float = 1.0,
    ) -> None:  # fmt: skip
        """Vertical cylinder standing on `base` (its bottom centre), with an optional top disk."""
        base = np.asarray(base, dtype=np.float64)
        self._add(CYLINDER, base, (radius, 0, 0), (0, 0, height), label, inst, mat, density)
        if top:
            self.disk(base + (0, 0, height), radius, (0, 0, 1), label, inst, mat, density)
        sid = self.n_solids
        self.n_solids += 1
        self.solid[-2 if top else -1 :] = [sid] * (2 if top else 1)
        side = 1.4 * radius + 2 * SOLID_MARGIN  # the square around the cylinder
        self.cut(base + (0, 0, height / 2), (side, side, height + 2 * SOLID_MARGIN), solid=sid)

    def disk(
        self, centre: ArrayLike, radius: float, normal: ArrayLike, label: int, inst: int,
        mat: Material, density: float = 1.0,
    ) -> None:  # fmt: skip
        """Horizontal disk of `radius` around `centre` facing `normal` (+z or -z)."""
        self._add(DISK, centre, (radius, 0, 0), normal, label, inst, mat, density)

    def wave(
        self, o: ArrayLike, u: ArrayLike, v: ArrayLike, amp: float, wavelength: float,
        phase: float, label: int, inst: int, mat: Material, density: float = 1.0,
    ) -> None:  # fmt: skip
        """Vertical wavy sheet (curtain): rectangle o + s u + t v displaced along u x v."""
        k = 2 * np.pi / wavelength
        self._add(WAVE, o, u, v, label, inst, mat, density, (amp, k, phase))

    def cut(
        self, centre: ArrayLike, size: ArrayLike, yaw: float = 0.0, solid: int = -1,
        spare: tuple[int, ...] = (), only: int = -1,
    ) -> None:  # fmt: skip
        """Add a cutter box of full extent `size` (see `Cutter`)."""
        self.cutters.append(
            Cutter(
                np.asarray(centre, dtype=np.float64),
                np.asarray(size, dtype=np.float64) / 2.0,
                float(yaw),
                int(solid),
                tuple(int(i) for i in spare),
                int(only),
            )
        )

    def extend(self, other: Surfaces, yaw: float = 0.0, offset: ArrayLike = (0, 0, 0)) -> None:
        """Append `other`'s primitives and cutters, rotated by `yaw` about z then translated."""
        r = _rot_z(yaw)
        t = np.asarray(offset, dtype=np.float64)
        for i in range(len(other)):
            self._add(
                other.kind[i],
                r @ other.o[i] + t,
                r @ other.u[i],
                r @ other.v[i],
                other.label[i],
                other.instance[i],
                other.material[i],
                other.density[i],
                other.extra[i],
                other.solid[i] + self.n_solids if other.solid[i] >= 0 else -1,
            )
        for c in other.cutters:
            solid = c.solid + self.n_solids if c.solid >= 0 else -1
            self.cutters.append(
                Cutter(r @ c.centre + t, c.half, c.yaw + yaw, solid, c.spare, c.only)
            )
        self.n_solids += other.n_solids


def _areas(kind: np.ndarray, u: np.ndarray, v: np.ndarray, extra: np.ndarray) -> np.ndarray:
    uv = np.linalg.norm(np.cross(u, v), axis=1)
    radius = np.linalg.norm(u, axis=1)
    height = np.linalg.norm(v, axis=1)
    area = uv.copy()
    area[kind == CYLINDER] = (2 * np.pi * radius * height)[kind == CYLINDER]
    area[kind == DISK] = (np.pi * radius**2)[kind == DISK]
    # curtain: arc length factor of amp*sin(k s), mean of sqrt(1 + (amp k cos)^2) over a period
    w = kind == WAVE
    if w.any():
        ak = extra[w, 0] * extra[w, 1]
        phase = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        factor = np.sqrt(1 + (ak[:, None] * np.cos(phase)[None]) ** 2).mean(axis=1)
        area[w] = uv[w] * factor
    return area


@dataclass(frozen=True)
class SampledPoints:
    """Points drawn from a `Surfaces`: coord float64 (M, 3), normal float64 (M, 3) unit,
    prim int64 (M,) primitive index, st float64 (M, 2) in-surface coordinates in metres."""

    coord: np.ndarray
    normal: np.ndarray
    prim: np.ndarray
    st: np.ndarray


def sample_surfaces(surf: Surfaces, n: int, rng: np.random.Generator) -> SampledPoints:
    """Draw `n` points over all primitives, proportionally to area x density factor."""
    kind = np.asarray(surf.kind)
    o, u, v = (np.stack(x) for x in (surf.o, surf.u, surf.v))
    extra = np.asarray(surf.extra, dtype=np.float64)
    weight = _areas(kind, u, v, extra) * np.asarray(surf.density)
    counts = rng.multinomial(n, weight / weight.sum())
    prim = np.repeat(np.arange(len(kind)), counts)
    k = kind[prim]
    s, t = rng.random(n), rng.random(n)
    coord = np.empty((n, 3))
    normal = np.empty((n, 3))
    st = np.empty((n, 2))
    po, pu, pv = o[prim], u[prim], v[prim]

    m = (k == RECT) | (k == WAVE)
    cr = np.cross(pu[m], pv[m])
    n0 = cr / np.linalg.norm(cr, axis=1, keepdims=True)
    coord[m] = po[m] + s[m, None] * pu[m] + t[m, None] * pv[m]
    normal[m] = n0
    st[m] = np.stack(
        [s[m] * np.linalg.norm(pu[m], axis=1), t[m] * np.linalg.norm(pv[m], axis=1)], 1
    )
    w = k == WAVE
    if w.any():
        ex = extra[prim[w]]
        sw = st[w, 0]
        ulen = np.linalg.norm(pu[w], axis=1)
        uhat = pu[w] / ulen[:, None]
        nw = normal[w]
        coord[w] += (ex[:, 0] * np.sin(ex[:, 1] * sw + ex[:, 2]))[:, None] * nw
        # surface x(s) = s uhat + amp sin(k s + p) n0: tangent uhat + amp k cos(.) n0,
        # so the normal is n0 - amp k cos(.) uhat (normalised)
        slope = ex[:, 0] * ex[:, 1] * np.cos(ex[:, 1] * sw + ex[:, 2])
        nn = nw - slope[:, None] * uhat
        normal[w] = nn / np.linalg.norm(nn, axis=1, keepdims=True)

    m = k == CYLINDER
    theta = 2 * np.pi * s[m]
    r = np.linalg.norm(pu[m], axis=1)
    radial = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], 1)
    coord[m] = po[m] + r[:, None] * radial + t[m, None] * pv[m]
    normal[m] = radial
    st[m] = np.stack([theta * r, t[m] * np.linalg.norm(pv[m], axis=1)], 1)

    m = k == DISK
    theta = 2 * np.pi * s[m]
    r = np.linalg.norm(pu[m], axis=1) * np.sqrt(t[m])  # sqrt: uniform over the disk's area
    coord[m] = po[m] + np.stack([r * np.cos(theta), r * np.sin(theta), np.zeros_like(r)], 1)
    normal[m] = pv[m] / np.linalg.norm(pv[m], axis=1, keepdims=True)
    st[m] = coord[m, :2] - po[m, :2]
    return SampledPoints(coord, normal, prim, st)


def hidden_mask(surf: Surfaces, pts: SampledPoints) -> np.ndarray:
    """bool (M,): points inside a cutter that applies to them (hidden from the scanner)."""
    inst = np.asarray(surf.instance)[pts.prim]
    solid = np.asarray(surf.solid)[pts.prim]
    hidden = np.zeros(len(pts.prim), dtype=bool)
    # points sorted by x: each cutter only looks at the slice within its x extent
    order = np.argsort(pts.coord[:, 0], kind="stable")
    xs = pts.coord[order, 0]
    for c in surf.cutters:
        cos, sin = abs(np.cos(c.yaw)), abs(np.sin(c.yaw))
        ext_x = cos * c.half[0] + sin * c.half[1]  # half extent of the rotated box along x
        lo, hi = np.searchsorted(xs, [c.centre[0] - ext_x, c.centre[0] + ext_x])
        idx = order[lo:hi]
        d = pts.coord[idx] - c.centre
        local = d @ _rot_z(c.yaw)  # a row times R is R^T applied to it: room -> box frame
        idx = idx[(np.abs(local) < c.half).all(axis=1)]
        if c.solid >= 0:
            idx = idx[solid[idx] != c.solid]
        if c.spare:
            idx = idx[~np.isin(inst[idx], c.spare)]
        if c.only >= 0:
            idx = idx[inst[idx] == c.only]
        hidden[idx] = True
    return hidden


def shade(surf: Surfaces, pts: SampledPoints) -> np.ndarray:
    """float64 (M, 3): each point's unlit material colour in [0, 255] from its pattern."""
    mats = surf.material
    c1 = np.asarray([m.c1 for m in mats], dtype=np.float64)
    c2 = np.asarray([m.c2 if m.c2 is not None else m.c1 for m in mats], dtype=np.float64)
    pattern = np.asarray([m.pattern for m in mats])
    wave = np.asarray([m.wave for m in mats], dtype=np.float64)
    p = pts.prim
    s, t = pts.st[:, 0], pts.st[:, 1]
    wv = wave[p]
    w1 = np.sin(wv[:, 0] * s + wv[:, 1] * t + wv[:, 2])
    w2 = np.sin(wv[:, 3] * s + wv[:, 4] * t + wv[:, 5])
    f = np.where(pattern[p] == STRIPES, 0.5 + 0.5 * w1, 0.0)
    f = np.where(pattern[p] == IMAGE, 0.5 + 0.5 * w1 * w2, f)
    return c1[p] + f[:, None] * (c2[p] - c1[p])
