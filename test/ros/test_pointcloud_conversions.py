"""Voxel map -> PointCloud2: the near-surface voxels of a real fused volume, their fields, and the wire format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("rclpy")

from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import PointCloud2, PointField  # noqa: E402

from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.map import SemanticTSDFVolume  # noqa: E402
from semantic_recon_ros.core.config.volume import VolumeConfig  # noqa: E402
from semantic_recon_ros.core.voxel_map import VOXEL_POINT_DTYPE, surface_voxel_points  # noqa: E402
from semantic_recon_ros.ros.pointcloud_conversions import pointcloud2_to_array, voxel_points_to_pointcloud2  # noqa: E402

from support.frames import downscale  # noqa: E402

CLASSES = load_class_set()


@pytest.fixture(scope="module")
def volume(seven_scenes) -> SemanticTSDFVolume:
    """6 quarter-size 7-Scenes frames fused at 4 cm; labels 3 (cabinet) left of the image centre, 255 right."""
    volume = SemanticTSDFVolume(VolumeConfig(), CLASSES.names, "cpu")
    for frame in seven_scenes.subset(stride=30, max_frames=6):
        frame = downscale(frame, 2)
        labels = np.full(frame.depth.shape, 255, np.int64)
        labels[:, : frame.camera.width // 2] = 3
        volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=labels)
    return volume


def all_voxels(volume: SemanticTSDFVolume) -> tuple[torch.Tensor, dict]:
    """Every allocated voxel's global coordinates (M, 3) and its layers, read through the public API."""
    B = volume.config.block_size
    local = torch.stack(torch.meshgrid(*(torch.arange(B),) * 3, indexing="ij"), dim=-1).reshape(-1, 3)
    coords = (volume.grid.block_coords()[:, None, :] * B + local).reshape(-1, 3)
    return coords, volume.grid.read_voxels(coords)


@pytest.mark.parametrize("distance_voxels", [0.5, 1.0, 2.0])
def test_points_are_the_observed_voxels_within_the_band(volume, distance_voxels):
    cfg = volume.config
    points = surface_voxel_points(volume, distance_voxels)
    coords, layers = all_voxels(volume)
    expected = (layers["weight"] > 0) & (layers["tsdf"].abs() * cfg.truncation <= distance_voxels * cfg.voxel_size + 1e-7)
    assert len(points) == int(expected.sum()) > 1000
    got = np.round(np.stack([points["x"], points["y"], points["z"]], axis=1) / cfg.voxel_size).astype(np.int64)
    want = coords[expected].numpy()
    assert {tuple(p) for p in got.tolist()} == {tuple(p) for p in want.tolist()}
    np.testing.assert_allclose(np.stack([points["x"], points["y"], points["z"]], axis=1), got * cfg.voxel_size, atol=1e-5)

    order = {tuple(p): i for i, p in enumerate(want.tolist())}
    index = np.array([order[tuple(p)] for p in got.tolist()])
    color = layers["color"][expected].numpy()[index].round().astype(np.uint32)
    np.testing.assert_array_equal(points["rgb"], color[:, 0] << 16 | color[:, 1] << 8 | color[:, 2])
    votes = layers["semantic"][expected].numpy()[index]
    labeled = votes.sum(axis=1) > 0
    np.testing.assert_array_equal(points["label"][labeled], votes[labeled].argmax(axis=1))
    assert (points["label"][~labeled] == -1).all() and (points["confidence"][~labeled] == 0).all()
    np.testing.assert_allclose(points["confidence"][labeled],
                               votes[labeled].max(axis=1) / votes[labeled].sum(axis=1), rtol=1e-5)
    assert set(np.unique(points["label"])) <= {-1, 3} and labeled.any() and (~labeled).any()
    assert (points["observed"] == 1).all() and (points["surface_confidence"] == 1).all()


def test_pointcloud2_fields_and_wire_round_trip(volume):
    points = surface_voxel_points(volume, 1.0)
    msg = voxel_points_to_pointcloud2(points, "world", 1_700_000_000_500_000_000)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 12, PointField.FLOAT32, 1), ("label", 16, PointField.INT32, 1),
        ("confidence", 20, PointField.FLOAT32, 1), ("observed", 24, PointField.UINT8, 1),
        ("surface_confidence", 28, PointField.FLOAT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, len(points), 32, 32 * len(points))
    assert msg.header.frame_id == "world" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1_700_000_000, 500_000_000)
    received = deserialize_message(serialize_message(msg), PointCloud2)
    back = pointcloud2_to_array(received)
    for name in ("x", "y", "z", "label", "confidence", "observed", "surface_confidence"):
        np.testing.assert_array_equal(back[name], points[name])
    np.testing.assert_array_equal(back["rgb"].view(np.uint32), points["rgb"])  # packed color in a FLOAT32 field

    empty = voxel_points_to_pointcloud2(np.zeros(0, VOXEL_POINT_DTYPE), "world", 1)
    assert empty.width == 0 and len(pointcloud2_to_array(empty)) == 0
    with pytest.raises(ValueError, match="VOXEL_POINT_DTYPE"):
        voxel_points_to_pointcloud2(np.zeros(3, np.float32), "world", 1)
    received.row_step += 4
    with pytest.raises(ValueError, match="row_step"):
        pointcloud2_to_array(received)


def test_empty_volume_gives_no_points():
    volume = SemanticTSDFVolume(VolumeConfig(), CLASSES.names, "cpu")
    assert surface_voxel_points(volume, 1.0).shape == (0,)
