"""The LightningModule of self-supervised completion training: S4RNet + :class:`~.objective.TrainingObjective`.

Training steps log every active loss by name (``train/<loss>``) and the weighted ``train/total``. The
virtual-view semantic loss runs the 2D segmenter on rendered images, so it can be applied on every n-th
step only (``trainer.virtual_every_n_steps``); its virtual cameras come from a generator seeded with
``(seed, global step)``, so a resumed run samples the same cameras as an uninterrupted one.

Validation logs the same losses (without virtual views) and, on chunks with synthetic ground truth (used
for measuring only, never as a training signal), the completion IoU of the input fusion and of the
prediction (``val/iou_input``, ``val/iou_prediction``, and ``val/iou_fusion_network``: the input where
observed, the prediction elsewhere; surface-shell occupancy of :mod:`..evaluation.metrics`)
and the voxel semantic mIoU of the prediction on the ground-truth surface (``val/miou_prediction``).
"""

from __future__ import annotations

import math
from typing import Sequence

import pytorch_lightning as pl
import torch
from torch import nn

from semantic_recon_ros.core.models import S4RNet, S4RNetConfig, load_checkpoint, set_fast_cpu_convolutions
from semantic_recon_ros.core.models.fast_conv import fast_cpu_path_available
from semantic_recon_ros.core.segmentation import DeepLabADE20K

from ..evaluation.metrics import SemanticConfusion, completion_counts, occupied
from .losses import LossWeights
from .objective import TrainingObjective
from .training_config import RunConfig, run_config_from_dict

VIRTUAL_SEED_STRIDE = 1_000_003


def initial_weights(path: str, config: S4RNetConfig, class_names: list[str], voxel_size: float,
                    truncation: float) -> dict[str, torch.Tensor]:
    """The state dict of inference checkpoint ``path`` for a model of ``config`` (ValueError when it does not fit
    the classes, voxel size, truncation or model config; a label-free network is widened for ``label_input``)."""
    network, info = load_checkpoint(path, "cpu", expected_class_names=class_names, expected_voxel_size=voxel_size,
                                    expected_truncation=truncation, fast_cpu=False)
    if config.label_input and not info.config.label_input:
        network = network.with_label_input()
    if network.config != config:
        raise ValueError(f"trainer.init_checkpoint {path}: model config {network.config} differs from the run's "
                         f"{config}")
    return {name: value.float() for name, value in network.state_dict().items()}


