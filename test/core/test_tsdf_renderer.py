"""Differentiable TSDF renderer: agrees with Open3D raycasting of the meshed surface, exact interpolation,
numerically checked gradients, correct misses, batching, and a search identical to a plain lattice march."""

from __future__ import annotations

import numpy as np
import open3d as o3d
import pytest
import torch
from scipy.ndimage import binary_erosion

from semantic_recon_ros.core.camera import PinholeCamera, invert_rigid
from semantic_recon_ros.core.meshing import extract_mesh
from semantic_recon_ros.core.rendering import (DenseGrid, RaycastConfig, RayBundle, image_rays, render,
                                               render_rays, sample_grid)
from semantic_recon_ros.core.rendering.crossing_search import first_crossings, lattice_parameter
from semantic_recon_ros.core.rendering.free_space import FreeSpaceMap
from semantic_recon_ros.core.rendering.rays import ray_box_interval
from semantic_recon_ros.core.synthetic import BoxArrays, union_sdf
from semantic_recon_ros.core.map import SemanticTSDFVolume
from semantic_recon_ros.core.config.volume import VolumeConfig

VOXEL = 0.05
TRUNCATION = 4 * VOXEL
ORIGIN_VOXEL = np.array([-12, -10, -8])  # grid origin in voxel units (a multiple of the voxel size)
DIMS = (44, 40, 36)  # different sizes per axis, so that swapped axes cannot pass
BOXES = BoxArrays(np.array([[0.2, 0.3, 0.35]]), np.array([[0.35, 0.2, 0.25]]), np.array([0.5]))
SPHERE_CENTER, SPHERE_RADIUS = np.array([1.0, 0.9, 0.7]), 0.3
CAMERA = PinholeCamera(fx=90.0, fy=90.0, cx=47.5, cy=35.5, width=96, height=72)
NUM_CLASSES = 4
LOGIT_SLOPES = np.array([[2.0, -1.0, 0.5], [-1.5, 0.5, 2.0], [0.0, 1.0, -1.0], [1.0, 1.0, 1.0]])


