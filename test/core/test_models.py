"""Learned models: shapes and ranges, grid checks, back-projection, coarse-to-fine masking,
fast CPU path, gradients, checkpoints. Tiny widths and small grids keep the file fast."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.models import (
    AtlasNet, AtlasNetConfig, FeatureVolume, S4RNet, S4RNetConfig, backproject_features, backproject_to_grid,
    feature_camera, load_checkpoint, save_checkpoint, set_fast_cpu_convolutions, uses_fast_cpu_convolutions,
    voxel_centers)
from semantic_recon_ros.core.models.checkpoint import CHECKPOINT_KEYS, CHECKPOINT_VERSION
from semantic_recon_ros.core.models.fast_conv import bfloat16_supported, inference_dtype
from semantic_recon_ros.core.models.s4r_unet import geometry_channels, label_index

from support.frames import downscale

CLASSES = ["wall", "floor", "chair", "table", "object"]
K = len(CLASSES)
CHUNKS = [(16, 16, 32), (32, 16, 16), (16, 32, 16)]


def tiny_s4r(use_color: bool = True, seed: int = 0) -> S4RNet:
    torch.manual_seed(seed)
    return S4RNet(S4RNetConfig(num_classes=K, base_width=4, use_color=use_color))


TINY_ATLAS = dict(num_classes=K, backbone_width=4, feature_channels=6, base_width=4)


def tiny_atlas(seed: int = 0, **overrides) -> AtlasNet:
    torch.manual_seed(seed)
    return AtlasNet(AtlasNetConfig(**{**TINY_ATLAS, **overrides}))


def s4r_inputs(dims, use_color: bool = True, batch: int = 1, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    tsdf = torch.rand(batch, 1, *dims, generator=generator) * 2 - 1
    observed = torch.rand(batch, 1, *dims, generator=generator) > 0.3
    color = torch.rand(batch, 3, *dims, generator=generator) if use_color else None
    return tsdf, observed, color


def atlas_inputs(dims, batch: int = 1, channels: int = AtlasNetConfig(**TINY_ATLAS).volume_channels, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, channels, *dims, generator=generator),
            torch.rand(batch, 1, *dims, generator=generator) > 0.2)


def settle_batch_norm(model: torch.nn.Module, run) -> None:
    """Give the BatchNorm layers non-trivial running statistics (fresh ones are 0 / 1)."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            run()
    model.eval()


# --- shapes, ranges, configs ------------------------------------------------------------------------------


@pytest.mark.parametrize("use_color", [True, False], ids=["color", "colorblind"])
@pytest.mark.parametrize("dims", CHUNKS, ids=lambda d: "x".join(map(str, d)))
def test_s4r_output_shapes_and_ranges(use_color, dims):
    model = tiny_s4r(use_color).eval()
    tsdf, observed, color = s4r_inputs(dims, use_color, batch=2)
    with torch.inference_mode():
        out = model(tsdf, observed, color)

    assert set(out) == ({"tsdf", "color", "semantic_logits"} if use_color else {"tsdf", "semantic_logits"})
    assert out["tsdf"].shape == (2, 1, *dims)
    assert out["semantic_logits"].shape == (2, K, *dims)
    assert out["tsdf"].abs().max() <= 1
    assert out["tsdf"].std() > 0
    assert torch.isfinite(out["semantic_logits"]).all()
    if use_color:
        assert out["color"].shape == (2, 3, *dims)
        assert 0 <= out["color"].min() and out["color"].max() <= 1


def test_s4r_ignores_values_of_unobserved_voxels():
    model = tiny_s4r().eval()
    tsdf, observed, color = s4r_inputs((16, 16, 16))
    garbage_tsdf = torch.where(observed, tsdf, torch.full_like(tsdf, 0.7))
    garbage_color = torch.where(observed, color, torch.rand_like(color))
    with torch.inference_mode():
        a = model(tsdf, observed, color)
        b = model(garbage_tsdf, observed, garbage_color)
        c = model(tsdf, torch.ones_like(observed), color)
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.allclose(a["tsdf"], c["tsdf"])


