"""Procedural furniture built from boxes: tables with chairs, chairs, beds, sofas, cabinets, shelves, counters.

Every builder returns a :class:`Furniture` in its own local frame: origin on the floor at the centre of
the footprint, z up, +y the front (the side facing the room when the piece stands against a wall, the
side a person sits on for chairs and sofas). Parts may overlap (legs reach into table tops) so that no
two parts merely touch along a visible face, which keeps every visible surface point on one box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Range = tuple[float, float]

WOOD_COLORS = ((150, 110, 70), (120, 85, 55), (190, 150, 105), (95, 65, 45), (205, 180, 140))
PAINT_COLORS = ((225, 225, 218), (200, 200, 195), (70, 70, 75), (160, 170, 180), (185, 200, 175))
FABRIC_COLORS = ((90, 110, 140), (140, 70, 65), (95, 125, 95), (170, 160, 140), (60, 60, 70), (200, 190, 170))
OBJECT_COLORS = ((200, 60, 50), (50, 90, 170), (230, 190, 60), (60, 150, 90), (240, 240, 235), (30, 30, 30),
                 (160, 80, 160), (240, 130, 40))
COLOR_JITTER = 15


@dataclass
class FurnitureConfig:
    """Size ranges (metres, uniform in ``(low, high)``) and counts of the furniture builders."""

    table_size_x: Range = (0.8, 1.6)
    table_size_y: Range = (0.6, 0.9)
    table_height: Range = (0.72, 0.78)
    table_top_thickness: Range = (0.03, 0.05)
    leg_width: Range = (0.04, 0.07)
    max_chairs_per_table: int = 4
    chair_seat_size: Range = (0.40, 0.50)
    chair_seat_height: Range = (0.42, 0.48)
    chair_back_height: Range = (0.35, 0.50)
    bed_width: Range = (0.9, 1.8)
    bed_length: Range = (1.9, 2.1)
    bed_height: Range = (0.40, 0.55)
    headboard_height: Range = (0.9, 1.2)
    sofa_width: Range = (1.5, 2.2)
    sofa_depth: Range = (0.80, 0.95)
    sofa_seat_height: Range = (0.40, 0.45)
    sofa_back_height: Range = (0.75, 0.90)
    sofa_arm_height: Range = (0.55, 0.65)
    cabinet_width: Range = (0.5, 1.2)
    cabinet_depth: Range = (0.40, 0.60)
    cabinet_height: Range = (0.7, 2.0)
    shelf_width: Range = (0.6, 1.2)
    shelf_depth: Range = (0.28, 0.40)
    shelf_height: Range = (1.2, 2.0)
    shelf_boards: tuple[int, int] = (2, 5)
    counter_width: Range = (1.2, 2.4)
    counter_depth: Range = (0.55, 0.65)
    counter_height: Range = (0.86, 0.92)
    object_size: Range = (0.05, 0.30)
    object_height: Range = (0.04, 0.20)
    max_objects_per_surface: int = 3


@dataclass
class Part:
    """One box of a piece of furniture, in the furniture's local frame.

    Attributes:
        center: (3,) local box centre.
        half_extents: (3,) half side lengths along the box's axes.
        class_name: semantic class of the box (a name of config/classes.yaml).
        color: (3,) base RGB.
        yaw: rotation of the box about local +z.
    """

    center: np.ndarray
    half_extents: np.ndarray
    class_name: str
    color: np.ndarray
    yaw: float = 0.0


@dataclass
class SupportSurface:
    """A free horizontal rectangle small objects can stand on (local frame).

    Attributes:
        center: (3,) rectangle centre; z is the surface height.
        half_size: (2,) half extents along local x and y.
        max_height: free height above the surface.
    """

    center: np.ndarray
    half_size: np.ndarray
    max_height: float


@dataclass
class Furniture:
    """A rigid group of parts with the surfaces it offers; footprint centred on the local origin."""

    kind: str
    parts: list[Part]
    surfaces: list[SupportSurface] = field(default_factory=list)

    @property
    def half_footprint(self) -> np.ndarray:
        """(2,) half extents of the local axis-aligned footprint (centred at the origin)."""
        lo, hi = _footprint_bounds(self.parts)
        return np.maximum(np.abs(lo), np.abs(hi))

    @property
    def height(self) -> float:
        return max(float(p.center[2] + p.half_extents[2]) for p in self.parts)


def _box(lo, hi, class_name: str, color: np.ndarray) -> Part:
    """An axis-aligned part spanning the local corners ``lo`` and ``hi``."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return Part((lo + hi) / 2, (hi - lo) / 2, class_name, color)