def look_at(eye, target) -> np.ndarray:
    """T_world_cam of an optical-frame camera at ``eye`` looking at ``target`` (world z up)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack((right, np.cross(forward, right), forward), axis=1)
    pose[:3, 3] = eye
    return pose


POSES = np.stack([look_at([-0.7, -0.6, 1.3], [0.6, 0.5, 0.5]), look_at([2.0, 0.4, 0.4], [0.6, 0.6, 0.5]),
                  look_at([0.6, 1.9, 1.6], [0.5, 0.4, 0.4])])  # the first two cameras are inside the grid


def scene_sdf(points: np.ndarray) -> np.ndarray:
    """Exact signed distance (metres) to a yawed box and a sphere."""
    box, _ = union_sdf(points, BOXES)
    return np.minimum(box, np.linalg.norm(points - SPHERE_CENTER, axis=1) - SPHERE_RADIUS)


def voxel_centers(origin_voxel=ORIGIN_VOXEL, dims=DIMS) -> np.ndarray:
    index = np.stack(np.meshgrid(*[np.arange(n) for n in dims], indexing="ij"), axis=-1)
    return (origin_voxel + index) * VOXEL  # (X, Y, Z, 3)


def color_field(points: np.ndarray) -> np.ndarray:
    """RGB linear in position (so trilinear interpolation reproduces it exactly)."""
    low, high = ORIGIN_VOXEL * VOXEL, (ORIGIN_VOXEL + np.array(DIMS) - 1) * VOXEL
    return (points - low) / (high - low)


def logit_field(points: np.ndarray) -> np.ndarray:
    return points @ LOGIT_SLOPES.T


def scene_grid(dtype=torch.float32) -> DenseGrid:
    centers = voxel_centers()
    flat = centers.reshape(-1, 3)

    def channels_first(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(values.reshape(*DIMS, -1)).permute(3, 0, 1, 2)[None].to(dtype)

    tsdf = np.clip(scene_sdf(flat) / TRUNCATION, -1, 1)
    return DenseGrid(channels_first(tsdf), torch.tensor(ORIGIN_VOXEL * VOXEL, dtype=dtype)[None],
                     VOXEL, TRUNCATION, channels_first(color_field(flat)), channels_first(logit_field(flat)))


def open3d_depth(grid: DenseGrid, poses: np.ndarray) -> np.ndarray:
    """z-depth (V, H, W) of the marching-cubes mesh of the grid (via the fusion volume), inf where missed."""
    volume = SemanticTSDFVolume(VolumeConfig(voxel_size=VOXEL), ["object"], "cpu")
    index = torch.stack(torch.meshgrid(*[torch.arange(n) for n in DIMS], indexing="ij"), dim=-1).reshape(-1, 3)
    tsdf = grid.tsdf[0, 0].reshape(-1).cpu()
    volume.grid.write_voxels(index + torch.from_numpy(ORIGIN_VOXEL), tsdf=tsdf, weight=torch.ones_like(tsdf))
    mesh = extract_mesh(volume)
    assert mesh.num_triangles > 1000
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                        o3d.core.Tensor(mesh.triangles.astype(np.uint32)))
    # Open3D's pinhole rays put pixel centres at (u + 0.5, v + 0.5); ours are at (u, v): shift the principal point.
    # Their directions have camera-frame z = 1, so the hit parameter is the z-depth.
    K = CAMERA.K + np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    depth = []
    for pose in poses:
        rays = scene.create_rays_pinhole(o3d.core.Tensor(K), o3d.core.Tensor(invert_rigid(pose)),
                                         CAMERA.width, CAMERA.height)
        depth.append(scene.cast_rays(rays)["t_hit"].numpy())
    return np.stack(depth)


def test_depth_matches_open3d_raycast_of_the_meshed_surface():
    grid = scene_grid()
    out = render(grid, CAMERA, torch.from_numpy(POSES[None]).float())
    reference = open3d_depth(grid, POSES)
    ours, valid = out["depth"][0].numpy(), out["valid"][0].numpy()
    both = valid & np.isfinite(reference)
    for view in range(len(POSES)):
        assert both[view].mean() > 0.15  # the objects fill a good part of every view
    # the same surface: marching-cubes triangles vs the trilinear zero set differ by a fraction of a voxel
    # (most at the box's edges); at silhouettes a ray may graze one and hit the other farther behind
    error = np.abs(ours - reference)
    assert np.median(error[both]) < 0.02 * VOXEL
    assert np.percentile(error[both], 99) < 0.5 * VOXEL
    away_from_silhouettes = np.stack([binary_erosion(mask, np.ones((3, 3))) for mask in both])
    assert error[away_from_silhouettes].max() < VOXEL
    assert (valid != np.isfinite(reference)).mean() < 0.01
    # the depth is z-depth: hit points are at that depth in front of the camera
    hits = out["hit_points"][0].numpy()
    for view, pose in enumerate(POSES):
        z = (hits[view] - pose[:3, 3]) @ pose[:3, 2]
        np.testing.assert_allclose(z[valid[view]], ours[view][valid[view]], atol=1e-5)
        # and on the analytic surface, up to the discretisation of the field
        assert np.abs(scene_sdf(hits[view][valid[view]].astype(np.float64))).max() < 0.5 * VOXEL


def test_color_and_semantics_are_interpolated_at_the_hit_point():
    out = render(scene_grid(dtype=torch.float64), CAMERA, torch.from_numpy(POSES[None]))
    valid = out["valid"]
    hits = out["hit_points"][valid].numpy()
    assert len(hits) > 1000
    # fields linear in position are reproduced exactly by trilinear interpolation at the hit point
    np.testing.assert_allclose(out["color"][valid].numpy(), color_field(hits), atol=1e-9)
    logits = logit_field(hits)
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["semantic"][valid].numpy(), probabilities, atol=1e-9)
    assert (out["color"][~valid] == 0).all() and (out["semantic"][~valid] == 0).all()


def test_semantic_probabilities_are_interpolated_as_given():
    grid = scene_grid(dtype=torch.float64)
    grid.semantic = grid.semantic.softmax(dim=1)
    pose = torch.from_numpy(POSES[None, :1])
    out = render(grid, CAMERA, pose, RaycastConfig(semantic_input="probabilities"))
    valid = out["valid"][0, 0]
    hits = out["hit_points"][0, 0][valid]
    expected = sample_grid(grid.semantic, torch.zeros(len(hits), dtype=torch.long),
                           grid.world_to_voxel(hits, torch.zeros(len(hits), dtype=torch.long)))
    torch.testing.assert_close(out["semantic"][0, 0][valid], expected)
    softmaxed = render(grid, CAMERA, pose)["semantic"][0, 0][valid]
    assert (softmaxed - expected).abs().max() > 0.01  # the default would have applied a softmax again


def test_sample_grid_is_trilinear_interpolation_between_voxel_centres():
    generator = torch.Generator().manual_seed(0)
    values = torch.randn((2, 3, 5, 6, 7), generator=generator, dtype=torch.float64)
    batch_index = torch.randint(0, 2, (200,), generator=generator)
    coords = torch.rand((200, 3), generator=generator, dtype=torch.float64) * torch.tensor([4.0, 5.0, 6.0])
    base = coords.floor().long()
    frac = coords - base
    expected = torch.zeros((200, 3), dtype=torch.float64)
    for corner in range(8):
        offset = torch.tensor([corner >> 2 & 1, corner >> 1 & 1, corner & 1])
        weight = torch.where(offset.bool(), frac, 1 - frac).prod(dim=1)
        i, j, k = (base + offset).clamp(max=torch.tensor([4, 5, 6])).unbind(dim=1)
        expected += weight[:, None] * values[batch_index, :, i, j, k]
    torch.testing.assert_close(sample_grid(values, batch_index, coords), expected)  # per-chunk calls
    for channel in range(3):  # single channel: chunks stacked into one call
        torch.testing.assert_close(sample_grid(values[:, channel:channel + 1], batch_index, coords)[:, 0],
                                   expected[:, channel])
    # voxel centres read the voxel values exactly
    centre = torch.tensor([[4.0, 0.0, 6.0]], dtype=torch.float64)
    torch.testing.assert_close(sample_grid(values, torch.tensor([1]), centre)[0], values[1, :, 4, 0, 6])


def sphere_chunk(generator: torch.Generator, size: int = 6) -> DenseGrid:
    """Tiny float64 chunk holding a slightly perturbed sphere, random color and logits, all requiring grad."""
    index = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float64)] * 3, indexing="ij"), dim=-1)
    sdf = (index - torch.tensor([2.6, 2.4, 2.5], dtype=torch.float64)).norm(dim=-1) - 1.7
    tsdf = (sdf / 2.0 + 0.05 * torch.randn(sdf.shape, generator=generator, dtype=torch.float64)).clamp(-1, 1)
    return DenseGrid(tsdf[None, None].requires_grad_(), torch.zeros((1, 3), dtype=torch.float64), 1.0, 2.0,
                     torch.rand((1, 3, size, size, size), generator=generator, dtype=torch.float64).requires_grad_(),
                     torch.randn((1, 3, size, size, size), generator=generator,
                                 dtype=torch.float64).requires_grad_())


TINY_CAMERA = PinholeCamera(fx=4.0, fy=4.0, cx=1.5, cy=1.5, width=4, height=4)
TINY_POSE = torch.from_numpy(look_at([-1.2, 1.6, 3.6], [2.5, 2.5, 2.5])[None, None])


def rendered_hits(grid: DenseGrid, config: RaycastConfig, valid: torch.Tensor):
    """Function (tsdf, color, semantic) -> concatenated depth, color and semantics of the rays ``valid``."""
    def function(tsdf, color, semantic):
        out = render(DenseGrid(tsdf, grid.origin, grid.voxel_size, grid.truncation, color, semantic),
                     TINY_CAMERA, TINY_POSE, config)
        assert torch.equal(out["valid"], valid)  # the finite differences must not flip hits
        return torch.cat((out["depth"][valid], out["color"][valid].reshape(-1), out["semantic"][valid].reshape(-1)))
    return function


def test_gradients_match_finite_differences():
    grid = sphere_chunk(torch.Generator().manual_seed(1))
    config = RaycastConfig()
    valid = render(grid, TINY_CAMERA, TINY_POSE, config)["valid"]
    assert valid.sum() >= 8  # most of the 16 rays hit the sphere
    function = rendered_hits(grid, config, valid)
    # every TSDF voxel perturbed: depth, and color and semantics through the hit point
    assert torch.autograd.gradcheck(lambda tsdf: function(tsdf, grid.color, grid.semantic), (grid.tsdf,),
                                    eps=1e-6, atol=1e-6)
    # color and semantic voxels (outputs linear in them): random directional derivatives
    assert torch.autograd.gradcheck(lambda color, semantic: function(grid.tsdf, color, semantic),
                                    (grid.color, grid.semantic), eps=1e-6, atol=1e-6, fast_mode=True)
    # the gradients are not trivially zero: depth depends on the TSDF voxels near the hits only
    depth = render(grid, TINY_CAMERA, TINY_POSE, config)["depth"]
    (gradient,) = torch.autograd.grad(depth.sum(), grid.tsdf)
    assert 0 < (gradient != 0).sum() < gradient.numel()


@pytest.mark.parametrize("refine_steps", [0, 3])
def test_gradients_match_finite_differences_for_other_refinements(refine_steps):
    grid = sphere_chunk(torch.Generator().manual_seed(2))
    config = RaycastConfig(refine_steps=refine_steps)
    function = rendered_hits(grid, config, render(grid, TINY_CAMERA, TINY_POSE, config)["valid"])
    assert torch.autograd.gradcheck(function, (grid.tsdf, grid.color, grid.semantic), eps=1e-6, atol=1e-6,
                                    fast_mode=True)


def test_valid_is_false_for_rays_that_miss_the_surface_or_the_grid():
    grid = scene_grid()
    # looking away from the grid
    away = torch.from_numpy(look_at([-1.4, -1.3, 1.5], [-3.0, -3.0, 2.0])[None, None]).float()
    out = render(grid, CAMERA, away)
    assert not out["valid"].any() and (out["depth"] == 0).all()
    # through the grid: rays clear of the sphere (seen alone) miss, rays through its middle hit
    pose = look_at([1.0, -1.5, 0.7], SPHERE_CENTER)
    rays = image_rays(CAMERA, pose[None, None], "cpu", torch.float64)
    direction = rays.directions / rays.directions.norm(dim=-1, keepdim=True)
    to_center = torch.from_numpy(SPHERE_CENTER) - rays.origins
    distance = (to_center - (to_center * direction).sum(-1, keepdim=True) * direction).norm(dim=-1)[0, 0]
    sphere_sdf = np.linalg.norm(voxel_centers() - SPHERE_CENTER, axis=-1) - SPHERE_RADIUS
    sphere_only = DenseGrid(torch.from_numpy(np.clip(sphere_sdf / TRUNCATION, -1, 1)).float()[None, None],
                            grid.origin, VOXEL, TRUNCATION)
    valid = render(sphere_only, CAMERA, torch.from_numpy(pose[None, None]).float())["valid"][0, 0]
    assert valid[distance < SPHERE_RADIUS - VOXEL].all()
    assert not valid[distance > SPHERE_RADIUS + VOXEL].any()
    assert (distance > SPHERE_RADIUS + VOXEL).float().mean() > 0.3
    # no surface at all: nothing valid, and a loss on the outputs still back-propagates (zero gradients)
    empty = DenseGrid(torch.ones_like(grid.tsdf).requires_grad_(), grid.origin, VOXEL, TRUNCATION,
                      color=grid.color.clone().requires_grad_())
    out = render(empty, CAMERA, torch.from_numpy(POSES[None]).float())
    assert not out["valid"].any()
    (out["depth"].sum() + out["color"].sum()).backward()
    assert (empty.tsdf.grad == 0).all() and (empty.color.grad == 0).all()
    # from inside the sphere the TSDF only goes from - to +: no surface in front
    inside = torch.from_numpy(look_at(SPHERE_CENTER, [0.0, 0.0, 0.0])[None, None]).float()
    assert not render(sphere_only, CAMERA, inside)["valid"].any()
    # a far plane before the surface
    depth = render(sphere_only, CAMERA, torch.from_numpy(pose[None, None]).float())["depth"]
    nearest = depth[depth > 0].min().item()
    clipped = render(sphere_only, CAMERA, torch.from_numpy(pose[None, None]).float(), RaycastConfig(far=nearest - 0.01))
    assert not clipped["valid"].any()


def test_batched_views_equal_per_view_calls():
    grids = [scene_grid(), scene_grid()]
    grids[1].tsdf = grids[1].tsdf.flip(2)  # a different scene in the second chunk
    grids[1].origin = grids[1].origin + torch.tensor([[0.3, -0.2, 0.1]])
    batch = DenseGrid(torch.cat([g.tsdf for g in grids]), torch.cat([g.origin for g in grids]), VOXEL, TRUNCATION,
                      torch.cat([g.color for g in grids]), torch.cat([g.semantic for g in grids]))
    cameras = [CAMERA, PinholeCamera(80.0, 95.0, 50.0, 30.0, 96, 72), PinholeCamera(110.0, 100.0, 45.0, 40.0, 96, 72)]
    poses = torch.from_numpy(np.stack([POSES, POSES[::-1]])).float()  # (2, 3, 4, 4)
    out = render(batch, cameras, poses)
    assert out["depth"].shape == (2, 3, 72, 96) and out["semantic"].shape == (2, 3, 72, 96, NUM_CLASSES)
    assert out["valid"].float().mean() > 0.2
    for b, grid in enumerate(grids):
        for v, camera in enumerate(cameras):
            single = render(grid, camera, poses[b:b + 1, v:v + 1])
            assert torch.equal(single["valid"][0, 0], out["valid"][b, v])
            for key in ("depth", "hit_points", "color", "semantic"):
                torch.testing.assert_close(single[key][0, 0], out[key][b, v], atol=2e-5, rtol=1e-5)


def lattice_march(grid: DenseGrid, rays: RayBundle, step_voxels: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference search: every lattice sample of every ray, first + to - sign change."""
    flat = rays.flatten()
    batch_index = torch.arange(grid.batch_size).repeat_interleave(flat.origins.shape[1])
    o = grid.world_to_voxel(flat.origins.reshape(-1, 3), batch_index)
    d = flat.directions.reshape(-1, 3) / grid.voxel_size
    upper = torch.tensor(grid.shape, dtype=grid.dtype) - 1
    start, end = ray_box_interval(o, d, torch.zeros(3, dtype=grid.dtype), upper)
    start = start.clamp(min=0)
    step = step_voxels / d.norm(dim=1)
    count = int(((end - start) / step).max().ceil()) + 2
    t = lattice_parameter(start[:, None], step[:, None], end[:, None], torch.arange(count, dtype=grid.dtype))
    values = sample_grid(grid.tsdf, batch_index.repeat_interleave(count),
                         (o[:, None] + t[..., None] * d[:, None]).reshape(-1, 3)).view(-1, count)
    crossing = (values[:, :-1] > 0) & (values[:, 1:] <= 0) & (start <= end)[:, None]
    hit = crossing.any(dim=1)
    return hit.nonzero()[:, 0], crossing[hit].to(torch.uint8).argmax(dim=1) + 1


