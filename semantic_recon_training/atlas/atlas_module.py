"""The LightningModule of Atlas training: AtlasNet + :func:`.atlas_losses.atlas_losses`.

Frozen feature sources ('color', 'deeplab') train the 3D network on the cached feature volumes; the 'learned' source
computes features from each chunk's stored views with the 2D backbone and back-projects them (differentiably), so
backbone and 3D network learn together. Training steps log every loss by name (``train/<loss>``); validation logs
the same and the surface IoU of the prediction against the target fusion (``val/iou``: voxels within one voxel of the
surface, :mod:`..evaluation.metrics`) and the semantic mIoU on the target surface (``val/miou``).
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.models import AtlasNet, set_fast_cpu_convolutions
from semantic_recon_ros.core.models.fast_conv import fast_cpu_path_available

from ..evaluation.metrics import SemanticConfusion, completion_counts, occupied
from ..fitting.lightning_module import adamw_warmup_cosine
from .atlas_config import AtlasRunConfig, atlas_config_from_dict
from .atlas_losses import atlas_losses


class AtlasModule(pl.LightningModule):
    """AtlasNet trained on chunk caches with the run's named losses.

    Args:
        config: the run config as a nested dict (``AtlasRunConfig.to_dict()``; kept in the checkpoint's
            hyper-parameters, so the export can rebuild the network).
        class_names: the classes of the caches; voxel_size, truncation: their map settings in metres.
    """

    def __init__(self, config: dict, class_names: list[str], voxel_size: float, truncation: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.run_config: AtlasRunConfig = atlas_config_from_dict(config, "AtlasModule hyper-parameters")
        if self.run_config.model.num_classes != len(class_names):
            raise ValueError(f"model.num_classes = {self.run_config.model.num_classes} but the data has "
                             f"{len(class_names)} classes")
        self.model = AtlasNet(self.run_config.model)
        if self.run_config.trainer.fast_cpu_convolutions and fast_cpu_path_available():
            set_fast_cpu_convolutions(self.model, True)
        self._val_counts = torch.zeros(3, dtype=torch.int64)  # tp, fp, fn
        self._val_confusion = SemanticConfusion(len(class_names))

    def forward(self, batch: dict) -> dict:
        """The network on a collated batch (:class:`.atlas_dataset.AtlasChunkDataset` samples)."""
        if self.run_config.model.feature_source != "learned":
            return self.model.reconstruct(batch["features"], batch["seen"])
        outputs = []
        dims = tuple(batch["target_tsdf"].shape[2:])
        for b in range(batch["view_color"].shape[0]):
            images = batch["view_color"][b:b + 1]
            fx, fy, cx, cy = (float(v) for v in batch["view_intrinsics"][b, 0])
            camera = PinholeCamera(fx, fy, cx, cy, int(images.shape[-1]), int(images.shape[-2]))
            outputs.append(self.model(images, camera, batch["view_T_world_cam"][b:b + 1], batch["origin"][b:b + 1],
                                      self.hparams.voxel_size, dims))
        return {key: (torch.cat([o[key] for o in outputs]) if torch.is_tensor(outputs[0][key])
                      else [torch.cat([o[key][s] for o in outputs]) for s in range(len(outputs[0][key]))])
                for key in outputs[0]}

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        total, terms = atlas_losses(self(batch), batch, self.run_config.losses)
        size = batch["target_tsdf"].shape[0]
        for name, value in terms.items():
            self.log(f"train/{name}", value.float(), batch_size=size, prog_bar=name == "total")
        return total

    def validation_step(self, batch: dict, batch_index: int) -> None:
        prediction = self(batch)
        _, terms = atlas_losses(prediction, batch, self.run_config.losses)
        size = batch["target_tsdf"].shape[0]
        for name, value in terms.items():
            self.log(f"val/{name}", value.float(), batch_size=size)
        truncation, voxel_size = self.hparams.truncation, self.hparams.voxel_size
        observed = batch["target_observed"]
        target = batch["target_tsdf"]
        counts = completion_counts(prediction["tsdf"].float(), target, truncation, voxel_size, mask=observed)
        self._val_counts += torch.tensor([counts.true_positive, counts.false_positive, counts.false_negative])
        surface = occupied(target[:, 0], truncation, voxel_size) & observed[:, 0]
        self._val_confusion.update(prediction["semantic_logits"].argmax(dim=1), batch["target_labels"], surface)

    def on_validation_epoch_start(self) -> None:
        self._val_counts.zero_()
        self._val_confusion = SemanticConfusion(len(self.hparams.class_names))

    def on_validation_epoch_end(self) -> None:
        tp, fp, fn = (int(x) for x in self._val_counts)
        if tp + fp + fn:
            self.log("val/iou", tp / (tp + fp + fn))
        if not math.isnan(self._val_confusion.miou):
            self.log("val/miou", self._val_confusion.miou)

    def configure_optimizers(self):
        return adamw_warmup_cosine(self.model.parameters(), self.run_config)