def _uniform(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def pick_color(rng: np.random.Generator, palette: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    """A palette entry with a random per-channel jitter of up to ``COLOR_JITTER``, as (3,) uint8."""
    base = np.array(palette[rng.integers(len(palette))])
    return np.clip(base + rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3), 0, 255).astype(np.uint8)


def _rotation_2d(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s], [s, c]])


def _part_corners_xy(part: Part) -> np.ndarray:
    """(4, 2) local xy corners of a part's footprint."""
    hx, hy = part.half_extents[:2]
    corners = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    return corners @ _rotation_2d(part.yaw).T + part.center[:2]


def _footprint_bounds(parts: list[Part]) -> tuple[np.ndarray, np.ndarray]:
    corners = np.concatenate([_part_corners_xy(p) for p in parts])
    return corners.min(axis=0), corners.max(axis=0)


def transform_parts(parts: list[Part], yaw: float, translation: np.ndarray) -> list[Part]:
    """Parts rotated by ``yaw`` about +z, then moved by the (3,) ``translation``."""
    rotation = np.eye(3)
    rotation[:2, :2] = _rotation_2d(yaw)
    return [Part(rotation @ p.center + translation, p.half_extents, p.class_name, p.color, p.yaw + yaw) for p in parts]


def _centred(kind: str, parts: list[Part], surfaces: list[SupportSurface]) -> Furniture:
    """Shift parts and surfaces so the footprint's bounding rectangle is centred on the origin."""
    lo, hi = _footprint_bounds(parts)
    shift = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, 0.0])
    return Furniture(
        kind,
        [Part(p.center - shift, p.half_extents, p.class_name, p.color, p.yaw) for p in parts],
        [SupportSurface(s.center - shift, s.half_size, s.max_height) for s in surfaces],
    )


def _legs(half_x: float, half_y: float, width: float, top: float, class_name: str, color: np.ndarray) -> list[Part]:
    """Four square legs from the floor to height ``top``, inset at the corners of a ``2 half_x x 2 half_y`` area."""
    x, y = half_x - width / 2 - 0.02, half_y - width / 2 - 0.02
    return [_box((sx * x - width / 2, sy * y - width / 2, 0.0), (sx * x + width / 2, sy * y + width / 2, top),
                 class_name, color) for sx in (-1, 1) for sy in (-1, 1)]


def build_chair(rng: np.random.Generator, config: FurnitureConfig) -> Furniture:
    """Seat on four legs with a backrest at the rear (-y); faces +y."""
    size_x = _uniform(rng, config.chair_seat_size)
    size_y = size_x * float(rng.uniform(0.9, 1.1))
    seat_height = _uniform(rng, config.chair_seat_height)
    seat_thickness = float(rng.uniform(0.04, 0.06))
    back_height = _uniform(rng, config.chair_back_height)
    back_thickness = float(rng.uniform(0.03, 0.05))
    leg_width = float(rng.uniform(0.03, 0.05))
    frame_color = pick_color(rng, WOOD_COLORS + PAINT_COLORS)
    seat_color = pick_color(rng, FABRIC_COLORS) if rng.random() < 0.5 else frame_color
    hx, hy = size_x / 2, size_y / 2
    seat_bottom = seat_height - seat_thickness
    parts = [
        _box((-hx, -hy, seat_bottom), (hx, hy, seat_height), "chair", seat_color),
        _box((-hx, -hy, seat_bottom), (hx, -hy + back_thickness, seat_height + back_height), "chair", frame_color),
    ]
    parts += _legs(hx, hy, leg_width, seat_bottom + seat_thickness / 2, "chair", frame_color)
    return _centred("chair", parts, [])