def one_hot(labels: torch.Tensor) -> torch.Tensor:
    """(B, X, Y, Z) class ids, -1 = none -> (B, K, X, Y, Z) one-hot, zero where none."""
    return torch.nn.functional.one_hot(labels.clamp(min=0), K).permute(0, 4, 1, 2, 3).float() \
        * (labels >= 0)[:, None].float()


def test_geometry_input_is_built_in_the_fast_layout_with_one_hot_labels():
    tsdf, observed, _ = s4r_inputs((16, 16, 32))
    observed = observed.float()
    labels = torch.randint(-1, K + 2, (1, 16, 16, 32), generator=torch.Generator().manual_seed(4))  # some out of range
    channels = geometry_channels(tsdf, observed, K, label_index(labels, K))
    assert channels.shape == (1, 2 + K, 16, 16, 32)
    assert channels.is_contiguous(memory_format=torch.channels_last_3d)  # what the oneDNN convolutions read
    assert torch.equal(channels[:, :1], tsdf * observed) and torch.equal(channels[:, 1:2], observed)
    one_hot = channels[:, 2:]
    labeled = (labels >= 0) & (labels < K)
    assert torch.equal(one_hot.sum(dim=1), labeled.float())  # one channel per labeled voxel, none elsewhere
    assert torch.equal(one_hot.argmax(dim=1)[labeled], labels[labeled])
    assert not geometry_channels(tsdf, observed, K, None)[:, 2:].any()  # no labels: zero label channels
    assert geometry_channels(tsdf, observed, 0, None).shape[1] == 2  # a network without label input


def test_label_input_network_starts_as_the_network_it_widens_and_learns_a_per_class_prior():
    model = tiny_s4r()
    tsdf, observed, color = s4r_inputs((16, 16, 16), batch=2)
    settle_batch_norm(model, lambda: model(tsdf, observed, color))
    widened = model.with_label_input().eval()
    labels = torch.randint(-1, K, (2, 16, 16, 16), generator=torch.Generator().manual_seed(2))  # -1 = none
    with torch.inference_mode():
        before = model(tsdf, observed, color)
        after = widened(tsdf, observed, color, labels)
        unlabeled = widened(tsdf, observed, color)  # no fused labels anywhere = all-zero labels
    for key in before:
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=1e-5)
        torch.testing.assert_close(unlabeled[key], before[key], rtol=0, atol=1e-5)
    widened.label_gain.data = torch.arange(K, dtype=torch.float32)  # the prior: + gain[k] where labeled k
    with torch.inference_mode():
        shifted = widened(tsdf, observed, color, labels)["semantic_logits"]
    expected = after["semantic_logits"] + torch.arange(K, dtype=torch.float32).view(1, K, 1, 1, 1) * one_hot(labels)
    torch.testing.assert_close(shifted, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="takes no labels"):
        model(tsdf, observed, color, labels)
    with pytest.raises(ValueError, match="integer class ids"):
        widened(tsdf, observed, color, labels[:, :2])
    with pytest.raises(ValueError, match="already takes labels"):
        widened.with_label_input()


