"""The LightningModule of both single-view stages, trained with SemSVR's shaped losses
(:func:`~semantic_recon_ros.core.models.single_view.shaped_losses`: ``loss``, ``loss/tsdf``, ``loss/class``).

* stage ``"autoencoder"``: the block autoencoder on random crops of the training frusta (:class:`.single_view_data.
  FrustumCrops`), validated on the whole validation frusta (their round trip);
* stage ``"image"``: the image-to-latent network decoded by the stage-1 decoder, frozen (only the image network's
  parameters reach the optimizer), on (image, frustum) pairs (:class:`.single_view_data.FrustumPairs`).

Training steps log every loss by name (``train/<loss>``); validation logs the same (``val/<loss>``) and the frustum
scores (``val/iou``, ``val/hidden_recall``, ``val/class_accuracy``, :mod:`.frustum_scores`).
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from semantic_recon_ros.core.models.single_view import (BlockAutoencoder, BlockDecoder, ImageToLatentNet,
                                                         semantic_tsdf_channels, shaped_losses)

from ..fitting.lightning_module import adamw_warmup_cosine
from .frustum_scores import FrustumScores
from .single_view_config import STAGES, single_view_config_from_dict

LOGGED_SCORES = ("iou", "hidden_recall", "class_accuracy")


class SingleViewModule(pl.LightningModule):
    """One stage of single-view training.

    Args:
        config: the run config as a nested dict (``SingleViewRunConfig.to_dict()``; kept in the checkpoint's
            hyper-parameters with the rest, so the export can rebuild the network).
        class_names: the classes of the targets; camera: the intrinsics and image size of the training images
            (``fx, fy, cx, cy, width, height``), stored for the export.
        stage: ``"autoencoder"`` or ``"image"``.
    """

    def __init__(self, config: dict, class_names: list[str], camera: dict, stage: str) -> None:
        super().__init__()
        self.save_hyperparameters()
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; stages: {STAGES}")
        self.run_config = single_view_config_from_dict(config, "SingleViewModule hyper-parameters")
        if self.run_config.autoencoder.num_classes != len(class_names):
            raise ValueError(f"autoencoder.num_classes = {self.run_config.autoencoder.num_classes} but the data has "
                             f"{len(class_names)} classes")
        if stage == "autoencoder":
            self.model = BlockAutoencoder(self.run_config.autoencoder)
        else:
            self.model = ImageToLatentNet(self.run_config.image_to_latent, self.run_config.frustum,
                                          BlockDecoder(self.run_config.autoencoder))
        self._scores = self._new_scores()

    def _new_scores(self) -> FrustumScores:
        return FrustumScores(len(self.hparams.class_names), self.run_config.loss_shaping)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """The stage's network on a batch: the autoencoder on ``channels`` (or, for whole frusta, on the channels of
        ``tsdf`` and ``labels``), the image network on ``image``."""
        if self.hparams.stage == "image":
            return self.model(batch["image"])
        channels = batch.get("channels")
        if channels is None:
            channels = semantic_tsdf_channels(batch["tsdf"], batch["labels"], self.run_config.autoencoder.num_classes)
        return self.model(channels)

    def _losses(self, prediction: dict, batch: dict) -> dict[str, torch.Tensor]:
        return shaped_losses(prediction, batch["tsdf"], batch["labels"], batch["weights"],
                             self.run_config.loss_shaping)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        losses = self._losses(self(batch), batch)
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=len(batch["tsdf"]), prog_bar=name == "loss")
        return losses["loss"]

    def validation_step(self, batch: dict, batch_index: int) -> None:
        prediction = self(batch)
        for name, value in self._losses(prediction, batch).items():
            self.log(f"val/{name}", value, batch_size=len(batch["tsdf"]))
        self._scores.update(prediction["tsdf"], prediction["class_logits"], batch["tsdf"], batch["labels"])

    def on_validation_epoch_start(self) -> None:
        self._scores = self._new_scores()

    def on_validation_epoch_end(self) -> None:
        scores = self._scores.result()
        for name in LOGGED_SCORES:
            if not math.isnan(scores[name]):
                self.log(f"val/{name}", scores[name], prog_bar=name == "iou")

    def configure_optimizers(self):
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        return adamw_warmup_cosine(trainable, self.run_config.stage(self.hparams.stage))
