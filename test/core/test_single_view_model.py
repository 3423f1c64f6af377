"""The single-view reconstruction model (SemSVR): frustum grid, exact frustum targets of a synthetic room, loss
shaping regions, the block autoencoder's round trip and the image-to-latent network learning through the frozen
decoder. Room 31 (not one of the held-out rooms 900-909), 160x120 frames, a 32 x 24 x 32 frustum grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.datasets import open_sequence
from semantic_recon_ros.core.models.single_view import (
    BlockAutoencoder,
    BlockAutoencoderConfig,
    FrustumGrid,
    FrustumGridConfig,
    ImageToLatentConfig,
    ImageToLatentNet,
    LossShapingConfig,
    frustum_mesh,
    frustum_regions,
    loss_shaping_weights,
    network_view,
    random_block_crops,
    semantic_tsdf_channels,
    shaped_losses,
)
from semantic_recon_ros.core.models.single_view.frustum_target import frustum_ground_truth
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA, box_sdf, load_ground_truth, write_synthetic_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CAMERA = DEFAULT_CAMERA.scaled(160, 120)
SEED = 31
FRAMES = 6
TRAIN_FRAMES = 4  # frames 0-3 train the networks, 4-5 are views they never saw
GRID = FrustumGridConfig(cells_x=32, cells_y=24, cells_depth=32, near=0.3, far=5.0, truncation=0.3)
AUTOENCODER = BlockAutoencoderConfig(block_size=4, latent_channels=16, base_width=8)
SHAPING = LossShapingConfig()
DEVICE = "cpu"


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    folder = write_synthetic_scene(tmp_path_factory.mktemp("single_view") / "room", seed=SEED, num_frames=FRAMES,
                                   camera=CAMERA)
    return open_sequence(folder), load_ground_truth(folder)


@pytest.fixture(scope="module")
def frusta(room):
    """Targets of all frames: tsdf, labels, loss weights (N, D, Y, X), semantic channels (N, 1 + K, D, Y, X) and
    the (N, 3, H, W) images."""
    sequence, truth = room
    grid = FrustumGrid(sequence.camera, GRID)
    targets = [frustum_ground_truth(grid, truth.scene, sequence[i].T_world_cam, DEVICE) for i in range(FRAMES)]
    tsdf = torch.stack([t.tsdf for t in targets])
    labels = torch.stack([t.labels for t in targets])
    images = torch.stack([torch.as_tensor(sequence[i].color).permute(2, 0, 1) for i in range(FRAMES)]).float() / 255
    return {"tsdf": tsdf, "labels": labels, "weights": loss_shaping_weights(tsdf, SHAPING), "images": images,
            "channels": semantic_tsdf_channels(tsdf, labels, AUTOENCODER.num_classes)}


@pytest.fixture(scope="module")
def trained_autoencoder(frusta):
    """The autoencoder after 500 steps on random 16^3 crops of the training frusta (about 15 s on one thread)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = BlockAutoencoder(AUTOENCODER)
    steps, train = 500, slice(0, TRAIN_FRAMES)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-2, total_steps=steps, pct_start=0.15)
    grids = [frusta[name][train] for name in ("channels", "tsdf", "labels", "weights")]
    for _ in range(steps):
        channels, tsdf, labels, weights = random_block_crops(grids, 16, 4, AUTOENCODER.block_size, generator)
        losses = shaped_losses(model(channels), tsdf, labels, weights, SHAPING)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        schedule.step()
    return model.eval()


