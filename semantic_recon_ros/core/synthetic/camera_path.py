"""Smooth, deterministic handheld-like camera trajectories through a synthetic room.

The default path circles the room centre on an ellipse that keeps ``wall_margin`` from the walls,
looking across the room (towards and past the centre) with the yaw sweeping a full 360 degrees per
loop, pitched down 10-30 degrees, at 1.2-1.7 m, plus a small smooth wobble. Every quantity is a smooth
function of the path parameter ``s = frame / num_frames``, so the whole trajectory (``loops`` loops)
is covered whatever the frame count; at the default 300 frames consecutive poses are about 2 cm and
1-2 degrees apart (a 10 s handheld scan at 30 Hz).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .box_sdf import union_sdf
from .scene import SyntheticScene

SHRINK_FACTOR = 0.8
SHRINK_ATTEMPTS = 12
NUM_JITTER_WAVES = 3


@dataclass
class CameraPathConfig:
    """Shape of the camera loop (metres, degrees; cycles are counted over the whole trajectory)."""

    loops: float = 1.0
    wall_margin: float = 1.0  # the loop keeps this far from the walls (tall furniture stands against them)
    radius_fraction: float = 1.0  # of the largest ellipse that keeps wall_margin
    height_range: tuple[float, float] = (1.2, 1.7)
    height_cycles: float = 2.0
    pitch_down_deg: tuple[float, float] = (10.0, 30.0)
    pitch_cycles: float = 3.0
    yaw_sweep_deg: float = 20.0  # amplitude of the yaw swing around looking through the room centre
    yaw_sweep_cycles: float = 4.0
    jitter_position: float = 0.01  # handheld wobble amplitude (m)
    jitter_angle_deg: float = 1.0  # handheld wobble amplitude (deg)
    jitter_cycles: float = 15.0
    min_clearance: float = 0.2  # the camera centre keeps this distance from every box

    def __post_init__(self) -> None:
        if self.height_range[0] > self.height_range[1] or self.pitch_down_deg[0] > self.pitch_down_deg[1]:
            raise ValueError(f"CameraPathConfig ranges must be (low, high), got height {self.height_range}, "
                             f"pitch {self.pitch_down_deg}")
        if not 0.0 <= self.radius_fraction <= 1.0:
            raise ValueError(f"CameraPathConfig.radius_fraction must be in [0, 1], got {self.radius_fraction}")


def look_rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(N, 3, 3) world-from-optical-camera rotations.

    The optical z axis (forward) is ``(cos pitch cos yaw, cos pitch sin yaw, sin pitch)`` (pitch < 0 looks
    down), x (right) stays horizontal for zero roll, y points down; roll turns x and y about z.
    """
    forward = np.stack((np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)), axis=-1)
    right = np.stack((np.sin(yaw), -np.cos(yaw), np.zeros_like(yaw)), axis=-1)
    down = np.cross(forward, right)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    right, down = c * right + s * down, -s * right + c * down
    return np.stack((right, down, forward), axis=-1)


def _smooth_wobble(rng: np.random.Generator, s: np.ndarray, amplitude: float, cycles: float) -> np.ndarray:
    """(N,) sum of a few random-phase sinusoids of about ``cycles`` periods over s in [0, 1), peak ~amplitude."""
    frequencies = cycles * rng.uniform(0.7, 1.3, size=NUM_JITTER_WAVES)
    phases = rng.uniform(0.0, 2 * np.pi, size=NUM_JITTER_WAVES)
    waves = np.sin(2 * np.pi * frequencies[None] * s[:, None] + phases[None])
    return amplitude / NUM_JITTER_WAVES * waves.sum(axis=1)


def camera_path(scene: SyntheticScene, num_frames: int, config: CameraPathConfig | None = None,
                seed: int | None = None) -> np.ndarray:
    """Camera poses along a loop in the room.

    Args:
        scene: the room (its interior extent and boxes).
        num_frames: number of poses.
        config: path shape (default :class:`CameraPathConfig`).
        seed: random phases and start angle (default: the scene seed).
    Returns:
        (num_frames, 4, 4) float64 ``T_world_cam`` (optical frame). Every camera centre is at least
        ``min_clearance`` from every box; the loop shrinks towards the centre until that holds.
    Raises:
        ValueError if even the shrunk loop comes closer than ``min_clearance`` to a box.
    """
    config = config or CameraPathConfig()
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    rng = np.random.default_rng([scene.seed if seed is None else seed, 0xCA])
    s = np.arange(num_frames) / num_frames
    theta = rng.uniform(0.0, 2 * np.pi) + 2 * np.pi * config.loops * s

    def wave(bounds: tuple[float, float], cycles: float) -> np.ndarray:
        mid, amplitude = (bounds[0] + bounds[1]) / 2, (bounds[1] - bounds[0]) / 2
        return mid + amplitude * np.sin(2 * np.pi * cycles * s + rng.uniform(0.0, 2 * np.pi))

    height = wave(config.height_range, config.height_cycles)
    pitch = -np.radians(wave(config.pitch_down_deg, config.pitch_cycles))
    yaw = theta + np.pi + np.radians(wave((-config.yaw_sweep_deg, config.yaw_sweep_deg), config.yaw_sweep_cycles))
    jitter = np.stack([_smooth_wobble(rng, s, config.jitter_position, config.jitter_cycles) for _ in range(3)], axis=1)
    angle_jitter = [np.radians(_smooth_wobble(rng, s, config.jitter_angle_deg, config.jitter_cycles)) for _ in range(3)]
    yaw, pitch, roll = yaw + angle_jitter[0], pitch + angle_jitter[1], angle_jitter[2]

    centre = scene.room_size[:2] / 2
    radii = config.radius_fraction * np.maximum(centre - config.wall_margin, 0.0)
    for _ in range(SHRINK_ATTEMPTS):
        positions = np.stack((centre[0] + radii[0] * np.cos(theta), centre[1] + radii[1] * np.sin(theta), height),
                             axis=1) + jitter
        clearance, _ = union_sdf(positions, scene.box_arrays)
        if clearance.min() >= config.min_clearance:
            break
        radii = radii * SHRINK_FACTOR
    else:
        worst = int(clearance.argmin())
        raise ValueError(f"scene seed {scene.seed}: no camera loop keeps {config.min_clearance} m from the boxes "
                         f"(frame {worst} at {positions[worst].round(3)} is {clearance[worst]:.3f} m away)")
    poses = np.tile(np.eye(4), (num_frames, 1, 1))
    poses[:, :3, :3] = look_rotation(yaw, pitch, roll)
    poses[:, :3, 3] = positions
    return poses
