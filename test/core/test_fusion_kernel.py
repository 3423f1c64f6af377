"""The fused C++ CPU kernel (core/fusion_kernel) integrates exactly like the torch implementation.

Each test fuses the same frames into two CPU volumes, one with the kernel and one with
``use_fusion_kernel = False`` (the torch reference, also used on CUDA), and requires identical block sets
and statistics and every layer equal within float rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from semantic_recon_ros.core.map import fusion_kernel
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, SceneRenderer, camera_path, generate_room
from semantic_recon_ros.core.map import SemanticTSDFVolume
from semantic_recon_ros.core.map.fusion_backends import voxel_projection
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.config.volume import VolumeConfig
from semantic_recon_ros.core.surface_fields import SurfaceFields

CLASSES = [f"class{i}" for i in range(6)]


@pytest.fixture(scope="module", autouse=True)
def kernel():
    module = fusion_kernel.load()
    assert module is not None, f"the kernel did not build: {fusion_kernel.build_directory() / 'build-error.log'}"
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the kernel's blocks are split over threads; results must not depend on it
    yield module
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synthetic_frames():
    """12 rendered 320x240 frames of a furnished synthetic room, with 2D labels (255 = no hit)."""
    scene = generate_room(seed=5)
    renderer = SceneRenderer(scene)
    camera = DEFAULT_CAMERA.scaled(320, 240)
    return [renderer.render(camera, pose, i) for i, pose in enumerate(camera_path(scene, 12))]


def volume_pair(config: VolumeConfig) -> tuple[SemanticTSDFVolume, SemanticTSDFVolume]:
    """(kernel volume, torch reference volume), both on the CPU."""
    fast = SemanticTSDFVolume(config, CLASSES, "cpu")
    reference = SemanticTSDFVolume(config, CLASSES, "cpu")
    reference.use_fusion_kernel = False
    assert fast.fusion.name == "kernel" and reference.fusion.name == "torch"
    return fast, reference


def assert_same_volume(fast: SemanticTSDFVolume, reference: SemanticTSDFVolume) -> None:
    assert fast.num_blocks > 0
    assert torch.equal(fast.grid.keys, reference.grid.keys), "different block sets"
    assert torch.equal(fast.grid.block_versions(), reference.grid.block_versions())
    for name in reference.grid.layer_names:
        a, b = fast.grid.layer(name)[fast.grid.slots], reference.grid.layer(name)[reference.grid.slots]
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m: f"layer {name}: {m}")


@pytest.mark.parametrize("config", [
    VolumeConfig(voxel_size=0.04, max_weight=4.0),
    VolumeConfig(voxel_size=0.02, max_weight=8.0, max_blocks=900, clearing_radius=3.0),
], ids=["4cm-weight-cap", "2cm-memory-bound"])
def test_seven_scenes_frames(seven_scenes, config):
    """Real 640x480 frames with color and labels (some out of range), weight cap, max_blocks and clearing."""
    fast, reference = volume_pair(config)
    rng = np.random.default_rng(3)
    dropped = 0
    for index in range(0, 200, 20):
        frame = seven_scenes[index]
        labels = rng.integers(-2, len(CLASSES) + 2, size=frame.depth.shape)
        stats = [volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=labels)
                 for volume in (fast, reference)]
        assert stats[0] == stats[1]
        assert stats[0].voxels_updated > 1000
        dropped += stats[0].blocks_dropped + stats[0].blocks_refused
    assert (dropped > 0) == (config.max_blocks < 1000)
    assert_same_volume(fast, reference)
    assert float(fast.grid.layer("weight")[fast.grid.slots].max()) == config.max_weight


def test_synthetic_scene_with_labels_probabilities_and_features(synthetic_frames):
    """Rendered frames fused with 2D labels or class probabilities (alternately) and a feature image."""
    config = VolumeConfig(voxel_size=0.04, feature_dim=5, max_weight=6.0)
    fast, reference = volume_pair(config)
    rng = np.random.default_rng(7)
    for index, frame in enumerate(synthetic_frames):
        features = np.concatenate((frame.color / 255.0, rng.normal(size=(*frame.depth.shape, 2))), axis=2)
        semantic = {"labels": frame.labels}
        if index % 2:
            one_hot = np.eye(len(CLASSES) + 1, dtype=np.float32)[np.minimum(frame.labels, len(CLASSES))][..., :-1]
            semantic = {"class_probs": 0.8 * one_hot + 0.2 * rng.dirichlet(np.ones(len(CLASSES)), frame.depth.shape)}
        for volume in (fast, reference):
            volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color,
                             features=features.astype(np.float32), **semantic)
    assert_same_volume(fast, reference)
    observed = fast.grid.layer("semantic")[fast.grid.slots].sum(dim=-1)
    assert float(observed.max()) == pytest.approx(config.max_weight)  # votes were rescaled at the cap


def blocks_reaching_behind(volume: SemanticTSDFVolume, frame, max_range: float) -> int:
    """How many allocated blocks of the frame's frustum have voxels behind the camera (z <= 0)."""
    slots = volume.grid.lookup_keys(volume.frustum_block_keys(frame.camera, frame.T_world_cam, max_range))
    block_proj, voxel_proj = voxel_projection(volume.grid, slots[slots >= 0], frame.T_world_cam, frame.camera,
                                              volume.config.voxel_size)
    return int((block_proj[:, 2] + voxel_proj[:, 2].min() <= 0).sum())