@pytest.mark.parametrize("skip_block,skip_radius", [(1, 1), (2, 3), (4, 8), (16, 2)])
def test_search_finds_the_same_brackets_as_a_plain_lattice_march(skip_block, skip_radius):
    # a rough random field with many thin shells: the leaps must never jump over a crossing
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn((2, 1, 9, 8, 10), generator=generator)
    field = torch.nn.functional.interpolate(noise, size=(36, 30, 40), mode="trilinear", align_corners=True)
    tsdf = (field + 0.9).clamp(-1, 1)
    grid = DenseGrid(tsdf, torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0]]), VOXEL, TRUNCATION)
    poses = torch.from_numpy(np.stack([[look_at([-0.8, -0.5, 2.5], [0.9, 0.7, 1.0])],
                                       [look_at([2.0, 2.5, 1.0], [0.9, 0.8, 0.9])]])).float()
    rays = image_rays(CAMERA, poses, "cpu")
    expected_rays, expected_lattice = lattice_march(grid, rays, 0.5)
    assert len(expected_rays) > 3000
    config = RaycastConfig(skip_block=skip_block, skip_radius=skip_radius)
    flat = rays.flatten()
    batch_index = torch.arange(2).repeat_interleave(flat.origins.shape[1])
    o = grid.world_to_voxel(flat.origins.reshape(-1, 3), batch_index)
    d = flat.directions.reshape(-1, 3) / VOXEL
    upper = torch.tensor(grid.shape, dtype=torch.float32) - 1
    start, end = ray_box_interval(o, d, torch.zeros(3), upper)
    free_space = FreeSpaceMap.build(tsdf, skip_block, skip_radius)
    ray, lattice = first_crossings(tsdf, free_space, batch_index, o, d, start.clamp(min=0), end,
                                   config.step_voxels / d.norm(dim=1), samples_per_iteration=4096)
    order = torch.argsort(ray)
    assert torch.equal(ray[order], expected_rays)
    assert torch.equal(lattice[order], expected_lattice)
    # the renderer reports exactly these rays as valid
    valid = render_rays(grid, rays, config)["valid"].reshape(-1)
    assert torch.equal(valid.nonzero()[:, 0], expected_rays)


