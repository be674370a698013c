"""Labels, colour palettes and the per-scene generation context of the synthetic rooms.

The palettes are SHARED between classes on purpose (a desk and a table in the same oak, a sofa,
an armchair and a curtain in the same fabric, a toilet, a sink, a fridge and a white wall): a
point's colour alone should not give its class away; shape, size and neighbourhood should.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srkd.data.scannet.classes import SCANNET20_CLASSES
from srkd.data.synthetic.geometry import IMAGE, STRIPES, Material

_ID = {name: i for i, name in enumerate(SCANNET20_CLASSES)}
WALL, FLOOR, CABINET, BED, CHAIR, SOFA = (
    _ID[n] for n in ("wall", "floor", "cabinet", "bed", "chair", "sofa")
)
TABLE, DOOR, WINDOW, BOOKSHELF, PICTURE = (
    _ID[n] for n in ("table", "door", "window", "bookshelf", "picture")
)
COUNTER, DESK, CURTAIN, FRIDGE = (_ID[n] for n in ("counter", "desk", "curtain", "refrigerator"))
SHOWER_CURTAIN, TOILET, SINK, BATHTUB = (
    _ID[n] for n in ("shower curtain", "toilet", "sink", "bathtub")
)
OTHER = _ID["otherfurniture"]
CLUTTER = -1  # objects outside the 20 benchmark classes (pillows, lamps, boxes): ignored

Colour = tuple[float, float, float]
WOOD: tuple[Colour, ...] = (
    (196, 160, 112), (150, 105, 65), (100, 66, 40), (70, 50, 35), (225, 212, 190),
    (236, 235, 230), (45, 45, 48), (128, 126, 122),
)  # fmt: skip
FABRIC: tuple[Colour, ...] = (
    (120, 130, 145), (88, 88, 94), (172, 152, 122), (140, 44, 48), (60, 80, 122),
    (82, 112, 82), (205, 195, 178), (112, 80, 58), (214, 214, 214),
)  # fmt: skip
WALLS: tuple[Colour, ...] = (
    (236, 233, 226), (226, 216, 196), (202, 202, 197), (208, 220, 204), (216, 200, 190),
    (196, 206, 222),
)  # fmt: skip
STONE: tuple[Colour, ...] = ((236, 236, 232), (62, 62, 64), (150, 150, 150), (212, 202, 186))
CERAMIC: tuple[Colour, ...] = ((242, 242, 240), (230, 230, 226), (236, 233, 226))
APPLIANCE: tuple[Colour, ...] = ((240, 240, 238), (190, 190, 195), (44, 44, 46), (226, 216, 196))
METAL: tuple[Colour, ...] = ((190, 190, 196), (122, 122, 128), (200, 170, 90))
GLASS: tuple[Colour, ...] = (
    (222, 234, 246),
    (172, 200, 230),
    (250, 250, 250),
    (62, 70, 82),
    (140, 150, 140),
)
VIVID: tuple[Colour, ...] = (
    (200, 40, 40), (40, 90, 180), (230, 190, 40), (40, 140, 70), (240, 240, 240), (30, 30, 30),
    (230, 120, 40), (130, 60, 150), (160, 200, 220),
)  # fmt: skip


@dataclass
class Ctx:
    """Per-scene generation state: the random generator and the next free instance id."""

    rng: np.random.Generator
    next_instance: int = 0

    def inst(self) -> int:
        """A new instance id."""
        self.next_instance += 1
        return self.next_instance - 1

    def colour(self, palette: tuple[Colour, ...]) -> Colour:
        """A palette colour with a small per-object brightness and hue shift."""
        c = np.asarray(palette[self.rng.integers(len(palette))], dtype=np.float64)
        c = c * self.rng.uniform(0.9, 1.08) + self.rng.normal(0, 5, 3)
        return tuple(np.clip(c, 0, 255).tolist())

    def plain(self, palette: tuple[Colour, ...]) -> Material:
        """A uniform material from a palette."""
        return Material(self.colour(palette))

    def striped(self, c1: Colour, c2: Colour, period: float, along_t: bool = False) -> Material:
        """Stripes of `period` metres along a surface's first (or second) edge."""
        k = 2 * np.pi / period
        wave = (0.0, k, self.rng.uniform(0, 6.3)) if along_t else (k, 0.0, self.rng.uniform(0, 6.3))
        return Material(c1, c2, STRIPES, (*wave, 0.0, 0.0, 0.0))

    def image(self) -> Material:
        """Random low-frequency two-colour content (a picture, a poster)."""
        a1, b1, a2, b2 = self.rng.uniform(-14, 14, 4)
        p1, p2 = self.rng.uniform(0, 6.3, 2)
        cols = self.rng.choice(len(VIVID) + len(FABRIC), 2, replace=False)
        pal = VIVID + FABRIC
        return Material(
            self.colour((pal[cols[0]],)),
            self.colour((pal[cols[1]],)),
            IMAGE,
            (a1, b1, p1, a2, b2, p2),
        )

    def u(self, lo: float, hi: float) -> float:
        """Uniform float in [lo, hi)."""
        return float(self.rng.uniform(lo, hi))

    def chance(self, p: float) -> bool:
        """True with probability p."""
        return bool(self.rng.random() < p)
