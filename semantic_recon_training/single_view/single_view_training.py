"""``single-view-fit`` and ``single-view-export``: train the two stages on a run's cached pairs, and write the
'single_view' inference checkpoint (what ``semantic-recon single-view`` loads).

Each stage is one run of the shared Lightning training (:func:`..fitting.fit.train`) in its own output folder
(``autoencoder_trainer.output_dir``, then ``trainer.output_dir``): ``checkpoints/last.ckpt``, CSV logs,
``config.yaml`` and ``loss_curves.png``. When stage 1 ends, its decoder's weights are written to
``<autoencoder_trainer.output_dir>/decoder.pt``, which starts stage 2's frozen decoder.

Without ``--resume`` both stages train from scratch. With ``--resume``, stage 1 is skipped when its ``decoder.pt``
exists and otherwise continues from its last checkpoint (or starts); stage 2 continues from its last checkpoint
when it has one.

With ``trainer.init_checkpoint`` (a 'single_view' inference checkpoint of the same frustum grid, autoencoder and
camera) stage 1 is skipped and stage 2 fine-tunes that checkpoint's network (a gravity head it lacks starts
fresh). With ``semi_supervision.sequence`` stage 2's batches add real posed frames (:mod:`.real_views`), SSR's
semi-supervision; the export records those frames as trained on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.models import CheckpointInfo, load_checkpoint, save_checkpoint
from semantic_recon_ros.core.models.single_view import BlockDecoder, ImageToLatentNet

from ..data.training_record import RecordedScene, TrainingRecord, relative_to_repo
from ..fitting.export import load_module_weights, read_lightning_checkpoint, training_record
from ..fitting.fit import last_checkpoint, train
from .real_views import RealViewPairs, load_real_frames
from .single_view_config import SingleViewRunConfig, single_view_config_from_dict
from .single_view_data import (FrustumCrops, FrustumPairs, camera_uprightness, load_pairs, training_camera,
                               view_depths)
from .single_view_module import SingleViewModule

DECODER_FILE = "decoder.pt"
CROPS_PER_EPOCH = 1000  # stage 1 draws new crops on every visit: the epoch length only paces the data loader


def decoder_file(config: SingleViewRunConfig) -> Path:
    """Stage 1's trained decoder (a plain state dict), written when the stage ends."""
    return Path(config.autoencoder_trainer.output_dir) / DECODER_FILE


def _loader(dataset, config: SingleViewRunConfig, shuffle: bool) -> DataLoader:
    trainer = config.trainer
    generator = torch.Generator().manual_seed(trainer.seed) if shuffle else None
    return DataLoader(dataset, batch_size=trainer.batch_size, shuffle=shuffle, drop_last=shuffle,
                      num_workers=trainer.num_workers, persistent_workers=trainer.num_workers > 0, generator=generator)


def fit_single_view(config: SingleViewRunConfig, resume: bool = False) -> Path:
    """Train stage 1 (the block autoencoder), then stage 2 (the image network, decoder frozen); see the module
    docstring for ``resume``. Returns stage 2's last Lightning checkpoint."""
    stage1, stage2 = config.stage("autoencoder"), config.stage("image")
    if Path(stage1.trainer.output_dir).resolve() == Path(stage2.trainer.output_dir).resolve():
        raise ValueError(f"autoencoder_trainer.output_dir and trainer.output_dir must differ (each stage keeps its own "
                         f"checkpoints), both are {stage2.trainer.output_dir}")
    class_names = list(load_class_set().names)
    camera = dataclasses.asdict(training_camera(config))
    train_pairs = load_pairs(config, config.data.train_scenes())
    val_pairs = load_pairs(config, config.data.val_scenes) if config.data.val_scenes else None
    if config.image_to_latent.gravity_head:
        train_pairs |= camera_uprightness(config, config.data.train_scenes())
        if val_pairs:
            val_pairs |= camera_uprightness(config, config.data.val_scenes)
    if config.image_to_latent.depth_input:
        train_pairs |= view_depths(config, config.data.train_scenes())
        if val_pairs:
            val_pairs |= view_depths(config, config.data.val_scenes)
    decoder = decoder_file(config)
    fine_tune = bool(config.trainer.init_checkpoint)

    def setup_autoencoder() -> tuple[SingleViewModule, dict]:
        module = SingleViewModule(config.to_dict(), class_names, camera, "autoencoder")
        crops = FrustumCrops(train_pairs, config.augmentation.crop_cells, config.autoencoder.block_size,
                             len(class_names), CROPS_PER_EPOCH)
        return module, {"train_dataloaders": _loader(crops, stage1, True),
                        "val_dataloaders": _loader(FrustumPairs(val_pairs), stage1, False) if val_pairs else None}

    if not fine_tune and not (resume and decoder.is_file()):
        train(stage1, setup_autoencoder, resume=resume and last_checkpoint(stage1).is_file())
        trained = torch.load(last_checkpoint(stage1), map_location="cpu", weights_only=False)  # our own file
        prefix = "model.decoder."
        torch.save({k[len(prefix):]: v for k, v in trained["state_dict"].items() if k.startswith(prefix)}, decoder)

    def setup_image() -> tuple[SingleViewModule, dict]:
        module = SingleViewModule(config.to_dict(), class_names, camera, "image")
        if fine_tune:
            load_fine_tuning_start(module.model, config)
        else:
            module.model.decoder.load_state_dict(torch.load(decoder, map_location="cpu", weights_only=True))
        pairs = _loader(FrustumPairs(train_pairs, flip=config.augmentation.horizontal_flip,
                                     depth_degradation=config.augmentation.depth_degradation), stage2, True)
        if config.semi_supervision.enabled:
            pairs = {"synthetic": pairs, "real": _real_loader(config, module)}
        return module, {"train_dataloaders": pairs,
                        "val_dataloaders": _loader(FrustumPairs(val_pairs), stage2, False) if val_pairs else None}

    if config.augmentation.horizontal_flip:
        check_mirror_symmetric(training_camera(config))
    return train(stage2, setup_image, resume=resume and last_checkpoint(stage2).is_file())


