"""Procedural building floors: furnished rooms on both sides of a corridor, each joined to it by an open doorway.

``generate_floor(seed)`` is a pure function of the seed and the :class:`FloorConfig`. The floor interior is
``[0, size_x] x [0, size_y] x [0, height]`` (z up, floor top at z = 0). A corridor runs along x across the whole
floor; the strips south (y below it) and north of it are cut into rooms along x. Walls are slabs of
``wall_thickness``: the outer walls just outside the floor interior (as a single room's shell), the corridor walls
and the walls between neighbouring rooms centred on the borders. Each room has one open doorway (a gap through the
corridor wall with a lintel above it), windows on its outer walls, and furniture placed by the single-room
generator (:mod:`.room_layout`) with the floor in front of the doorway kept free. The scene is a union of labeled
boxes like a single room, so rendering and ground truth work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..classes import ClassSet, load_class_set
from .furniture import PAINT_COLORS, pick_color
from .room_layout import (
    CEILING_COLORS,
    FLOOR_COLORS,
    TEXTURE_SEED_LIMIT,
    WALL_COLORS,
    RoomConfig,
    RoomBuilder,
)
from .scene import LabeledBox, SyntheticScene

Range = tuple[float, float]
SOUTH, NORTH = "south", "north"
MIN_ROOM_DEPTH = 3.0  # m, rooms are at least this deep (across the corridor direction)


def _floor_room_config() -> RoomConfig:
    return RoomConfig(num_doors=(0, 0), num_windows=(0, 0), num_extra_furniture=(6, 10))


@dataclass
class FloorConfig:
    """Parameters of a procedural floor (metres; ranges are uniform ``(low, high)``, counts inclusive)."""

    size_x: float = 30.0  # along the corridor
    size_y: float = 20.0
    height: Range = (2.6, 3.0)
    corridor_width: Range = (1.8, 2.4)
    corridor_offset: float = 1.0  # the corridor's centre line lies within this distance of the floor's middle
    room_width: Range = (5.5, 8.0)  # room extent along the corridor (widths are rescaled to fill the floor exactly)
    doorway_width: Range = (1.0, 1.2)
    doorway_height: Range = (2.1, 2.25)
    windows_per_outer_wall: tuple[int, int] = (1, 2)
    wall_thickness: float = 0.12
    slab_thickness: float = 0.15
    room: RoomConfig = field(default_factory=_floor_room_config)  # furniture, window sizes (doors are not used)

    def __post_init__(self) -> None:
        for name in ("height", "corridor_width", "room_width", "doorway_width", "doorway_height",
                     "windows_per_outer_wall"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"FloorConfig.{name} must be a (low, high) range of non-negative values, "
                                 f"got {getattr(self, name)}")
        if self.corridor_width[0] < 1.2:
            raise ValueError(f"FloorConfig.corridor_width must be at least 1.2 m to walk through, "
                             f"got {self.corridor_width}")
        if self.doorway_width[0] < 0.8 or self.doorway_height[0] < 2.0 or self.doorway_height[1] > self.height[0]:
            raise ValueError(f"doorways must be at least 0.8 m wide and 2.0 m high and lower than the ceiling, got "
                             f"width {self.doorway_width}, height {self.doorway_height}, ceiling {self.height}")
        if self.room_width[0] < self.doorway_width[1] + 2 * self.room.opening_spacing + 1.0:
            raise ValueError(f"FloorConfig.room_width {self.room_width} is too narrow for a "
                             f"{self.doorway_width[1]} m doorway")
        if self.size_x < self.room_width[0]:
            raise ValueError(f"the floor must be at least one room ({self.room_width[0]} m) long, got size_x "
                             f"{self.size_x} m")
        beside_rooms = self.corridor_width[1] + 2 * self.corridor_offset
        depth = (self.size_y - beside_rooms) / 2 - self.wall_thickness
        if depth < MIN_ROOM_DEPTH:
            needed = 2 * (MIN_ROOM_DEPTH + self.wall_thickness) + beside_rooms
            raise ValueError(f"a {self.size_y} m deep floor leaves rooms only {depth:.2f} m deep beside a corridor "
                             f"of up to {self.corridor_width[1]} m (offset up to {self.corridor_offset} m); rooms need "
                             f"{MIN_ROOM_DEPTH} m: make the floor at least {needed:.2f} m deep")


@dataclass(eq=False)
class FloorRoom:
    """One room of a floor.

    Attributes:
        index: position in :attr:`SyntheticFloor.rooms` (south rooms west to east, then north rooms).
        side: "south" or "north" of the corridor.
        bounds: (2, 2) xy min and max corner of the room interior (world).
        doorway_center: (2,) world xy of the doorway's centre on the room-side face of the corridor wall.
        doorway_width, doorway_height: size of the opening (metres).
        into_room: (2,) unit vector from the corridor through the doorway into the room.
    """

    index: int
    side: str
    bounds: np.ndarray
    doorway_center: np.ndarray
    doorway_width: float
    doorway_height: float
    into_room: np.ndarray

    def __post_init__(self) -> None:
        self.bounds = np.asarray(self.bounds, dtype=np.float64).reshape(2, 2)
        self.doorway_center = np.asarray(self.doorway_center, dtype=np.float64).reshape(2)
        self.into_room = np.asarray(self.into_room, dtype=np.float64).reshape(2)

    def to_dict(self) -> dict:
        return {"index": self.index, "side": self.side, "bounds": self.bounds.tolist(),
                "doorway_center": self.doorway_center.tolist(), "doorway_width": self.doorway_width,
                "doorway_height": self.doorway_height, "into_room": self.into_room.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "FloorRoom":
        return cls(int(data["index"]), str(data["side"]), data["bounds"], data["doorway_center"],
                   float(data["doorway_width"]), float(data["doorway_height"]), data["into_room"])


@dataclass(eq=False)
class SyntheticFloor:
    """A generated floor: the boxes (``scene``, with ``room_size`` = the floor interior) and its layout.

    Attributes:
        scene: all boxes; ``scene.room_size`` is (size_x, size_y, height).
        rooms: the rooms, south ones west to east, then north ones west to east.
        corridor: (2, 2) xy min and max corner of the corridor interior.
        wall_thickness: of every wall (metres).
    """

    scene: SyntheticScene
    rooms: list[FloorRoom]
    corridor: np.ndarray
    wall_thickness: float

    def __post_init__(self) -> None:
        self.corridor = np.asarray(self.corridor, dtype=np.float64).reshape(2, 2)

    @property
    def height(self) -> float:
        return float(self.scene.room_size[2])

    def layout_dict(self) -> dict:
        """The layout (rooms, corridor), without the boxes."""
        return {"rooms": [room.to_dict() for room in self.rooms], "corridor": self.corridor.tolist(),
                "wall_thickness": self.wall_thickness}

    @classmethod
    def from_dicts(cls, scene: SyntheticScene, layout: dict) -> "SyntheticFloor":
        try:
            return cls(scene, [FloorRoom.from_dict(r) for r in layout["rooms"]], layout["corridor"],
                       float(layout["wall_thickness"]))
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a floor layout (missing or malformed {err})") from None


def _split_length(rng: np.random.Generator, length: float, width: Range) -> np.ndarray:
    """Borders (n + 1,) from 0 to ``length`` of n pieces of about ``width`` each."""
    fewest = max(1, int(np.ceil(length / width[1])))
    most = max(fewest, int(np.floor(length / width[0])))
    widths = rng.uniform(width[0], width[1], size=int(rng.integers(fewest, most + 1)))
    borders = np.concatenate(([0.0], np.cumsum(widths * length / widths.sum())))
    borders[-1] = length
    return borders


class _FloorBuilder:
    def __init__(self, seed: int, config: FloorConfig, classes: ClassSet) -> None:
        self.seed, self.config, self.classes = seed, config, classes
        self.rng = np.random.default_rng([seed, 0xF1])
        self.boxes: list[LabeledBox] = []

    def add_box(self, lo, hi, class_name: str, color: np.ndarray) -> None:
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        self.boxes.append(LabeledBox((lo + hi) / 2, (hi - lo) / 2, 0.0, self.classes.index(class_name), color,
                                     int(self.rng.integers(TEXTURE_SEED_LIMIT))))

    def wall_with_doorways(self, y: float, x_range: tuple[float, float], height: float,
                           doorways: list[FloorRoom], color: np.ndarray) -> None:
        """A wall along x centred on ``y``, cut by the doorways (gap up to the doorway height, lintel above)."""
        t = self.config.wall_thickness
        start = x_range[0]
        for room in sorted(doorways, key=lambda r: r.doorway_center[0]):
            a, b = room.doorway_center[0] - room.doorway_width / 2, room.doorway_center[0] + room.doorway_width / 2
            self.add_box((start, y - t / 2, 0.0), (a, y + t / 2, height), "wall", color)
            self.add_box((a, y - t / 2, room.doorway_height), (b, y + t / 2, height), "wall", color)
            start = b
        self.add_box((start, y - t / 2, 0.0), (x_range[1], y + t / 2, height), "wall", color)


def generate_floor(seed: int, config: FloorConfig | None = None, classes: ClassSet | None = None) -> SyntheticFloor:
    """A building floor of furnished rooms along a corridor, deterministic in ``seed`` and ``config``.

    Args:
        seed: any non-negative integer.
        config: floor parameters (default :class:`FloorConfig`: 30 m x 20 m).
        classes: the class set (default :func:`load_class_set`), with the names :func:`generate_room` needs.
    """
    config = config or FloorConfig()
    classes = classes or load_class_set()
    builder = _FloorBuilder(seed, config, classes)
    rng = builder.rng
    X, Y = config.size_x, config.size_y
    t, s = config.wall_thickness, config.slab_thickness
    height = float(rng.uniform(*config.height))
    corridor_width = float(rng.uniform(*config.corridor_width))
    middle = Y / 2 + float(rng.uniform(-config.corridor_offset, config.corridor_offset))
    c0, c1 = middle - corridor_width / 2, middle + corridor_width / 2  # corridor wall centre lines
    rows = {SOUTH: (0.0, c0 - t / 2), NORTH: (c1 + t / 2, Y)}
    borders = {side: _split_length(rng, X, config.room_width) for side in (SOUTH, NORTH)}

    rooms: list[FloorRoom] = []
    room_boxes: list[LabeledBox] = []
    for side in (SOUTH, NORTH):
        y0, y1 = rows[side]
        edges = borders[side]
        for k in range(len(edges) - 1):
            x0 = edges[k] + (t / 2 if k > 0 else 0.0)
            x1 = edges[k + 1] - (t / 2 if k + 1 < len(edges) - 1 else 0.0)
            room_rng = np.random.default_rng([seed, 0xF2, len(rooms)])
            room = RoomBuilder(room_rng, config.room, classes, size=np.array([x1 - x0, y1 - y0, height]))
            corridor_wall = 2 if side == SOUTH else 0
            width = float(room_rng.uniform(*config.doorway_width))
            door_height = float(room_rng.uniform(*config.doorway_height))
            centre = room.add_doorway(corridor_wall, width, door_height)
            if centre is None:  # FloorConfig guarantees room for it
                raise ValueError(f"floor seed {seed}: room {len(rooms)} has no room for a {width:.2f} m doorway")
            outer_walls = [0 if side == SOUTH else 2] + ([3] if k == 0 else []) + \
                ([1] if k == len(edges) - 2 else [])
            rc = config.room
            for wall in outer_walls:
                for _ in range(int(room_rng.integers(config.windows_per_outer_wall[0],
                                                     config.windows_per_outer_wall[1] + 1))):
                    room.add_window(wall, float(room_rng.uniform(*rc.window_width)),
                                    float(room_rng.uniform(*rc.window_height)),
                                    float(room_rng.uniform(*rc.window_sill)))
            room.add_furniture()
            offset = np.array([x0, y0, 0.0])
            room_boxes += [LabeledBox(b.center + offset, b.half_extents, b.yaw, b.class_id, b.color, b.texture_seed)
                           for b in room.boxes]
            rooms.append(FloorRoom(len(rooms), side, [[x0, y0], [x1, y1]], centre + offset[:2], width, door_height,
                                   [0.0, 1.0] if side == NORTH else [0.0, -1.0]))

    # floor slabs: one per room (to the wall centre lines, under the outer walls) and one for the corridor
    for side, (ya, yb) in ((SOUTH, (-t, c0)), (NORTH, (c1, Y + t))):
        edges = borders[side].copy()
        edges[0], edges[-1] = -t, X + t
        for k in range(len(edges) - 1):
            builder.add_box((edges[k], ya, -s), (edges[k + 1], yb, 0.0), "floor", pick_color(rng, FLOOR_COLORS))
    builder.add_box((-t, c0, -s), (X + t, c1, 0.0), "floor", pick_color(rng, FLOOR_COLORS))
    builder.add_box((-t, -t, height), (X + t, Y + t, height + s), "ceiling", pick_color(rng, CEILING_COLORS))
    outer = pick_color(rng, WALL_COLORS)
    builder.add_box((-t, -t, 0.0), (X + t, 0.0, height), "wall", outer)
    builder.add_box((-t, Y, 0.0), (X + t, Y + t, height), "wall", outer)
    builder.add_box((-t, 0.0, 0.0), (0.0, Y, height), "wall", outer)
    builder.add_box((X, 0.0, 0.0), (X + t, Y, height), "wall", outer)
    corridor_color = pick_color(rng, WALL_COLORS)
    builder.wall_with_doorways(c0, (0.0, X), height, [r for r in rooms if r.side == SOUTH], corridor_color)
    builder.wall_with_doorways(c1, (0.0, X), height, [r for r in rooms if r.side == NORTH], corridor_color)
    for side in (SOUTH, NORTH):
        y0, y1 = rows[side]
        for border in borders[side][1:-1]:
            builder.add_box((border - t / 2, y0, 0.0), (border + t / 2, y1, height), "wall",
                            pick_color(rng, WALL_COLORS + PAINT_COLORS))
    scene = SyntheticScene(builder.boxes + room_boxes, np.array([X, Y, height]), classes.names, int(seed))
    return SyntheticFloor(scene, rooms, [[0.0, c0 + t / 2], [X, c1 - t / 2]], t)

