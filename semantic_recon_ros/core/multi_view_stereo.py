"""Depth of a moving color camera from its own earlier frames: plane-sweep multi-view stereo.

RGB-only mapping (the node's ``rgb_only`` with ``rgb_only_geometry: stereo``, ``semantic-recon map --rgb-only``)
gives each color frame a depth image estimated here and then maps it exactly like an RGB-D frame: TSDF fusion, 2D
labels, the completion network.

Each frame (the reference) is matched against up to ``max_sources`` earlier frames kept as keyframes whose camera
centre lies ``min_baseline``..``max_baseline`` away and which look the same way (viewing directions within
``max_view_angle``), chosen spread over that range of baselines. For ``planes`` depths spaced evenly in inverse depth
between ``min_depth`` and ``max_depth``, every source image is warped into the reference view through the plane and
compared with the reference by zero-mean normalized cross-correlation (ZNCC) over ``window`` x ``window`` pixels;
a depth's score is the mean correlation of its ``best_sources`` best sources (a surface occluded in the others
still scores). Each pixel takes its best-scoring depth, refined between planes by a parabola, and keeps it only
where the match is unambiguous enough to trust (``min_score``, ``min_support`` sources agreeing, a textured window,
not at either end of the sweep) and where it agrees with the depth matched before for ``min_consistent`` of the
sources that have some (multi-view geometric consistency: a wrong match rarely lands on the same point twice); the
other pixels get no depth. TSDF fusion over many frames averages the error that remains.

Frames: ``T_world_cam`` maps camera-frame points (x right, y down, z forward) to the world frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .camera import PinholeCamera
from .config.stereo import StereoConfig

PLANE_CHUNK = 16  # planes swept at once: 4 sources' correlations take 20 MB at 320x240 instead of 118 MB for 96
KEYFRAME_TURN_DEGREES = 3.0  # a frame turned this far from the last keyframe becomes one (with keyframe_spacing)
_LUMA = (0.299, 0.587, 0.114)


@dataclass
class StereoKeyframe:
    """A frame kept for matching: (h, w) float32 intensity in [0, 1] and (h, w) float32 depth of its trusted
    matches before the consistency check (metres, 0 = none; None when it has none) at the matching resolution, on
    the device."""

    intensity: torch.Tensor
    T_world_cam: np.ndarray
    depth: torch.Tensor | None = None

    @property
    def centre(self) -> np.ndarray:
        return self.T_world_cam[:3, 3]

    @property
    def axis(self) -> np.ndarray:
        """Unit viewing direction (the camera's z axis) in the world frame."""
        return self.T_world_cam[:3, 2]


class PlaneSweepStereo:
    """Estimates the depth of each frame of one color camera from its earlier frames (see the module docstring).

    Not thread-safe: call :meth:`estimate` from one thread. A frame of another camera (intrinsics or image size)
    forgets the keyframes of the previous one.

    Args:
        config: the matching settings.
        device: where the images are matched.
    """

    def __init__(self, config: StereoConfig, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.device = torch.device(device)
        self.keyframes: list[StereoKeyframe] = []
        self._camera: PinholeCamera | None = None  # the input camera the keyframes belong to
        self._matching_camera: PinholeCamera | None = None
        self._rays: torch.Tensor | None = None  # (h, w, 3) the matching camera's pixel rays, z = 1
        self._window_counts: torch.Tensor | None = None  # (h, w) pixels inside the image in each pixel's window
        inverse = torch.linspace(1.0 / config.min_depth, 1.0 / config.max_depth, config.planes, device=self.device)
        self._inverse_depths = inverse  # (D,) 1/metres, nearest first

    def reset(self) -> None:
        """Forget every keyframe."""
        self.keyframes.clear()

    def estimate(self, color: np.ndarray, camera: PinholeCamera, T_world_cam: np.ndarray) -> np.ndarray | None:
        """The frame's depth, then the frame is remembered as a keyframe if it moved far enough.

        Args:
            color: (H, W, 3) uint8 RGB image of ``camera``.
            T_world_cam: (4, 4) camera-to-world pose of the frame.
        Returns:
            (H, W) float32 z-depth in metres, 0 where no depth is trusted; None while fewer than ``min_support``
            keyframes are usable sources (the first frames, or after the camera only turned in place).
        """
        if color.ndim != 3 or color.shape[2] != 3 or color.shape[:2] != camera.shape:
            raise ValueError(f"stereo needs an (H, W, 3) color image of the camera's {camera.width}x{camera.height}, "
                             f"got {color.shape}")
        if camera != self._camera:
            self.reset()
            self._camera = camera
            width = min(self.config.width, camera.width)
            self._matching_camera = camera.scaled(width, max(1, round(camera.height * width / camera.width)))
            self._rays = self._matching_camera.pixel_rays(self.device)
        reference = StereoKeyframe(self._intensity(color), np.asarray(T_world_cam, dtype=np.float64))
        sources = self.sources(reference)
        depth = None
        if len(sources) >= self.config.min_support:
            matched = self.match(reference, sources)
            trusted = torch.where(self._consistent(reference, matched, sources), matched, torch.zeros_like(matched))
            reference.depth = matched if bool((matched > 0).any()) else None
            depth = F.interpolate(trusted[None, None], size=camera.shape, mode="nearest")[0, 0].cpu().numpy()
        self._remember(reference)
        return depth

    def sources(self, reference: StereoKeyframe) -> list[StereoKeyframe]:
        """Up to ``max_sources`` keyframes usable with ``reference``, spread over the allowed baselines."""
        cfg = self.config
        cos_limit = np.cos(np.radians(cfg.max_view_angle))
        usable = []
        for keyframe in self.keyframes:
            baseline = float(np.linalg.norm(keyframe.centre - reference.centre))
            if cfg.min_baseline <= baseline <= cfg.max_baseline and keyframe.axis @ reference.axis >= cos_limit:
                usable.append((baseline, keyframe))
        usable.sort(key=lambda pair: pair[0])
        if len(usable) <= cfg.max_sources:
            return [keyframe for _, keyframe in usable]
        picks = np.linspace(0, len(usable) - 1, cfg.max_sources).round().astype(int)
        return [usable[index][1] for index in picks]

    def match(self, reference: StereoKeyframe, sources: list[StereoKeyframe]) -> torch.Tensor:
        """(h, w) float32 depth of ``reference`` at the matching resolution from ``sources`` where the match is
        trusted (0 elsewhere), before the check of geometric consistency.

        The planes are swept ``PLANE_CHUNK`` at a time (less memory; 1.15x faster than all at once at 320x240 on
        this CPU, the same depth); each pixel's best plane so far and the sources supporting it are carried from
        chunk to chunk."""
        cfg = self.config
        camera = self._matching_camera
        planes, shape = self._inverse_depths.numel(), camera.shape
        ref = reference.intensity[None]  # (1, h, w)
        ref_mean = self._window_mean(ref)
        ref_var = (self._window_mean(ref * ref) - ref_mean * ref_mean).clamp_min(1e-8)
        moves = []  # per source: the rays rotated into its frame (h, w, 3) and the reference's centre there (3,)
        for source in sources:
            T_source_ref = self._T_source_ref(source, reference)
            moves.append((self._rays @ T_source_ref[:3, :3].T, T_source_ref[:3, 3]))
        score = torch.empty((planes, *shape), device=self.device)  # (D, h, w) mean of the best sources
        best = torch.full(shape, -2.0, device=self.device)
        index = torch.zeros(shape, dtype=torch.long, device=self.device)
        support = torch.zeros_like(index)
        for first in range(0, planes, PLANE_CHUNK):
            plane_depths = 1.0 / self._inverse_depths[first:first + PLANE_CHUNK, None, None, None]  # (P, 1, 1, 1)
            per_source = torch.empty((len(sources), len(plane_depths), *shape), device=self.device)  # (S, P, h, w)
            for source, (rotated, centre), out in zip(sources, moves, per_source):
                self._correlation(source, rotated, centre, plane_depths, ref, ref_mean, ref_var, out)
            chunk = per_source.topk(min(cfg.best_sources, len(sources)), dim=0).values.mean(dim=0)  # (P, h, w)
            score[first:first + len(chunk)] = chunk
            chunk_best, chunk_index = chunk.max(dim=0)
            chunk_support = (per_source.gather(1, chunk_index[None, None].expand(len(sources), 1, -1, -1))[:, 0]
                             >= cfg.support_score).sum(dim=0)
            better = chunk_best > best  # ties keep the nearer plane, as one max over all planes would
            best = torch.where(better, chunk_best, best)
            index = torch.where(better, chunk_index + first, index)
            support = torch.where(better, chunk_support, support)
        inner = index.clamp(1, planes - 2)
        before, at, after = (score.gather(0, (inner + step)[None])[0] for step in (-1, 0, 1))
        curvature = before - 2 * at + after
        offset = torch.where(curvature < -1e-6, 0.5 * (before - after) / curvature.clamp_max(-1e-6),
                             torch.zeros_like(at)).clamp(-0.5, 0.5)
        step = self._inverse_depths[1] - self._inverse_depths[0]
        depth = 1.0 / (self._inverse_depths[0] + (inner.float() + offset) * step)
        trusted = ((best >= cfg.min_score) & (support >= cfg.min_support) & (ref_var[0] >= cfg.min_texture ** 2)
                   & (index > 0) & (index < planes - 1))
        return torch.where(trusted, depth, torch.zeros_like(depth))

    def _correlation(self, source: StereoKeyframe, rotated_rays: torch.Tensor, centre: torch.Tensor,
                     plane_depths: torch.Tensor, ref: torch.Tensor, ref_mean: torch.Tensor,
                     ref_var: torch.Tensor, out: torch.Tensor) -> None:
        """Writes into ``out`` (P, h, w) the ZNCC of the reference window (``ref``, its window mean and variance,
        (1, h, w) each) with ``source`` warped through each of the planes at ``plane_depths`` (P, 1, 1, 1); -1
        where the plane's point falls outside the source image or behind it.

        Args:
            rotated_rays: (h, w, 3) the reference pixels' rays (z = 1) rotated into the source camera frame.
            centre: (3,) the reference camera's centre in the source camera frame.
        """
        camera = self._matching_camera
        x, y, z = (plane_depths[..., 0] * rotated_rays[..., axis] + centre[axis] for axis in range(3))  # (P, h, w)
        # grid_sample's normalized coordinates of the projection: -1 and 1 are the outer edges of the image
        grid_x = x / z * (2 * camera.fx / camera.width) + (2 * (camera.cx + 0.5) / camera.width - 1)
        grid_y = y / z * (2 * camera.fy / camera.height) + (2 * (camera.cy + 0.5) / camera.height - 1)
        image = source.intensity[None, None].expand(len(plane_depths), 1, camera.height, camera.width)
        warped = F.grid_sample(image, torch.stack((grid_x, grid_y), dim=-1), mode="bilinear", padding_mode="zeros",
                               align_corners=False)[:, 0]
        seen = (grid_x.abs() <= 1) & (grid_y.abs() <= 1) & (z > 0)
        warped_mean = self._window_mean(warped)
        warped_var = (self._window_mean(warped * warped) - warped_mean * warped_mean).clamp_min(1e-8)
        torch.div(self._window_mean(warped * ref) - warped_mean * ref_mean, torch.sqrt(warped_var * ref_var), out=out)
        out.masked_fill_(~seen, -1.0)

    def _consistent(self, reference: StereoKeyframe, depth: torch.Tensor,
                    sources: list[StereoKeyframe]) -> torch.Tensor:
        """(h, w) bool: ``depth`` (h, w) of ``reference`` agrees with the earlier matches of ``min_consistent`` of
        the ``sources`` that have some (everywhere True when none has or the check is off)."""
        cfg = self.config
        with_depth = [source for source in sources if source.depth is not None]
        if cfg.min_consistent == 0 or not with_depth:
            return torch.ones_like(depth, dtype=torch.bool)
        camera = self._matching_camera
        points = camera.backproject(depth)  # (h, w, 3) in the reference camera frame
        agreeing = torch.zeros_like(depth, dtype=torch.int64)
        for source in with_depth:
            T_source_ref = self._T_source_ref(source, reference)
            uv, z = camera.project(points @ T_source_ref[:3, :3].T + T_source_ref[:3, 3])
            column, row = uv[..., 0].round().long(), uv[..., 1].round().long()
            inside = (z > 0) & (column >= 0) & (column < camera.width) & (row >= 0) & (row < camera.height)
            seen = source.depth[row.clamp(0, camera.height - 1), column.clamp(0, camera.width - 1)]
            agreeing += (inside & (seen > 0) & ((seen - z).abs() <= cfg.consistency * z)).long()
        return agreeing >= min(cfg.min_consistent, len(with_depth))

    def _T_source_ref(self, source: StereoKeyframe, reference: StereoKeyframe) -> torch.Tensor:
        """(4, 4) float32 on the device: the reference camera frame -> the source camera frame."""
        return torch.from_numpy(np.linalg.solve(source.T_world_cam, reference.T_world_cam)).float().to(self.device)

    def _window_mean(self, images: torch.Tensor) -> torch.Tensor:
        """(N, h, w) -> (N, h, w) mean over each pixel's window (the image border counts only pixels inside)."""
        shape = images.shape[-2:]
        if self._window_counts is None or self._window_counts.shape != shape:
            self._window_counts = window_sum(torch.ones((1, *shape), device=images.device), self.config.window)[0]
        return window_sum(images, self.config.window) / self._window_counts

    def _intensity(self, color: np.ndarray) -> torch.Tensor:
        """(h, w) float32 luma in [0, 1] of an (H, W, 3) uint8 image at the matching resolution."""
        rgb = torch.from_numpy(np.ascontiguousarray(color)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        rgb = F.interpolate(rgb, size=self._matching_camera.shape, mode="area")[0]
        return sum(weight * channel for weight, channel in zip(_LUMA, rgb))

    def _remember(self, frame: StereoKeyframe) -> None:
        if self.keyframes:
            last = self.keyframes[-1]
            moved = float(np.linalg.norm(frame.centre - last.centre))
            turned = np.degrees(np.arccos(np.clip(frame.axis @ last.axis, -1.0, 1.0)))
            if moved < self.config.keyframe_spacing and turned < KEYFRAME_TURN_DEGREES:
                return
        self.keyframes.append(frame)
        del self.keyframes[:-self.config.max_keyframes]


def window_sum(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, h, w) -> (N, h, w) sum over each pixel's ``size`` x ``size`` window (zeros beyond the border), as sums of
    shifted slices along rows, then along columns: much faster on the CPU than ``avg_pool2d`` (with it a frame took
    3x as long, bench/bench_stereo.py), the same to float rounding."""
    half = size // 2
    height, width = images.shape[-2:]
    padded = F.pad(images, (half, half, half, half))
    rows = padded[:, :, :width] + padded[:, :, 1:1 + width]
    for shift in range(2, size):
        rows += padded[:, :, shift:shift + width]
    sums = rows[:, :height] + rows[:, 1:1 + height]
    for shift in range(2, size):
        sums += rows[:, shift:shift + height]
    return sums
