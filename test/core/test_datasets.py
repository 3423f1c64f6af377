"""Dataset readers and the ScanNet-style writer, on the real 7-Scenes frames and folders built from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.datasets import (
    ScanNetStyleSequence,
    ScanNetStyleWriter,
    SevenScenesSequence,
    TUMSequence,
    detect_format,
    open_sequence,
)
from semantic_recon_ros.core.datasets.image_files import read_pose, write_depth, write_labels
from semantic_recon_ros.core.datasets.tum import associate_one_to_one
from semantic_recon_ros.core.frame import RGBDFrame

from support.paths import SEVEN_SCENES

pytestmark = pytest.mark.usefixtures("shared_data")


def seven_scenes_raw(number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Color (H,W,3) uint8, depth (H,W) uint16 mm and pose (4,4) read straight from the files."""
    stem = SEVEN_SCENES / f"frame-{number:06d}"
    color = np.asarray(Image.open(f"{stem}.color.jpg").convert("RGB"))
    depth = np.asarray(Image.open(f"{stem}.depth.png")).astype(np.uint16)
    pose = np.loadtxt(f"{stem}.pose.txt")
    return color, depth, pose


def copy_seven_scenes(target: Path, numbers: list[int], intrinsics: bool = True) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        for suffix in (".color.jpg", ".depth.png", ".pose.txt"):
            name = f"frame-{number:06d}{suffix}"
            shutil.copy(SEVEN_SCENES / name, target / name)
    if intrinsics:
        shutil.copy(SEVEN_SCENES / "camera-intrinsics.txt", target / "camera-intrinsics.txt")
    return target


def random_rigid(rng: np.random.Generator) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.uniform(-5.0, 5.0, 3)
    return T


# ---------------------------------------------------------------- 7-Scenes