def surface_scores(prediction: dict, tsdf: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Over the surface bands (visible and occluded) of the frusta: the mean absolute TSDF error in metres; the
    TSDF sign accuracy of the cells at least a quarter of the truncation off the surface, balanced (the mean of the
    accuracies on free and on solid cells, so a constant sign scores 0.5); the class accuracy."""
    regions = frustum_regions(tsdf, SHAPING)
    surface = regions["visible_surface"] | regions["occluded_surface"]
    error = (prediction["tsdf"] - tsdf).abs()[surface].mean().item() * GRID.truncation
    clear = surface & (tsdf.abs() >= 0.25)
    free, predicted_free = tsdf > 0, prediction["tsdf"] > 0
    sign = 0.5 * (predicted_free[clear & free].float().mean() + (~predicted_free)[clear & ~free].float().mean())
    labeled = surface & (labels >= 0)
    classes = (prediction["class_logits"].argmax(dim=1) == labels)[labeled].float().mean()
    return {"error_m": error, "sign": sign.item(), "classes": classes.item()}


def test_frustum_cells_project_to_their_pixels_and_depths():
    camera = PinholeCamera(fx=130.0, fy=140.0, cx=81.0, cy=58.5, width=160, height=120)
    grid = FrustumGrid(camera, FrustumGridConfig(cells_x=20, cells_y=10, cells_depth=7, near=0.5, far=4.0))
    centers = grid.cell_centers_cam(DEVICE, torch.float64)
    assert centers.shape == (7, 10, 20, 3)
    uv, z = camera.project(centers)
    # cell x covers the 8 image columns [8 x - 0.5, 8 x + 7.5], row y the 12 rows [12 y - 0.5, 12 y + 11.5]
    expected_u = 8.0 * np.arange(20) + 3.5
    expected_v = 12.0 * np.arange(10) + 5.5
    np.testing.assert_allclose(uv[..., 0].numpy(), np.broadcast_to(expected_u, (7, 10, 20)), atol=1e-9)
    np.testing.assert_allclose(uv[..., 1].numpy(), np.broadcast_to(expected_v[:, None], (7, 10, 20)), atol=1e-9)
    expected_z = 0.5 + 0.5 * (np.arange(7) + 0.5)  # 3.5 m in 7 cells of 0.5 m
    np.testing.assert_allclose(z.numpy(), np.broadcast_to(expected_z[:, None, None], (7, 10, 20)), atol=1e-12)
    # world centres are the camera-frame centres moved by the pose
    angle = 0.7
    T_world_cam = np.eye(4)
    T_world_cam[:3, :3] = [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    T_world_cam[:3, 3] = [1.0, -2.0, 0.5]
    world = grid.cell_centers_world(T_world_cam, DEVICE, torch.float64).numpy()
    back = (world - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]
    np.testing.assert_allclose(back, centers.numpy(), atol=1e-12)


def test_the_mesh_of_a_frustum_lies_where_its_tsdf_crosses_zero_in_the_camera_frame(room):
    sequence, truth = room
    grid = FrustumGrid(sequence.camera, FrustumGridConfig())  # the default 64 x 48 x 64: 7 cm deep cells
    index = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in grid.shape], indexing="ij"), -1)
    torch.testing.assert_close(grid.cell_coordinates_to_cam(index), grid.cell_centers_cam(DEVICE, torch.float64))
    target = frustum_ground_truth(grid, truth.scene, sequence[0].T_world_cam, DEVICE)
    probabilities = torch.nn.functional.one_hot(target.labels.clamp(min=0), 13).permute(3, 0, 1, 2).float()
    mesh = frustum_mesh(grid, target.tsdf, probabilities, load_class_set().names)
    assert mesh.num_triangles > 1000 and set(np.unique(mesh.labels)) <= set(range(13))
    # the vertices lie on the room's surface (linear interpolation between cell centres is off near edges and corners)
    world = mesh.vertices.astype(np.float64) @ sequence[0].T_world_cam[:3, :3].T + sequence[0].T_world_cam[:3, 3]
    distance = np.abs(box_sdf(world, truth.scene.box_arrays).min(axis=1))
    assert np.median(distance) < 0.02 and np.percentile(distance, 95) < 0.08, np.percentile(distance, [50, 95])
    # triangles face the free side: the room's signed distance grows along their normals
    corners = world[mesh.triangles]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(min=1e-12)
    centres = corners.mean(axis=1)
    ahead, behind = (box_sdf(centres + sign * 0.005 * normals, truth.scene.box_arrays).min(axis=1) for sign in (1, -1))
    # (measured 0.96; the rest sits inside thin boxes, where a cell spans both faces)
    assert (ahead > behind).mean() > 0.9


def test_ground_truth_sign_and_classes_follow_the_rendered_depth_and_labels(room):
    sequence, truth = room
    # 160 / 32 = 5 pixels per cell: each cell column's ray passes through a pixel centre; 1.8 cm depth cells
    grid = FrustumGrid(sequence.camera, FrustumGridConfig(cells_x=32, cells_y=24, cells_depth=256, truncation=0.1))
    pixels = grid.cell_pixels(DEVICE).numpy()
    u, v = pixels[..., 0].astype(int), pixels[..., 1].astype(int)
    np.testing.assert_array_equal(pixels, np.stack((u, v), axis=-1))
    z = grid.cell_depths(DEVICE, torch.float64).numpy()[:, None, None]
    ray_length = np.linalg.norm(grid.cell_centers_cam(DEVICE, torch.float64).numpy(), axis=-1) / z
    for index in (0, 3):
        frame = sequence[index]
        target = frustum_ground_truth(grid, truth.scene, frame.T_world_cam, DEVICE)
        tsdf, labels = target.tsdf.numpy(), target.labels.numpy()
        depth = frame.depth[v, u].astype(np.float64)[None]
        assert (depth > 0).all()
        in_front = z < depth - 0.002
        just_behind = (z > depth + 0.002) & (z < depth + 0.03)
        assert in_front.sum() > 50000 and just_behind.sum() > 1000
        # the ray is free up to its hit, and no surface is farther than the hit point along it
        assert (tsdf[in_front] > 0).all()
        bound = (depth + 0.001 - z) * ray_length / grid.config.truncation  # depth files hold millimetres
        assert (tsdf[in_front] <= np.minimum(bound, 1.0)[in_front] + 1e-4).all()
        # just behind the hit the ray is inside the box it hit (boxes thinner than 3 cm excepted)
        assert (tsdf[just_behind] < 0).mean() > 0.95
        # the class of the cells just in front of the hit is the rendered label of the pixel
        near = (z > depth - 0.03) & (z < depth)
        rendered = np.broadcast_to(frame.labels[v, u], tsdf.shape)
        assert (labels[near] == rendered[near]).mean() > 0.98
        assert ((labels >= 0) == (np.abs(tsdf) < 1)).all()
    assert set(np.unique(labels[labels >= 0])) <= set(range(load_class_set().num_classes))


def test_loss_shaping_regions_on_a_wall_with_a_hidden_cavity():
    # a free 16^3 frustum, a solid slab at depths 4-5 covering columns 4-11, and a closed hollow box behind it
    tsdf = torch.ones(1, 16, 16, 16)
    tsdf[:, 4:6, 4:12, 4:12] = -0.5
    tsdf[:, 9:14, 6:11, 6:11] = -0.5
    tsdf[:, 10:13, 7:10, 7:10] = 1.0  # the cavity: free, but closed on all sides
    regions = frustum_regions(tsdf, SHAPING)
    masks = torch.stack([regions[name] for name in ("visible_surface", "visible_free", "occluded_surface",
                                                    "occluded_free", "unreachable")])
    assert (masks.sum(dim=0) == 1).all(), "the regions partition the frustum"
    assert regions["visible_surface"][0, 4:6, 4:12, 4:12].all()
    assert regions["visible_free"][0, :4].all() and regions["visible_free"][0, :, :4].all()
    assert regions["occluded_free"][0, 6:9, 5:11, 5:11].all()
    assert regions["occluded_surface"][0, 9, 6:11, 6:11].all(), "the hidden box's front face, reached around the slab"
    assert regions["unreachable"][0, 10:13, 7:10, 7:10].all(), "the closed cavity"
    # around the slab's edge the hidden free space is one step from the visible one, in its middle farther
    assert regions["free_steps"][0, 6, 8, 4] == 1 and regions["free_steps"][0, 6, 8, 7] == 4
    weights = loss_shaping_weights(tsdf, SHAPING)[0]
    assert weights[4, 8, 8] == SHAPING.visible_surface and weights[9, 8, 8] == SHAPING.occluded_surface
    assert weights[0, 0, 0] == SHAPING.visible_free and weights[11, 8, 8] == SHAPING.unreachable
    assert weights[6, 8, 4] == SHAPING.occluded_free_near
    assert SHAPING.occluded_free_far < weights[6, 8, 7] < SHAPING.occluded_free_near


def test_loss_shaping_of_a_room_keeps_the_space_behind_its_walls_unreachable(room):
    sequence, truth = room
    grid = FrustumGrid(sequence.camera, FrustumGridConfig())  # the default 64 x 48 x 64, 7 cm deep cells
    frame = sequence[0]
    tsdf = frustum_ground_truth(grid, truth.scene, frame.T_world_cam, DEVICE).tsdf[None]
    regions = frustum_regions(tsdf, SHAPING)
    centers = grid.cell_centers_world(frame.T_world_cam, DEVICE, torch.float64).numpy()
    low, high = truth.scene.interior_bounds
    outside = torch.as_tensor(~((centers > low - 0.2) & (centers < high + 0.2)).all(axis=-1))[None]  # past walls
    assert outside.float().mean() > 0.1, "the far plane lies beyond the walls"
    # no free path from the camera crosses a 12 cm wall: beyond the walls' truncation bands nothing is reachable
    assert not (regions["visible_free"] | regions["occluded_free"])[outside].any()
    assert regions["unreachable"][outside & (tsdf >= 1)].all()
    assert (regions["visible_surface"] | regions["occluded_surface"]).float().mean() > 0.05


def test_autoencoder_round_trips_the_semantic_tsdf_of_seen_and_unseen_views(frusta, trained_autoencoder):
    model, tsdf, labels = trained_autoencoder, frusta["tsdf"], frusta["labels"]
    compression = AUTOENCODER.input_channels * AUTOENCODER.block_size ** 3 / AUTOENCODER.latent_channels
    assert compression == 56.0
    with torch.no_grad():
        prediction = model(frusta["channels"])
        untrained = BlockAutoencoder(AUTOENCODER)(frusta["channels"])
    assert prediction["latent"].shape == (FRAMES, AUTOENCODER.latent_channels, 8, 6, 8)
    seen = surface_scores({k: v[:TRAIN_FRAMES] for k, v in prediction.items()}, tsdf[:TRAIN_FRAMES],
                          labels[:TRAIN_FRAMES])
    unseen = surface_scores({k: v[TRAIN_FRAMES:] for k, v in prediction.items()}, tsdf[TRAIN_FRAMES:],
                            labels[TRAIN_FRAMES:])
    before = surface_scores(untrained, tsdf, labels)
    regions = frustum_regions(tsdf, SHAPING)
    labeled = (regions["visible_surface"] | regions["occluded_surface"]) & (labels >= 0)
    most_frequent_class = torch.bincount(labels[labeled]).max().item() / labeled.sum().item()
    # measured: seen 3.4 cm, sign 0.98, classes 0.94; unseen 6.9 cm, sign 0.73, classes 0.79; untrained 23 cm,
    # sign 0.48, classes 0.04; most frequent class 0.28.
    # Round trip of the frusta it learned from: within 5 cm, signs and classes right
    assert seen["error_m"] < 0.05 and seen["sign"] > 0.9 and seen["classes"] > 0.85, seen
    # views of the room it never saw (4 training frusta are little to generalize from)
    assert unseen["error_m"] < 0.1 and unseen["classes"] > max(0.7, most_frequent_class + 0.3), unseen
    assert before["error_m"] > 0.15 and before["classes"] < 0.3, before


def test_image_to_latent_training_lowers_the_loss_and_leaves_the_decoder_frozen(frusta, trained_autoencoder):
    torch.manual_seed(0)
    net = ImageToLatentNet(ImageToLatentConfig(), GRID, trained_autoencoder.decoder)
    decoder_before = [p.clone() for p in net.decoder.parameters()]
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert len(trainable) < len(list(net.parameters()))
    optimizer = torch.optim.Adam(trainable, lr=2e-3)
    batch = slice(0, TRAIN_FRAMES)
    images, tsdf, labels, weights = (frusta[name][batch] for name in ("images", "tsdf", "labels", "weights"))

    def loss() -> dict:
        return shaped_losses(net(images), tsdf, labels, weights, SHAPING)

    with torch.no_grad():
        first = loss()
    for _ in range(30):
        losses = loss()
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    with torch.no_grad():
        prediction = net(images)
        last = shaped_losses(prediction, tsdf, labels, weights, SHAPING)
    assert prediction["latent"].shape == (TRAIN_FRAMES, AUTOENCODER.latent_channels, 8, 6, 8)
    assert prediction["tsdf"].shape == tsdf.shape and prediction["class_logits"].shape == (TRAIN_FRAMES, 13, 32, 24, 32)
    assert last["loss"] < 0.7 * first["loss"], (first, last)
    assert last["loss/tsdf"] < first["loss/tsdf"] and last["loss/class"] < first["loss/class"]
    for before, after in zip(decoder_before, net.decoder.parameters()):
        assert torch.equal(before, after)


def test_wrong_shapes_and_intrinsics_raise_clear_errors():
    with pytest.raises(ValueError, match="principal point"):  # 640x480 intrinsics on a 160x120 image
        FrustumGrid(PinholeCamera(525.0, 525.0, 319.5, 239.5, 160, 120), GRID)
    with pytest.raises(ValueError, match="far"):
        FrustumGridConfig(near=2.0, far=1.0)
    with pytest.raises(ValueError, match="power of two"):
        BlockAutoencoderConfig(block_size=6)
    with pytest.raises(ValueError, match="T_world_cam"):
        FrustumGrid(CAMERA, GRID).cell_centers_world(np.diag([1.0, 2.0, 1.0, 1.0]), DEVICE)
    model = BlockAutoencoder(AUTOENCODER)
    with pytest.raises(ValueError, match="multiples of the block size"):
        model(torch.zeros(1, AUTOENCODER.input_channels, 8, 8, 10))
    with pytest.raises(ValueError, match=r"\(B, 14, D, Y, X\)"):
        model(torch.zeros(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="multiples of the block size"):
        ImageToLatentNet(ImageToLatentConfig(), FrustumGridConfig(cells_x=30), model.decoder)
    net = ImageToLatentNet(ImageToLatentConfig(extra_channels=3), GRID, model.decoder)
    with pytest.raises(ValueError, match=r"\(B, 6, H, W\)"):
        net(torch.zeros(1, 3, 120, 160))
    with pytest.raises(ValueError, match="too small"):
        net(torch.zeros(1, 6, 60, 80))
    with pytest.raises(ValueError, match="must all be"):
        shaped_losses({"tsdf": torch.zeros(1, 4, 4, 4), "class_logits": torch.zeros(1, 13, 4, 4, 4)},
                      torch.zeros(1, 4, 4, 8), torch.zeros(1, 4, 4, 8, dtype=torch.int64), torch.ones(1, 4, 4, 8),
                      SHAPING)


def test_an_image_of_a_narrower_camera_is_resampled_to_the_trained_view(room, tmp_path):
    """The room's first view rendered by a camera 12 % longer in focal length (7-Scenes' against the synthetic one)
    seen through the trained camera matches the trained camera's own rendering where it covers the view."""
    sequence, _ = room
    narrow = PinholeCamera(CAMERA.fx * 1.12, CAMERA.fy * 1.12, CAMERA.cx + 3, CAMERA.cy - 2, 160, 120)
    other = open_sequence(write_synthetic_scene(tmp_path / "narrow", seed=SEED, num_frames=1, camera=narrow))[0]
    same = network_view(sequence[0].color, CAMERA, CAMERA)
    assert not same.resampled and same.coverage == 1.0
    assert torch.equal((same.image * 255).round().byte(), torch.as_tensor(sequence[0].color).permute(2, 0, 1))
    view = network_view(other.color, narrow, CAMERA)
    assert view.resampled and 0.7 < view.coverage < 0.85
    truth = torch.as_tensor(sequence[0].color).permute(2, 0, 1).float() / 255
    error = (view.image - truth).abs().mean(dim=0)
    plain = (torch.as_tensor(other.color).permute(2, 0, 1).float() / 255 - truth).abs().mean(dim=0)
    # the resampled view is off by interpolation only; the unresampled image of the other camera by its zoom
    assert error[view.covered].mean() < 0.4 * plain[view.covered].mean(), (error[view.covered].mean(),
                                                                           plain[view.covered].mean())
    with pytest.raises(ValueError, match="covers 4[0-9]% of the view"):
        network_view(other.color, PinholeCamera(CAMERA.fx * 1.5, CAMERA.fy * 1.5, CAMERA.cx, CAMERA.cy, 160, 120),
                     CAMERA)
    with pytest.raises(ValueError, match=r"expected a \(120, 160, 3\) color image"):
        network_view(other.color[:60], CAMERA, CAMERA)
