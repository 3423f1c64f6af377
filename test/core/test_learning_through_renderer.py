"""A tiny S4R network learns one synthetic chunk from 2D images alone, through the differentiable renderer."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from semantic_recon_ros.core.models import S4RNet, S4RNetConfig
from semantic_recon_ros.core.rendering import DenseGrid, render
from semantic_recon_ros.core.synthetic import (DEFAULT_CAMERA, SceneRenderer, camera_path, generate_room,
                                               ground_truth_grid)

SIZE = 32  # chunk edge in voxels
VOXEL = 0.08
TRUNCATION = 3 * VOXEL


def test_tiny_network_overfits_one_chunk_from_images_only():
    torch.manual_seed(0)
    scene = generate_room(seed=4)
    # a chunk holding a corner of the room (floor and two walls), seen by 8 views of the scan loop
    origin = np.round(scene.interior_bounds[0] / VOXEL - 4) * VOXEL
    camera = DEFAULT_CAMERA.scaled(40, 30)
    poses = camera_path(scene, 8)
    renderer = SceneRenderer(scene)
    frames = [renderer.render(camera, pose) for pose in poses]
    target_depth = torch.tensor(np.stack([f.depth for f in frames]))[None]  # (1, V, H, W)
    target_color = torch.tensor(np.stack([f.color for f in frames]))[None].float() / 255.0
    target_labels = torch.tensor(np.stack([f.labels for f in frames]).astype(np.int64))[None]
    T = torch.tensor(np.stack(poses))[None].float()
    # supervise only pixels whose true surface lies inside the chunk (1 voxel from its faces)
    rays = torch.tensor(camera.pixel_rays("cpu").numpy())[None, None] * target_depth[..., None]
    points = torch.einsum("bvij,bvhwj->bvhwi", T[..., :3, :3], rays) + T[..., None, None, :3, 3]
    low = torch.tensor(origin, dtype=torch.float32) + VOXEL
    inside = ((points > low) & (points < low + (SIZE - 3) * VOXEL)).all(dim=-1) & (target_depth > 0)
    assert inside.sum() > 300

    # the network's input: the chunk's TSDF, observed everywhere (an easy, fixed input to overfit on)
    gt = ground_truth_grid(scene, VOXEL, TRUNCATION, origin=origin, shape=(SIZE, SIZE, SIZE))
    tsdf_in = torch.tensor(gt.tsdf, dtype=torch.float32)[None, None]
    observed = torch.ones_like(tsdf_in)
    color_in = torch.full((1, 3, SIZE, SIZE, SIZE), 0.5)

    network = S4RNet(S4RNetConfig(num_classes=len(scene.class_names), base_width=4, fusion_blocks=0))
    optimizer = torch.optim.Adam(network.parameters(), lr=5e-3)
    origin_t = torch.tensor(origin, dtype=torch.float32)[None]

    def losses():
        out = network(tsdf_in, observed, color_in)
        grid = DenseGrid(out["tsdf"], origin_t, VOXEL, TRUNCATION, color=out["color"], semantic=out["semantic_logits"])
        image = render(grid, camera, T)
        both = image["valid"] & inside
        depth = (image["depth"] - target_depth).abs()[both].mean()
        color = (image["color"] - target_color).abs()[both].mean()
        # semantics where the rendered surface is the true one (S4R's near-surface mask)
        near = both & ((image["depth"] - target_depth).abs() < TRUNCATION)
        semantic = F.nll_loss(image["semantic"][near].clamp_min(1e-6).log(), target_labels[near], ignore_index=255)
        return {"depth": depth, "color": color, "semantic": semantic}, out

    first = {k: float(v) for k, v in losses()[0].items()}
    for _ in range(250):
        optimizer.zero_grad()
        terms, _ = losses()
        sum(terms.values()).backward()
        optimizer.step()
    # every decoder received gradient through the renderer
    for decoder in ("tsdf_decoder", "color_decoder", "semantic_decoder"):
        grads = [p.grad for p in getattr(network, decoder).parameters()]
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0, decoder
    last = {k: float(v) for k, v in losses()[0].items()}
    print(f"\nlosses before {first}\nlosses after  {last}")
    assert sum(last.values()) < sum(first.values()) / 10
