"""Procedural rooms: a shell of wall, floor and ceiling slabs, doors and windows, and placed furniture.

``generate_room(seed)`` is a pure function of the seed and the :class:`RoomConfig`: every random choice
comes from one ``numpy.random.Generator`` seeded with it. The room interior is
``[0, sx] x [0, sy] x [0, sz]`` (z up, floor top at z = 0). Walls are numbered 0..3 (south y = 0, east
x = sx, north y = sy, west x = 0); each has an origin corner and an along-wall direction such that the
inward normal is the direction turned by +90 degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..classes import ClassSet, load_class_set
from .furniture import (
    FURNITURE_BUILDERS,
    PAINT_COLORS,
    WOOD_COLORS,
    Furniture,
    FurnitureConfig,
    Part,
    build_small_object,
    pick_color,
    transform_parts,
)
from .scene import LabeledBox, SyntheticScene

Range = tuple[float, float]

FLOOR_COLORS = ((150, 110, 70), (175, 140, 100), (120, 120, 120), (185, 175, 160), (90, 75, 60))
WALL_COLORS = ((230, 225, 215), (210, 215, 220), (225, 210, 185), (190, 205, 190), (235, 235, 235))
CEILING_COLORS = ((240, 240, 238), (230, 230, 225))
WINDOW_COLORS = ((150, 185, 215), (120, 160, 200))
TEXTURE_SEED_LIMIT = 2**31


@dataclass
class RoomConfig:
    """Parameters of the procedural rooms (metres; ranges are uniform ``(low, high)``, counts inclusive)."""

    size_x: Range = (3.5, 6.0)
    size_y: Range = (3.5, 6.0)
    height: Range = (2.5, 3.0)
    wall_thickness: float = 0.12
    slab_thickness: float = 0.15  # floor and ceiling
    num_doors: tuple[int, int] = (1, 2)
    door_width: Range = (0.8, 1.0)
    door_height: Range = (2.0, 2.15)
    num_windows: tuple[int, int] = (1, 3)
    window_width: Range = (0.8, 1.6)
    window_height: Range = (0.9, 1.3)
    window_sill: Range = (0.8, 1.0)
    opening_protrusion: float = 0.02  # doors and windows stand this far out of the wall's inner face
    opening_spacing: float = 0.3  # free wall between openings and to the corners
    door_clearance: float = 0.9  # free floor depth in front of doors
    window_clearance: float = 0.3  # depth in front of windows kept free of furniture reaching the sill
    required_furniture: tuple[str, ...] = ("table",)  # placed first, in this order
    num_extra_furniture: tuple[int, int] = (3, 6)
    furniture_weights: dict[str, float] = field(default_factory=lambda: {
        "table": 1.0, "chair": 1.0, "bed": 1.0, "sofa": 1.5, "cabinet": 2.0, "shelf": 2.0, "counter": 1.0})
    wall_kinds: tuple[str, ...] = ("bed", "cabinet", "shelf", "counter")  # always stand against a wall
    wall_probability: float = 0.4  # chance that another kind (sofa, table, chair) stands against a wall
    wall_gap: float = 0.01  # between a wall and the back of furniture standing against it
    free_margin: float = 0.4  # free-standing furniture keeps this distance from the walls
    furniture_clearance: float = 0.1  # between footprints
    placement_attempts: int = 60
    furniture: FurnitureConfig = field(default_factory=FurnitureConfig)

    def __post_init__(self) -> None:
        unknown = set(self.furniture_weights) | set(self.required_furniture) | set(self.wall_kinds)
        unknown -= set(FURNITURE_BUILDERS)
        if unknown:
            raise ValueError(f"unknown furniture kinds {sorted(unknown)}; known: {', '.join(FURNITURE_BUILDERS)}")
        if min(self.size_x[0], self.size_y[0]) < 2.0 or self.height[0] < 2.2:
            raise ValueError(f"rooms must be at least 2 x 2 x 2.2 m, got size ranges {self.size_x}, {self.size_y}, "
                             f"{self.height}")


@dataclass
class _Footprint:
    """An occupied volume: a yaw-rotated rectangle (centre (2,), half size (2,), yaw) over a height range."""

    center: np.ndarray
    half: np.ndarray
    yaw: float
    z_range: tuple[float, float]

    def axes(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, s], [-s, c]])

    def overlaps(self, other: "_Footprint", clearance: float) -> bool:
        """Separating-axis test of the rectangles grown by ``clearance / 2`` each, if the height ranges meet."""
        if self.z_range[1] <= other.z_range[0] or other.z_range[1] <= self.z_range[0]:
            return False
        a_axes, b_axes = self.axes(), other.axes()
        a_half, b_half = self.half + clearance / 2, other.half + clearance / 2
        delta = other.center - self.center
        for axis in np.concatenate((a_axes, b_axes)):
            reach = np.abs(a_axes @ axis) @ a_half + np.abs(b_axes @ axis) @ b_half
            if abs(delta @ axis) > reach:
                return False
        return True


class RoomBuilder:
    """Accumulates the boxes of one room; all randomness comes from ``rng``."""

    def __init__(self, rng: np.random.Generator, config: RoomConfig, classes: ClassSet,
                 size: np.ndarray | None = None) -> None:
        """``size`` (sx, sy, sz) fixes the interior extent (rooms of a floor); None draws it from ``config``."""
        self.rng, self.config, self.classes = rng, config, classes
        if size is None:
            size = [rng.uniform(*config.size_x), rng.uniform(*config.size_y), rng.uniform(*config.height)]
        self.size = np.array(size, dtype=np.float64)
        self.boxes: list[LabeledBox] = []
        self.occupied: list[_Footprint] = []
        self.openings: dict[int, list[tuple[float, float]]] = {wall: [] for wall in range(4)}

    def wall_frame(self, wall: int) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(origin (2,), along-wall direction (2,), yaw of the inward-facing frame, wall length)."""
        sx, sy = self.size[:2]
        origin, direction, length = [
            ((0.0, 0.0), (1.0, 0.0), sx), ((sx, 0.0), (0.0, 1.0), sy),
            ((sx, sy), (-1.0, 0.0), sx), ((0.0, sy), (0.0, -1.0), sy),
        ][wall]
        direction = np.array(direction)
        return np.array(origin), direction, float(np.arctan2(direction[1], direction[0])), float(length)

    def add_part(self, part: Part) -> None:
        self.boxes.append(LabeledBox(part.center, part.half_extents, part.yaw, self.classes.index(part.class_name),
                                     part.color, int(self.rng.integers(TEXTURE_SEED_LIMIT))))

    def add_shell(self) -> None:
        sx, sy, sz = self.size
        t, s = self.config.wall_thickness, self.config.slab_thickness
        parts = [
            Part(np.array([sx / 2, sy / 2, -s / 2]), np.array([sx / 2 + t, sy / 2 + t, s / 2]), "floor",
                 pick_color(self.rng, FLOOR_COLORS)),
            Part(np.array([sx / 2, sy / 2, sz + s / 2]), np.array([sx / 2 + t, sy / 2 + t, s / 2]), "ceiling",
                 pick_color(self.rng, CEILING_COLORS)),
        ]
        wall_color = pick_color(self.rng, WALL_COLORS)
        parts += [
            Part(np.array([sx / 2, -t / 2, sz / 2]), np.array([sx / 2 + t, t / 2, sz / 2]), "wall", wall_color),
            Part(np.array([sx / 2, sy + t / 2, sz / 2]), np.array([sx / 2 + t, t / 2, sz / 2]), "wall", wall_color),
            Part(np.array([-t / 2, sy / 2, sz / 2]), np.array([t / 2, sy / 2, sz / 2]), "wall", wall_color),
            Part(np.array([sx + t / 2, sy / 2, sz / 2]), np.array([t / 2, sy / 2, sz / 2]), "wall", wall_color),
        ]
        for part in parts:
            self.add_part(part)

    def _free_wall_position(self, wall: int, width: float) -> float | None:
        """Centre (along the wall) of a ``width`` opening clear of corners and other openings, or None."""
        _, _, _, length = self.wall_frame(wall)
        gap = self.config.opening_spacing
        if length - 2 * gap < width:
            return None
        for _ in range(self.config.placement_attempts):
            u = float(self.rng.uniform(gap + width / 2, length - gap - width / 2))
            if all(u + width / 2 + gap <= a or u - width / 2 - gap >= b for a, b in self.openings[wall]):
                self.openings[wall].append((u - width / 2, u + width / 2))
                return u
        return None

    def _opening_parts(self, wall: int, u: float, width: float, z0: float, z1: float, class_name: str,
                       color: np.ndarray) -> tuple[list[Part], np.ndarray, float]:
        """A slab from the wall's mid-plane to ``opening_protrusion`` into the room, as local parts.

        Returns the parts in the opening's frame (origin on the floor at the wall's inner face, +x along
        the wall, +y into the room), that frame's origin (3,) and its yaw.
        """
        origin, direction, yaw, _ = self.wall_frame(wall)
        p, half_wall = self.config.opening_protrusion, self.config.wall_thickness / 2
        slab = Part(np.array([0.0, (p - half_wall) / 2, (z0 + z1) / 2]),
                    np.array([width / 2, (p + half_wall) / 2, (z1 - z0) / 2]), class_name, color)
        position = origin + direction * u
        return [slab], np.array([position[0], position[1], 0.0]), yaw

    def add_openings(self) -> None:
        cfg = self.config
        for _ in range(int(self.rng.integers(cfg.num_doors[0], cfg.num_doors[1] + 1))):
            width, height = self.rng.uniform(*cfg.door_width), self.rng.uniform(*cfg.door_height)
            self.add_door(int(self.rng.integers(4)), width, height)
        for _ in range(int(self.rng.integers(cfg.num_windows[0], cfg.num_windows[1] + 1))):
            width, height = self.rng.uniform(*cfg.window_width), self.rng.uniform(*cfg.window_height)
            sill = self.rng.uniform(*cfg.window_sill)
            self.add_window(int(self.rng.integers(4)), width, height, sill)

    def add_door(self, wall: int, width: float, height: float) -> None:
        """A closed door slab with a handle on ``wall``, where the wall has room for it."""
        cfg = self.config
        u = self._free_wall_position(wall, width)
        if u is None:
            return
        color = pick_color(self.rng, WOOD_COLORS + PAINT_COLORS)
        parts, origin, yaw = self._opening_parts(wall, u, width, 0.0, height, "door", color)
        side = 1.0 if self.rng.random() < 0.5 else -1.0
        handle_x, front = side * (width / 2 - 0.08), cfg.opening_protrusion
        parts.append(Part(np.array([handle_x, front + 0.025, 1.0]), np.array([0.06, 0.03, 0.012]), "door",
                          pick_color(self.rng, PAINT_COLORS)))
        for part in transform_parts(parts, yaw, origin):
            self.add_part(part)
        self._reserve(origin, yaw, width / 2 + 0.1, cfg.door_clearance, (0.0, height))

    def add_window(self, wall: int, width: float, height: float, sill: float) -> None:
        """A window slab with a cross bar on ``wall``, where the wall has room for it."""
        cfg = self.config
        u = self._free_wall_position(wall, width)
        if u is None:
            return
        color = pick_color(self.rng, WINDOW_COLORS)
        frame_color = pick_color(self.rng, PAINT_COLORS)
        parts, origin, yaw = self._opening_parts(wall, u, width, sill, sill + height, "window", color)
        bar_y, bar_half_y = cfg.opening_protrusion, 0.02
        parts += [
            Part(np.array([0.0, bar_y, sill + height / 2]), np.array([0.025, bar_half_y, height / 2]), "window",
                 frame_color),
            Part(np.array([0.0, bar_y, sill + height / 2]), np.array([width / 2, bar_half_y, 0.025]), "window",
                 frame_color),
        ]
        for part in transform_parts(parts, yaw, origin):
            self.add_part(part)
        self._reserve(origin, yaw, width / 2, cfg.window_clearance, (sill, sill + height))

    def add_doorway(self, wall: int, width: float, height: float) -> np.ndarray | None:
        """Keep an open ``width`` gap on ``wall`` (no boxes: the floor cuts the wall) and the floor in front of it
        free; returns the gap's centre (2,) on the wall's inner face in room coordinates, or None if it does not fit.
        """
        u = self._free_wall_position(wall, width)
        if u is None:
            return None
        origin, direction, yaw, _ = self.wall_frame(wall)
        centre = origin + direction * u
        self._reserve(np.array([centre[0], centre[1], 0.0]), yaw, width / 2 + 0.1, self.config.door_clearance,
                      (0.0, height))
        return centre

    def add_furniture(self) -> None:
        """The required pieces, then a random number of extra ones drawn by ``furniture_weights``."""
        config = self.config
        kinds = list(config.furniture_weights)
        weights = np.array([config.furniture_weights[k] for k in kinds], dtype=np.float64)
        num_extra = int(self.rng.integers(config.num_extra_furniture[0], config.num_extra_furniture[1] + 1))
        extra = [kinds[i] for i in self.rng.choice(len(kinds), size=num_extra, p=weights / weights.sum())]
        for kind in list(config.required_furniture) + extra:
            self.place_furniture(kind)

    def _reserve(self, wall_point: np.ndarray, yaw: float, half_width: float, depth: float,
                 z_range: tuple[float, float]) -> None:
        """Keep a ``2 half_width x depth`` rectangle in front of a wall point free over ``z_range``."""
        inward = np.array([-np.sin(yaw), np.cos(yaw)])
        self.occupied.append(_Footprint(wall_point[:2] + inward * depth / 2, np.array([half_width, depth / 2]), yaw,
                                        z_range))

    def _candidate_pose(self, furniture: Furniture, against_wall: bool) -> tuple[np.ndarray, float] | None:
        """A random (xy centre (2,), yaw) inside the room for the furniture, or None if it cannot fit."""
        half = furniture.half_footprint
        if against_wall:
            origin, direction, yaw, length = self.wall_frame(int(self.rng.integers(4)))
            if length < 2 * half[0] + 0.1:
                return None
            u = self.rng.uniform(half[0] + 0.05, length - half[0] - 0.05)
            inward = np.array([-direction[1], direction[0]])
            return origin + direction * u + inward * (self.config.wall_gap + half[1]), yaw
        radius, margin = float(np.hypot(*half)), self.config.free_margin
        lo, hi = margin + radius, self.size[:2] - margin - radius
        if (hi < lo).any():
            return None
        yaw = self.rng.uniform(0.0, 2 * np.pi) if self.rng.random() < 0.5 else \
            self.rng.integers(4) * np.pi / 2 + self.rng.normal(0.0, np.radians(3.0))
        return self.rng.uniform(lo, hi), float(yaw)

    def place_furniture(self, kind: str) -> None:
        cfg = self.config
        furniture = FURNITURE_BUILDERS[kind](self.rng, cfg.furniture)
        against_wall = kind in cfg.wall_kinds or self.rng.random() < cfg.wall_probability
        z_range = (0.0, furniture.height)
        for _ in range(cfg.placement_attempts):
            pose = self._candidate_pose(furniture, against_wall)
            if pose is None:
                return
            center, yaw = pose
            footprint = _Footprint(center, furniture.half_footprint, yaw, z_range)
            if any(footprint.overlaps(other, cfg.furniture_clearance) for other in self.occupied):
                continue
            self.occupied.append(footprint)
            translation = np.array([center[0], center[1], 0.0])
            for part in transform_parts(furniture.parts, yaw, translation):
                self.add_part(part)
            self._add_small_objects(furniture, yaw, translation)
            return

    def _add_small_objects(self, furniture: Furniture, yaw: float, translation: np.ndarray) -> None:
        cfg = self.config.furniture
        for surface in furniture.surfaces:
            placed: list[tuple[np.ndarray, float]] = []
            for _ in range(int(self.rng.integers(0, cfg.max_objects_per_surface + 1))):
                part = build_small_object(self.rng, cfg, float(surface.half_size.min()) - 0.01, surface.max_height)
                if part is None:
                    break
                radius = float(np.hypot(*part.half_extents[:2]))
                room = np.maximum(surface.half_size - radius - 0.01, 0.0)
                spot = surface.center[:2] + self.rng.uniform(-room, room)
                if any(np.linalg.norm(spot - other) < radius + r + 0.01 for other, r in placed):
                    continue
                placed.append((spot, radius))
                local = transform_parts([part], 0.0, np.array([spot[0], spot[1], surface.center[2]]))
                for world_part in transform_parts(local, yaw, translation):
                    self.add_part(world_part)


def generate_room(seed: int, config: RoomConfig | None = None, classes: ClassSet | None = None) -> SyntheticScene:
    """A furnished room, deterministic in ``seed`` and ``config``.

    Args:
        seed: any non-negative integer.
        config: room parameters (default :class:`RoomConfig`).
        classes: the class set whose names the parts use (default :func:`load_class_set`); it must contain
            wall floor ceiling cabinet bed chair sofa table door window shelf counter object.
    """
    config = config or RoomConfig()
    classes = classes or load_class_set()
    rng = np.random.default_rng(seed)
    builder = RoomBuilder(rng, config, classes)
    builder.add_shell()
    builder.add_openings()
    builder.add_furniture()
    return SyntheticScene(builder.boxes, builder.size, classes.names, int(seed))
