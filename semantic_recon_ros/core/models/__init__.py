"""Learned models of the core: the S4R completion U-Net, the Atlas RGB-only network, the single-view reconstruction
(:mod:`.single_view`), checkpoints.

Grids are dense (B, C, X, Y, Z) chunks, X, Y, Z multiples of 16. TSDF values are normalized by the
truncation (in [-1, 1], + = free space). See :mod:`.fast_conv` for the fast CPU inference path.
"""

from .atlas_backbone2d import ResNetFPN2d
from .atlas_backprojection import (FeatureVolume, backproject_features, backproject_to_grid, feature_camera,
                                   voxel_centers)
from .atlas_net import AtlasNet
from .checkpoint import (CHECKPOINT_VERSION, CheckpointInfo, load_checkpoint, model_kind, save_calibration,
                         save_checkpoint, save_training_record)
from .conv3d_blocks import GRID_MULTIPLE, check_grid_dims
from .fast_conv import fast_cpu_path_available, set_fast_cpu_convolutions, uses_fast_cpu_convolutions
from .model_config import AtlasNetConfig, S4RNetConfig
from .s4r_unet import S4RNet

__all__ = [
    "AtlasNet", "AtlasNetConfig", "CHECKPOINT_VERSION", "CheckpointInfo", "FeatureVolume", "GRID_MULTIPLE",
    "ResNetFPN2d", "S4RNet", "S4RNetConfig", "backproject_features", "backproject_to_grid", "check_grid_dims",
    "fast_cpu_path_available", "feature_camera", "load_checkpoint", "model_kind", "save_calibration", "save_checkpoint",
    "save_training_record", "set_fast_cpu_convolutions", "uses_fast_cpu_convolutions", "voxel_centers",
]