def test_rgb_only_feature_backprojection(synthetic_frames):
    """integrate_features (no depth): the frustum reaches from min_depth, so some blocks lie behind the camera."""
    config = VolumeConfig(voxel_size=0.05, feature_dim=3)
    fast, reference = volume_pair(config)
    behind = 0
    for frame in synthetic_frames[:6]:
        features = frame.color.astype(np.float32) / 255.0
        stats = [volume.integrate_features(features, frame.camera, frame.T_world_cam, max_range=2.0)
                 for volume in (fast, reference)]
        assert stats[0] == stats[1] and stats[0].voxels_updated > 0
        behind += blocks_reaching_behind(fast, frame, 2.0)
    assert behind > 0
    assert_same_volume(fast, reference)
    assert float(fast.grid.layer("weight").max()) == 0.0  # geometry untouched


def fused_volume(frames) -> SemanticTSDFVolume:
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04), CLASSES, "cpu")
    for frame in frames:
        volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=frame.labels)
    return volume


def predicted_volume(frames, rng) -> SemanticTSDFVolume:
    """A fused volume with the completion network's layers filled at random: a third of the voxels unpredicted,
    class probabilities spread or peaked (both sides of the override threshold), votes on some voxels only."""
    volume = fused_volume(frames)
    grid, V, K = volume.grid, volume.config.voxels_per_block, len(CLASSES)
    shape = (grid.layer("weight").shape[0], V)
    layers = {"pred_tsdf": rng.uniform(-1, 1, shape), "pred_color": rng.uniform(0, 1, (*shape, 3)),
              "pred_semantic": rng.dirichlet(np.full(K, 0.3), shape), "pred_confidence": rng.uniform(0, 1, shape),
              "pred_weight": rng.uniform(0, 1, shape) * (rng.uniform(0, 1, shape) > 0.33)}
    for name, values in layers.items():
        grid.add_layer(name, values.shape[1:], 0.0)
        grid.layer(name)[:] = torch.as_tensor(values, dtype=torch.float32)
    return volume


