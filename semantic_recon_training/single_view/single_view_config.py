"""The run config of single-view training: typed dataclasses with defaults, filled from YAML like the S4R run config.

Sections (``semantic_recon_training/configs/single_view.yaml``)::

    data:                  DataConfig (..fitting.training_config): the synthetic rooms (seeds 900-909 refused), the
                           frames rendered per room, image size, validation rooms, data root; no recorded sequences
    extraction:            SingleViewExtractionConfig: which rendered frames become training pairs
    frustum:               FrustumGridConfig     the predicted frustum grid (core single_view config)
    autoencoder:           BlockAutoencoderConfig
    image_to_latent:       ImageToLatentConfig
    loss_shaping:          LossShapingConfig     the cell weights (stored with the targets at extraction)
    augmentation:          SingleViewAugmentationConfig
    autoencoder_optimizer: OptimizerConfig       stage 1, the block autoencoder on random crops of the targets
    autoencoder_trainer:   TrainerConfig
    optimizer:             OptimizerConfig       stage 2, the image-to-latent network (decoder frozen)
    trainer:               TrainerConfig         (the fit command's --max-steps / --max-time override this one)
    semi_supervision:      SemiSupervisionConfig SSR's real images without 3D labels in stage 2, and the weights of
                                                 the gravity / height losses (image_to_latent.gravity_head)
    rendering:             FrustumRenderConfig   how predicted frusta are rendered into the real views

With ``trainer.init_checkpoint`` (a 'single_view' inference checkpoint) stage 1 is skipped: stage 2 fine-tunes
that checkpoint's image network with its decoder (a gravity head it lacks starts fresh).

Layered like every run config (``base: <file>``, :func:`..fitting.training_config.read_config_layers`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from semantic_recon_ros.core.config.fields import check_ranges, parameter
from semantic_recon_ros.core.models.single_view import (BlockAutoencoderConfig, FrustumGridConfig, FrustumRenderConfig,
                                                         ImageToLatentConfig, LossShapingConfig, SingleViewConfig)

from ..fitting.training_config import (DataConfig, OptimizerConfig, RunConfigMethods, TrainerConfig,
                                       read_run_config, run_config_sections)
from ..paths import repo_path

STAGES = ("autoencoder", "image")


@dataclass
class SingleViewExtractionConfig:
    """Which rendered frames of a room become (image, frustum target) pairs (see :mod:`.single_view_data`)."""

    frame_stride: int = parameter(1, "Keep every n-th rendered frame of a room's camera loop.", 1, 10_000)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class SingleViewAugmentationConfig:
    """How training samples are drawn from the cached pairs."""

    horizontal_flip: bool = parameter(
        True, "Mirror half of the image-network samples left-right (image and frustum alike); needs the principal "
              "point in the middle of the image, where the mirrored view is a view of the same camera.")
    crop_cells: int = parameter(
        32, "Stage 1 samples are cubes of this edge (cells, a multiple of the block size) cut at random block "
            "offsets from the training frusta.", 2, 1024)
    depth_degradation: float = parameter(
        0.0, "Share of the depth network's samples whose input depth is degraded as a real sensor's is: an invalid "
             "border (an image of another camera resampled), invalid blobs, 1 % noise "
             "(:func:`.single_view_data.degrade_depth`); the targets stay exact.", 0.0, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class SemiSupervisionConfig:
    """SSR's semi-supervision (:mod:`.real_views`, :mod:`.view_losses`): every stage-2 step adds ``batch_size`` real
    posed RGB-D frames of ``sequence``, whose predicted frusta are rendered into their own view and into a neighbouring
    frame's; and the weights of the gravity / height losses of a network with the gravity head. Loss weights are
    named after the losses they weigh (``loss/<name>``)."""

    sequence: str = parameter(
        "", "Posed RGB-D sequence folder of the real images (relative to the repository root); empty = synthetic "
            "rooms only.")
    train_first: int = parameter(0, "First frame of the sequence trained on.", 0, None)
    train_last: int = parameter(399, "Last frame trained on (inclusive).", 0, None)
    val_first: int = parameter(400, "First frame of the real validation (single-view-real-depth).", 0, None)
    val_last: int = parameter(499, "Last validation frame (inclusive).", 0, None)
    neighbour_offset: int = parameter(10, "Frames between an image and the neighbour it is also rendered into.",
                                      1, 10_000)
    batch_size: int = parameter(2, "Real frames per training step (beside trainer.batch_size synthetic pairs).", 1,
                                256)
    render_width: int = parameter(80, "Width (pixels) of the rendered views (the trained camera scaled).", 4, 4096)
    render_height: int = parameter(60, "Height (pixels) of the rendered views.", 3, 4096)
    silhouette_layers: tuple = parameter(
        (1.0, 1.75, 2.5, 3.5), "z-depths (metres) of the layer silhouettes: per depth z, the pixels with a surface "
                               "nearer than z (a room view's plain silhouette is almost every pixel).")
    own_depth: float = parameter(1.0, "Weight of loss/own_depth, the rendered depth's L1 (m) in the own view.", 0.0,
                                 1e3)
    own_silhouette: float = parameter(1.0, "Weight of loss/own_silhouette, the layer silhouettes' soft IoU loss.",
                                      0.0, 1e3)
    neighbour_depth: float = parameter(0.5, "Weight of loss/neighbour_depth (depth L1 in the neighbour's view).",
                                       0.0, 1e3)
    neighbour_silhouette: float = parameter(0.5, "Weight of loss/neighbour_silhouette.", 0.0, 1e3)
    gravity: float = parameter(1.0, "Weight of loss/gravity, 1 - cos of the predicted and true gravity direction "
                                    "(synthetic and real images).", 0.0, 1e3)
    height: float = parameter(0.5, "Weight of loss/height, the camera height's L1 (m; synthetic rooms only).", 0.0,
                              1e3)

    def __post_init__(self) -> None:
        self.silhouette_layers = tuple(sorted(float(z) for z in self.silhouette_layers))
        check_ranges(self)
        self.sequence = repo_path(self.sequence)
        if self.train_last < self.train_first or self.val_last < self.val_first:
            raise ValueError(f"SemiSupervisionConfig: empty frame range (train {self.train_first}-{self.train_last}, "
                             f"validation {self.val_first}-{self.val_last})")
        if self.train_first <= self.val_last and self.val_first <= self.train_last:
            raise ValueError(f"SemiSupervisionConfig: the training frames {self.train_first}-{self.train_last} overlap "
                             f"the validation frames {self.val_first}-{self.val_last}")

    @property
    def enabled(self) -> bool:
        return bool(self.sequence)

    @property
    def train_frames(self) -> range:
        return range(self.train_first, self.train_last + 1)

    @property
    def val_frames(self) -> range:
        return range(self.val_first, self.val_last + 1)


@dataclass
class SingleViewRunConfig(RunConfigMethods):
    """Everything the ``single-view-*`` training commands need (sections as in the module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    extraction: SingleViewExtractionConfig = field(default_factory=SingleViewExtractionConfig)
    frustum: FrustumGridConfig = field(default_factory=FrustumGridConfig)
    autoencoder: BlockAutoencoderConfig = field(default_factory=BlockAutoencoderConfig)
    image_to_latent: ImageToLatentConfig = field(default_factory=ImageToLatentConfig)
    loss_shaping: LossShapingConfig = field(default_factory=LossShapingConfig)
    augmentation: SingleViewAugmentationConfig = field(default_factory=SingleViewAugmentationConfig)
    autoencoder_optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    autoencoder_trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    semi_supervision: SemiSupervisionConfig = field(default_factory=SemiSupervisionConfig)
    rendering: FrustumRenderConfig = field(default_factory=FrustumRenderConfig)

    def __post_init__(self) -> None:
        if self.data.sequences:
            raise ValueError("data.sequences: single-view training learns from synthetic rooms only (their exact "
                             f"frusta are the targets), got {[s.name for s in self.data.sequences]}")
        if not self.data.train_scenes():
            raise ValueError("data: no training rooms (every synthetic seed is a validation scene)")
        crop = self.augmentation.crop_cells
        if crop % self.autoencoder.block_size or crop > min(self.frustum.shape):
            raise ValueError(f"augmentation.crop_cells ({crop}) must be a multiple of autoencoder.block_size "
                             f"({self.autoencoder.block_size}) no larger than the frustum grid {self.frustum.shape}")

    @property
    def model(self) -> SingleViewConfig:
        """The trained model's config (what its checkpoint stores)."""
        return SingleViewConfig(self.frustum, self.autoencoder, self.image_to_latent)

    def stage(self, name: str) -> "SingleViewRunConfig":
        """This config as the shared Lightning run (:func:`..fitting.fit.train`) of stage ``name`` sees it: its
        ``trainer`` and ``optimizer`` sections are the stage's."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {STAGES}")
        if name == "image":
            return self
        return dataclasses.replace(self, trainer=self.autoencoder_trainer, optimizer=self.autoencoder_optimizer)

    def cache_file(self, scene: str) -> Path:
        """The (image, frustum target) pairs of one room."""
        return self.data.root_path / "single_view_pairs" / f"{scene}.pt"


def single_view_config_from_dict(values: dict, source: str = "config") -> SingleViewRunConfig:
    """Build a :class:`SingleViewRunConfig` from nested mappings (missing sections and keys take their defaults)."""
    return run_config_sections(SingleViewRunConfig, values, source)


def load_single_view_config(path: str | Path) -> SingleViewRunConfig:
    """Read a YAML single-view run config and its bases (FileNotFoundError / ValueError naming the file)."""
    return read_run_config(path, single_view_config_from_dict)
