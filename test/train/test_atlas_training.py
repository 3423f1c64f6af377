"""Atlas training on real 7-Scenes frames: feature-volume chunks with depth-only targets, the frozen feature sources
sharing one cache, a few steps of ``atlas-fit`` lowering the loss, and ``atlas-export`` writing a checkpoint that
loads as the node loads it.

One module-scoped extraction (every 25th of the first 200 frames, 32^3 chunks) and one short run.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from support.paths import REPO, SEGMENTER, SEVEN_SCENES

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.models import AtlasNetConfig, load_checkpoint
from semantic_recon_ros.core.rgb_only_features import ImageFeatureExtractor
from semantic_recon_ros.core.segmentation import DeepLabADE20K
from semantic_recon_training.__main__ import main as train_main
from semantic_recon_training.atlas.atlas_config import load_atlas_config
from semantic_recon_training.atlas.atlas_dataset import AtlasChunkDataset
from semantic_recon_training.atlas.atlas_extraction import moments_from_stored, source_channels, stored_features
from semantic_recon_training.atlas.atlas_losses import atlas_losses, nearest_surface_target
from semantic_recon_training.atlas.atlas_module import AtlasModule
from semantic_recon_training.atlas.atlas_scenes import atlas_cache_dir, prepare_atlas_scenes
from semantic_recon_training.atlas.feature_diagnostics import REGIONS, diagnose_cache, diagnostics_table, side_cue

pytestmark = pytest.mark.usefixtures("one_torch_thread")
STEPS = 40
CLASSES = load_class_set().names


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("atlas")
    values = {
        "base": str(REPO / "semantic_recon_training" / "configs" / "atlas.yaml"),
        "data": {"root": str(root / "data"), "synthetic_seeds": [], "val_scenes": [],
                 "segmenter_dir": str(SEGMENTER),
                 "sequences": [{"name": "kitchen", "path": str(SEVEN_SCENES),
                                "extraction": {"frame_stride": 25, "max_frames": 8}}]},
        "extraction": {"chunk_size": 32, "chunk_stride": 16, "min_surface_voxels": 200, "views_per_chunk": 2,
                       "view_downscale": 4},
        "optimizer": {"lr": 0.003, "warmup_steps": 2},
        "trainer": {"output_dir": str(root / "run"), "max_steps": STEPS, "max_time": "", "batch_size": 2,
                    "num_workers": 0, "progress_bar": False, "checkpoint_every_n_steps": STEPS},
    }
    path = root / "atlas_test.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def config(config_file):
    config = load_atlas_config(config_file)
    prepare_atlas_scenes(config, progress=False)
    return config


def test_extraction_back_projects_features_and_fuses_depth_targets(config):
    cache = atlas_cache_dir(config, "kitchen")
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["frame_indices"] == list(range(0, 200, 25))
    assert len(manifest["chunks"]) > 5
    dataset = AtlasChunkDataset([cache], "deeplab")
    image_channels = 6 + len(CLASSES)
    seen_fraction, labeled_fraction = [], []
    for index in range(len(dataset)):
        sample = dataset[index]
        features, seen = sample["features"], sample["seen"][0]
        assert features.shape == (2 * image_channels, 32, 32, 32) and torch.isfinite(features).all()
        assert (features[:, ~seen] == 0).all()  # nothing where no ray went
        mean, square = features[:image_channels, seen], features[image_channels:, seen]
        assert (mean[:3] >= 0).all() and (mean[:3] <= 1).all()  # RGB
        assert (square - mean * mean).min() > -1e-6  # the means of f and f*f of the same views
        observed = sample["target_observed"][0]
        labels = sample["target_labels"]
        assert observed[labels >= 0].all()  # fused labels only where depth was fused
        surface = observed & (sample["target_tsdf"][0].abs() < 0.25)
        assert int(surface.sum()) >= 200
        seen_fraction.append(float(seen[surface].float().mean()))
        labeled_fraction.append(float((labels[surface] >= 0).float().mean()))
        assert sample["view_color"].shape == (2, 3, 120, 160)
    assert np.mean(seen_fraction) > 0.8  # most target surface lies within 3 m of some camera
    assert np.mean(labeled_fraction) > 0.5


def test_the_cache_keeps_the_small_spread_of_features_on_a_surface():
    """Views of a surface agree to a few thousandths (variance ~1e-5 around a mean ~0.6): stored as float16 means of
    f and f*f, E[f*f] - E[f]^2 would cancel to noise (float16 resolves 0.36 to ~2e-4); the cache keeps the
    variance itself."""
    torch.manual_seed(0)
    views = 0.6 + 0.003 * torch.randn(40, 2, 1000)  # 40 views of 2 channels at 1000 voxels
    moments = torch.cat((views.mean(0), (views * views).mean(0)))
    variance = moments[2:] - moments[:2] ** 2  # what the float32 feature volume holds
    assert variance.min() > 0
    stored = moments_from_stored(stored_features(moments))
    recovered = stored[2:] - stored[:2] ** 2
    assert torch.allclose(recovered, variance, rtol=1e-2, atol=5e-8)  # float16 variance, float32 moments
    naive = moments.half().float()
    assert ((naive[2:] - naive[:2] ** 2) - variance).abs().mean() > variance.mean()  # what float16 moments keep


def test_diagnostics_find_the_views_agreeing_on_the_surface(config, config_file, capsys):
    """On real 7-Scenes frames the views agree more on the depth-fused surface than in the free space in front of
    it (the spread the network reads); ``atlas-diagnose`` prints the table, and refuses scenes the config lacks."""
    result = diagnose_cache(atlas_cache_dir(config, "kitchen"))
    spread = result["log_spread"]
    assert all(result["voxels"][region] > 0 for region in REGIONS)
    assert spread["surface"] < spread["front band"] < spread["free"]
    assert 0.0 <= result["side_cue"] <= 1.0
    row = f"| kitchen | {result['chunks']} | {spread['surface']:.2f} |"
    assert diagnostics_table({"kitchen": result}).splitlines()[2].startswith(row)
    capsys.readouterr()
    assert train_main(["atlas-diagnose", "--config", str(config_file)]) == 0
    assert row in capsys.readouterr().out
    assert train_main(["atlas-diagnose", "--config", str(config_file), "--only", "nowhere"]) == 2
    assert "unknown scenes ['nowhere']" in capsys.readouterr().err


def test_the_side_cue_tells_in_front_from_behind_where_the_spread_has_a_minimum_on_the_surface():
    """A surface at x = 8 seen from +x: the spread grows with the distance from it on both sides; the cue (direction
    toward the cameras . gradient) is positive in front (x > 8) and negative behind."""
    x = torch.arange(16.0)[:, None, None].expand(16, 4, 4)
    log_spread = -5 + 0.3 * (x - 8).abs()
    direction = torch.zeros(3, 16, 4, 4)
    direction[0] = 1.0
    cue = side_cue(log_spread, direction)
    assert (cue[9:15] > 0).all() and (cue[1:8] < 0).all() and (cue[[0, 15]] == 0).all()


def _target_at(dataset: AtlasChunkDataset, point: np.ndarray) -> list[tuple[float, bool]]:
    """(target TSDF, observed) at the voxel nearest to world ``point`` in every chunk that holds it."""
    found = []
    for index in range(len(dataset)):
        sample = dataset[index]
        voxel = np.round((point - sample["origin"].numpy()) / 0.04).astype(int)
        if ((voxel >= 0) & (voxel < 32)).all():
            found.append((float(sample["target_tsdf"][0][tuple(voxel)]),
                          bool(sample["target_observed"][0][tuple(voxel)])))
    return found


def test_space_targets_are_free_in_front_of_the_depth_and_occluded_behind_it(config, seven_scenes):
    """Along the central ray of frame 0: half way to the observed surface the target is +1 (free space), 0.5 m
    behind it -1 (occluded), both outside the truncation band that the fused TSDF alone would supervise."""
    dataset = AtlasChunkDataset([atlas_cache_dir(config, "kitchen")], "deeplab")
    frame = seven_scenes[0]
    depth = float(frame.depth[240, 320])
    ray = np.linalg.solve(frame.camera.K, np.array([320.0, 240.0, 1.0]))
    to_world = lambda z: (frame.T_world_cam @ np.append(ray * z, 1.0))[:3]  # noqa: E731
    free, behind = _target_at(dataset, to_world(0.5 * depth)), _target_at(dataset, to_world(depth + 0.5))
    assert depth > 0.8 and free and behind
    assert all(value == 1.0 and observed for value, observed in free)
    assert all(value == -1.0 and observed for value, observed in behind)


def test_the_color_source_reads_a_subset_of_the_cached_channels(seven_scenes):
    """One cache serves both frozen sources: the RGB channels of the DeepLab features are the color source's."""
    frame = seven_scenes[0]
    segmenter = DeepLabADE20K(SEGMENTER, CLASSES, num_threads=1)
    view = (frame.color, frame.camera, frame.T_world_cam)
    deeplab = ImageFeatureExtractor(AtlasNetConfig(feature_source="deeplab"), segmenter)(*view)
    color = ImageFeatureExtractor(AtlasNetConfig(feature_source="color"))(*view)
    assert deeplab.shape == (120, 160, 38) and color.shape == (120, 160, 12)
    torch.testing.assert_close(deeplab[..., source_channels("color", len(CLASSES))], color)
    directions = deeplab[..., 3:6]
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(120, 160))
    # the central pixel looks along the camera's optical axis: its direction points back along it
    optical_axis = torch.as_tensor(frame.T_world_cam[:3, 2], dtype=torch.float32)
    assert float(directions[60, 80] @ optical_axis) < -0.999
    probabilities = deeplab[..., 6:6 + len(CLASSES)]
    assert float(probabilities.sum(dim=-1).max()) <= 1.0 + 1e-4 and float(probabilities.max()) > 0.5