@pytest.mark.parametrize("source", ["observed", "completed", "both", "additions"])
def test_vertex_attributes_follow_the_torch_rules(synthetic_frames, source):
    """Colors, labels, label shares and surface confidence of points between voxel pairs, as the torch path
    computes them (SurfaceFields.interpolated), with and without prediction layers."""
    rng = np.random.default_rng(11)
    volume = predicted_volume(synthetic_frames[:4], rng)
    completion = CompletionConfig(min_confidence=0.5, label_override_probability=0.4)
    observed = (volume.grid.layer("weight")[volume.grid.slots] > 0).nonzero()
    flat = volume.grid.slots[observed[:, 0]] * volume.config.voxels_per_block + observed[:, 1]
    everywhere = torch.arange(volume.grid.layer("weight").numel())
    pool = flat if source == "observed" else everywhere  # the observed source is asked for observed voxels only
    voxels = pool[torch.as_tensor(rng.integers(0, len(pool), (20000, 2)))]
    t = torch.as_tensor(np.concatenate(([0.0, 0.5, 1.0], rng.uniform(0, 1, 19997))), dtype=torch.float32)
    cases = [volume] + ([fused_volume(synthetic_frames[:4])] if source == "observed" else [])  # without predictions
    for case in cases:
        fields = SurfaceFields(case, source, completion=completion)
        fast = fields.interpolated(voxels, t)
        case.use_fusion_kernel = False
        reference = fields.interpolated(voxels, t)
        case.use_fusion_kernel = True
        assert torch.equal(fast.rgb, reference.rgb)
        ends = fields.scores_at(voxels.reshape(-1)).view(-1, 2, len(CLASSES))
        top = torch.sort(torch.lerp(ends[:, 0], ends[:, 1], t[:, None]), dim=1).values
        clear = (top[:, -1] - top[:, -2] > 1e-5) | (top.sum(dim=1) <= 0)  # no near tie between the top two classes
        assert clear.float().mean() > 0.8
        assert torch.equal(fast.label[clear], reference.label[clear])
        torch.testing.assert_close(fast.confidence, reference.confidence, rtol=1e-5, atol=1e-6)
        if source == "observed":
            assert fast.surface_confidence is None and reference.surface_confidence is None
        else:
            torch.testing.assert_close(fast.surface_confidence, reference.surface_confidence, rtol=1e-5, atol=1e-6)
        assert len(set(fast.label.tolist())) > 3


def test_vertex_attributes_refuse_voxels_outside_the_pool(synthetic_frames):
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.04), CLASSES, "cpu")
    frame = synthetic_frames[0]
    volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color)
    fields = SurfaceFields(volume, "observed")
    outside = torch.tensor([[0, volume.grid.layer("weight").numel()]])
    with pytest.raises(RuntimeError, match="outside the pool"):
        fields.interpolated(outside, torch.zeros(1))


def test_invalid_depth_and_out_of_range_blocks(seven_scenes):
    """0, NaN, inf, negative and out-of-range depth are ignored alike, also with min_depth = 0; a map too far
    from the origin raises ValueError from both and leaves both volumes untouched."""
    config = VolumeConfig(voxel_size=0.04, min_depth=0.0, max_depth=3.0)
    fast, reference = volume_pair(config)
    frame = seven_scenes[0]
    depth = frame.depth.copy()
    depth[:100] = 0.0
    depth[100:150] = np.nan
    depth[150:200, :300] = np.inf
    depth[150:200, 300:] = -1.0
    stats = [volume.integrate(depth, frame.camera, frame.T_world_cam, color=frame.color)
             for volume in (fast, reference)]
    assert stats[0] == stats[1]
    with np.errstate(invalid="ignore"):
        assert stats[0].valid_pixels == int(((depth > 0) & (depth <= config.max_depth)).sum()) > 10000
    assert_same_volume(fast, reference)
    empty = [volume.integrate(np.zeros_like(depth), frame.camera, frame.T_world_cam) for volume in (fast, reference)]
    assert empty[0] == empty[1] and empty[0].valid_pixels == 0

    far = frame.T_world_cam.copy()
    far[0, 3] = 1.0e6  # 3e6 blocks of 32 cm from the origin: beyond the 2^20 block coordinate range
    before = {name: fast.grid.layer(name).clone() for name in fast.grid.layer_names}
    for volume in (fast, reference):
        with pytest.raises(ValueError, match="too far from the origin"):
            volume.integrate(frame.depth, frame.camera, far)
    assert all(torch.equal(before[name], fast.grid.layer(name)) for name in before)
    assert_same_volume(fast, reference)


