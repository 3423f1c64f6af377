"""Mapping a segmenter's own classes (e.g. ADE20K's 150) onto the project's classes.

A class map is a YAML table ``{project class: [segmenter class names]}`` (config/ade20k_to_classes.yaml is the
one of the default segmenter). A segmenter class listed under a project class counts as that class; segmenter
classes listed nowhere count as "unlabeled" (their probability is dropped). A name that several output channels
share (ADE20K has two "screen" classes) maps all of them.
"""

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


def _channels_by_name(source_names: Sequence[str]) -> dict[str, list[int]]:
    """Output channels of each source class name (unnamed channels, ``""``, have none)."""
    channels: dict[str, list[int]] = {}
    for channel, name in enumerate(source_names):
        if name:
            channels.setdefault(name, []).append(channel)
    return channels


def load_class_mapping(source_names: Sequence[str], class_names: Sequence[str],
                       path: str | Path | None = None, labels_source: str = "") -> ClassMapping:
    """Read a YAML ``{project class: [source class names]}`` table (default config/ade20k_to_classes.yaml).

    Args:
        source_names: the segmenter's class name of each output channel (``""`` for an unnamed channel).
        class_names: the project's classes.
        path: the YAML file.
        labels_source: where ``source_names`` come from (e.g. a labels file), named in errors.
    Raises:
        ValueError naming the file and the class: a project class the map does not have, a segmenter class the
        model does not have, a segmenter class mapped twice, a malformed table.
    """
    path = Path(path) if path is not None else share_file(DEFAULT_ADE20K_MAPPING)
    table = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(table, dict):
        raise ValueError(f"{path}: a class map is a table {{project class: [segmenter classes]}}, got "
                         f"{type(table).__name__}")
    channels = _channels_by_name(source_names)
    of_model = f" ({labels_source})" if labels_source else ""
    matrix = np.zeros((len(source_names), len(class_names)), np.float32)
    for target, sources in table.items():
        if target not in class_names:
            raise ValueError(f"{path}: {target!r} is not a project class ({', '.join(class_names)})")
        for source in [sources] if isinstance(sources, str) else sources or []:
            if source not in channels:
                raise ValueError(f"{path}: {source!r} (under {target!r}) is not a segmenter class: the model's "
                                 f"classes{of_model} do not include it")
            for channel in channels[source]:
                if matrix[channel].any():
                    raise ValueError(f"{path}: {source!r} is mapped twice")
                matrix[channel, list(class_names).index(target)] = 1.0
    return ClassMapping(matrix, tuple(class_names))


def class_mapping_by_name(source_names: Sequence[str], class_names: Sequence[str],
                          labels_source: str = "the segmenter") -> ClassMapping:
    """The mapping of a segmenter without a class map: each of its classes counts as the project class of the same
    name; others are unlabeled. Raises ValueError when no name is shared (a class map is needed then)."""
    channels = _channels_by_name(source_names)
    matrix = np.zeros((len(source_names), len(class_names)), np.float32)
    for k, name in enumerate(class_names):
        matrix[channels.get(name, []), k] = 1.0
    if not matrix.any():
        raise ValueError(f"{labels_source}: no class has the name of a project class ({', '.join(class_names)}); "
                         "give a class map")
    return ClassMapping(matrix, tuple(class_names))