def _mean_loss(module: AtlasModule, dataset: AtlasChunkDataset) -> float:
    """The mean loss over ``dataset`` of a copy in training mode (batch statistics: a short run leaves BatchNorm's
    running ones unsettled)."""
    module = copy.deepcopy(module).train()
    losses = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=4):
            losses.append(float(atlas_losses(module(batch), batch, module.run_config.losses)[0]))
    return float(np.mean(losses))


def test_fit_lowers_the_loss_and_export_loads_as_the_node_loads(config, config_file, tmp_path):
    dataset = AtlasChunkDataset([atlas_cache_dir(config, "kitchen")], "deeplab")
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    torch.manual_seed(0)
    untrained = AtlasModule(config.to_dict(), list(CLASSES), *dataset.map_settings())
    assert train_main(["atlas-fit", "--config", str(config_file)]) == 0
    checkpoint = torch.load(f"{config.trainer.output_dir}/checkpoints/last.ckpt", map_location="cpu",
                            weights_only=False)
    assert checkpoint["global_step"] == STEPS
    trained = AtlasModule(config.to_dict(), list(CLASSES), *dataset.map_settings())
    trained.load_state_dict(checkpoint["state_dict"])
    assert _mean_loss(trained, dataset) < 0.85 * _mean_loss(untrained, dataset)

    out = tmp_path / "atlas.pt"
    assert train_main(["atlas-export", "--config", str(config_file), "--out", str(out)]) == 0
    network, info = load_checkpoint(out, "cpu", expected_class_names=CLASSES, expected_voxel_size=0.04,
                                    expected_truncation=0.16)
    assert info.model == "atlas" and info.config.feature_source == "deeplab"
    assert [scene["scene"] for scene in info.training["scenes"]] == ["kitchen"]
    sample = dataset[0]
    with torch.no_grad():
        exported = network.reconstruct(sample["features"][None], sample["seen"][None])["tsdf"]
        trained.eval()
        reference = trained(batch)["tsdf"][:1]
    # float16 weights: within 0.02, except where they move a coarse voxel across the 0.99 clamp, which sets its
    # 2x2x2 fine voxels to +-1 in one network and not in the other (measured: 16 of 32768 voxels, 2 coarse ones)
    difference = (exported - reference).abs()
    clamped = (exported.abs() == 1) | (reference.abs() == 1)
    assert float(difference[~clamped].max()) < 0.02
    assert float((difference > 0.02).float().mean()) < 0.002


