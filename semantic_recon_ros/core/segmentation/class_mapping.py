"""Mapping a segmenter's own classes (e.g. ADE20K's 150) onto the project's classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from ..resources import share_file

DEFAULT_ADE20K_MAPPING = "config/ade20k_to_classes.yaml"


@dataclass(frozen=True)
class ClassMapping:
    """``matrix[s, k] = 1`` when source class ``s`` counts as project class ``k``.

    Attributes:
        matrix: (S, K) float32 0/1, at most one 1 per row (unmapped source classes have none).
        class_names: the K project classes.
    """

    matrix: np.ndarray
    class_names: tuple[str, ...]

    def __call__(self, source_probs: np.ndarray) -> np.ndarray:
        """(..., S) source-class probabilities -> (..., K) project-class probabilities."""
        return source_probs @ self.matrix


def load_class_mapping(source_names: Sequence[str], class_names: Sequence[str],
                       path: str | Path | None = None) -> ClassMapping:
    """Read a YAML ``{project class: [source class names]}`` table (default config/ade20k_to_classes.yaml)."""
    path = Path(path) if path is not None else share_file(DEFAULT_ADE20K_MAPPING)
    table = yaml.safe_load(Path(path).read_text()) or {}
    source_index = {name: i for i, name in enumerate(source_names)}
    matrix = np.zeros((len(source_names), len(class_names)), np.float32)
    for target, sources in table.items():
        if target not in class_names:
            raise ValueError(f"{path}: {target!r} is not a project class ({', '.join(class_names)})")
        for source in sources:
            if source not in source_index:
                raise ValueError(f"{path}: {source!r} (under {target!r}) is not a segmenter class")
            if matrix[source_index[source]].any():
                raise ValueError(f"{path}: {source!r} is mapped twice")
            matrix[source_index[source], class_names.index(target)] = 1.0
    return ClassMapping(matrix, tuple(class_names))