def _real_loader(config: SingleViewRunConfig, module: SingleViewModule) -> DataLoader:
    """The real views of ``semi_supervision`` (its training frames), ``semi_supervision.batch_size`` per batch."""
    semi, frustum = config.semi_supervision, config.frustum
    frames = load_real_frames(semi.sequence, semi.train_frames, training_camera(config), module.render_camera,
                              frustum.near, frustum.far)
    views = RealViewPairs(frames, module.grid, module.render_camera, semi.neighbour_offset)
    return DataLoader(views, batch_size=semi.batch_size, shuffle=True, drop_last=True, num_workers=0,
                      generator=torch.Generator().manual_seed(config.trainer.seed))


def load_fine_tuning_start(net: ImageToLatentNet, config: SingleViewRunConfig) -> None:
    """Load ``trainer.init_checkpoint`` (a 'single_view' inference checkpoint) into ``net``. ValueError unless it was
    trained for the config's camera, frustum grid, autoencoder and image network (the gravity head and the depth
    input aside: one it lacks keeps ``net``'s fresh weights, one ``net`` lacks is refused)."""
    path = config.trainer.init_checkpoint
    start, info = load_checkpoint(path, "cpu", expected_model="single_view")
    theirs = info.config.image_to_latent
    ours = dataclasses.replace(config.image_to_latent, gravity_head=theirs.gravity_head, depth_input=theirs.depth_input)
    if (info.camera != training_camera(config) or info.config.frustum != config.frustum
            or info.config.autoencoder != config.autoencoder or info.config.image_to_latent != ours):
        raise ValueError(f"trainer.init_checkpoint {path}: trained for {info.config} of {info.camera}, the run is "
                         f"{config.model} of {training_camera(config)}")
    if info.config.image_to_latent.gravity_head and not config.image_to_latent.gravity_head:
        raise ValueError(f"trainer.init_checkpoint {path} has a gravity head: set image_to_latent.gravity_head")
    if theirs.depth_input and not config.image_to_latent.depth_input:
        raise ValueError(f"trainer.init_checkpoint {path} reads depth: set image_to_latent.depth_input")
    missing, unexpected = net.load_state_dict(start.state_dict(), strict=False)
    if unexpected or any(not name.startswith(("gravity.", "depth.")) for name in missing):
        raise ValueError(f"trainer.init_checkpoint {path}: weights do not fit (missing {missing}, unexpected "
                         f"{unexpected})")


def semi_supervision_record(config: SingleViewRunConfig) -> TrainingRecord:
    """The real frames a run's semi-supervision trains on, as a training record: frames 0 to ``train_last`` (a
    record's frames start at 0, so a later ``train_first`` is recorded conservatively); empty without it."""
    semi = config.semi_supervision
    if not semi.enabled:
        return TrainingRecord(())
    folder = Path(semi.sequence)
    return TrainingRecord((RecordedScene(folder.name, "train", path=relative_to_repo(str(folder)),
                                         max_frames=semi.train_last + 1),))


def check_mirror_symmetric(camera: PinholeCamera) -> None:
    """ValueError unless the principal point is in the middle of the image's width (within 0.01 pixel): only then
    is an image mirrored left-right a picture of the same camera (``augmentation.horizontal_flip``)."""
    if abs(camera.cx - (camera.width - 1) / 2) > 0.01:
        raise ValueError(f"augmentation.horizontal_flip needs cx = (width - 1) / 2 = {(camera.width - 1) / 2}, the "
                         f"camera has cx = {camera.cx}")


def export_single_view(lightning_checkpoint: str | Path, out: str | Path, half: bool = True) -> CheckpointInfo:
    """Write the image network (with its frozen decoder) of a stage-2 :class:`.single_view_module.SingleViewModule`
    Lightning checkpoint to ``out`` as a 'single_view' checkpoint (float16 weights by default), with the camera it
    was trained for and the rooms it was trained and validated on; returns the written checkpoint's info (loaded
    back as the command loads it). FileNotFoundError / ValueError naming the file."""
    path = Path(lightning_checkpoint)
    state, hparams = read_lightning_checkpoint(path, "a SingleViewModule", "single-view-fit",
                                               ("config", "class_names", "camera", "stage"))
    if hparams["stage"] != "image":
        raise ValueError(f"{path}: a checkpoint of the {hparams['stage']!r} stage; the export takes the image stage's "
                         "(trainer.output_dir/checkpoints/last.ckpt)")
    config = single_view_config_from_dict(dict(hparams["config"]), f"{path} hyper-parameters")
    net = ImageToLatentNet(config.image_to_latent, config.frustum, BlockDecoder(config.autoencoder))
    load_module_weights(path, net, state, config.model)
    if half:
        net = net.half()
    record = training_record(config).merged(semi_supervision_record(config))
    save_checkpoint(out, net, list(hparams["class_names"]), camera=PinholeCamera(**hparams["camera"]),
                    training=record.to_dict())
    _, info = load_checkpoint(out, "cpu", expected_model="single_view")
    return info