def build_table(rng: np.random.Generator, config: FurnitureConfig) -> Furniture:
    """Top on four legs, with up to ``max_chairs_per_table`` chairs around it facing the table."""
    size_x, size_y = _uniform(rng, config.table_size_x), _uniform(rng, config.table_size_y)
    height, thickness = _uniform(rng, config.table_height), _uniform(rng, config.table_top_thickness)
    color = pick_color(rng, WOOD_COLORS + PAINT_COLORS)
    hx, hy = size_x / 2, size_y / 2
    parts = [_box((-hx, -hy, height - thickness), (hx, hy, height), "table", color)]
    parts += _legs(hx, hy, _uniform(rng, config.leg_width), height - thickness / 2, "table", color)
    surfaces = [SupportSurface(np.array([0.0, 0.0, height]), np.array([hx, hy]), 0.2)]
    # chair slots: (position along the side, side normal); long tables seat two per long side
    along = (-hx / 2, hx / 2) if size_x >= 1.2 else (0.0,)
    slots = [(np.array([x, sy * hy]), np.array([0.0, sy])) for sy in (-1, 1) for x in along]
    slots += [(np.array([sx * hx, 0.0]), np.array([sx, 0.0])) for sx in (-1, 1)]
    num_chairs = int(rng.integers(0, min(config.max_chairs_per_table, len(slots)) + 1))
    for slot in rng.permutation(len(slots))[:num_chairs]:
        edge, normal = slots[slot]
        chair = build_chair(rng, config)
        depth = chair.half_footprint[1]
        position = edge + normal * (depth + float(rng.uniform(0.03, 0.15)))
        yaw = float(np.arctan2(normal[0], -normal[1]))  # the chair's front (+y) points back to the table
        parts += transform_parts(chair.parts, yaw, np.array([position[0], position[1], 0.0]))
    return _centred("table", parts, surfaces)


def build_bed(rng: np.random.Generator, config: FurnitureConfig) -> Furniture:
    """Frame, mattress and a headboard at the rear (-y), which goes against a wall."""
    width, length = _uniform(rng, config.bed_width), _uniform(rng, config.bed_length)
    height = _uniform(rng, config.bed_height)
    mattress = float(rng.uniform(0.15, 0.25))
    board_thickness, board_height = float(rng.uniform(0.05, 0.10)), _uniform(rng, config.headboard_height)
    wood, fabric = pick_color(rng, WOOD_COLORS), pick_color(rng, FABRIC_COLORS)
    hw, hl = width / 2, length / 2
    frame_top = height - mattress
    parts = [
        _box((-hw, -hl, 0.0), (hw, hl, frame_top), "bed", wood),
        _box((-hw + 0.02, -hl + 0.02, frame_top - 0.01), (hw - 0.02, hl - 0.02, height), "bed", fabric),
        _box((-hw - 0.02, -hl - board_thickness, 0.0), (hw + 0.02, -hl + 0.01, board_height), "bed", wood),
    ]
    return _centred("bed", parts, [])