def test_seven_scenes_real_sequence():
    seq = open_sequence(SEVEN_SCENES)
    assert isinstance(seq, SevenScenesSequence)
    assert len(seq) == 600
    assert seq.name == "7scenes-redkitchen"
    K = np.loadtxt(SEVEN_SCENES / "camera-intrinsics.txt")
    np.testing.assert_allclose(seq.camera.K, K)
    assert seq.camera.shape == (480, 640)

    invalid_fractions = []
    for number in (0, 299, 599):
        frame = seq[number]
        color, depth_mm, pose = seven_scenes_raw(number)
        assert frame.name == f"frame-{number:06d}"
        assert frame.color.dtype == np.uint8 and frame.color.shape == (480, 640, 3)
        np.testing.assert_array_equal(frame.color, color)
        assert frame.depth.dtype == np.float32
        np.testing.assert_allclose(frame.depth, depth_mm / 1000.0, rtol=1e-6)
        invalid_fractions.append(float((frame.depth == 0).mean()))
        assert 0.5 < frame.depth.max() < 5.0
        np.testing.assert_allclose(frame.T_world_cam, pose, rtol=0, atol=2e-4)
        R = frame.T_world_cam[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    assert 0.05 < np.mean(invalid_fractions) < 0.2
    assert seq[-1].name == "frame-000599"
    with pytest.raises(IndexError):
        seq[600]
    with pytest.raises(IndexError):
        seq[-601]


def test_subset_stride_and_max_frames():
    seq = SevenScenesSequence(SEVEN_SCENES)
    view = seq.subset(start=10, stop=100, stride=7, max_frames=4)
    assert len(view) == 4
    assert view.camera == seq.camera and view.name == seq.name
    assert [view[i].name for i in range(len(view))] == ["frame-000010", "frame-000017", "frame-000024", "frame-000031"]
    nested = view.subset(start=1, stride=2)
    assert [frame.name for frame in nested] == ["frame-000017", "frame-000031"]
    assert len(seq.subset(stride=50)) == 12
    assert len(seq.subset(start=590)) == 10
    assert len(seq.subset(max_frames=0)) == 0
    with pytest.raises(IndexError):
        view[4]
    with pytest.raises(ValueError, match="stride"):
        seq.subset(stride=0)


def test_seven_scenes_nominal_intrinsics_and_65535_invalid(tmp_path):
    folder = copy_seven_scenes(tmp_path / "seq", [3, 4], intrinsics=False)
    raw = np.asarray(Image.open(folder / "frame-000004.depth.png")).astype(np.uint16)
    raw[:10, :] = 65535
    Image.fromarray(raw).save(folder / "frame-000004.depth.png")
    seq = open_sequence(folder, "7scenes")
    np.testing.assert_allclose(seq.camera.K, [[585, 0, 320], [0, 585, 240], [0, 0, 1]])
    assert len(seq) == 2 and seq[0].name == "frame-000003"
    depth = seq[1].depth
    assert (depth[:10] == 0).all()
    np.testing.assert_allclose(depth[10:], raw[10:] / 1000.0, rtol=1e-6)


# ---------------------------------------------------------------- TUM


def write_tum_folder(root: Path, numbers: list[int]) -> list[tuple]:
    """A TUM-layout folder from 7-Scenes frames: rgb at t, depth at t + 5 ms, ground truth at 100 Hz.

    One extra depth image has no color within 20 ms and must be skipped.
    """
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines, gt_lines = ["# color images"], ["# depth maps", "# timestamp filename"], ["# ground truth"]
    expected = []
    for k, number in enumerate(numbers):
        color, depth_mm, pose = seven_scenes_raw(number)
        t = 1305031102.0 + 0.5 * k
        Image.fromarray(color).save(root / "rgb" / f"{t:.6f}.png")
        depth_raw = (depth_mm.astype(np.uint32) * 5).astype(np.uint16)  # 5000 units per metre
        Image.fromarray(depth_raw).save(root / "depth" / f"{t + 0.005:.6f}.png")
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        depth_lines.append(f"{t + 0.005:.6f} depth/{t + 0.005:.6f}.png")
        quaternion = Rotation.from_matrix(pose[:3, :3]).as_quat()  # qx qy qz qw
        for offset, T in ((-0.004, np.eye(4)), (0.007, pose), (0.02, np.eye(4))):  # nearest to t + 5 ms: 0.007
            q = quaternion if T is pose else np.array([0.0, 0.0, 0.0, 1.0])
            values = " ".join(repr(float(x)) for x in (*T[:3, 3], *q))
            gt_lines.append(f"{t + offset:.6f} {values}")
        expected.append((number, t + 0.005, color, depth_mm, pose))
    orphan = 1305031102.0 + 0.5 * len(numbers) + 0.1
    Image.fromarray(np.zeros((480, 640), np.uint16)).save(root / "depth" / "orphan.png")
    depth_lines.append(f"{orphan:.6f} depth/orphan.png")
    (root / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (root / "depth.txt").write_text("\n".join(depth_lines) + "\n")
    (root / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    return expected


def test_tum_folder_round_trip(tmp_path):
    root = tmp_path / "rgbd_dataset_test"
    written = write_tum_folder(root, [0, 150, 300])
    seq = open_sequence(root)
    seven_scenes = SevenScenesSequence(SEVEN_SCENES)
    assert isinstance(seq, TUMSequence)
    assert len(seq) == 3
    assert seq.num_skipped == 1
    np.testing.assert_allclose(seq.camera.K, [[525, 0, 319.5], [0, 525, 239.5], [0, 0, 1]])
    for frame, (number, timestamp, color, depth_mm, pose) in zip(seq, written):
        assert frame.timestamp == pytest.approx(timestamp, abs=1e-6)
        np.testing.assert_array_equal(frame.color, color)
        np.testing.assert_allclose(frame.depth, depth_mm / 1000.0, rtol=1e-6)
        np.testing.assert_allclose(frame.T_world_cam, pose, rtol=0, atol=2e-4)
        np.testing.assert_allclose(frame.T_world_cam, seven_scenes[number].T_world_cam, rtol=0, atol=1e-6)


def test_tum_intrinsics_sources(tmp_path):
    root = tmp_path / "tum"
    write_tum_folder(root, [0])
    option = PinholeCamera(520.9, 521.0, 325.1, 249.7, 640, 480)
    assert TUMSequence(root, camera=option).camera == option
    np.savetxt(root / "intrinsics.txt", option.K)
    assert TUMSequence(root).camera == option
    with pytest.raises(ValueError, match="intrinsics.txt"):
        TUMSequence(root, camera=PinholeCamera(500, 500, 320, 240, 640, 480))
    with pytest.raises(ValueError, match="0.001"):
        TUMSequence(root, max_time_difference=0.001)  # depth is 5 ms after color: nothing matches


def test_tum_association_is_one_to_one_and_closest_first():
    depth = np.array([1.00, 1.03, 1.06, 2.00])
    rgb = np.array([1.01, 1.02, 1.065, 5.0])
    # 1.02 is closest to 1.03 (10 ms) and 1.01 to 1.00 (10 ms); 1.06 takes 1.065; 2.00 has no partner.
    assert associate_one_to_one(depth, rgb, 0.02) == [(0, 0), (1, 1), (2, 2)]
    assert associate_one_to_one(np.array([1.0, 1.001]), np.array([1.0005]), 0.02) == [(0, 0)]


# ---------------------------------------------------------------- ScanNet style


def make_frame(number: int, camera: PinholeCamera, rng: np.random.Generator) -> RGBDFrame:
    color, depth_mm, _ = seven_scenes_raw(number)
    depth = depth_mm.astype(np.float32) / 1000.0 + rng.uniform(0.0, 0.001, depth_mm.shape).astype(np.float32)
    depth[depth_mm == 0] = 0.0
    labels = rng.integers(0, 13, depth.shape)
    labels[:20] = -1
    return RGBDFrame(color, depth, camera, random_rigid(rng), labels=labels, name=f"frame-{number}")


def test_scannet_writer_reader_round_trip(tmp_path):
    rng = np.random.default_rng(7)
    camera = SevenScenesSequence(SEVEN_SCENES).camera
    frames = [make_frame(number, camera, rng) for number in (0, 100)]
    frames[1].depth[0, :4] = [np.nan, np.inf, -1.0, 70.0]  # all invalid -> 0
    frames[1].labels = None
    root = tmp_path / "scene0000_00"
    writer = ScanNetStyleWriter(root, camera)
    for index, frame in enumerate(frames):
        writer.write(index, frame)

    assert np.asarray(Image.open(root / "label" / "0.png")).dtype == np.uint8
    assert not (root / "label" / "1.png").exists()
    np.testing.assert_allclose(np.loadtxt(root / "intrinsic" / "intrinsic_color.txt")[:3, :3], camera.K)

    seq = open_sequence(root)
    assert isinstance(seq, ScanNetStyleSequence)
    assert len(seq) == 2 and seq.num_skipped == 0 and seq.camera == camera
    for index, original in enumerate(frames):
        frame = seq[index]
        assert frame.name == str(index)
        np.testing.assert_array_equal(frame.color, original.color)
        valid = np.isfinite(original.depth) & (original.depth > 0) & (original.depth < 65.5)
        assert np.abs(frame.depth[valid] - original.depth[valid]).max() <= 0.0005 + 1e-6
        assert (frame.depth[~valid] == 0).all()
        np.testing.assert_allclose(frame.T_world_cam, original.T_world_cam, rtol=0, atol=1e-9)
    assert (seq[1].depth[0, :4] == 0).all()
    expected_labels = np.where(frames[0].labels < 0, 255, frames[0].labels)
    np.testing.assert_array_equal(seq[0].labels, expected_labels)
    assert seq[1].labels is None


def test_scannet_uint16_labels(tmp_path):
    labels = np.array([[0, 300], [-1, 12]])
    write_labels(tmp_path / "l.png", labels)
    stored = np.asarray(Image.open(tmp_path / "l.png"))
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, [[0, 300], [65535, 12]])


def test_scannet_color_resized_to_depth(tmp_path):
    rng = np.random.default_rng(3)
    camera = SevenScenesSequence(SEVEN_SCENES).camera
    frame = make_frame(0, camera, rng)
    root = tmp_path / "scene"
    ScanNetStyleWriter(root, camera).write(0, frame)
    # Replace color and labels with 2x larger versions and the matching color intrinsics.
    big = Image.fromarray(frame.color).resize((1280, 960), Image.Resampling.BICUBIC)
    (root / "color" / "0.png").unlink()
    big.save(root / "color" / "0.jpg", quality=95)
    big_labels = np.kron(np.where(frame.labels < 0, 255, frame.labels), np.ones((2, 2), np.int64))
    write_labels(root / "label" / "0.png", big_labels)
    K_color = np.eye(4)
    K_color[:3, :3] = camera.scaled(1280, 960).K
    np.savetxt(root / "intrinsic" / "intrinsic_color.txt", K_color)

    seq = ScanNetStyleSequence(root)
    assert seq.camera == camera
    np.testing.assert_allclose(seq.color_camera.K, camera.K, atol=1e-9)
    loaded = seq[0]
    assert loaded.color.shape == (480, 640, 3)
    assert np.abs(loaded.color.astype(int) - frame.color.astype(int)).mean() < 6.0
    np.testing.assert_array_equal(loaded.labels, np.where(frame.labels < 0, 255, frame.labels))


def test_scannet_invalid_poses_skipped_and_numeric_order(tmp_path):
    rng = np.random.default_rng(11)
    camera = PinholeCamera(50.0, 50.0, 31.5, 23.5, 64, 48)
    root = tmp_path / "scene"
    writer = ScanNetStyleWriter(root, camera)
    for index in (0, 1, 2, 10, 11):
        depth = rng.uniform(0.5, 3.0, camera.shape).astype(np.float32)
        color = rng.integers(0, 256, (*camera.shape, 3), dtype=np.uint8)
        writer.write(index, RGBDFrame(color, depth, camera, random_rigid(rng)))
    (root / "pose" / "1.txt").write_text("\n".join(["-inf -inf -inf -inf"] * 4) + "\n")
    (root / "pose" / "10.txt").write_text("nan nan nan nan\n" * 4)
    seq = open_sequence(root, "scannet")
    assert seq.frame_ids == [0, 2, 11]
    assert len(seq) == 3 and seq.num_skipped == 2
    assert [frame.name for frame in seq] == ["0", "2", "11"]
    assert seq[2].timestamp == pytest.approx(11 / 30.0)


def test_writer_rejects_other_camera_and_missing_depth(tmp_path):
    camera = PinholeCamera(50.0, 50.0, 31.5, 23.5, 64, 48)
    writer = ScanNetStyleWriter(tmp_path / "scene", camera)
    color = np.zeros((48, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="no depth"):
        writer.write(0, RGBDFrame(color, None, camera, np.eye(4), name="a"))
    other = PinholeCamera(60.0, 50.0, 31.5, 23.5, 64, 48)
    with pytest.raises(ValueError, match="camera"):
        writer.write(0, RGBDFrame(color, np.ones((48, 64), np.float32), other, np.eye(4)))


# ---------------------------------------------------------------- format detection and errors


def test_auto_detect_all_formats(tmp_path):
    assert detect_format(SEVEN_SCENES) == "7scenes"
    write_tum_folder(tmp_path / "tum", [0])
    assert detect_format(tmp_path / "tum") == "tum"
    ScanNetStyleWriter(tmp_path / "scannet", PinholeCamera(50.0, 50.0, 31.5, 23.5, 64, 48))
    assert detect_format(tmp_path / "scannet") == "scannet"

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "notes.txt").write_text("hello")
    with pytest.raises(ValueError) as error:
        open_sequence(unknown)
    message = str(error.value)
    assert str(unknown) in message
    for looked_for in ("frame-NNNNNN.depth.png", "rgb.txt", "intrinsic_depth.txt"):
        assert looked_for in message
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        open_sequence(tmp_path / "does-not-exist")
    with pytest.raises(ValueError, match="unknown sequence format 'kitti'"):
        open_sequence(SEVEN_SCENES, format="kitti")


def test_missing_depth_file_is_named(tmp_path):
    folder = copy_seven_scenes(tmp_path / "seq", [0, 1])
    (folder / "frame-000001.depth.png").unlink()
    seq = open_sequence(folder)
    assert seq[0].depth is not None
    with pytest.raises(FileNotFoundError, match="frame-000001.depth.png"):
        seq[1]


def test_corrupt_and_wrong_images_are_named(tmp_path):
    folder = copy_seven_scenes(tmp_path / "seq", [0, 1, 2, 3])
    (folder / "frame-000001.depth.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    data = (SEVEN_SCENES / "frame-000002.depth.png").read_bytes()
    (folder / "frame-000002.depth.png").write_bytes(data[: len(data) // 2])  # truncated
    Image.fromarray(np.zeros((480, 640), np.uint8)).save(folder / "frame-000003.depth.png")  # 8-bit
    seq = open_sequence(folder)
    for number in (1, 2):
        with pytest.raises(ValueError, match=f"frame-00000{number}.depth.png"):
            seq[number]
    with pytest.raises(ValueError, match="frame-000003.depth.png.*16-bit"):
        seq[3]
    Image.fromarray(np.zeros((240, 320), np.uint16)).save(folder / "frame-000003.depth.png")
    with pytest.raises(ValueError, match="frame-000003.depth.png is 320x240, expected 640x480"):
        seq[3]


def test_malformed_poses_are_named(tmp_path):
    folder = copy_seven_scenes(tmp_path / "seq", [0, 1, 2])
    (folder / "frame-000000.pose.txt").write_text("1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0\n")
    scaled = np.eye(4)
    scaled[:3, :3] *= 2.0
    np.savetxt(folder / "frame-000001.pose.txt", scaled)
    (folder / "frame-000002.pose.txt").write_text("nan 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n")
    seq = open_sequence(folder)
    with pytest.raises(ValueError, match=r"frame-000000.pose.txt must hold 16 numbers \(a 4x4 matrix\), got 15"):
        seq[0]
    with pytest.raises(ValueError, match="frame-000001.pose.txt is not a rigid transform"):
        seq[1]
    with pytest.raises(ValueError, match="frame-000002.pose.txt contains NaN"):
        seq[2]
    assert read_pose(folder / "frame-000002.pose.txt", allow_non_finite=True) is None
    (folder / "frame-000002.pose.txt").write_text("a b c")
    with pytest.raises(ValueError, match="frame-000002.pose.txt holds non-numeric"):
        read_pose(folder / "frame-000002.pose.txt")


def test_depth_writer_rounds_and_zeroes_invalid(tmp_path):
    depth = np.array([[0.0004, 0.0006, 1.23449, 65.535, 65.536, -2.0, np.nan, np.inf]], dtype=np.float64)
    write_depth(tmp_path / "d.png", depth, 1000.0)
    raw = np.asarray(Image.open(tmp_path / "d.png"))
    np.testing.assert_array_equal(raw, [[0, 1, 1234, 65535, 0, 0, 0, 0]])
