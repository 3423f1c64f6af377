"""A walking camera tour of a synthetic floor: along the corridor, into every room and out again.

The tour starts at the corridor's west end looking east and walks its centre line. At each doorway (in order
along the corridor, rooms of both sides) the camera turns towards it, walks through it into the room (up to
``room_depth``, less where furniture is in the way), looks around (``look_around_deg``: a full turn and half
another, so it ends facing the doorway), walks back out, turns east and walks on; it ends at the corridor's east
end. Position and heading follow this piecewise-linear plan at ``walk_speed`` and ``turn_rate_deg``, sampled at
``frame_rate`` and smoothed with a Gaussian of ``smoothing_s``; height and pitch swing slowly and a small handheld
wobble is added. At the defaults consecutive poses are at most about 4 cm and 3.5 degrees apart (30 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .box_sdf import union_sdf
from .camera_path import _smooth_wobble, look_rotation
from .floor_layout import FloorRoom, SyntheticFloor


@dataclass
class FloorPathConfig:
    """Speed and shape of the tour (metres, seconds, degrees)."""

    frame_rate: float = 30.0
    walk_speed: float = 1.2  # m/s
    turn_rate_deg: float = 90.0  # deg/s, turning on the spot
    room_depth: float = 2.5  # how far past the doorway the camera walks into a room (at most to its middle)
    look_around_deg: float = 540.0  # turn on the spot in each room: multiple of 360 plus 180 to face the doorway
    corridor_end_margin: float = 0.8  # start and end this far from the corridor's ends
    height_range: tuple[float, float] = (1.35, 1.6)
    height_period_s: float = 9.0
    pitch_down_deg: tuple[float, float] = (10.0, 22.0)
    pitch_period_s: float = 7.0
    smoothing_s: float = 0.25  # Gaussian sigma of the plan's smoothing
    jitter_position: float = 0.008
    jitter_angle_deg: float = 0.8
    jitter_period_s: float = 0.8
    min_clearance: float = 0.3  # the camera centre keeps this distance from every box

    def __post_init__(self) -> None:
        if not (self.frame_rate > 0 and self.walk_speed > 0 and self.turn_rate_deg > 0):
            raise ValueError(f"FloorPathConfig frame_rate, walk_speed and turn_rate_deg must be positive, got "
                             f"{self.frame_rate}, {self.walk_speed}, {self.turn_rate_deg}")
        if (self.look_around_deg - 180.0) % 360.0 != 0 or self.look_around_deg < 180:
            raise ValueError(f"FloorPathConfig.look_around_deg must be 180 + a multiple of 360 (to end facing the "
                             f"doorway), got {self.look_around_deg}")
        if self.height_range[0] > self.height_range[1] or self.pitch_down_deg[0] > self.pitch_down_deg[1]:
            raise ValueError(f"FloorPathConfig ranges must be (low, high), got height {self.height_range}, "
                             f"pitch {self.pitch_down_deg}")


class _Plan:
    """Piecewise-linear (time, x, y, yaw) knots; yaw is unwrapped (turns accumulate)."""

    def __init__(self, config: FloorPathConfig, xy: np.ndarray, yaw: float) -> None:
        self.config = config
        self.knots = [(0.0, float(xy[0]), float(xy[1]), yaw)]

    @property
    def xy(self) -> np.ndarray:
        return np.array(self.knots[-1][1:3])

    @property
    def yaw(self) -> float:
        return self.knots[-1][3]

    def _add(self, duration: float, xy: np.ndarray, yaw: float) -> None:
        if duration > 0:
            self.knots.append((self.knots[-1][0] + duration, float(xy[0]), float(xy[1]), float(yaw)))

    def turn_by(self, angle: float) -> None:
        self._add(abs(angle) / np.radians(self.config.turn_rate_deg), self.xy, self.yaw + angle)

    def turn_to(self, heading: float) -> None:
        """Turn the short way to face ``heading``."""
        self.turn_by((heading - self.yaw + np.pi) % (2 * np.pi) - np.pi)

    def walk_to(self, xy: np.ndarray) -> None:
        """Turn towards ``xy`` (unless there already) and walk there."""
        delta = np.asarray(xy, dtype=np.float64) - self.xy
        distance = float(np.linalg.norm(delta))
        if distance < 1e-9:
            return
        self.turn_to(float(np.arctan2(delta[1], delta[0])))
        self._add(distance / self.config.walk_speed, xy, self.yaw)

    def sample(self) -> np.ndarray:
        """(N, 3) x, y, yaw at the frame rate, Gaussian-smoothed."""
        knots = np.array(self.knots)
        times = np.arange(0.0, knots[-1, 0] + 1e-9, 1.0 / self.config.frame_rate)
        samples = np.stack([np.interp(times, knots[:, 0], knots[:, i]) for i in (1, 2, 3)], axis=1)
        sigma = self.config.smoothing_s * self.config.frame_rate
        if sigma <= 0:
            return samples
        radius = int(np.ceil(3 * sigma))
        kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        kernel /= kernel.sum()
        padded = np.pad(samples, ((radius, radius), (0, 0)), mode="edge")
        return np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(3)], axis=1)


def _room_stop(floor: SyntheticFloor, room: FloorRoom, corridor_y: float, config: FloorPathConfig) -> np.ndarray:
    """Where the camera looks around in ``room``: as deep as ``room_depth`` (at most the room's middle) along the
    doorway's axis where the way there and a circle around the spot keep clear of the boxes, else shallower."""
    depth_limit = abs(float(np.mean(room.bounds[:, 1])) - room.doorway_center[1])
    deepest = min(config.room_depth, depth_limit)
    start = np.array([room.doorway_center[0], corridor_y])
    angles = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
    ring = 0.15 * np.stack((np.cos(angles), np.sin(angles)), axis=1)  # room for the wobble and the smoothing
    for depth in np.arange(deepest, 0.49, -0.25):
        stop = room.doorway_center + room.into_room * depth
        way = start + np.linspace(0.0, 1.0, 40)[:, None] * (stop - start)
        points = np.concatenate((way, stop + ring))
        heights = np.array(config.height_range)
        probes = np.concatenate([np.column_stack((points, np.full(len(points), h))) for h in heights])
        clearance, _ = union_sdf(probes, floor.scene.box_arrays)
        if clearance.min() >= config.min_clearance + 0.1:
            return stop
    return room.doorway_center + room.into_room * 0.5


def floor_tour_waypoints(floor: SyntheticFloor, config: FloorPathConfig | None = None) -> list[tuple[int, np.ndarray]]:
    """(room index, look-around spot (2,)) in the order the tour visits the rooms."""
    config = config or FloorPathConfig()
    corridor_y = float(floor.corridor[:, 1].mean())
    order = sorted(floor.rooms, key=lambda r: (r.doorway_center[0], r.index))
    return [(room.index, _room_stop(floor, room, corridor_y, config)) for room in order]


def floor_camera_path(floor: SyntheticFloor, config: FloorPathConfig | None = None,
                      seed: int | None = None) -> np.ndarray:
    """Camera poses of the tour of ``floor``.

    Args:
        floor: the floor (its corridor, doorways and boxes).
        config: speeds and shape (default :class:`FloorPathConfig`).
        seed: phases of the height, pitch and wobble (default: the floor's seed).
    Returns:
        (N, 4, 4) float64 ``T_world_cam`` (optical frame), N set by the tour's length and the frame rate.
    Raises:
        ValueError if the camera would come closer than ``min_clearance`` to a box.
    """
    config = config or FloorPathConfig()
    corridor_y = float(floor.corridor[:, 1].mean())
    x_lo, x_hi = floor.corridor[0, 0] + config.corridor_end_margin, floor.corridor[1, 0] - config.corridor_end_margin
    plan = _Plan(config, np.array([x_lo, corridor_y]), 0.0)
    rooms = {room.index: room for room in floor.rooms}
    for turn_sign, (index, stop) in zip(np.tile([1.0, -1.0], len(rooms)), floor_tour_waypoints(floor, config)):
        room = rooms[index]
        plan.walk_to(np.array([room.doorway_center[0], corridor_y]))
        plan.walk_to(stop)
        plan.turn_by(turn_sign * np.radians(config.look_around_deg))
        plan.walk_to(np.array([room.doorway_center[0], corridor_y]))
        plan.turn_to(0.0)
    plan.walk_to(np.array([x_hi, corridor_y]))
    xy_yaw = plan.sample()

    num_frames = len(xy_yaw)
    rng = np.random.default_rng([floor.scene.seed if seed is None else seed, 0xF3])
    times = np.arange(num_frames) / config.frame_rate

    def wave(bounds: tuple[float, float], period: float) -> np.ndarray:
        mid, amplitude = (bounds[0] + bounds[1]) / 2, (bounds[1] - bounds[0]) / 2
        return mid + amplitude * np.sin(2 * np.pi * times / period + rng.uniform(0.0, 2 * np.pi))

    height = wave(config.height_range, config.height_period_s)
    pitch = -np.radians(wave(config.pitch_down_deg, config.pitch_period_s))
    s = np.arange(num_frames) / num_frames
    cycles = num_frames / config.frame_rate / config.jitter_period_s
    jitter = np.stack([_smooth_wobble(rng, s, config.jitter_position, cycles) for _ in range(3)], axis=1)
    angles = [np.radians(_smooth_wobble(rng, s, config.jitter_angle_deg, cycles)) for _ in range(3)]
    positions = np.column_stack((xy_yaw[:, :2], height)) + jitter
    clearance, _ = union_sdf(positions, floor.scene.box_arrays)
    if clearance.min() < config.min_clearance:
        worst = int(clearance.argmin())
        raise ValueError(f"floor seed {floor.scene.seed}: the tour comes {clearance[worst]:.3f} m close to a box at "
                         f"frame {worst} ({positions[worst].round(3)}), less than {config.min_clearance} m")
    poses = np.tile(np.eye(4), (num_frames, 1, 1))
    poses[:, :3, :3] = look_rotation(xy_yaw[:, 2] + angles[0], pitch + angles[1], angles[2])
    poses[:, :3, 3] = positions
    return poses