def build_sofa(rng: np.random.Generator, config: FurnitureConfig) -> Furniture:
    """Base with two or three seat cushions, a backrest at the rear (-y) and two arms."""
    width, depth = _uniform(rng, config.sofa_width), _uniform(rng, config.sofa_depth)
    seat, back, arm = (_uniform(rng, config.sofa_seat_height), _uniform(rng, config.sofa_back_height),
                       _uniform(rng, config.sofa_arm_height))
    arm_width, back_thickness = float(rng.uniform(0.12, 0.22)), float(rng.uniform(0.15, 0.25))
    cushion = float(rng.uniform(0.10, 0.15))
    color = pick_color(rng, FABRIC_COLORS)
    hw, hd = width / 2, depth / 2
    inner = hw - arm_width
    parts = [
        _box((-inner - 0.01, -hd + back_thickness / 2, 0.0), (inner + 0.01, hd, seat - cushion), "sofa", color),
        _box((-hw, -hd, 0.0), (hw, -hd + back_thickness, back), "sofa", color),
        _box((-hw, -hd, 0.0), (-inner, hd, arm), "sofa", color),
        _box((inner, -hd, 0.0), (hw, hd, arm), "sofa", color),
    ]
    num_cushions, gap = int(rng.integers(2, 4)), 0.01
    cushion_width = (2 * inner - (num_cushions + 1) * gap) / num_cushions
    for k in range(num_cushions):
        x0 = -inner + gap + k * (cushion_width + gap)
        parts.append(_box((x0, -hd + back_thickness - 0.01, seat - cushion - 0.01),
                          (x0 + cushion_width, hd - 0.01, seat), "sofa", color))
    return _centred("sofa", parts, [])


def _front_doors(half_width: float, front_y: float, z_range: tuple[float, float], class_name: str,
                 color: np.ndarray, handle_color: np.ndarray) -> list[Part]:
    """Door panels (2 cm thick, 4 mm gaps) with small handles on a cabinet front at ``front_y``."""
    num = max(1, int(round(2 * half_width / 0.5)))
    gap, thickness = 0.004, 0.02
    door_width = (2 * half_width - (num + 1) * gap) / num
    z0, z1 = z_range
    parts = []
    for k in range(num):
        x0 = -half_width + gap + k * (door_width + gap)
        parts.append(_box((x0, front_y - 0.005, z0), (x0 + door_width, front_y + thickness, z1), class_name, color))
        hx = x0 + (door_width - 0.05 if k % 2 == 0 else 0.05)
        hz = z1 - 0.08 if z1 - z0 < 1.0 else (z0 + z1) / 2
        handle_y = front_y + thickness
        parts.append(_box((hx - 0.01, handle_y - 0.005, hz - 0.05), (hx + 0.01, handle_y + 0.025, hz + 0.05),
                          class_name, handle_color))
    return parts


def build_cabinet(rng: np.random.Generator, config: FurnitureConfig) -> Furniture:
    """Body with door panels and handles on the front (+y); low cabinets offer their top to small objects."""
    width, depth, height = (_uniform(rng, config.cabinet_width), _uniform(rng, config.cabinet_depth),
                            _uniform(rng, config.cabinet_height))
    color, handle = pick_color(rng, WOOD_COLORS + PAINT_COLORS), pick_color(rng, PAINT_COLORS)
    hw, hd = width / 2, depth / 2
    front = hd - 0.02
    parts = [_box((-hw, -hd, 0.0), (hw, front, height), "cabinet", color)]
    parts += _front_doors(hw, front, (0.08, height - 0.02), "cabinet", color, handle)
    surfaces = [SupportSurface(np.array([0.0, 0.0, height]), np.array([hw, hd - 0.02]), 0.3)] if height < 1.2 else []
    return _centred("cabinet", parts, surfaces)


