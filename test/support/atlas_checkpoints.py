"""An untrained Atlas checkpoint for tests of the RGB-only plumbing (loading, back-projection, the network's run,
saving): the project ships no trained RGB-only model yet, so no test may rely on one's reconstruction."""

from pathlib import Path

import torch

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.models import AtlasNet, AtlasNetConfig, save_checkpoint


def untrained_atlas_checkpoint(path: Path, feature_source: str = "color", seed: int = 0) -> Path:
    """A small seeded Atlas network (width 4) for the package's classes, 4 cm voxels, written to ``path``."""
    torch.manual_seed(seed)
    classes = load_class_set().names
    network = AtlasNet(AtlasNetConfig(num_classes=len(classes), feature_source=feature_source, base_width=4))
    save_checkpoint(path, network, classes, 0.04, 0.16)
    return path
