"""SSR's semi-supervision of the single-view model: the soft silhouette IoU loss on known masks, the differentiable
rendering of a frustum TSDF into its own and a neighbouring view, a few semi-supervised steps on two real 7-Scenes
frames through the shipped model, and the gravity head (unit gravity, positive height, checkpoints old and new; the
upright pose it gives)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch.utils.data import default_collate

from support.paths import REPO, SEVEN_SCENES

from semantic_recon_ros.cli import main
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.models import load_checkpoint, save_checkpoint
from semantic_recon_ros.core.models.single_view import (BlockDecoder, FrustumGrid, ImageToLatentNet, render_frustum,
                                                         upright_from_camera)
from semantic_recon_training.single_view.real_depth_evaluation import check_unseen
from semantic_recon_training.single_view.real_views import RealViewPairs, load_real_frames
from semantic_recon_training.single_view.single_view_config import load_single_view_config
from semantic_recon_training.single_view.single_view_data import FrustumPairs
from semantic_recon_training.single_view.single_view_module import SingleViewModule
from semantic_recon_training.single_view.single_view_training import load_fine_tuning_start
from semantic_recon_training.single_view.view_losses import layer_silhouettes, soft_silhouette_iou_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SHIPPED = REPO / "models" / "single_view_default.pt"
RGBD = REPO / "models" / "single_view_rgbd.pt"
SSR_CONFIG = REPO / "semantic_recon_training" / "configs" / "single_view_ssr.yaml"


def test_soft_silhouette_iou_loss_of_known_masks():
    left = torch.zeros(1, 4, 8)
    left[..., :4] = 1  # columns 0-3
    shifted = torch.zeros(1, 4, 8)
    shifted[..., 2:6] = 1  # columns 2-5: 2 of 6 columns of the union overlap
    assert float(soft_silhouette_iou_loss(left, left)) == pytest.approx(0.0)
    assert float(soft_silhouette_iou_loss(left, 1 - left)) == pytest.approx(1.0)
    assert float(soft_silhouette_iou_loss(left, shifted)) == pytest.approx(1 - 2 / 6)
    # soft: P = 0.5 everywhere against the left half; sum P I = 0.5 * 16, sum (P + I - P I) = 16 + 16 - 8
    half = torch.full((1, 4, 8), 0.5)
    assert float(soft_silhouette_iou_loss(half, left)) == pytest.approx(1 - 8 / 24)
    # only counted pixels: the columns 4-7 left out, the shifted mask overlaps 2 of the 4 remaining columns
    counted = torch.zeros(1, 4, 8, dtype=torch.bool)
    counted[..., :4] = True
    assert float(soft_silhouette_iou_loss(left, shifted, counted)) == pytest.approx(1 - 2 / 4)
    empty = torch.zeros(2, 4, 8)
    assert float(soft_silhouette_iou_loss(empty, empty)) == 0.0  # nothing to miss: no loss
    # mean over images: one identical (0), one disjoint (1)
    assert float(soft_silhouette_iou_loss(torch.cat((left, left)), torch.cat((left, 1 - left)))) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(SHIPPED, "cpu", expected_model="single_view")


def test_a_plane_at_two_metres_renders_at_its_depth_in_the_own_and_a_neighbouring_view(shipped):
    _, info = shipped
    grid = FrustumGrid(info.camera, info.config.frustum)
    depths = grid.cell_depths("cpu")
    plane = ((2.0 - depths) / grid.config.truncation).clamp(-1, 1)  # + in front of the plane at z = 2 m
    tsdf = plane[:, None, None].expand(grid.shape)[None].clone().requires_grad_(True)
    camera = info.camera.scaled(80, 60)
    own = render_frustum(tsdf, grid, camera, torch.eye(4)[None])
    assert torch.allclose(own["depth"], torch.full_like(own["depth"], 2.0), atol=0.05)
    assert own["surface_valid"].all()
    assert torch.allclose(own["surface_depth"], torch.full_like(own["depth"], 2.0), atol=0.01)
    assert float(own["silhouette"].detach().min()) > 0.99
    predicted, target = layer_silhouettes(own["accumulated"], own["sample_depths"], own["depth"].detach(),
                                          (1.5, 2.5))
    predicted = predicted.detach()
    assert not target[0].any() and target[1].all()  # the rendered depth's own layers: none nearer than 1.5 m
    assert float(predicted[0].max()) < 0.01 and float(predicted[1].min()) > 0.99  # nothing before 1.5 m, all by 2.5
    own["depth"].mean().backward()
    gradient = tsdf.grad[0].abs().sum(dim=(1, 2))  # per depth cell
    near_plane = (depths - 2.0).abs() < 0.2
    assert float(gradient[near_plane].sum()) > 0
    assert float(gradient[depths > 3.0].sum()) == 0  # hidden behind the plane: the ray never gets there

    back = torch.eye(4)
    back[2, 3] = -0.5  # a neighbour 0.5 m behind camera 0 sees the plane at 2.5 m
    neighbour = render_frustum(tsdf.detach(), grid, camera, back[None])
    centre = neighbour["depth"][0, 20:40, 25:55]
    assert torch.allclose(centre, torch.full_like(centre, 2.5), atol=0.05)
    edge = neighbour["depth"][0, 30, 0]  # its view of the plane reaches beyond camera 0's frustum: the far plane
    assert float(edge) == pytest.approx(grid.config.far, abs=0.01)


@pytest.mark.parametrize("checkpoint", [SHIPPED, RGBD], ids=["image", "rgbd"])
def test_semi_supervised_steps_on_two_real_frames_lower_the_depth_loss(shared_data, checkpoint):
    """Both shipped models, the RGB-D one reading the frames' captured depth as its input."""
    net, info = load_checkpoint(checkpoint, "cpu", expected_model="single_view")
    config = load_single_view_config(SSR_CONFIG)
    config = dataclasses.replace(config, trainer=dataclasses.replace(config.trainer, init_checkpoint=str(checkpoint)),
                                 image_to_latent=info.config.image_to_latent)
    module = SingleViewModule(config.to_dict(), list(info.class_names), dataclasses.asdict(info.camera), "image")
    load_fine_tuning_start(module.model, config)
    # two validation frames of the semi-supervision (the shipped model trained on 0-399)
    frames = load_real_frames(SEVEN_SCENES, range(400, 411, 10), info.camera, module.render_camera,
                              config.frustum.near, config.frustum.far, progress=False)
    views = RealViewPairs(frames, module.grid, module.render_camera, neighbour_offset=1)
    batch = default_collate([views[0], views[1]])
    assert float(batch["depth_valid"].float().mean()) > 0.5 and float(batch["neighbour_valid"].float().mean()) > 0.3
    assert torch.allclose(batch["T_cam0_neighbour"][0] @ batch["T_cam0_neighbour"][1], torch.eye(4), atol=1e-4)
    optimizer = torch.optim.Adam([p for p in module.model.parameters() if p.requires_grad], lr=1e-3)
    history = []
    for _ in range(6):
        losses = module.real_view_losses(batch)
        assert set(losses) == {"own_depth", "own_silhouette", "neighbour_depth", "neighbour_silhouette",
                               "real_gravity"}
        total = losses["own_depth"] + losses["neighbour_depth"] + losses["own_silhouette"]
        history.append({name: float(value.detach()) for name, value in losses.items()})
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    with torch.no_grad():
        first, last = history[0], module.real_view_losses(batch)
    if not info.config.image_to_latent.depth_input:
        # measured: 0.180 -> 0.148 m (the shipped model fits these frames already: from the synthetic-only model the
        # steps took off more than 20 %)
        assert float(last["own_depth"]) < 0.9 * first["own_depth"], history
        assert float(last["neighbour_depth"]) < first["neighbour_depth"], history
    else:
        # reading the captured depth, the RGB-D model starts where the image model's steps do not reach (measured:
        # 0.094 m in the own view, 0.090 m in the neighbour's), and the steps keep it there
        assert first["own_depth"] < 0.12 and first["neighbour_depth"] < 0.12, history
        assert float(last["own_depth"]) < 1.05 * first["own_depth"], history


