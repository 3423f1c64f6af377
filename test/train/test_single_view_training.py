"""Single-view training (SemSVR) on a tiny synthetic set: two rooms of 3 frames (160x120) rendered and cut into
(image, frustum target) pairs, both stages of ``single-view-fit`` lowering their shaped loss, ``--resume``,
``single-view-export`` writing a plain 'single_view' checkpoint that the map engines refuse clearly,
``single-view-evaluate`` scoring it, and the held-out rooms 900-909 refused by every config. A 32 x 24 x 32
frustum grid with 4^3-cell blocks keeps it small."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from support.paths import REPO

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.completion import CompletionEngine
from semantic_recon_ros.core.config import CompletionConfig, VolumeConfig
from semantic_recon_ros.core.map.tsdf_volume import SemanticTSDFVolume
from semantic_recon_ros.core.models import load_checkpoint
from semantic_recon_ros.core.models.single_view import ImageToLatentNet
from semantic_recon_ros.core.rgb_only_completion import load_atlas_network
from semantic_recon_ros.core.synthetic import DEFAULT_CAMERA
from semantic_recon_training.__main__ import main as train_main
from semantic_recon_training.single_view.single_view_config import load_single_view_config
from semantic_recon_training.single_view.single_view_data import (HOLE_CELL, MAX_INVALID_BORDER, degrade_depth,
                                                                   load_pairs)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CONFIG = REPO / "semantic_recon_training" / "configs" / "single_view.yaml"
AUTOENCODER_STEPS = 120
STEPS = 60  # of the image stage
CLASSES = load_class_set().names


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("single_view")
    trainer = {"max_time": "", "batch_size": 2, "num_workers": 0, "progress_bar": False, "log_every_n_steps": 1,
               "val_every_n_steps": STEPS, "limit_val_batches": 1, "checkpoint_every_n_steps": STEPS,
               "max_steps": STEPS}
    values = {
        "base": str(CONFIG),
        "data": {"root": str(root / "data"), "synthetic_seeds": [5, 6, 31], "synthetic_frames": 3,
                 "val_scenes": ["synthetic_0031"]},
        "extraction": {"frame_stride": 1},
        "frustum": {"cells_x": 32, "cells_y": 24, "cells_depth": 32, "truncation": 0.3},
        "autoencoder": {"block_size": 4, "latent_channels": 16},
        "augmentation": {"crop_cells": 16},
        "autoencoder_optimizer": {"lr": 0.01, "warmup_steps": 2},
        "autoencoder_trainer": {**trainer, "output_dir": str(root / "autoencoder"), "batch_size": 4,
                                "max_steps": AUTOENCODER_STEPS, "val_every_n_steps": AUTOENCODER_STEPS,
                                "checkpoint_every_n_steps": AUTOENCODER_STEPS},
        "optimizer": {"lr": 0.005, "warmup_steps": 2},
        "trainer": {**trainer, "output_dir": str(root / "image")},
    }
    path = root / "single_view_test.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def trained(config_file):
    """Extract, fit both stages, export: the config and the exported checkpoint."""
    config = load_single_view_config(config_file)
    assert train_main(["single-view-extract", "--config", str(config_file)]) == 0
    assert train_main(["single-view-fit", "--config", str(config_file)]) == 0
    out = config.data.root_path.parent / "single_view.pt"
    assert train_main(["single-view-export", "--config", str(config_file), "--out", str(out)]) == 0
    return config, out


def logged_losses(output_dir) -> list[float]:
    """train/loss of every logged step of a stage's first run."""
    with open(f"{output_dir}/logs/version_0/metrics.csv") as f:
        return [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]