def test_every_tensor_follows_the_grid_device():
    # factories without an explicit device would create tensors on the default device, here "meta",
    # and fail when mixed with the grid's CPU tensors
    pose = torch.from_numpy(POSES[None, :2]).float()
    grid = scene_grid()
    reference = render(grid, CAMERA, pose)
    with torch.device("meta"):
        out = render(grid, CAMERA, pose)
    for key, value in out.items():
        assert value.device.type == "cpu", key
        assert torch.equal(value, reference[key]), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_renders_on_cuda_like_on_cpu():
    pose = torch.from_numpy(POSES[None, :2]).float()
    reference = render(scene_grid(), CAMERA, pose)
    out = render(scene_grid().to("cuda"), CAMERA, pose.to("cuda"))
    for key, value in out.items():
        assert value.device.type == "cuda", key
        torch.testing.assert_close(value.cpu(), reference[key], atol=1e-4, rtol=1e-4)


def test_bad_inputs_are_rejected_with_clear_messages():
    grid = scene_grid()
    with pytest.raises(ValueError, match="tsdf must be a"):
        DenseGrid(grid.tsdf[0], grid.origin, VOXEL, TRUNCATION)
    with pytest.raises(ValueError, match="origin must be a"):
        DenseGrid(grid.tsdf, grid.origin[0], VOXEL, TRUNCATION)
    with pytest.raises(ValueError, match="color must be a"):
        DenseGrid(grid.tsdf, grid.origin, VOXEL, TRUNCATION, color=grid.color[:, :2])
    with pytest.raises(ValueError, match="voxel_size and truncation must be positive"):
        DenseGrid(grid.tsdf, grid.origin, 0.0, TRUNCATION)
    with pytest.raises(ValueError, match="must be \\(B, V, 4, 4\\)"):
        render(grid, CAMERA, torch.eye(4))
    with pytest.raises(ValueError, match="batch size"):
        render(grid, CAMERA, torch.eye(4).expand(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"T_world_cam\[0, 1\] is not a rigid"):
        render(grid, CAMERA, torch.stack([torch.eye(4), 2 * torch.eye(4)])[None])
    with pytest.raises(ValueError, match="same image size"):
        render(grid, [CAMERA, CAMERA.scaled(48, 36)], torch.eye(4).expand(1, 2, 4, 4))
    with pytest.raises(ValueError, match="step_voxels"):
        RaycastConfig(step_voxels=0.0)