@pytest.mark.parametrize("dims", CHUNKS, ids=lambda d: "x".join(map(str, d)))
def test_atlas_reconstruct_shapes_ranges_and_scales(dims):
    model = tiny_atlas().eval()
    features, observed = atlas_inputs(dims)
    with torch.inference_mode():
        out = model.reconstruct(features, observed)

    assert out["tsdf"].shape == (1, 1, *dims) and out["semantic_logits"].shape == (1, K, *dims)
    for key in ("tsdf_scales", "semantic_logits_scales", "mask_scales"):
        assert len(out[key]) == 4
        for scale, tensor in enumerate(out[key]):
            factor = 2 ** (3 - scale)
            assert tensor.shape[2:] == tuple(d // factor for d in dims), (key, scale)
    assert all(mask.dtype == torch.bool for mask in out["mask_scales"])
    assert all(t.abs().max() <= 1 for t in out["tsdf_scales"])
    assert out["tsdf"] is out["tsdf_scales"][-1]


def test_atlas_end_to_end_on_real_frames(seven_scenes):
    """Two real 7-Scenes views (downscaled to 80x60) -> a grid in front of the first camera."""
    frames = [downscale(seven_scenes[i], 8) for i in (0, 10)]
    camera = frames[0].camera
    images = torch.stack([torch.from_numpy(f.color).permute(2, 0, 1).float() / 255 for f in frames])[None]
    poses = np.stack([f.T_world_cam for f in frames])[None]
    voxel_size, dims = 0.08, (16, 16, 32)
    center = (frames[0].T_world_cam @ np.array([0.0, 0.0, 1.5, 1.0]))[:3]  # 1.5 m in front of camera 0
    origin = center - voxel_size * (np.array(dims) - 1) / 2
    model = tiny_atlas()
    images.requires_grad_(True)
    out = model(images, camera, poses, origin[None], voxel_size, dims)

    assert out["tsdf"].shape == (1, 1, *dims) and out["semantic_logits"].shape == (1, K, *dims)
    seen = out["observed"].float().mean()
    assert 0.2 < seen < 1.0  # the grid is partly inside the (narrow) frustums
    (out["tsdf"].sum() + out["semantic_logits"].sum()).backward()
    backbone_grad = sum(p.grad.abs().sum() for p in model.backbone.parameters())
    assert backbone_grad > 0  # the back-projection is differentiable
    with pytest.raises(ValueError, match="camera"):
        model(images, camera.scaled(40, 30), poses, origin[None], voxel_size, dims)


def test_invalid_grid_dims_raise_clear_errors():
    s4r = tiny_s4r().eval()
    atlas = tiny_atlas().eval()
    for dims in [(16, 16, 24), (8, 16, 16), (16, 48, 40)]:
        tsdf, observed, color = s4r_inputs(dims)
        with pytest.raises(ValueError, match="multiples of 16"):
            s4r(tsdf, observed, color)
        features, observed = atlas_inputs(dims)
        with pytest.raises(ValueError, match="multiples of 16"):
            atlas.reconstruct(features, observed)
    with pytest.raises(ValueError, match="multiples of 16"):
        atlas(torch.rand(1, 1, 3, 32, 32), PinholeCamera(30, 30, 15.5, 15.5, 32, 32), np.eye(4)[None, None],
              np.zeros((1, 3)), 0.1, (16, 16, 20))
    tsdf, observed, color = s4r_inputs((16, 16, 16))
    with pytest.raises(ValueError, match="tsdf must be"):
        s4r(tsdf[0], observed[0], color[0])
    with pytest.raises(ValueError, match="observed must match"):
        s4r(tsdf, observed[..., :8], color)


def test_colorblind_variant_has_no_color_branch():
    color_model, blind_model = tiny_s4r(True), tiny_s4r(False)
    blind_names = [name for name, _ in blind_model.named_parameters()]
    color_names = [name for name, _ in color_model.named_parameters()]

    assert not [name for name in blind_names if "color" in name]
    assert [name for name in color_names if name.startswith("color_encoder.")]
    assert [name for name in color_names if name.startswith("color_decoder.")]
    assert set(blind_names) < set(color_names)
    tsdf, observed, color = s4r_inputs((16, 16, 16))
    with pytest.raises(ValueError, match="takes no color"):
        blind_model(tsdf, observed, color)
    with pytest.raises(ValueError, match="color must be"):
        color_model(tsdf, observed, None)


def test_config_ranges_are_checked():
    with pytest.raises(ValueError, match="base_width"):
        S4RNetConfig(base_width=1)
    with pytest.raises(ValueError, match="num_classes"):
        S4RNetConfig(num_classes=0)
    with pytest.raises(ValueError, match="mask_threshold"):
        AtlasNetConfig(mask_threshold=1.5)
    with pytest.raises(ValueError, match="use_color"):
        S4RNetConfig(use_color=1)


# --- back-projection --------------------------------------------------------------------------------------


def look_at(position, target) -> np.ndarray:
    """T_world_cam of an optical-frame camera at ``position`` looking at ``target`` (world z up)."""
    position, target = np.asarray(position, float), np.asarray(target, float)
    z = target - position
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = position
    return T


def test_voxel_seen_by_two_of_three_views_holds_their_mean():
    # Views 0 and 1 look along +x at the grid from x = -1; view 2 sits beyond the grid looking away.
    camera = PinholeCamera(20.0, 20.0, 15.5, 11.5, 32, 24)
    poses = np.stack([look_at([-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]), look_at([-1.0, 0.05, 0.0], [0.0, 0.05, 0.0]),
                      look_at([2.0, 0.0, 0.0], [3.0, 0.0, 0.0])])
    values = torch.tensor([[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]])
    features = values[:, :, None, None].expand(3, 2, 24, 32).contiguous()
    # grid from x = -1.4 (behind views 0 and 1) to x = 0.9 (in front of them), all behind view 2
    dims, voxel_size, origin = (24, 4, 4), 0.1, (-1.4, -0.15, -0.15)
    mean, count = backproject_to_grid(features, camera, poses, origin, voxel_size, dims)

    x = voxel_centers(origin, voxel_size, dims, "cpu")[..., 0]
    in_front = x > -0.55  # far enough from views 0 and 1 for the grid's cross-section to fit their frustums
    behind = x < -1.05
    assert in_front.any() and behind.any()
    assert count.max() == 2
    assert torch.equal(count[in_front], torch.full_like(count[in_front], 2.0))
    assert torch.allclose(mean[:, in_front].T, values[:2].mean(0).expand(int(in_front.sum()), 2))
    assert torch.equal(count[behind], torch.zeros_like(count[behind]))
    assert torch.equal(mean[:, behind], torch.zeros_like(mean[:, behind]))


def brute_force_backprojection(features: np.ndarray, camera: PinholeCamera, poses: np.ndarray,
                               points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per point and view in float64: frustum test and bilinear interpolation with zero padding.

    Also returns the smallest distance of a projection to the frustum border (to know the test is
    not decided by round-off)."""
    views, channels, height, width = features.shape
    total = np.zeros((len(points), channels))
    count = np.zeros(len(points))
    margin = math.inf
    for n, point in enumerate(points):
        for view in range(views):
            R, t = poses[view][:3, :3], poses[view][:3, 3]
            x, y, z = R.T @ (point - t)
            u, v = camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy
            margin = min(margin, abs(z), abs(u), abs(u - (width - 1)), abs(v), abs(v - (height - 1)))
            if not (z > 0 and 0 <= u <= width - 1 and 0 <= v <= height - 1):
                continue
            u0, v0 = math.floor(u), math.floor(v)
            sample = np.zeros(channels)
            for du in (0, 1):
                for dv in (0, 1):
                    uu, vv = u0 + du, v0 + dv
                    if uu < width and vv < height:
                        weight = (1 - abs(u - uu)) * (1 - abs(v - vv))
                        sample += weight * features[view, :, vv, uu]
            total[n] += sample
            count[n] += 1
    return total, count, margin


def test_backprojection_matches_brute_force_loop():
    rng = np.random.default_rng(3)
    camera = PinholeCamera(20.0, 18.0, 3.6, 2.4, 8, 6)
    poses = np.stack([look_at([-1.0, -0.3, 0.2], [0.1, 0.1, 0.0]), look_at([0.2, -1.1, 0.1], [0.0, 0.1, 0.1]),
                      look_at([1.0, 0.9, 0.3], [0.0, 0.0, 0.0])])
    features = rng.normal(size=(3, 2, 6, 8))
    dims, voxel_size, origin = (4, 5, 3), 0.13, (-0.27, -0.31, -0.12)
    points = voxel_centers(origin, voxel_size, dims, "cpu").reshape(-1, 3).double().numpy()
    expected_sum, expected_count, margin = brute_force_backprojection(features, camera, poses, points)
    assert margin > 1e-3  # no point within round-off of the frustum border
    assert 0 < (expected_count == 0).sum() and 0 < (expected_count == 1).sum() and 0 < (expected_count >= 2).sum()

    feature_sum, count = backproject_features(torch.tensor(features, dtype=torch.float32), camera, poses,
                                              torch.tensor(points, dtype=torch.float32))
    assert np.array_equal(count.numpy(), expected_count)
    assert np.allclose(feature_sum.numpy(), expected_sum, atol=1e-4)

    mean, grid_count = backproject_to_grid(torch.tensor(features, dtype=torch.float32), camera, poses, origin,
                                           voxel_size, dims)
    expected_mean = expected_sum / np.maximum(expected_count, 1)[:, None]
    assert np.allclose(mean.numpy(), expected_mean.T.reshape(2, *dims), atol=1e-4)
    assert np.array_equal(grid_count.numpy().ravel(), expected_count)

    # the running average over views added one at a time equals the batch average
    volume = FeatureVolume(origin, voxel_size, dims, channels=2, device="cpu")
    for view in range(3):
        volume.add(torch.tensor(features[view:view + 1], dtype=torch.float32), camera, poses[view])
    assert torch.allclose(volume.mean(), mean, atol=1e-6)
    assert torch.equal(volume.counts(), grid_count)


def test_backprojection_rejects_inconsistent_inputs():
    features = torch.zeros(2, 3, 6, 8)
    camera = PinholeCamera(9.0, 8.0, 3.5, 2.5, 8, 6)
    points = torch.zeros(5, 3)
    with pytest.raises(ValueError, match="feature_camera"):
        backproject_features(features, camera.scaled(16, 12), np.stack([np.eye(4)] * 2), points)
    with pytest.raises(ValueError, match="2 feature maps but 1 poses"):
        backproject_features(features, camera, np.eye(4), points)
    bad_pose = np.eye(4)
    bad_pose[0, 0] = 2.0
    with pytest.raises(ValueError, match=r"T_world_cam\[1\]"):
        backproject_features(features, camera, np.stack([np.eye(4), bad_pose]), points)
    assert feature_camera(PinholeCamera(40.0, 40.0, 15.5, 11.5, 32, 24), features).shape == (6, 8)


# --- coarse-to-fine masking ---------------------------------------------------------------------------------


def set_coarsest_tsdf(model: AtlasNet, value: float) -> None:
    """Make the coarsest head predict ``value`` for the TSDF at every voxel."""
    head = model.heads[0]
    with torch.no_grad():
        head.weight[0].zero_()
        head.bias[0] = math.atanh(value)


@pytest.mark.parametrize("value", [0.995, -0.995], ids=["free", "occupied"])
def test_voxels_beyond_threshold_at_coarse_scale_are_clamped_and_masked(value):
    model = tiny_atlas().eval()
    set_coarsest_tsdf(model, value)
    with torch.inference_mode():
        out = model.reconstruct(*atlas_inputs((16, 16, 32)))

    assert torch.allclose(out["tsdf_scales"][0], torch.full_like(out["tsdf_scales"][0], value))
    assert out["mask_scales"][0].all()
    for scale in (1, 2, 3):
        assert not out["mask_scales"][scale].any()
        clamped = torch.full_like(out["tsdf_scales"][scale], math.copysign(1, value))
        assert torch.equal(out["tsdf_scales"][scale], clamped)


def test_voxels_below_threshold_stay_unmasked_and_unclamped():
    model = tiny_atlas().eval()
    set_coarsest_tsdf(model, 0.98)
    raw = []
    model.heads[1].register_forward_hook(lambda module, args, output: raw.append(torch.tanh(output[:, :1])))
    with torch.inference_mode():
        out = model.reconstruct(*atlas_inputs((16, 16, 32)))
    assert out["mask_scales"][1].all()
    assert torch.equal(out["tsdf_scales"][1], raw[0])


def upsample2(grid: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling of (B, C, X, Y, Z) by repetition (any dtype)."""
    return grid.repeat_interleave(2, 2).repeat_interleave(2, 3).repeat_interleave(2, 4)


def test_masking_invariants_with_mixed_predictions():
    model = tiny_atlas(mask_threshold=0.6).eval()
    with torch.no_grad():
        for head in model.heads:
            head.weight[0] *= 40.0  # spread the TSDF predictions towards +-1
    with torch.inference_mode():
        out = model.reconstruct(*atlas_inputs((32, 32, 32)))
    tsdf, masks = out["tsdf_scales"], out["mask_scales"]
    excluded_somewhere = False
    for scale in (1, 2, 3):
        keep = masks[scale - 1] & (tsdf[scale - 1].abs() < 0.6)
        assert torch.equal(masks[scale], upsample2(keep))
        assert not (masks[scale] & ~upsample2(masks[scale - 1])).any()  # once excluded, excluded at finer scales
        coarse_sign = upsample2(torch.sign(tsdf[scale - 1]))
        assert torch.equal(tsdf[scale][~masks[scale]], coarse_sign[~masks[scale]])
        assert (tsdf[scale][~masks[scale]].abs() == 1).all()
        excluded_somewhere |= bool((~masks[scale]).any() and masks[scale].any())
    assert excluded_somewhere  # the case really mixes kept and excluded voxels


# --- fast CPU path ------------------------------------------------------------------------------------------


def conv_ops(model, run) -> set[str]:
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    return {event.key for event in prof.key_averages() if "conv" in event.key}


@pytest.mark.parametrize("kind", ["s4r", "s4r_colorblind", "atlas"])
def test_fast_path_matches_default_path_and_avoids_slow_conv3d(kind):
    dims = (16, 16, 32)
    if kind == "atlas":
        model = tiny_atlas()
        inputs = atlas_inputs(dims)
        run = lambda: model.reconstruct(*inputs)  # noqa: E731
    else:
        model = tiny_s4r(kind == "s4r")
        inputs = s4r_inputs(dims, kind == "s4r")
        run = lambda: model(*inputs)  # noqa: E731
    settle_batch_norm(model, run)
    with torch.inference_mode():
        default = run()
    default_ops = conv_ops(model, run)
    assert set_fast_cpu_convolutions(model, True) > 10 and uses_fast_cpu_convolutions(model)
    with torch.inference_mode():
        fast = run()
    fast_ops = conv_ops(model, run)

    assert "aten::slow_conv3d" in default_ops
    assert not any(op.startswith("aten::slow_conv3d") for op in fast_ops)
    assert "mkldnn::_convolution_pointwise" in fast_ops
    for key, value in default.items():
        pairs = zip(value, fast[key]) if isinstance(value, list) else [(value, fast[key])]
        for a, b in pairs:
            if a.dtype == torch.bool:
                assert torch.equal(a, b), key
            else:
                assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (key, (a - b).abs().max())

    set_fast_cpu_convolutions(model, False)
    assert not uses_fast_cpu_convolutions(model)
    with torch.inference_mode():
        again = run()
    assert all(torch.equal(default[key], again[key]) for key in ("tsdf", "semantic_logits"))


def test_fast_path_gradients_match_the_default_path():
    """Autograd through the oneDNN convolutions. Eval-mode BatchNorm: with batch statistics over the
    few voxels of the coarse levels of a tiny grid, float32 round-off alone changes gradients by ~1 %."""
    model = tiny_s4r()
    inputs = s4r_inputs((16, 16, 32))
    settle_batch_norm(model, lambda: model(*inputs))

    def loss_and_grads():
        model.zero_grad()
        out = model(*inputs)
        loss = out["tsdf"].square().mean() + out["color"].mean() + out["semantic_logits"].square().mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    default_loss, default_grads = loss_and_grads()
    set_fast_cpu_convolutions(model, True)
    fast_loss, fast_grads = loss_and_grads()
    assert torch.allclose(default_loss, fast_loss, rtol=1e-5)
    for a, b in zip(default_grads, fast_grads):
        assert a.abs().max() > 0
        assert (a - b).abs().max() <= 1e-4 * a.abs().max()


def test_fast_inference_follows_weights_changed_by_training_and_loading():
    """The fused inference path keeps its BatchNorm-folded weights between calls; an optimizer step, new running
    statistics and ``load_state_dict`` must all reach the next inference call."""
    model, other = tiny_s4r(seed=0), tiny_s4r(seed=3)
    inputs = s4r_inputs((16, 16, 32))
    run = lambda: model(*inputs)  # noqa: E731
    settle_batch_norm(model, run)
    set_fast_cpu_convolutions(model, True)

    def fused_equals_unfused() -> torch.Tensor:
        with torch.inference_mode():
            fused = run()["tsdf"]
        set_fast_cpu_convolutions(model, False)
        with torch.inference_mode():
            reference = run()["tsdf"]
        set_fast_cpu_convolutions(model, True)
        assert torch.allclose(fused, reference, rtol=1e-4, atol=1e-5), (fused - reference).abs().max()
        return fused

    first = fused_equals_unfused()
    assert torch.equal(first, fused_equals_unfused())  # kept weights: the same result again
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    run()["tsdf"].square().mean().backward()  # a training step: new weights and running statistics
    optimizer.step()
    model.eval()
    stepped = fused_equals_unfused()
    assert not torch.equal(first, stepped)
    model.load_state_dict(other.state_dict())
    assert not torch.equal(stepped, fused_equals_unfused())


def test_fast_inference_of_a_network_made_in_inference_mode():
    """Tensors made under ``torch.inference_mode`` have no version counters; such a network still runs fused."""
    inputs = s4r_inputs((16, 16, 32))
    reference = tiny_s4r().eval()
    with torch.inference_mode():
        expected = reference(*inputs)["tsdf"]
        model = tiny_s4r().eval()
        set_fast_cpu_convolutions(model, True)
        assert model.geometry_encoder.stem.conv.weight.is_inference()
        fused = model(*inputs)["tsdf"]
    assert torch.allclose(fused, expected, rtol=1e-4, atol=1e-5)


def test_fast_path_dtypes_are_float32_and_bfloat16():
    with pytest.raises(ValueError, match="computes in"):
        with inference_dtype(torch.float16):
            pass


def test_bfloat16_inference_stays_close_to_float32_and_autograd_stays_float32():
    model = S4RNet(S4RNetConfig(num_classes=K, base_width=8, label_input=True))
    tsdf, observed, color = s4r_inputs((32, 32, 32))
    labels = torch.randint(-1, K, (1, 32, 32, 32), generator=torch.Generator().manual_seed(2))
    run = lambda: model(tsdf, observed, color, labels)  # noqa: E731
    settle_batch_norm(model, run)
    set_fast_cpu_convolutions(model, True)
    with torch.inference_mode():
        reference = run()
    if not bfloat16_supported():  # a CPU without AVX512: a clear error, never a wrong result
        with pytest.raises(RuntimeError, match="cannot compute bfloat16"):
            with inference_dtype(torch.bfloat16):
                pass
        return
    with torch.inference_mode(), inference_dtype(torch.bfloat16):
        low = run()
    assert all(value.dtype == torch.bfloat16 for value in low.values())
    assert all(value.dtype == torch.float32 for value in reference.values())
    # bfloat16 keeps 8 bits of mantissa: values within a few hundredths, the surface and the classes kept
    assert (low["tsdf"].float() - reference["tsdf"]).abs().max() < 0.05
    assert ((low["tsdf"] < 0) == (reference["tsdf"] < 0)).float().mean() > 0.99
    same_class = low["semantic_logits"].argmax(dim=1) == reference["semantic_logits"].argmax(dim=1)
    assert same_class.float().mean() > 0.97
    assert not torch.equal(low["tsdf"].float(), reference["tsdf"])  # it did compute in bfloat16

    with inference_dtype(torch.bfloat16):  # autograd on (training): float32 whatever the block says
        trained = run()
    assert trained["tsdf"].dtype == torch.float32
    assert torch.allclose(trained["tsdf"], reference["tsdf"], atol=1e-5)


# --- gradients ----------------------------------------------------------------------------------------------


def test_gradients_reach_all_three_decoders():
    model = tiny_s4r().train()
    out = model(*s4r_inputs((16, 16, 16), batch=2))
    (out["tsdf"].sum() + out["color"].sum() + out["semantic_logits"].sum()).backward()

    for branch in ("tsdf_decoder", "tsdf_head", "color_decoder", "color_head", "semantic_decoder", "semantic_head",
                   "geometry_encoder", "color_encoder", "fusion"):
        module = getattr(model, branch)
        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv3d)]
        assert convs, branch
        for conv in convs:
            assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0, branch


