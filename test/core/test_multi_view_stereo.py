"""Plane-sweep stereo (core.multi_view_stereo) on a rendered synthetic room whose true depth is known, and on real
7-Scenes frames against their captured depth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from semantic_recon_ros.core.config import StereoConfig
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.datasets.seven_scenes import COLOR_FOCAL_LENGTH, SevenScenesSequence
from semantic_recon_ros.core.multi_view_stereo import PlaneSweepStereo, window_sum
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene

from support.paths import SEVEN_SCENES



@pytest.fixture(scope="module")
def room_frames(tmp_path_factory):
    scene = write_synthetic_scene(tmp_path_factory.mktemp("stereo_room") / "room", seed=3, num_frames=45,
                                  camera=DEFAULT_CAMERA.scaled(160, 120))
    return list(open_sequence(scene))


def depth_errors(stereo: PlaneSweepStereo, frames, camera=None) -> tuple[int, list[float], np.ndarray]:
    """(frames without a source, coverage of each estimated frame, relative errors of all trusted pixels)."""
    without, coverage, errors = 0, [], []
    for frame in frames:
        depth = stereo.estimate(frame.color, camera or frame.camera, frame.T_world_cam)
        if depth is None:
            without += 1
            continue
        assert depth.shape == frame.camera.shape and depth.dtype == np.float32
        both = (depth > 0) & np.isfinite(frame.depth) & (frame.depth > 0)
        coverage.append(float(both.mean()))
        errors.append(np.abs(depth[both] - frame.depth[both]) / frame.depth[both])
    return without, coverage, np.concatenate(errors)


def test_stereo_depth_of_a_moving_camera_matches_the_true_depth(room_frames):
    without, coverage, errors = depth_errors(PlaneSweepStereo(StereoConfig()), room_frames)
    assert 1 <= without < 15  # until min_support earlier frames lie min_baseline away (measured: 10)
    # measured: coverage 0.18, 97.6 % of the trusted pixels within 10 % of the true depth, median error 1.3 %
    assert np.median(coverage) > 0.12
    assert np.mean(errors < 0.1) > 0.9
    assert np.median(errors) < 0.03


def test_a_camera_turning_in_place_has_no_stereo_source(room_frames):
    stereo = PlaneSweepStereo(StereoConfig())
    frame = room_frames[0]
    for degrees in (0.0, 5.0, 10.0, 15.0):
        turn = np.eye(4)
        angle = np.radians(degrees)
        turn[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
        assert stereo.estimate(frame.color, frame.camera, frame.T_world_cam @ turn) is None
    assert len(stereo.keyframes) == 4  # each turned 5 degrees from the last: all kept, none a source (no baseline)


def test_another_camera_forgets_the_keyframes(room_frames):
    stereo = PlaneSweepStereo(StereoConfig())
    for frame in room_frames[:20]:
        stereo.estimate(frame.color, frame.camera, frame.T_world_cam)
    assert len(stereo.keyframes) > 1
    other = dataclasses.replace(room_frames[20].camera, fx=room_frames[20].camera.fx * 1.1)
    assert stereo.estimate(room_frames[20].color, other, room_frames[20].T_world_cam) is None
    assert len(stereo.keyframes) == 1


def test_real_frames_get_depth_close_to_the_captured_depth():
    sequence = SevenScenesSequence(SEVEN_SCENES)
    camera = sequence.camera.with_focal_length(COLOR_FOCAL_LENGTH)
    frames = [sequence[index] for index in range(0, 60, 3)]
    without, coverage, errors = depth_errors(PlaneSweepStereo(StereoConfig(width=160)), frames, camera)
    assert without < len(frames) - 5  # the camera starts slowly: 14 of the 20 frames wait for sources
    # measured: coverage 0.51, 62 % within 10 % (the color and depth cameras are not registered: edges move)
    assert np.median(coverage) > 0.3
    assert np.mean(errors < 0.1) > 0.5


@pytest.mark.parametrize("change, message", [
    ({"window": 6}, "window must be odd"),
    ({"min_depth": 5.0}, "min_depth (5.0) must be below max_depth"),
    ({"min_baseline": 0.5}, "min_baseline (0.5) must be below max_baseline"),
    ({"best_sources": 5}, "cannot exceed max_sources"),
    ({"planes": 4}, "planes"),
])
def test_bad_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StereoConfig(**change)


def test_a_color_image_of_another_size_is_refused(room_frames):
    frame = room_frames[0]
    with pytest.raises(ValueError, match="stereo needs an"):
        PlaneSweepStereo(StereoConfig()).estimate(frame.color[:-1], frame.camera, frame.T_world_cam)


@pytest.mark.parametrize("size", [3, 7])
def test_window_sums_match_a_sum_over_each_pixels_window(size):
    images = torch.rand(2, 9, 13, generator=torch.Generator().manual_seed(size))
    half = size // 2
    expected = torch.zeros_like(images)
    for row in range(9):
        for column in range(13):
            window = images[:, max(0, row - half):row + half + 1, max(0, column - half):column + half + 1]
            expected[:, row, column] = window.sum(dim=(1, 2))
    assert torch.allclose(window_sum(images, size), expected, atol=1e-5)
    counts = window_sum(torch.ones(1, 9, 13), size)[0]
    assert counts[0, 0] == (half + 1) ** 2 and counts[4, 6] == size * size  # the border counts pixels inside only
