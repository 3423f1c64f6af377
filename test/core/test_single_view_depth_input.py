"""The RGB-D single view: a depth image's projective TSDF in the frustum grid, the network's depth branch (starting
as the image-only network, refusing a missing or unexpected depth), a depth image seen through the trained camera
(nearest pixel, never a blend across a depth edge) and the predictor that needs it. Room 31 (not one of the held-out
rooms 900-909), 160x120, a 32 x 24 x 32 frustum grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.models.single_view import (BlockDecoder, BlockAutoencoderConfig, FrustumGrid,
                                                         FrustumGridConfig, ImageToLatentConfig, ImageToLatentNet,
                                                         network_view)
from semantic_recon_ros.core.models.single_view.depth_frustum import depth_frustum_channels
from semantic_recon_ros.core.single_view_prediction import SingleViewPredictor
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, write_synthetic_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAMERA = DEFAULT_CAMERA.scaled(160, 120)
GRID = FrustumGridConfig(cells_x=32, cells_y=24, cells_depth=32, near=0.3, far=5.0, truncation=0.3)
AUTOENCODER = BlockAutoencoderConfig(block_size=4, latent_channels=16, base_width=8)


def networks(seed: int = 0) -> tuple[ImageToLatentNet, ImageToLatentNet]:
    """An image-only network and a depth network holding its weights (the depth branch fresh)."""
    torch.manual_seed(seed)
    decoder = BlockDecoder(AUTOENCODER)
    image_only = ImageToLatentNet(ImageToLatentConfig(base_width=8), GRID, decoder).eval()
    with_depth = ImageToLatentNet(ImageToLatentConfig(base_width=8, depth_input=True), GRID, decoder).eval()
    missing, unexpected = with_depth.load_state_dict(image_only.state_dict(), strict=False)
    assert not unexpected and missing and all(name.startswith("depth.") for name in missing)
    return image_only, with_depth


def test_a_wall_gives_free_cells_in_front_a_band_behind_and_unknown_beyond():
    depth = torch.full((1, 120, 160), 2.0)
    depth[0, :, :40] = 0.0  # the left quarter has no depth
    channels = depth_frustum_channels(depth, GRID)
    assert channels.shape == (1, 2, 32, 24, 32)
    tsdf, known = channels[0, 0], channels[0, 1].bool()
    z = GRID.near + (torch.arange(32) + 0.5) * (GRID.far - GRID.near) / 32
    signed = (2.0 - z) / GRID.truncation
    column = (slice(None), 10, 20)  # a column of the wall
    assert torch.equal(known[column], signed > -1)
    assert torch.allclose(tsdf[column][signed > -1], signed[signed > -1].clamp(-1, 1))
    assert (tsdf[column][(signed > 0) & (signed < 1)] > 0).all()
    assert (tsdf[column][(signed < 0) & (signed > -1)] < 0).all()
    assert not known[:, :, :8].any() and (tsdf[:, :, :8] == 0).all()  # columns of the left quarter: nothing known
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        depth_frustum_channels(torch.zeros(120, 160), GRID)


def test_the_depth_branch_starts_as_the_image_network_and_learns_to_read_the_depth():
    image_only, with_depth = networks()
    images = torch.rand(2, 3, 120, 160)
    near, far = torch.full((2, 120, 160), 1.0), torch.full((2, 120, 160), 3.0)
    with torch.no_grad():
        plain = image_only(images)["tsdf"]
        assert torch.equal(with_depth(images, near)["tsdf"], plain)  # the branch's last layer starts at zero
    optimizer = torch.optim.Adam(with_depth.depth.parameters(), lr=1e-2)
    images = images[:1].expand(2, -1, -1, -1)  # one image, two depths: only the branch can tell them apart
    depth = torch.cat((near[:1], far[:1]))
    cells = depth_frustum_channels(depth, GRID)[:, 0]
    target = torch.where(cells == 0, -torch.ones_like(cells), cells)  # solid behind the band
    errors = []
    for _ in range(100):
        loss = (with_depth(images, depth)["tsdf"] - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        errors.append(loss.item())
    assert errors[-1] < 0.8 * errors[0], errors
    with torch.no_grad():
        tsdf = with_depth(images, depth)["tsdf"]
    between = (target[0] < 0) & (target[1] > 0)  # solid behind the near wall, free in front of the far one
    assert tsdf[0][between].mean() < tsdf[1][between].mean() - 0.3, (tsdf[0][between].mean(), tsdf[1][between].mean())
    images = torch.rand(2, 3, 120, 160)
    with pytest.raises(ValueError, match="needs the view's depth"):
        with_depth(images)
    with pytest.raises(ValueError, match="reads no depth"):
        image_only(images, near)
    with pytest.raises(ValueError, match=r"depth must be \(B, H, W\) with B = 2"):
        with_depth(images, near[:1])


def test_a_depth_image_seen_through_the_trained_camera_keeps_its_edges(tmp_path):
    narrow = PinholeCamera(CAMERA.fx * 1.12, CAMERA.fy * 1.12, CAMERA.cx + 3, CAMERA.cy - 2, 160, 120)
    frame = open_sequence(write_synthetic_scene(tmp_path / "narrow", seed=31, num_frames=1, camera=narrow))[0]
    view = network_view(frame.color, narrow, CAMERA, frame.depth)
    assert view.resampled and view.depth.shape == (120, 160)
    assert (view.depth[~view.covered] == 0).all() and (view.depth[view.covered] > 0).mean(dtype=torch.float32) > 0.99
    values = set(np.unique(frame.depth[np.isfinite(frame.depth) & (frame.depth > 0)]).tolist())
    assert set(view.depth[view.depth > 0].unique().tolist()) <= values  # nearest pixels: never a blend
    same = network_view(frame.color, narrow, narrow, frame.depth)
    assert not same.resampled and np.array_equal(same.depth.numpy(), np.nan_to_num(frame.depth, nan=0.0))
    doubled = narrow.scaled(320, 240)  # the same camera at twice the size: resized, by the nearest pixel
    big = np.repeat(np.repeat(frame.depth, 2, axis=0), 2, axis=1)
    big_color = np.repeat(np.repeat(frame.color, 2, axis=0), 2, axis=1)
    assert np.array_equal(network_view(big_color, doubled, narrow, big).depth.numpy(),
                          np.nan_to_num(frame.depth, nan=0.0))
    with pytest.raises(ValueError, match=r"expected a \(120, 160\) depth image"):
        network_view(frame.color, narrow, CAMERA, frame.depth[:60])


def test_a_depth_predictor_refuses_a_frame_without_depth_and_predicts_with_it(tmp_path):
    frame = open_sequence(write_synthetic_scene(tmp_path / "room", seed=31, num_frames=1, camera=CAMERA))[0]
    _, with_depth = networks()
    predictor = SingleViewPredictor(with_depth, CAMERA, GRID, load_class_set().names, "cpu")
    assert predictor.needs_depth
    with pytest.raises(ValueError, match="reads the frame's depth"):
        predictor.predict(frame.color, CAMERA, frame.T_world_cam)
    prediction = predictor.predict(frame.color, CAMERA, frame.T_world_cam, frame.depth)
    assert prediction.tsdf.shape == FrustumGrid(CAMERA, GRID).shape
    image_only, _ = networks()
    assert not SingleViewPredictor(image_only, CAMERA, GRID, load_class_set().names, "cpu").needs_depth