# --- checkpoints --------------------------------------------------------------------------------------------


def trained_like(kind: str):
    """A model of ``kind`` with non-trivial BatchNorm statistics, and its forward on fixed inputs."""
    dims = (16, 16, 32)
    if kind == "atlas":
        model = tiny_atlas(seed=5)
        inputs = atlas_inputs(dims)
        run = lambda m: m.reconstruct(*inputs)  # noqa: E731
    else:
        model = tiny_s4r(kind == "s4r", seed=5)
        inputs = s4r_inputs(dims, kind == "s4r")
        run = lambda m: m(*inputs)  # noqa: E731
    settle_batch_norm(model, lambda: run(model))
    return model, run


@pytest.mark.parametrize("kind", ["s4r", "s4r_colorblind", "atlas"])
def test_checkpoint_round_trip_gives_identical_outputs(tmp_path, kind):
    model, run = trained_like(kind)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, CLASSES, voxel_size=0.04, truncation=0.16)

    raw = torch.load(path, weights_only=True)
    assert set(raw) == set(CHECKPOINT_KEYS)
    assert raw["model"] == kind and raw["class_names"] == CLASSES and raw["version"] == CHECKPOINT_VERSION
    assert raw["voxel_size"] == 0.04 and raw["truncation"] == 0.16 and raw["config"]["num_classes"] == K
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temp file left behind

    loaded, info = load_checkpoint(path, "cpu", expected_class_names=CLASSES, expected_voxel_size=0.04,
                                   expected_truncation=0.16, fast_cpu=False)
    assert info.model == kind and info.class_names == tuple(CLASSES) and info.config == model.config
    assert not loaded.training
    with torch.inference_mode():
        before, after = run(model.eval()), run(loaded)
    for key in ("tsdf", "semantic_logits") + (("color",) if kind == "s4r" else ()):
        assert torch.equal(before[key], after[key]), key

    fast_model, _ = load_checkpoint(path, "cpu")
    assert uses_fast_cpu_convolutions(fast_model)
    with torch.inference_mode():
        fast = run(fast_model)
    assert torch.allclose(before["tsdf"], fast["tsdf"], atol=1e-5)