def test_the_gravity_head_predicts_a_unit_direction_and_old_and_new_checkpoints_load(shared_data, shipped, tmp_path):
    net, info = shipped
    assert info.config.image_to_latent.gravity_head  # the shipped model has the head
    with torch.no_grad():
        output = net(torch.rand(3, 3, 120, 160))
    assert output["gravity_cam"].shape == (3, 3) and output["camera_height"].shape == (3,)
    assert torch.allclose(output["gravity_cam"].norm(dim=1), torch.ones(3), atol=1e-5)
    assert bool((output["camera_height"] > 0).all())
    # a checkpoint from before the head (the same network without it) still loads, and predicts no gravity
    config = dataclasses.replace(info.config.image_to_latent, gravity_head=False)
    headless = ImageToLatentNet(config, info.config.frustum, BlockDecoder(info.config.autoencoder))
    missing, unexpected = headless.load_state_dict(net.state_dict(), strict=False)
    assert not missing and unexpected and all(name.startswith("gravity.") for name in unexpected)
    path = tmp_path / "without_gravity.pt"
    save_checkpoint(path, headless, list(load_class_set().names), camera=info.camera)
    old, old_info = load_checkpoint(path, "cpu", expected_model="single_view")  # weights_only=True inside
    image = torch.rand(1, 3, 120, 160)
    with torch.no_grad():
        assert not old_info.config.image_to_latent.gravity_head and "gravity_cam" not in old(image)
        assert torch.allclose(old(image)["tsdf"], net(image)["tsdf"], atol=1e-5)

    # the single-view command states them, and the upright pose they give, for a real 7-Scenes image
    out = tmp_path / "out"
    assert main(["single-view", str(SEVEN_SCENES / "frame-000000.color.jpg"), "--out", str(out),
                 "--intrinsics", "585", "585", "320", "240"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    gravity = torch.tensor(summary["gravity_cam"])
    assert float(gravity.norm()) == pytest.approx(1.0, abs=1e-3) and summary["camera_height"] > 0
    T = torch.tensor(summary["T_upright_cam"], dtype=torch.float64)
    assert torch.allclose(T[:3, :3] @ gravity.double(), torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64),
                          atol=1e-3)
    assert float(T[2, 3]) == pytest.approx(summary["camera_height"], abs=1e-3)


def test_a_mirrored_synthetic_pair_mirrors_its_gravity_direction():
    pairs = {"images": torch.zeros(1, 3, 4, 6, dtype=torch.uint8), "tsdf": torch.zeros(1, 2, 2, 3),
             "labels": torch.zeros(1, 2, 2, 3, dtype=torch.int8), "weights": torch.ones(1, 2, 2, 3),
             "gravity_cam": torch.tensor([[0.3, 0.9, 0.3]]), "camera_height": torch.tensor([1.4])}
    seen = {tuple(FrustumPairs(pairs, flip=True)[0]["gravity_cam"].tolist()) for _ in range(40)}
    assert {tuple(round(v, 3) for v in g) for g in seen} == {(0.3, 0.9, 0.3), (-0.3, 0.9, 0.3)}
    assert float(FrustumPairs(pairs)[0]["camera_height"]) == pytest.approx(1.4)


def test_the_upright_pose_puts_gravity_down_and_the_camera_at_its_height():
    pitch = torch.deg2rad(torch.tensor(20.0))  # a camera looking 20 degrees down: gravity has a forward component
    gravity = torch.stack((torch.tensor(0.0), torch.cos(pitch), torch.sin(pitch)))
    T = upright_from_camera(gravity, 1.4)
    assert torch.allclose(T[:3, :3] @ gravity.double(), torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64),
                          atol=1e-9)
    assert torch.allclose(T[:3, :3] @ T[:3, :3].T, torch.eye(3, dtype=torch.float64), atol=1e-9)
    assert float(torch.linalg.det(T[:3, :3])) == pytest.approx(1.0)
    assert T[:3, 3].tolist() == pytest.approx([0.0, 0.0, 1.4])
    forward = T[:3, :3] @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)  # the optical axis looks 20 deg down
    assert float(torch.rad2deg(torch.asin(-forward[2]))) == pytest.approx(20.0, abs=1e-6)


def test_real_depth_evaluation_refuses_frames_the_checkpoint_trained_on():
    record = {"scenes": [{"scene": "7scenes-redkitchen", "split": "train", "path": "../shared/data/7scenes-redkitchen",
                          "frame_stride": 1, "max_frames": 400}], "complete": True}
    check_unseen(record, SEVEN_SCENES, range(400, 500), SHIPPED)  # the validation frames: never trained on
    with pytest.raises(ValueError, match=r"trained on frames 390-399 of 7scenes-redkitchen"):
        check_unseen(record, SEVEN_SCENES, range(390, 410), SHIPPED)