FALLBACK_SCRIPT = """
import warnings
import numpy as np
from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.map import SemanticTSDFVolume, fusion_kernel
from semantic_recon_ros.core.config.completion import CompletionConfig
from semantic_recon_ros.core.config.volume import VolumeConfig
from semantic_recon_ros.core.surface_fields import SurfaceFields

camera = PinholeCamera(40.0, 40.0, 31.5, 23.5, 64, 48)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=0.05), ["a"], "cpu")
    updated = [volume.integrate(np.full((48, 64), 1.5, np.float32), camera, np.eye(4)).voxels_updated
               for _ in range(3)]
ours = [str(w.message) for w in caught if "integration kernel" in str(w.message)]
print("RESULT", len(ours), updated[-1] > 0, volume.fusion.name == "torch")
print("MESSAGE", *ours)
print("FOLDER", fusion_kernel.build_directory())
"""


def test_build_failure_warns_once_and_integrates_with_torch(tmp_path):
    """Without a working compiler: one warning naming the file with the compiler's output, torch path used."""
    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(tmp_path), CXX=str(tmp_path / "no-such-compiler"))
    result = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in result.stdout.splitlines() if " " in line}
    assert lines["RESULT"] == "1 True True", result.stdout
    error_file = Path(lines["FOLDER"]) / "build-error.log"
    assert error_file.parent.parent == tmp_path and error_file.parent.name != fusion_kernel.build_directory().name
    assert str(error_file) in lines["MESSAGE"] and error_file.is_file()
    assert "no-such-compiler" in error_file.read_text()


SOURCE_SCRIPT = """
import sys
from pathlib import Path
from semantic_recon_ros.core.map import fusion_kernel

fusion_kernel.SOURCE = Path(sys.argv[1])
print(fusion_kernel.build_directory())
if len(sys.argv) > 2:
    print(fusion_kernel.load() is not None)
"""


def kernel_folder_of(source: Path, *, load: bool = False) -> list[str]:
    """What a fresh process with ``SOURCE = source`` (another checkout) says: its build folder[, whether it loaded]."""
    result = subprocess.run([sys.executable, "-c", SOURCE_SCRIPT, str(source), *(["load"] if load else [])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_build_folder_belongs_to_the_source_not_the_checkout(tmp_path):
    """Two checkouts of the same integrate.cpp share a build folder (and the built library: no rebuild); a source
    differing by a comment gets another folder, so two versions never rebuild over each other."""
    same, edited = tmp_path / "checkout_a" / "integrate.cpp", tmp_path / "checkout_b" / "integrate.cpp"
    for path in (same, edited):
        path.parent.mkdir()
    same.write_bytes(fusion_kernel.SOURCE.read_bytes())
    edited.write_text(fusion_kernel.SOURCE.read_text() + "// a comment\n")
    ours = fusion_kernel.build_directory()
    library = ours / f"{fusion_kernel.MODULE_NAME}.so"
    built = library.stat().st_mtime_ns
    assert kernel_folder_of(same, load=True) == [str(ours), "True"]
    assert library.stat().st_mtime_ns == built, "the same source from another checkout was rebuilt"
    assert kernel_folder_of(fusion_kernel.SOURCE) == [str(ours)]  # stable across processes
    (other,) = kernel_folder_of(edited)
    assert other != str(ours) and Path(other).parent == ours.parent


def test_build_folder_depends_on_compile_flags_and_compiler(monkeypatch):
    ours = fusion_kernel.build_directory()
    monkeypatch.setattr(fusion_kernel, "COMPILE_FLAGS", [*fusion_kernel.COMPILE_FLAGS, "-DSOMETHING"])
    with_flag = fusion_kernel.build_directory()
    monkeypatch.undo()
    monkeypatch.setenv("CXX", "some-other-c++")
    assert len({ours, with_flag, fusion_kernel.build_directory()}) == 3
