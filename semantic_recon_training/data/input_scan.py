"""The incomplete input scan, made the same way in training and in evaluation.

Extraction (:mod:`.chunk_extraction`) and the evaluation protocol
(:mod:`..evaluation.evaluation_protocol`) both fuse a seeded random ``fraction`` of a sequence's frames into
the input volume: :func:`draw_input_frames` draws them (the same seed gives the same frames), and
:func:`fusion_volume_config` gives the settings of the fusion volumes, bounded to :data:`MAX_VOLUME_BLOCKS`
allocated blocks.
"""

from __future__ import annotations

import numpy as np

from semantic_recon_ros.core.config.volume import VolumeConfig

MAX_VOLUME_BLOCKS = 2_000_000  # allocated blocks at most per fusion volume


def draw_input_frames(rng: np.random.Generator, num_frames: int, fraction: float) -> np.ndarray:
    """(num_frames,) bool: a random ``fraction`` of the frames (at least one), drawn from ``rng``."""
    is_input = np.zeros(num_frames, dtype=bool)
    is_input[rng.choice(num_frames, size=max(1, int(round(fraction * num_frames))), replace=False)] = True
    return is_input


def input_frame_mask(num_frames: int, fraction: float, seed: int) -> np.ndarray:
    """(num_frames,) bool: the input subset that extraction with this ``seed`` draws (its first draw from
    ``numpy.random.default_rng(seed)``)."""
    return draw_input_frames(np.random.default_rng(seed), num_frames, fraction)


def fusion_volume_config(voxel_size: float, block_size: int, truncation_voxels: float, min_depth: float,
                         max_depth: float) -> VolumeConfig:
    """The settings of a fusion volume (input or target), bounded to :data:`MAX_VOLUME_BLOCKS` blocks."""
    return VolumeConfig(voxel_size=voxel_size, block_size=block_size, truncation_voxels=truncation_voxels,
                        min_depth=min_depth, max_depth=max_depth, max_blocks=MAX_VOLUME_BLOCKS)