def warmup_cosine(step: int, warmup_steps: int, max_steps: int, final_fraction: float) -> float:
    """Learning-rate factor: linear 0 -> 1 over ``warmup_steps``, then cosine 1 -> ``final_fraction`` at ``max_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adamw_warmup_cosine(parameters, run_config) -> dict:
    """``configure_optimizers``' answer for a run config (S4R or Atlas): AdamW with its ``optimizer`` settings and
    :func:`warmup_cosine` over ``trainer.max_steps``, stepped every step."""
    opt = run_config.optimizer
    optimizer = torch.optim.AdamW(parameters, lr=opt.lr, weight_decay=opt.weight_decay)
    max_steps = run_config.trainer.max_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, opt.warmup_steps, max_steps, opt.final_lr_fraction))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def freeze_all_but(model: nn.Module, trainable: Sequence[str]) -> list[nn.Module]:
    """Stop the gradients of every top-level part of ``model`` (submodule or parameter) not named in ``trainable``;
    returns the frozen submodules, whose BatchNorm statistics the caller keeps by holding them in eval mode
    (:meth:`CompletionModule.train`). ValueError for a name that is no part of the model."""
    parts = {**dict(model.named_children()), **dict(model.named_parameters(recurse=False))}
    unknown = sorted(set(trainable) - set(parts))
    if unknown:
        raise ValueError(f"trainer.trainable names no part of the network: {unknown}; its parts are {sorted(parts)}")
    frozen = []
    for name, part in parts.items():
        if name not in trainable:
            part.requires_grad_(False)
            if isinstance(part, nn.Module):
                frozen.append(part)
    return frozen


class CompletionModule(pl.LightningModule):
    """S4RNet trained through the renderer with the run's named losses.

    Args:
        config: the run config as a nested dict (``RunConfig.to_dict()``; stored in the checkpoint's
            hyper-parameters, so the export can rebuild the network).
        class_names: the classes of the training caches (stored for the export).
        voxel_size, truncation: the map settings of the training chunks in metres (stored for the export).
    """

    def __init__(self, config: dict, class_names: list[str], voxel_size: float, truncation: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.run_config: RunConfig = run_config_from_dict(config, "CompletionModule hyper-parameters")
        if self.run_config.model.num_classes != len(class_names):
            raise ValueError(f"model.num_classes = {self.run_config.model.num_classes} but the data has "
                             f"{len(class_names)} classes {class_names}")
        self.model = S4RNet(self.run_config.model)
        if self.run_config.trainer.init_checkpoint:
            self.model.load_state_dict(initial_weights(self.run_config.trainer.init_checkpoint, self.run_config.model,
                                                       class_names, voxel_size, truncation))
        self._frozen = freeze_all_but(self.model, self.run_config.trainer.trainable) \
            if self.run_config.trainer.trainable else []
        self.train()  # the frozen parts in eval mode from the start (Lightning restores the modes it finds)
        if self.run_config.trainer.fast_cpu_convolutions and fast_cpu_path_available():
            set_fast_cpu_convolutions(self.model, True)  # acts on CPU tensors only
        weights = self.run_config.losses
        segmenter = None
        if weights.virtual_semantic > 0:
            segmenter = DeepLabADE20K(self.run_config.data.segmenter_dir, class_names, num_threads=1)
        self.objective = TrainingObjective(weights, self.run_config.objective, virtual=self.run_config.virtual_views,
                                           segmenter=segmenter)
        without_virtual = LossWeights(**{**vars(weights), "virtual_semantic": 0.0})
        self.objective_without_virtual = TrainingObjective(without_virtual, self.run_config.objective)
        self.loss_names = list(weights.active())
        self._val_counts = torch.zeros(3, 3, dtype=torch.int64)  # (input, prediction, both) x (tp, fp, fn)
        self._val_confusion = SemanticConfusion(len(class_names))

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """The network on a collated batch: ``{"tsdf", "color", "semantic_logits"}`` (see S4RNet.forward).

        With ``model.label_input`` the input's fused 2D labels go in too; while training they are withheld for a
        random ``trainer.label_input_dropout`` of the chunks."""
        color = batch["color"] if self.run_config.model.use_color else None
        observed = batch["observed"].to(batch["tsdf"].dtype)
        if not self.run_config.model.label_input:
            return self.model(batch["tsdf"], observed, color)
        labels = batch["input_labels"]
        if self.training and self.run_config.trainer.label_input_dropout > 0:
            kept = torch.rand(len(labels), device=labels.device) >= self.run_config.trainer.label_input_dropout
            labels = torch.where(kept.view(-1, 1, 1, 1), labels, torch.full_like(labels, -1))
        return self.model(batch["tsdf"], observed, color, labels)

    def _log_terms(self, prefix: str, terms: dict[str, torch.Tensor], batch_size: int, **kwargs) -> None:
        for name in [*self.loss_names, "total"]:
            if name in terms:
                self.log(f"{prefix}/{name}", terms[name].float(), batch_size=batch_size, **kwargs)

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        prediction = self(batch)
        step = int(self.global_step)
        use_virtual = (self.run_config.losses.virtual_semantic > 0
                       and step % self.run_config.trainer.virtual_every_n_steps == 0)
        generator = torch.Generator().manual_seed(self.run_config.trainer.seed * VIRTUAL_SEED_STRIDE + step)
        objective = self.objective if use_virtual else self.objective_without_virtual
        total, terms = objective(prediction, batch, generator)
        self._log_terms("train", terms, batch["tsdf"].shape[0], prog_bar=False)
        self.log("train/loss", total.detach(), batch_size=batch["tsdf"].shape[0], prog_bar=True)
        return total

    def validation_step(self, batch: dict, batch_index: int) -> None:
        prediction = self(batch)
        total, terms = self.objective_without_virtual(prediction, batch)
        self._log_terms("val", terms, batch["tsdf"].shape[0], sync_dist=True)
        has_gt = batch["has_gt"].bool()
        if not bool(has_gt.any()):
            return
        truncation, voxel_size = self.hparams.truncation, self.hparams.voxel_size
        gt = batch["gt_tsdf"][has_gt]
        observed = batch["observed"][has_gt].bool()
        fused, predicted = batch["tsdf"][has_gt], prediction["tsdf"][has_gt].float()
        both = torch.where(observed, fused, predicted)  # the node's "both": fusion where observed
        for row, tsdf in enumerate((fused, predicted, both)):
            counts = completion_counts(tsdf, gt, truncation, voxel_size)
            self._val_counts[row] += torch.tensor([counts.true_positive, counts.false_positive,
                                                   counts.false_negative])
        surface = occupied(gt[:, 0], truncation, voxel_size)
        labels = prediction["semantic_logits"][has_gt].argmax(dim=1)
        self._val_confusion.update(labels, batch["gt_labels"][has_gt], surface)

    def on_validation_epoch_start(self) -> None:
        self._val_counts.zero_()
        self._val_confusion = SemanticConfusion(len(self.hparams.class_names))

    def on_validation_epoch_end(self) -> None:
        counts = self.all_gather(self._val_counts.to(self.device))
        confusion = self.all_gather(self._val_confusion.matrix.to(self.device))
        missed = self.all_gather(self._val_confusion.missed.to(self.device))
        if counts.dim() == 3:  # gathered over processes
            counts, confusion, missed = counts.sum(0), confusion.sum(0), missed.sum(0)
        counts = counts.cpu()
        if int(counts.sum()) == 0:
            return
        for row, name in enumerate(("input", "prediction", "fusion_network")):
            tp, fp, fn = (int(x) for x in counts[row])
            self.log(f"val/iou_{name}", tp / max(1, tp + fp + fn), rank_zero_only=True)
        merged = SemanticConfusion(len(self.hparams.class_names))
        merged.matrix, merged.missed = confusion.cpu(), missed.cpu()
        if not math.isnan(merged.miou):
            self.log("val/miou_prediction", merged.miou, rank_zero_only=True)

    def train(self, mode: bool = True) -> "CompletionModule":
        """Training mode, except for the parts ``trainer.trainable`` leaves frozen (their BatchNorm statistics stay)."""
        super().train(mode)
        for part in self._frozen:
            part.eval()
        return self

    def configure_optimizers(self):
        return adamw_warmup_cosine([p for p in self.model.parameters() if p.requires_grad], self.run_config)