def test_checkpoint_that_does_not_fit_the_map_is_refused(tmp_path):
    model, _ = trained_like("s4r_colorblind")
    path = tmp_path / "blind.pt"
    save_checkpoint(path, model, CLASSES, voxel_size=0.04, truncation=0.16)

    with pytest.raises(ValueError, match=r"blind\.pt.*trained for classes"):
        load_checkpoint(path, "cpu", expected_class_names=CLASSES[::-1])
    with pytest.raises(ValueError, match=r"trained for classes"):
        load_checkpoint(path, "cpu", expected_class_names=CLASSES + ["door"])
    with pytest.raises(ValueError, match=r"blind\.pt.*voxel size 0\.04 m, the map uses 0\.05 m"):
        load_checkpoint(path, "cpu", expected_voxel_size=0.05)
    with pytest.raises(ValueError, match=r"truncation"):
        load_checkpoint(path, "cpu", expected_truncation=0.2)
    load_checkpoint(path, "cpu", expected_class_names=tuple(CLASSES), expected_voxel_size=0.04 * (1 + 1e-9))


def test_bad_checkpoint_files_raise_clear_errors(tmp_path):
    model, _ = trained_like("s4r")
    good = tmp_path / "good.pt"
    save_checkpoint(good, model, CLASSES, voxel_size=0.04, truncation=0.16)
    data = good.read_bytes()
    state = torch.load(good, weights_only=True)

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 50)
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match=f"{path.name}: not a readable checkpoint"):
            load_checkpoint(path, "cpu")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt", "cpu")

    def write_variant(name: str, **changes) -> str:
        variant = {**state, **changes}
        variant = {k: v for k, v in variant.items() if v is not None}
        torch.save(variant, tmp_path / name)
        return tmp_path / name

    cases = [
        (write_variant("no_classes.pt", class_names=None), r"lacks keys \['class_names'\]"),
        (write_variant("old.pt", version=CHECKPOINT_VERSION + 1), "checkpoint version"),
        (write_variant("kind.pt", model="pointnet"), "unknown model 'pointnet'"),
        (write_variant("blind.pt", model="s4r_colorblind"), "contradicts config use_color"),
        (write_variant("width.pt", config={**state["config"], "base_width": 6}), "weights do not fit"),
        (write_variant("typo.pt", config={**state["config"], "base_widht": 4}), "unknown S4RNetConfig keys"),
        (write_variant("range.pt", config={**state["config"], "num_classes": 0}), "num_classes"),
        (write_variant("count.pt", class_names=CLASSES[:2]), "2 class names but num_classes = 5"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=message):
            load_checkpoint(path, "cpu")

    with pytest.raises(ValueError, match="3 class names for a model with num_classes = 5"):
        save_checkpoint(tmp_path / "x.pt", model, CLASSES[:3], voxel_size=0.04, truncation=0.16)
