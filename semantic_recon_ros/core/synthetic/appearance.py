"""Deterministic surface appearance of the synthetic boxes: procedural texture times Lambert shading.

Every box owns a texture derived from its integer texture seed: a sum of a few plane waves plus a
3D checker pattern, both functions of the world position, so the same surface point has the same
color from every view (the light is fixed in the world and shading is Lambertian, view independent).
The color of a surface point with outward unit normal ``n`` on box ``b`` is::

    base_color[b] * texture_b(p) * (ambient + diffuse * max(0, n . light_direction))

clipped to 0..255.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_WAVES = 3
WAVE_FREQUENCY_RANGE = (4.0, 40.0)  # rad/m, log-uniform: periods of about 16 cm to 1.6 m
WAVE_AMPLITUDE_RANGE = (0.04, 0.10)
CHECKER_CELL_RANGE = (0.08, 0.5)  # m
CHECKER_AMPLITUDE_RANGE = (0.0, 0.12)


@dataclass
class ShadingConfig:
    """Fixed world light of the synthetic scenes."""

    light_direction: tuple[float, float, float] = (0.4, 0.25, 1.0)  # towards the light, world frame (z up)
    ambient: float = 0.5
    diffuse: float = 0.5

    def __post_init__(self) -> None:
        if np.linalg.norm(self.light_direction) == 0:
            raise ValueError("ShadingConfig.light_direction must be non-zero")
        if self.ambient < 0 or self.diffuse < 0:
            raise ValueError(f"ShadingConfig ambient/diffuse must be >= 0, got {self.ambient}, {self.diffuse}")


class BoxAppearance:
    """Per-box texture parameters and the shading function for ``B`` boxes.

    The P texture and color parameters of all boxes live in a (P, B) float32 table, gathered per point
    into contiguous reusable buffers (this keeps shading a 640x480 frame at about 10 ms).

    Args:
        colors: (B, 3) uint8 base RGB colors.
        texture_seeds: (B,) non-negative integer seeds.
        shading: light and reflectance constants.
    """

    # column layout of the parameter table
    _WAVES = 0  # NUM_WAVES x (kx, ky, kz, phase, amplitude)
    _CHECKER = 5 * NUM_WAVES  # cell size, offset x, y, z, amplitude
    _COLOR = _CHECKER + 5  # r, g, b
    _WIDTH = _COLOR + 3

    def __init__(self, colors: np.ndarray, texture_seeds: np.ndarray, shading: ShadingConfig) -> None:
        colors = np.asarray(colors)
        seeds = np.asarray(texture_seeds, dtype=np.int64)
        if colors.shape != (len(seeds), 3):
            raise ValueError(f"need one RGB color per texture seed, got colors {colors.shape}, seeds {seeds.shape}")
        light = np.asarray(shading.light_direction, dtype=np.float64)
        self.light = (light / np.linalg.norm(light)).astype(np.float32)
        self.ambient = np.float32(shading.ambient)
        self.diffuse = np.float32(shading.diffuse)
        table = np.zeros((len(seeds), self._WIDTH), np.float32)
        for b, seed in enumerate(seeds):
            rng = np.random.default_rng(int(seed))
            directions = rng.normal(size=(NUM_WAVES, 3))
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            frequencies = np.exp(rng.uniform(*np.log(WAVE_FREQUENCY_RANGE), size=NUM_WAVES))
            waves = np.concatenate((directions * frequencies[:, None], rng.uniform(0.0, 2 * np.pi, (NUM_WAVES, 1)),
                                    rng.uniform(*WAVE_AMPLITUDE_RANGE, size=(NUM_WAVES, 1))), axis=1)
            table[b, self._WAVES:self._CHECKER] = waves.ravel()
            cell = rng.uniform(*CHECKER_CELL_RANGE)
            # a random offset keeps checker cell borders off the (often round-numbered) box faces
            table[b, self._CHECKER:self._COLOR] = [cell, *rng.uniform(0.0, cell, size=3),
                                                   rng.uniform(*CHECKER_AMPLITUDE_RANGE)]
            table[b, self._COLOR:] = colors[b]
        self._table_rows = np.ascontiguousarray(table.T)  # (P, B): one contiguous row per parameter
        self._workspace: tuple[np.ndarray, ...] | None = None

    def _buffers(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Reusable buffers for ``n`` points: (P, n) parameters, (3, n) coordinates and three (n,) scratch.

        Fresh multi-megabyte temporaries cost page faults and strided columns defeat SIMD; both made
        shading several times slower, so buffers of the last ``n`` are kept, laid out contiguously per
        quantity, and all arithmetic is in place.
        """
        if self._workspace is None or self._workspace[0].shape[1] != n:
            self._workspace = (np.empty((self._WIDTH, n), np.float32), np.empty((3, n), np.float32),
                               *(np.empty(n, np.float32) for _ in range(3)))
        return self._workspace

    def _gather(self, points: np.ndarray, box_index: np.ndarray) -> tuple[np.ndarray, ...]:
        """Fill the workspace for (N, 3) points on boxes (N,); returns (params, xyz, value, a, b)."""
        params, xyz, value, a, b = self._buffers(len(points))
        box_index = np.asarray(box_index, dtype=np.intp)
        if len(box_index) and (box_index.min() < 0 or box_index.max() >= self._table_rows.shape[1]):
            raise ValueError(f"box indices must be in [0, {self._table_rows.shape[1]})")
        for row in range(self._WIDTH):
            np.take(self._table_rows[row], box_index, out=params[row], mode="clip")  # clip: no bounds-check copy
        np.copyto(xyz, np.asarray(points, dtype=np.float32).T)
        return params, xyz, value, a, b

    def _texture_into(self, params: np.ndarray, xyz: np.ndarray, value: np.ndarray, a: np.ndarray,
                      b: np.ndarray) -> None:
        """Write the texture for gathered (P, N) params at (3, N) points into ``value`` (N,); a, b are scratch."""
        x, y, z = xyz
        value.fill(1.0)
        for k in range(NUM_WAVES):
            kx, ky, kz, phase, amplitude = params[self._WAVES + 5 * k:self._WAVES + 5 * k + 5]
            np.multiply(kx, x, out=a)
            a += np.multiply(ky, y, out=b)
            a += np.multiply(kz, z, out=b)
            a += phase
            np.sin(a, out=a)
            a *= amplitude
            value += a
        cell, ox, oy, oz, amplitude = params[self._CHECKER:self._CHECKER + 5]
        b.fill(0.0)
        for coordinate, offset in ((x, ox), (y, oy), (z, oz)):
            np.add(coordinate, offset, out=a)
            a /= cell
            b += np.floor(a, out=a)
        # parity of the integer cell sum: b - 2 floor(b / 2) is 0 or 1; mapped to -1 / +1
        np.multiply(b, 0.5, out=a)
        np.floor(a, out=a)
        a *= -2.0
        b += a
        b *= 2.0
        b -= 1.0
        b *= amplitude
        value += b

    def shade(self, points: np.ndarray, normals: np.ndarray, box_index: np.ndarray) -> np.ndarray:
        """(N, 3) uint8 RGB of surface points (N, 3) with outward unit normals (N, 3) on boxes (N,)."""
        params, xyz, factor, a, b = self._gather(points, box_index)
        self._texture_into(params, xyz, factor, a, b)
        np.copyto(xyz, np.asarray(normals, dtype=np.float32).T)
        np.multiply(xyz[0], self.light[0], out=a)
        for i in (1, 2):
            a += np.multiply(xyz[i], self.light[i], out=b)
        np.maximum(a, 0.0, out=a)
        a *= self.diffuse
        a += self.ambient
        factor *= a
        color = np.empty((3, len(points)), np.uint8)
        for c in range(3):
            np.multiply(params[self._COLOR + c], factor, out=a)
            a += 0.5
            np.clip(a, 0.0, 255.0, out=a)
            color[c] = a
        return np.ascontiguousarray(color.T)