def test_both_stages_lower_the_shaped_loss_and_the_export_loads_as_a_plain_file(trained):
    config, out = trained
    pairs = load_pairs(config, config.data.train_scenes())
    assert pairs["images"].shape == (6, 3, 120, 160) and pairs["tsdf"].shape == (6, 32, 24, 32)
    assert set(pairs["labels"].unique().tolist()) - {-1} <= set(range(len(CLASSES)))
    assert (pairs["weights"] > 0).all()
    # the image network learns through a decoder of 120 steps, which bounds how far its loss can fall (measured: the
    # autoencoder ends at 0.39 of its first losses, the image network at 0.86)
    for stage, steps, factor in ((config.autoencoder_trainer, AUTOENCODER_STEPS, 0.7), (config.trainer, STEPS, 0.9)):
        losses = logged_losses(stage.output_dir)
        assert len(losses) == steps
        first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
        assert last < factor * first, (stage.output_dir, first, last)
    state = torch.load(out, map_location="cpu", weights_only=True)  # a plain file
    assert state["model"] == "single_view" and "voxel_size" not in state
    assert {t.dtype for t in state["state_dict"].values()} == {torch.float16}
    network, info = load_checkpoint(out, "cpu", expected_model="single_view")
    assert isinstance(network, ImageToLatentNet) and info.camera == DEFAULT_CAMERA.scaled(160, 120)
    assert info.config == config.model and info.class_names == tuple(CLASSES)
    assert {(s["scene"], s["split"]) for s in info.training["scenes"]} == {
        ("synthetic_0005", "train"), ("synthetic_0006", "train"), ("synthetic_0031", "validation")}
    # the trained decoder is the stage-1 decoder, unchanged by stage 2
    decoder = torch.load(f"{config.autoencoder_trainer.output_dir}/decoder.pt", weights_only=True)
    for name, tensor in network.decoder.state_dict().items():
        torch.testing.assert_close(tensor, decoder[name].float(), rtol=1e-3, atol=1e-3)


def test_the_map_engines_refuse_a_single_view_checkpoint_and_the_command_other_kinds(trained, tmp_path):
    _, out = trained
    volume = SemanticTSDFVolume(VolumeConfig(), CLASSES, "cpu")
    with pytest.raises(ValueError, match="'single_view' checkpoint .* cannot complete or reconstruct a map"):
        CompletionEngine.from_checkpoint(out, volume, CompletionConfig())
    with pytest.raises(ValueError, match="'single_view' checkpoint"):
        load_atlas_network(out, volume.config, CLASSES, "cpu")
    with pytest.raises(ValueError, match="a 'single_view' checkpoint .*, not a 's4r' one"):
        load_checkpoint(out, "cpu", expected_model="s4r")
    with pytest.raises(ValueError, match=r"a 's4r' checkpoint \(completes a depth-fused RGB-D map\), not a "
                                         "'single_view' one"):
        load_checkpoint(REPO / "models" / "default.pt", "cpu", expected_model="single_view")
    state = torch.load(out, weights_only=True)
    broken = tmp_path / "broken.pt"
    torch.save({**state, "camera": {"fx": 1.0}}, broken)
    with pytest.raises(ValueError, match="camera must have the keys"):
        load_checkpoint(broken, "cpu")
    torch.save({**state, "config": {**state["config"], "frustum": {**state["config"]["frustum"], "cells_x": 30}}},
               broken)
    with pytest.raises(ValueError, match="multiples of the block size"):
        load_checkpoint(broken, "cpu")


