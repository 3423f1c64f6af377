"""The fast vectorized integration equals a slow, obviously-correct per-voxel loop."""

from __future__ import annotations

import math

import numpy as np
import torch

from semantic_recon_ros.core.map import SemanticTSDFVolume
from semantic_recon_ros.core.config.volume import VolumeConfig

from support.frames import downscale

NUM_CLASSES = 4


class ReferenceVolume:
    """Dictionary of voxels, updated one voxel at a time in float64, straight from the definitions."""

    def __init__(self, config: VolumeConfig):
        self.cfg = config
        self.voxels: dict[tuple[int, int, int], dict] = {}

    def integrate(self, depth, camera, T_world_cam, color, labels):
        cfg = self.cfg
        B, vs, trunc = cfg.block_size, cfg.voxel_size, cfg.truncation
        depth = np.where(np.isfinite(depth) & (depth >= cfg.min_depth) & (depth <= cfg.max_depth), depth, 0.0)
        R, t = T_world_cam[:3, :3], T_world_cam[:3, 3]
        # 1. blocks: every block touched by a point within truncation (+1 voxel) of a depth sample
        band = trunc + vs
        steps = math.ceil(2 * band / (0.5 * cfg.block_length)) + 1
        blocks = set()
        s = cfg.allocation_stride
        for v in range(0, camera.height, s):
            for u in range(0, camera.width, s):
                d = depth[v, u]
                if d == 0:
                    continue
                ray = np.array([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, 1.0])
                for offset in np.linspace(-band, band, steps):
                    p = R @ (ray * max(d + offset, 1e-3)) + t
                    blocks.add(tuple(int(b) for b in np.floor((p / vs + 0.5) / B)))
        # 2. projective update of every voxel of those blocks
        R_cw, t_cw = R.T, -R.T @ t
        for block in blocks:
            for local in np.ndindex(B, B, B):
                g = tuple(int(b * B + l) for b, l in zip(block, local))
                voxel = self.voxels.setdefault(
                    g, {"tsdf": 1.0, "weight": 0.0, "color": np.zeros(3), "semantic": np.zeros(NUM_CLASSES)})
                p = R_cw @ (np.array(g) * vs) + t_cw
                if p[2] <= 0:
                    continue
                u = round(camera.fx * p[0] / p[2] + camera.cx)
                v = round(camera.fy * p[1] / p[2] + camera.cy)
                if not (0 <= u < camera.width and 0 <= v < camera.height) or depth[v, u] == 0:
                    continue
                sdf = depth[v, u] - p[2]
                if sdf < -trunc:
                    continue
                w = voxel["weight"]
                voxel["tsdf"] = (voxel["tsdf"] * w + min(1.0, sdf / trunc)) / (w + 1)
                voxel["color"] = (voxel["color"] * w + color[v, u]) / (w + 1)
                voxel["weight"] = min(w + 1, cfg.max_weight)
                if abs(sdf) < trunc and 0 <= labels[v, u] < NUM_CLASSES:
                    voxel["semantic"][labels[v, u]] += 1
                    total = voxel["semantic"].sum()
                    if total > cfg.max_weight:
                        voxel["semantic"] *= cfg.max_weight / total


def test_fast_integration_matches_reference(seven_scenes):
    config = VolumeConfig(voxel_size=0.06, block_size=4, truncation_voxels=3.0, max_weight=3.0, allocation_stride=2)
    fast = SemanticTSDFVolume(config, [str(i) for i in range(NUM_CLASSES)], "cpu")
    reference = ReferenceVolume(config)
    rng = np.random.default_rng(0)
    for index in (0, 40, 80, 120, 160):  # five frames: the weight cap (3) is reached and exercised
        frame = downscale(seven_scenes[index], 8)  # 80 x 60
        labels = rng.integers(-1, NUM_CLASSES + 1, size=frame.depth.shape)
        fast.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=labels)
        reference.integrate(frame.depth.astype(np.float64), frame.camera, frame.T_world_cam,
                            frame.color.astype(np.float64), labels)

    coords = torch.tensor(sorted(reference.voxels), dtype=torch.int64)
    got = fast.grid.read_voxels(coords)
    assert bool(got["allocated"].all()), "fast volume lacks blocks the reference allocated"
    assert fast.num_blocks * config.voxels_per_block == len(reference.voxels)
    want = {name: torch.tensor(np.array([reference.voxels[tuple(c)][name] for c in coords.tolist()]))
            for name in ("tsdf", "weight", "color", "semantic")}
    observed = want["weight"] > 0
    assert observed.sum() > 2000
    # float32 vs float64 can move a projection across a pixel-rounding boundary: allow 0.1 % of voxels
    for name, atol in (("tsdf", 1e-4), ("weight", 0), ("color", 1e-2), ("semantic", 1e-4)):
        diff = (got[name].double() - want[name]).abs().reshape(len(coords), -1).amax(dim=1)
        mismatched = int((diff > atol).sum())
        assert mismatched <= 0.001 * len(coords), f"{name}: {mismatched} of {len(coords)} voxels differ"
