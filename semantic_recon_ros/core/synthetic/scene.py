"""A synthetic indoor scene: a union of labeled oriented boxes in the world frame.

World frame: z up, metres, floor top at z = 0; the room interior is the axis-aligned box
``[0, sx] x [0, sy] x [0, sz]`` with ``(sx, sy, sz) = room_size``; walls, floor and ceiling are slabs
just outside it. Every visible surface point lies on exactly one box face, so depth, labels, SDF and
meshes all follow exactly from the box list.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..mesh import SemanticMesh
from .appearance import BoxAppearance, ShadingConfig
from .box_sdf import BoxArrays, box_sdf

DEFAULT_SURFACE_CELL = 0.05  # m, face subdivision of the ground-truth surface mesh
_PROBE_OFFSET = 1e-3  # m, distance off a face at which surface_mesh() tests whether the face is exposed


@dataclass(eq=False)
class LabeledBox:
    """One oriented box of a synthetic scene.

    Attributes:
        center: (3,) float64 world position of the box centre, metres.
        half_extents: (3,) float64 half side lengths along the box's own x, y, z axes.
        yaw: rotation about world +z in radians (box x axis = (cos yaw, sin yaw, 0)).
        class_id: index into the scene's class names.
        color: (3,) uint8 base RGB color.
        texture_seed: seed of the box's procedural texture (see :mod:`.appearance`).
    """

    center: np.ndarray
    half_extents: np.ndarray
    yaw: float
    class_id: int
    color: np.ndarray
    texture_seed: int

    def __post_init__(self) -> None:
        self.center = np.asarray(self.center, dtype=np.float64).reshape(3)
        self.half_extents = np.asarray(self.half_extents, dtype=np.float64).reshape(3)
        self.color = np.asarray(self.color).astype(np.uint8).reshape(3)
        self.yaw = float(self.yaw)
        self.class_id = int(self.class_id)
        self.texture_seed = int(self.texture_seed)
        if not (np.isfinite(self.center).all() and np.isfinite(self.half_extents).all() and np.isfinite(self.yaw)):
            raise ValueError(f"box geometry must be finite, got center {self.center}, half extents {self.half_extents}")
        if self.half_extents.min() <= 0:
            raise ValueError(f"box half extents must be positive, got {self.half_extents}")

    def to_dict(self) -> dict:
        return {
            "center": self.center.tolist(),
            "half_extents": self.half_extents.tolist(),
            "yaw": self.yaw,
            "class_id": self.class_id,
            "color": self.color.tolist(),
            "texture_seed": self.texture_seed,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LabeledBox":
        return cls(data["center"], data["half_extents"], data["yaw"], data["class_id"], data["color"],
                   data["texture_seed"])


@dataclass(eq=False)
class SyntheticScene:
    """A room made of labeled boxes.

    Attributes:
        boxes: the boxes; their union is the scene's solid geometry.
        room_size: (3,) float64 interior extent (sx, sy, sz) in metres; interior = [0, sx] x [0, sy] x [0, sz].
        class_names: names of the class ids, in id order (the class set the scene was made with).
        seed: the seed it was generated from.
    """

    boxes: list[LabeledBox]
    room_size: np.ndarray
    class_names: tuple[str, ...]
    seed: int

    def __post_init__(self) -> None:
        self.room_size = np.asarray(self.room_size, dtype=np.float64).reshape(3)
        self.class_names = tuple(self.class_names)
        if not self.boxes:
            raise ValueError("a synthetic scene needs at least one box")
        bad = [b.class_id for b in self.boxes if not 0 <= b.class_id < len(self.class_names)]
        if bad:
            raise ValueError(f"box class ids {sorted(set(bad))} outside the {len(self.class_names)} scene classes")

    @cached_property
    def box_arrays(self) -> BoxArrays:
        """The boxes' geometry as arrays (B boxes)."""
        return BoxArrays(
            np.stack([b.center for b in self.boxes]),
            np.stack([b.half_extents for b in self.boxes]),
            np.array([b.yaw for b in self.boxes], dtype=np.float64),
        )

    @cached_property
    def class_ids(self) -> np.ndarray:
        """(B,) int64 class id of every box."""
        return np.array([b.class_id for b in self.boxes], dtype=np.int64)

    def appearance(self, shading: ShadingConfig | None = None) -> BoxAppearance:
        """Texture and shading of the boxes under ``shading`` (default :class:`ShadingConfig`)."""
        return BoxAppearance(np.stack([b.color for b in self.boxes]),
                             np.array([b.texture_seed for b in self.boxes]), shading or ShadingConfig())

    @property
    def interior_bounds(self) -> np.ndarray:
        """(2, 3) min and max corner of the room interior."""
        return np.stack((np.zeros(3), self.room_size))

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) axis-aligned bounds of all boxes (walls, floor and ceiling slabs included)."""
        corners = self.box_arrays.axis_aligned_bounds()
        return np.stack((corners[:, 0].min(axis=0), corners[:, 1].max(axis=0)))

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "room_size": self.room_size.tolist(),
            "class_names": list(self.class_names),
            "boxes": [b.to_dict() for b in self.boxes],
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SyntheticScene":
        try:
            return cls([LabeledBox.from_dict(b) for b in data["boxes"]], data["room_size"],
                       tuple(data["class_names"]), int(data["seed"]))
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a synthetic scene description (missing or malformed {err})") from None

    def mesh(self, shading: ShadingConfig | None = None) -> SemanticMesh:
        """All faces of all boxes, the geometry the renderer ray-casts: triangles 12b .. 12b + 11 are box b's.

        Vertices are not shared between faces, so every vertex carries its face's shaded color and
        its box's class label (confidence 1).
        """
        return self._face_mesh(None, shading, exposed_only=False)

    def surface_mesh(self, cell_size: float = DEFAULT_SURFACE_CELL,
                     shading: ShadingConfig | None = None) -> SemanticMesh:
        """The union's surface as seen from inside the room: the ground-truth reconstruction target.

        Box faces are split into cells of at most ``cell_size`` metres; a cell is dropped when the point
        1 mm off its centre (along the outward normal) lies inside or within 0.5 mm of another box (hidden
        contact or overlap) or outside the room interior (outer faces of walls, floor and ceiling).
        Boundaries of partly hidden faces are therefore accurate to about one cell.
        """
        if not cell_size > 0:
            raise ValueError(f"cell_size must be positive, got {cell_size}")
        return self._face_mesh(cell_size, shading, exposed_only=True)

    def _exposed(self, probes: np.ndarray) -> np.ndarray:
        """(N,) whether each (N, 3) probe point lies in the room interior and more than half the probe
        offset away from every box (only boxes whose bounding box is that close can fail the test)."""
        lo, hi = self.interior_bounds
        exposed = ((probes >= lo) & (probes <= hi)).all(axis=1)
        margin = 0.5 * _PROBE_OFFSET
        for b, (box_lo, box_hi) in enumerate(self.box_arrays.axis_aligned_bounds()):
            near = exposed & ((probes >= box_lo - margin) & (probes <= box_hi + margin)).all(axis=1)
            if near.any():
                distance = box_sdf(probes[near], self.box_arrays.subset(slice(b, b + 1)))[:, 0]
                exposed[np.flatnonzero(near)[distance <= margin]] = False
        return exposed

    def _face_mesh(self, cell_size: float | None, shading: ShadingConfig | None, exposed_only: bool) -> SemanticMesh:
        vertices, quads, normals, box_of_vertex = [], [], [], []
        offset = 0
        for b, box in enumerate(self.boxes):
            for face_vertices, face_quads, normal in _face_grids(box, cell_size):
                vertices.append(face_vertices)
                quads.append(face_quads + offset)
                normals.append(np.broadcast_to(normal, face_vertices.shape))
                box_of_vertex.append(np.full(len(face_vertices), b))
                offset += len(face_vertices)
        vertices, quads = np.concatenate(vertices), np.concatenate(quads)
        normals, box_of_vertex = np.concatenate(normals), np.concatenate(box_of_vertex)
        if exposed_only:
            probes = vertices[quads].mean(axis=1) + _PROBE_OFFSET * normals[quads[:, 0]]
            quads = quads[self._exposed(probes)]
            used, quads = np.unique(quads, return_inverse=True)
            quads = quads.reshape(-1, 4)
            vertices, normals, box_of_vertex = vertices[used], normals[used], box_of_vertex[used]
        colors = self.appearance(shading).shade(vertices, normals, box_of_vertex)
        return SemanticMesh(
            vertices=vertices.astype(np.float32),
            # quad q -> triangles 2q and 2q + 1, so the plain box mesh has triangles 12b .. 12b + 11 for box b
            triangles=np.stack((quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]), axis=1).reshape(-1, 3).astype(np.int64),
            colors=colors,
            labels=self.class_ids[box_of_vertex],
            confidence=np.ones(len(vertices), np.float32),
        )


def _face_grids(box: LabeledBox, cell_size: float | None):
    """The six faces of a box as grids of quads.

    Yields per face: (V, 3) world vertices, (Q, 4) quads as local vertex indices, counter-clockwise seen
    from outside, and the (3,) outward unit normal. ``cell_size`` None gives one quad per face.
    """
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    for axis in range(3):
        for sign in (1.0, -1.0):
            u_axis, v_axis = (axis + 1) % 3, (axis + 2) % 3
            if sign < 0:  # keep u x v = outward normal
                u_axis, v_axis = v_axis, u_axis
            hu, hv = box.half_extents[u_axis], box.half_extents[v_axis]
            nu = 1 if cell_size is None else max(1, int(np.ceil(2 * hu / cell_size)))
            nv = 1 if cell_size is None else max(1, int(np.ceil(2 * hv / cell_size)))
            uu, vv = np.meshgrid(np.linspace(-hu, hu, nu + 1), np.linspace(-hv, hv, nv + 1), indexing="ij")
            local = np.zeros(((nu + 1) * (nv + 1), 3))
            local[:, axis] = sign * box.half_extents[axis]
            local[:, u_axis], local[:, v_axis] = uu.ravel(), vv.ravel()
            i, j = (g.ravel() for g in np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij"))
            v00, v10 = i * (nv + 1) + j, (i + 1) * (nv + 1) + j
            normal = np.zeros(3)
            normal[axis] = sign
            yield local @ rotation.T + box.center, np.stack((v00, v10, v10 + 1, v00 + 1), axis=1), rotation @ normal
