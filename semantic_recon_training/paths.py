"""Where training finds things: the repository root and its configs, independent of the working directory.

Relative paths in training configs (data folders, sequences, the segmenter, run outputs, checkpoints) are relative
to the repository root, the folder that holds ``semantic_recon_training/``; :func:`repo_path` resolves them.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def repo_path(path: str | Path) -> str:
    """``path`` made absolute against :data:`REPO_ROOT` (normalized, so ``../shared`` leaves no ``..``); absolute
    paths and the empty string ("no path") are returned unchanged."""
    path = str(path)
    if not path or os.path.isabs(path):
        return path
    return os.path.normpath(REPO_ROOT / path)
