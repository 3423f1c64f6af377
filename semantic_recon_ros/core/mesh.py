"""Triangle meshes with per-vertex color, semantic label, label confidence and, for meshes with the completion
network's surface, surface confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SemanticMesh:
    """An indexed triangle mesh in the world frame.

    Attributes:
        vertices: (N, 3) float32 positions in metres.
        triangles: (M, 3) int64 vertex indices, counter-clockwise seen from the free-space side.
        colors: (N, 3) uint8 RGB.
        labels: (N,) int64 class ids, -1 where unlabeled.
        confidence: (N,) float32 in [0, 1], share of the winning class in the class scores.
        surface_confidence: (N,) float32 in [0, 1]: 1 on observed surface, the completion network's calibrated
            confidence on predicted surface; None for meshes of observed surface only.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    surface_confidence: np.ndarray | None = None

    @classmethod
    def empty(cls, with_surface_confidence: bool = False) -> "SemanticMesh":
        return cls(
            np.zeros((0, 3), np.float32),
            np.zeros((0, 3), np.int64),
            np.zeros((0, 3), np.uint8),
            np.zeros((0,), np.int64),
            np.zeros((0,), np.float32),
            np.zeros((0,), np.float32) if with_surface_confidence else None,
        )

    @property
    def num_vertices(self) -> int:
        return len(self.vertices)

    @property
    def num_triangles(self) -> int:
        return len(self.triangles)
