"""The LightningModule of both single-view stages, trained with SemSVR's shaped losses
(:func:`~semantic_recon_ros.core.models.single_view.shaped_losses`: ``loss``, ``loss/tsdf``, ``loss/class``).

* stage ``"autoencoder"``: the block autoencoder on random crops of the training frusta (:class:`.single_view_data.
  FrustumCrops`), validated on the whole validation frusta (their round trip);
* stage ``"image"``: the image-to-latent network decoded by the stage-1 decoder, frozen (only the image network's
  parameters reach the optimizer), on (image, frustum) pairs (:class:`.single_view_data.FrustumPairs`).

Training steps log every loss by name (``train/<loss>``); validation logs the same (``val/<loss>``) and the frustum
scores (``val/iou``, ``val/hidden_recall``, ``val/class_accuracy``, :mod:`.frustum_scores`).

In stage ``"image"`` a network with the gravity head adds ``loss/gravity`` and ``loss/height`` of the synthetic pairs.
With ``semi_supervision.sequence`` a training batch is ``{"synthetic": pairs, "real": real views}``
(:class:`.real_views.RealViewPairs`): the real images' predicted frusta are rendered into their own view and their
neighbour's (:func:`~semantic_recon_ros.core.models.single_view.render_frustum`) and compared with the real depth
(``loss/own_depth``, ``loss/own_silhouette``, ``loss/neighbour_depth``, ``loss/neighbour_silhouette``,
:mod:`.view_losses`), plus ``loss/real_gravity``. ``loss`` sums the synthetic pairs' shaped loss and every other
loss times its ``semi_supervision`` weight.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from semantic_recon_ros.core.camera import PinholeCamera
from semantic_recon_ros.core.models.single_view import (BlockAutoencoder, BlockDecoder, FrustumGrid, ImageToLatentNet,
                                                         render_frustum, semantic_tsdf_channels, shaped_losses)

from ..fitting.lightning_module import adamw_warmup_cosine
from .frustum_scores import FrustumScores
from .single_view_config import STAGES, single_view_config_from_dict
from .view_losses import depth_l1, gravity_losses, layer_silhouettes, soft_silhouette_iou_loss

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
        trained_camera = PinholeCamera(**camera)
        self.grid = FrustumGrid(trained_camera, self.run_config.frustum)
        semi = self.run_config.semi_supervision
        self.render_camera = trained_camera.scaled(semi.render_width, semi.render_height)
        self._scores = self._new_scores()

    def _new_scores(self) -> FrustumScores:
        return FrustumScores(len(self.hparams.class_names), self.run_config.loss_shaping)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """The stage's network on a batch: the autoencoder on ``channels`` (or, for whole frusta, on the channels of
        ``tsdf`` and ``labels``), the image network on ``image``."""
        if self.hparams.stage == "image":
            return self.model(batch["image"], batch.get("depth"))
        channels = batch.get("channels")
        if channels is None:
            channels = semantic_tsdf_channels(batch["tsdf"], batch["labels"], self.run_config.autoencoder.num_classes)
        return self.model(channels)

    def _losses(self, prediction: dict, batch: dict) -> dict[str, torch.Tensor]:
        """The shaped losses of synthetic pairs, with the gravity / height losses when the network predicts them."""
        losses = shaped_losses(prediction, batch["tsdf"], batch["labels"], batch["weights"],
                               self.run_config.loss_shaping)
        if "gravity_cam" in prediction and "gravity_cam" in batch:
            losses = self._weighted(losses, gravity_losses(prediction, batch["gravity_cam"], batch["camera_height"]))
        return losses

    def _weighted(self, losses: dict[str, torch.Tensor], more: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``losses`` and ``more`` (named ``loss/<name>``), ``loss`` raised by each of ``more`` times the
        ``semi_supervision`` weight of its name (``real_gravity`` weighs as ``gravity``)."""
        semi = self.run_config.semi_supervision
        total = losses["loss"]
        for name, value in more.items():
            total = total + getattr(semi, name.removeprefix("real_")) * value
        return {**losses, **{f"loss/{name}": value for name, value in more.items()}, "loss": total}

    def real_view_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """The semi-supervised losses (unweighted, by name without ``loss/``) of a batch of real views. A depth
        network reads each view's captured depth (where valid) as its input."""
        depth = (torch.where(batch["depth_valid"], batch["depth"], torch.zeros_like(batch["depth"]))
                 if self.run_config.image_to_latent.depth_input else None)
        prediction = self.model(batch["image"], depth)
        layers = self.run_config.semi_supervision.silhouette_layers
        count = len(batch["image"])
        own = torch.eye(4, device=batch["image"].device).expand(count, 4, 4)
        losses = {}
        for view, T_cam0_cam, depth, valid in (("own", own, batch["depth"], batch["depth_valid"]),
                                               ("neighbour", batch["T_cam0_neighbour"], batch["neighbour_depth"],
                                                batch["neighbour_valid"])):
            rendered = render_frustum(prediction["tsdf"], self.grid, self.render_camera, T_cam0_cam,
                                      self.run_config.rendering)
            losses[f"{view}_depth"] = depth_l1(rendered["depth"], depth, valid)
            predicted, target = layer_silhouettes(rendered["accumulated"], rendered["sample_depths"], depth, layers)
            losses[f"{view}_silhouette"] = soft_silhouette_iou_loss(predicted, target,
                                                                    valid.repeat_interleave(len(layers), dim=0))
        if "gravity_cam" in prediction and "gravity_cam" in batch:
            losses["real_gravity"] = gravity_losses(prediction, batch["gravity_cam"])["gravity"]
        return losses

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        synthetic = batch.get("synthetic", batch)
        losses = self._losses(self(synthetic), synthetic)
        if "real" in batch:
            losses = self._weighted(losses, self.real_view_losses(batch["real"]))
        for name, value in losses.items():
            self.log(f"train/{name}", value, batch_size=len(synthetic["tsdf"]), prog_bar=name == "loss")
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