def test_export_refuses_what_is_not_an_atlas_run(tmp_path, capsys):
    fake = tmp_path / "s4r.ckpt"
    torch.save({"hyper_parameters": {"config": {"model": {"use_color": True}}, "class_names": list(CLASSES),
                                     "voxel_size": 0.04, "truncation": 0.16}, "state_dict": {}}, fake)
    assert train_main(["atlas-export", "--checkpoint", str(fake), "--out", str(tmp_path / "x.pt")]) == 2
    assert "not an AtlasModule checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_coarse_targets_keep_every_cell_that_a_surface_crosses_open():
    """A wall at x = 5.5 voxels (truncation 4 voxels): the 8^3 cells it crosses get the value nearest to it, so the
    coarsest scale learns to keep them for the finer scales; unknown voxels never set a cell's target."""
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 16, 1, 1).expand(1, 1, 16, 16, 16)
    target = ((x - 5.5) / 4).clamp(-1, 1)
    known = torch.ones_like(target, dtype=torch.bool)
    coarse, coarse_known = nearest_surface_target(target, known, 8)
    assert coarse.shape == (1, 1, 2, 2, 2) and coarse_known.all()
    assert torch.allclose(coarse[0, 0, 0], torch.full((2, 2), -0.125))  # voxel 5: 0.5 voxel before the wall
    assert torch.allclose(coarse[0, 0, 1], torch.full((2, 2), 0.625))  # voxel 8: 2.5 voxels after it
    assert torch.allclose(target[0, 0, ::8, ::8, ::8][0], -torch.ones(2, 2))  # a corner sample closes the wall's cell
    known[:, :, 4:8] = False  # the voxels next to the wall unseen: the nearest known value is voxel 3's
    coarse, _ = nearest_surface_target(target, known, 8)
    assert torch.allclose(coarse[0, 0, 0], torch.full((2, 2), -0.625))


def test_random_crops_move_the_origin_with_the_voxels(config):
    """Crops at random offsets (the chunk grid is fixed in the world; the network must not learn its borders): every
    crop is the chunk's voxels at some offset, and its origin is that offset's world position."""
    cache = [atlas_cache_dir(config, "kitchen")]
    whole, cropped = AtlasChunkDataset(cache, "color"), AtlasChunkDataset(cache, "color", crop_size=16)
    full = whole[0]
    offsets = set()
    torch.manual_seed(0)
    for _ in range(6):
        sample = cropped[0]
        offset = torch.round((sample["origin"] - full["origin"]) / 0.04).long()
        assert ((offset >= 0) & (offset <= 16)).all()
        box = tuple(slice(int(o), int(o) + 16) for o in offset)
        assert torch.equal(sample["features"], full["features"][(slice(None), *box)])
        assert torch.equal(sample["target_tsdf"][0], full["target_tsdf"][0][box])
        assert torch.equal(sample["target_labels"], full["target_labels"][box])
        offsets.add(tuple(offset.tolist()))
    assert len(offsets) > 1