def build_shelf(rng: np.random.Generator, config: FurnitureConfig) -> Furniture:
    """Open shelf: side panels, top, plinth, back panel and boards; every board is a support surface."""
    width, depth, height = (_uniform(rng, config.shelf_width), _uniform(rng, config.shelf_depth),
                            _uniform(rng, config.shelf_height))
    panel = float(rng.uniform(0.018, 0.03))
    color = pick_color(rng, WOOD_COLORS + PAINT_COLORS)
    hw, hd = width / 2, depth / 2
    plinth_top = 0.05 + panel
    parts = [
        _box((-hw, -hd, 0.0), (-hw + panel, hd, height), "shelf", color),
        _box((hw - panel, -hd, 0.0), (hw, hd, height), "shelf", color),
        _box((-hw + panel / 2, -hd, height - panel), (hw - panel / 2, hd, height), "shelf", color),
        _box((-hw + panel / 2, -hd, 0.0), (hw - panel / 2, hd - 0.01, plinth_top), "shelf", color),
        _box((-hw + panel / 2, -hd, 0.0), (hw - panel / 2, -hd + 0.01, height - panel / 2), "shelf", color),
    ]
    num_boards = int(rng.integers(config.shelf_boards[0], config.shelf_boards[1] + 1))
    levels = np.linspace(plinth_top, height - panel, num_boards + 2)[1:-1]
    surface_heights = [plinth_top]
    for level in levels:
        parts.append(_box((-hw + panel / 2, -hd + 0.005, level - panel), (hw - panel / 2, hd - 0.01, level),
                          "shelf", color))
        surface_heights.append(float(level))
    ceilings = list(levels - panel) + [height - panel]
    surfaces = [
        SupportSurface(np.array([0.0, 0.005, z]), np.array([hw - panel - 0.01, hd - 0.03]), ceiling - z - 0.02)
        for z, ceiling in zip(surface_heights, ceilings)
    ]
    return _centred("shelf", parts, surfaces)


def build_counter(rng: np.random.Generator, config: FurnitureConfig) -> Furniture:
    """Kitchen counter: a cabinet base (class cabinet, with doors) under a counter top (class counter)."""
    width, depth, height = (_uniform(rng, config.counter_width), _uniform(rng, config.counter_depth),
                            _uniform(rng, config.counter_height))
    top_thickness = float(rng.uniform(0.03, 0.04))
    base_color, top_color = pick_color(rng, WOOD_COLORS + PAINT_COLORS), pick_color(rng, PAINT_COLORS)
    hw, hd = width / 2, depth / 2
    front = hd - 0.045
    parts = [
        _box((-hw, -hd, 0.0), (hw, front, height - top_thickness / 2), "cabinet", base_color),
        _box((-hw, -hd, height - top_thickness), (hw, hd, height), "counter", top_color),
    ]
    parts += _front_doors(hw - 0.01, front, (0.1, height - top_thickness - 0.01), "cabinet", base_color,
                          pick_color(rng, PAINT_COLORS))
    surfaces = [SupportSurface(np.array([0.0, 0.0, height]), np.array([hw, hd]), 0.3)]
    return _centred("counter", parts, surfaces)


def build_small_object(rng: np.random.Generator, config: FurnitureConfig, max_radius: float,
                       max_height: float) -> Part | None:
    """A box of class ``object`` standing on z = 0 at the local origin with random yaw, or None if too little room.

    Its footprint's circumradius is at most ``max_radius`` and its height at most ``max_height``.
    """
    low, high = config.object_size
    if max_height < config.object_height[0] or max_radius < low / np.sqrt(2):
        return None
    size_x, size_y = rng.uniform(low, high, size=2)
    scale = min(1.0, max_radius / float(np.hypot(size_x, size_y) / 2))
    size_x, size_y = size_x * scale, size_y * scale
    height = float(rng.uniform(config.object_height[0], min(config.object_height[1], max_height)))
    return Part(np.array([0.0, 0.0, height / 2]), np.array([size_x / 2, size_y / 2, height / 2]), "object",
                pick_color(rng, OBJECT_COLORS), float(rng.uniform(0.0, np.pi)))


FURNITURE_BUILDERS = {
    "table": build_table,
    "chair": build_chair,
    "bed": build_bed,
    "sofa": build_sofa,
    "cabinet": build_cabinet,
    "shelf": build_shelf,
    "counter": build_counter,
}