def test_resume_continues_the_image_stage_and_evaluate_scores_the_validation_room(trained, config_file, capsys):
    config, out = trained
    assert train_main(["single-view-fit", "--config", str(config_file), "--resume"]) == 2
    assert f"already at step {STEPS}" in capsys.readouterr().err
    assert train_main(["single-view-fit", "--config", str(config_file), "--resume", "--max-steps",
                       str(STEPS + 4)]) == 0
    resumed = torch.load(f"{config.trainer.output_dir}/checkpoints/last.ckpt", weights_only=False)
    assert resumed["global_step"] == STEPS + 4
    capsys.readouterr()
    assert train_main(["single-view-evaluate", "--config", str(config_file), "--checkpoint", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["scenes"] == ["synthetic_0031"] and result["frames"] == 3
    for name in ("iou", "precision", "recall", "hidden_recall", "class_accuracy"):
        assert 0.0 <= result[name] <= 1.0, (name, result)


def test_a_depth_network_fine_tunes_from_the_image_network_and_evaluates_with_the_rooms_depth(trained, config_file,
                                                                                                capsys):
    """``image_to_latent.depth_input`` on top of the exported image network: the fine-tune starts from its weights
    (the depth branch fresh), exports a checkpoint that reads depth, and single-view-evaluate feeds it the rooms'
    rendered depth."""
    config, out = trained
    root = config.data.root_path.parent
    path = root / "depth.yaml"
    path.write_text(yaml.safe_dump({"base": str(config_file), "image_to_latent": {"depth_input": True},
                                    "trainer": {"output_dir": str(root / "depth"), "init_checkpoint": str(out),
                                                "max_steps": 8, "val_every_n_steps": 8,
                                                "checkpoint_every_n_steps": 8}}))
    assert train_main(["single-view-fit", "--config", str(path)]) == 0
    assert len(logged_losses(root / "depth")) == 8
    exported = root / "depth.pt"
    assert train_main(["single-view-export", "--config", str(path), "--out", str(exported)]) == 0
    network, info = load_checkpoint(exported, "cpu", expected_model="single_view")
    assert info.config.image_to_latent.depth_input and network.depth is not None
    image_only, _ = load_checkpoint(out, "cpu", expected_model="single_view")
    for name, tensor in image_only.decoder.state_dict().items():  # the decoder stays frozen
        assert torch.equal(tensor, network.decoder.state_dict()[name])
    capsys.readouterr()
    assert train_main(["single-view-evaluate", "--config", str(path), "--checkpoint", str(exported)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == 3 and 0.0 <= result["iou"] <= 1.0
    backwards = root / "backwards.yaml"  # a depth checkpoint cannot start an image-only run
    backwards.write_text(yaml.safe_dump({"base": str(config_file), "trainer": {"output_dir": str(root / "back"),
                                                                              "init_checkpoint": str(exported)}}))
    assert train_main(["single-view-fit", "--config", str(backwards)]) == 2
    assert "reads depth: set image_to_latent.depth_input" in capsys.readouterr().err


def test_degraded_depth_keeps_valid_pixels_near_their_depth_and_loses_a_border_and_blobs():
    depth = torch.linspace(0.5, 4.0, 120 * 160).view(120, 160)
    generator = torch.Generator().manual_seed(3)
    shares = []
    for _ in range(20):
        degraded = degrade_depth(depth, generator)
        valid = degraded > 0
        assert ((degraded[valid] / depth[valid] - 1).abs() < 0.06).all()  # 1 % noise: 6 sigma
        rows, columns = valid.any(dim=1).nonzero(), valid.any(dim=0).nonzero()
        # invalid border: at most the maximum per side; blobs: whole HOLE_CELL squares
        assert rows.min() <= MAX_INVALID_BORDER * 120 + 1 and rows.max() >= 120 * (1 - MAX_INVALID_BORDER) - 2
        assert columns.min() <= MAX_INVALID_BORDER * 160 + 1
        blocks = valid.view(120 // HOLE_CELL, HOLE_CELL, 160 // HOLE_CELL, HOLE_CELL)
        inner = blocks[3:-3, :, 3:-3, :]  # beyond the border (20 pixels at most): all valid or all invalid blocks
        assert ((inner.all(dim=3).all(dim=1)) | (~inner).all(dim=3).all(dim=1)).all()
        shares.append(valid.float().mean().item())
    assert 0.35 < min(shares) and max(shares) < 1.0 and max(shares) - min(shares) > 0.1, shares


def test_held_out_rooms_and_inconsistent_settings_are_refused(tmp_path, capsys):
    shipped = load_single_view_config(CONFIG)
    assert not set(shipped.data.synthetic_seeds) & set(range(900, 910))
    assert set(shipped.data.val_scenes) == {f"synthetic_{s:04d}" for s in (30, 31, 32, 33)}
    cases = [({"data": {"synthetic_seeds": [0, 1, 905]}}, r"synthetic_seeds \[905\] are reserved evaluation scenes"),
             ({"data": {"sequences": [{"name": "kitchen", "path": "x"}]}}, "synthetic rooms only"),
             ({"augmentation": {"crop_cells": 12}}, "crop_cells"),
             ({"frustum": {"nera": 0.5}}, "unknown FrustumGridConfig keys")]
    for index, (values, message) in enumerate(cases):
        path = tmp_path / f"bad{index}.yaml"
        path.write_text(yaml.safe_dump({"base": str(CONFIG), **values}))
        with pytest.raises(ValueError, match=message):
            load_single_view_config(path)
        assert train_main(["single-view-extract", "--config", str(path)]) == 2
        assert "error:" in capsys.readouterr().err
