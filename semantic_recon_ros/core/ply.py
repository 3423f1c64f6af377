"""Binary PLY files for :class:`SemanticMesh`, keeping the class label and confidence per vertex.

Vertex properties: ``x y z`` (float), ``red green blue`` (uchar), ``label`` (int, -1 unlabeled),
``confidence`` (float: share of the winning class) and, for meshes with the completion network's surface,
``surface_confidence`` (float: 1 on observed surface, the network's calibrated confidence on predicted surface;
filter on it to keep only the surface likely right). Class names are recorded as header comments
(``comment class <id> <name>``) so the file is self-describing. Standard viewers (MeshLab, Open3D, CloudCompare)
read the geometry and colors and ignore or show the extra properties.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .mesh import SemanticMesh

_VERTEX_FIELDS = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                  ("label", "<i4"), ("confidence", "<f4")]
_VERTEX_DTYPE = np.dtype(_VERTEX_FIELDS)
_COMPLETED_VERTEX_DTYPE = np.dtype(_VERTEX_FIELDS + [("surface_confidence", "<f4")])
_FACE_DTYPE = np.dtype([("count", "u1"), ("indices", "<i4", (3,))])
_PLY_TYPES = {"f4": "float", "u1": "uchar", "i4": "int"}


def write_semantic_ply(path: str | Path, mesh: SemanticMesh, class_names: Sequence[str] = (),
                       colors: np.ndarray | None = None) -> Path:
    """Write ``mesh`` atomically; ``colors`` (N, 3) uint8 overrides the vertex colors (e.g. a label palette)."""
    path = Path(path)
    dtype = _VERTEX_DTYPE if mesh.surface_confidence is None else _COMPLETED_VERTEX_DTYPE
    vertices = np.empty(mesh.num_vertices, dtype=dtype)
    vertices["x"], vertices["y"], vertices["z"] = mesh.vertices.T
    rgb = mesh.colors if colors is None else colors
    vertices["red"], vertices["green"], vertices["blue"] = rgb.T
    vertices["label"] = mesh.labels
    vertices["confidence"] = mesh.confidence
    if mesh.surface_confidence is not None:
        vertices["surface_confidence"] = mesh.surface_confidence
    faces = np.empty(mesh.num_triangles, dtype=_FACE_DTYPE)
    faces["count"] = 3
    faces["indices"] = mesh.triangles
    header = ["ply", "format binary_little_endian 1.0", "comment written by semantic_recon_ros"]
    header += [f"comment class {i} {name}" for i, name in enumerate(class_names)]
    header.append(f"element vertex {mesh.num_vertices}")
    header += [f"property {_PLY_TYPES[dtype[n].str[1:]]} {n}" for n in dtype.names]
    header += [f"element face {mesh.num_triangles}", "property list uchar int vertex_indices", "end_header"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(("\n".join(header) + "\n").encode("ascii"))
            f.write(vertices.tobytes())
            f.write(faces.tobytes())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_semantic_ply(path: str | Path) -> tuple[SemanticMesh, list[str]]:
    """Read a file written by :func:`write_semantic_ply`; returns the mesh and the class names."""
    path = Path(path)
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError(f"{path}: not a PLY file")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise ValueError(f"{path}: only binary little-endian PLY written by semantic_recon_ros is supported")
    names, counts, properties = [], {}, []
    for line in header:
        words = line.split()
        if words[:2] == ["comment", "class"]:
            names.append(" ".join(words[3:]))
        elif words[0] == "element":
            counts[words[1]] = int(words[2])
        elif words[0] == "property" and words[1] != "list":
            properties.append(words[2])
    dtype = next((d for d in (_VERTEX_DTYPE, _COMPLETED_VERTEX_DTYPE) if properties == list(d.names)), None)
    if dtype is None:
        raise ValueError(f"{path}: vertex properties {properties} are not those of a semantic mesh")
    offset = end + len(b"end_header\n")
    try:
        vertices = np.frombuffer(data, dtype, counts["vertex"], offset)
        faces = np.frombuffer(data, _FACE_DTYPE, counts["face"], offset + vertices.nbytes)
    except (KeyError, ValueError) as err:
        raise ValueError(f"{path}: truncated or malformed PLY ({err})") from None
    if (faces["count"] != 3).any():
        raise ValueError(f"{path}: only triangle faces are supported")
    mesh = SemanticMesh(
        vertices=np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1),
        triangles=faces["indices"].astype(np.int64),
        colors=np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1),
        labels=vertices["label"].astype(np.int64),
        confidence=vertices["confidence"].copy(),
        surface_confidence=vertices["surface_confidence"].copy() if "surface_confidence" in dtype.names else None,
    )
    return mesh, names
