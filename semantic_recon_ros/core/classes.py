"""The semantic class list and its color palette, loaded from a YAML file (config/classes.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml

from .resources import share_file

DEFAULT_CLASSES_FILE = "config/classes.yaml"


@dataclass(frozen=True)
class ClassSet:
    """Ordered class names with one RGB color each; class id = index in ``names``."""

    names: tuple[str, ...]
    colors: np.ndarray = field(compare=False)  # (K, 3) uint8
    unlabeled_color: tuple[int, int, int] = (80, 80, 80)

    def __post_init__(self) -> None:
        if len(self.names) == 0:
            raise ValueError("a class set needs at least one class")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"duplicate class names in {self.names}")
        if self.colors.shape != (len(self.names), 3):
            raise ValueError(f"need one RGB color per class, got colors of shape {self.colors.shape}")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """Integer labels of any shape -> (..., 3) uint8 colors; out-of-range labels get the unlabeled color."""
        labels = np.asarray(labels)
        palette = np.concatenate([self.colors, np.array([self.unlabeled_color], dtype=np.uint8)])
        index = np.where((labels >= 0) & (labels < self.num_classes), labels, self.num_classes)
        return palette[index]

    @classmethod
    def from_names(cls, names: Sequence[str]) -> "ClassSet":
        """Classes ``names`` colored as in the package's class list where a name is there, grey elsewhere."""
        known = load_class_set()
        colors = [known.colors[known.names.index(n)] if n in known.names else (128, 128, 128) for n in names]
        return cls(tuple(names), np.array(colors, dtype=np.uint8).reshape(-1, 3))

    def index(self, name: str) -> int:
        """Class id of ``name``; ValueError listing the known names otherwise."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown class {name!r}; known classes: {', '.join(self.names)}") from None


def load_class_set(path: str | Path | None = None) -> ClassSet:
    """Read a class YAML (default: the package's ``config/classes.yaml``).

    Format: ``classes: [{name: wall, color: [r, g, b]}, ...]`` and optional ``unlabeled_color``.
    """
    path = Path(path) if path is not None else share_file(DEFAULT_CLASSES_FILE)
    with open(path) as f:
        data = yaml.safe_load(f)
    try:
        entries = data["classes"]
        names = tuple(str(e["name"]) for e in entries)
        colors = np.array([e["color"] for e in entries], dtype=np.int64)
    except (TypeError, KeyError) as err:
        raise ValueError(f"{path}: expected 'classes: [{{name: ..., color: [r, g, b]}}, ...]' ({err})") from None
    if colors.ndim != 2 or colors.shape[1] != 3 or colors.min() < 0 or colors.max() > 255:
        raise ValueError(f"{path}: every class color must be three integers in 0..255")
    unlabeled = tuple(int(c) for c in data.get("unlabeled_color", (80, 80, 80)))
    return ClassSet(names, colors.astype(np.uint8), unlabeled)
