"""Region meshes -> ``visualization_msgs/MarkerArray`` of TRIANGLE_LIST markers, one per region.

The map is meshed by cubic regions of whole blocks (:mod:`semantic_recon_ros.core.incremental_meshing`); each
region is one ``Marker`` (``ns`` = "mesh", or "mesh_additions" for the completion network's additions, which are
drawn semi-transparent; a stable id per region) with three points and three per-vertex colors per triangle, so no
single marker grows with the map and RViz updates only what changed. :class:`RegionMeshMarkers` takes the regions
that changed since its last update and remembers a digest of every region it sent: an update carries the regions
whose triangles or colors changed plus DELETE markers for regions that vanished; a full resend (for new
subscribers) starts with a DELETEALL.

Building ~100k ``geometry_msgs/Point`` objects in Python takes about a second, so the MarkerArray is
written directly as its CDR serialization (what ``rclpy.serialization.serialize_message`` produces,
byte for byte; checked by test/test_mesh_conversions.py) from numpy arrays, and published raw
(``publisher.publish(bytes)``).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

from ..core.classes import ClassSet
from .node_config import MESH_COLOR_CHOICES
from ..core.mesh import SemanticMesh
from ..core.ros_message_codec import ns_to_sec_nanosec

TRIANGLE_LIST = 11  # visualization_msgs/Marker constants
TEXT_VIEW_FACING = 9
ADD, DELETE, DELETEALL = 0, 2, 3
MESH_NAMESPACE = "mesh"
ADDITIONS_NAMESPACE = "mesh_additions"
ADDITIONS_ALPHA = 0.5  # the network's additions are see-through: a viewer tells them from observed surface
CDR_LITTLE_ENDIAN_HEADER = b"\x00\x01\x00\x00"


@dataclass
class MarkerFields:
    """The fields of one ``visualization_msgs/Marker`` this package sends (others stay at their defaults).

    Attributes:
        points: (N, 3) float64 positions in the marker frame.
        colors: (N, 4) float32 RGBA in [0, 1], one per point (or (0, 4)).
        position: (3,) marker pose position (orientation is the identity).
    """

    frame_id: str
    stamp_ns: int
    ns: str
    id: int
    type: int
    action: int = ADD
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float64))
    colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    text: str = ""


class _CdrWriter:
    """Little-endian plain CDR (XCDR1, as rmw_fastrtps serializes ROS messages); alignment from the payload start."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0

    def _append(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)

    def _align(self, alignment: int) -> None:
        padding = -self._size % alignment
        if padding:
            self._append(bytes(padding))

    def pack(self, fmt: str, alignment: int, *values) -> None:
        self._align(alignment)
        self._append(struct.pack("<" + fmt, *values))

    def string(self, text: str) -> None:
        encoded = text.encode("utf-8")
        self.pack("I", 4, len(encoded) + 1)
        self._append(encoded + b"\0")

    def array(self, values: np.ndarray, alignment: int) -> None:
        """A primitive array's elements (little-endian, C order); alignment only before a first element."""
        if values.size:
            self._align(alignment)
            self._append(np.ascontiguousarray(values).tobytes())

    def stamp(self, stamp_ns: int) -> None:
        self.pack("iI", 4, *ns_to_sec_nanosec(stamp_ns))

    def getvalue(self) -> bytes:
        return CDR_LITTLE_ENDIAN_HEADER + b"".join(self._parts)


def _write_marker(writer: _CdrWriter, marker: MarkerFields) -> None:
    points = np.asarray(marker.points, dtype="<f8").reshape(-1, 3)
    colors = np.asarray(marker.colors, dtype="<f4").reshape(-1, 4)
    writer.stamp(marker.stamp_ns)  # header
    writer.string(marker.frame_id)
    writer.string(marker.ns)
    writer.pack("iii", 4, marker.id, marker.type, marker.action)
    writer.pack("7d", 8, *marker.position, 0.0, 0.0, 0.0, 1.0)  # pose: position, identity orientation
    writer.pack("3d", 8, *marker.scale)
    writer.pack("4f", 4, *marker.color)
    writer.pack("iI", 4, 0, 0)  # lifetime: forever
    writer.pack("?", 1, False)  # frame_locked
    writer.pack("I", 4, len(points))
    writer.array(points, 8)
    writer.pack("I", 4, len(colors))
    writer.array(colors, 4)
    writer.string("")  # texture_resource
    writer.pack("iI", 4, 0, 0)  # texture (sensor_msgs/CompressedImage): header stamp,
    writer.string("")  # frame_id,
    writer.string("")  # format,
    writer.pack("I", 4, 0)  # data[]
    writer.pack("I", 4, 0)  # uv_coordinates[]
    writer.string(marker.text)
    writer.string("")  # mesh_resource
    writer.string("")  # mesh_file.filename
    writer.pack("I", 4, 0)  # mesh_file.data[]
    writer.pack("?", 1, False)  # mesh_use_embedded_materials


def serialize_marker_array(markers: list[MarkerFields]) -> bytes:
    """CDR bytes of a ``visualization_msgs/MarkerArray`` holding ``markers``, ready for ``publish(bytes)``."""
    writer = _CdrWriter()
    writer.pack("I", 4, len(markers))
    for marker in markers:
        _write_marker(writer, marker)
    return writer.getvalue()


def mesh_vertex_colors(mesh: SemanticMesh, classes: ClassSet, mode: str) -> np.ndarray:
    """(N, 3) uint8 vertex colors: the class palette (``"semantic"``, unlabeled gray) or the fused RGB (``"rgb"``)."""
    if mode == "semantic":
        return classes.colorize(mesh.labels)
    if mode == "rgb":
        return mesh.colors
    raise ValueError(f"unknown mesh color mode {mode!r}; choose one of {', '.join(MESH_COLOR_CHOICES)}")


def triangle_list_marker(mesh: SemanticMesh, vertex_colors: np.ndarray, frame_id: str, stamp_ns: int,
                         marker_id: int, ns: str = MESH_NAMESPACE, alpha: float = 1.0) -> MarkerFields:
    """TRIANGLE_LIST marker of every triangle of ``mesh``, per-vertex colored ((N, 3) uint8 ``vertex_colors``) with
    opacity ``alpha``."""
    corners = mesh.triangles.reshape(-1)  # (3 T,) vertex ids, triangle by triangle
    rgba = np.empty((len(corners), 4), np.float32)
    rgba[:, :3] = vertex_colors[corners] / np.float32(255)
    rgba[:, 3] = alpha
    return MarkerFields(frame_id=frame_id, stamp_ns=stamp_ns, ns=ns, id=marker_id, type=TRIANGLE_LIST,
                        points=mesh.vertices[corners].astype(np.float64), colors=rgba)


Region = tuple[int, int, int]


class RegionMeshMarkers:
    """Turns the changed regions of a map's mesh into incremental MarkerArray updates (see the module docstring).

    Args:
        frame_id: frame of the mesh vertices (the map's world frame).
        namespace: the markers' ``ns`` (the DELETEALL of :meth:`clear` clears only it).
        alpha: opacity of every vertex color.
    """

    def __init__(self, frame_id: str, namespace: str = MESH_NAMESPACE, alpha: float = 1.0) -> None:
        self.frame_id = frame_id
        self.namespace, self.alpha = namespace, float(alpha)
        self._ids: dict[Region, int] = {}
        self._digests: dict[Region, bytes] = {}  # what the subscribers currently show

    @property
    def num_regions(self) -> int:
        """Regions currently shown (sent and not deleted)."""
        return len(self._digests)

    def _region_id(self, region: Region) -> int:
        if region not in self._ids:
            self._ids[region] = len(self._ids)
        return self._ids[region]

    def update(self, regions: Mapping[Region, SemanticMesh | None], vertex_colors: Callable[[SemanticMesh], np.ndarray],
               stamp_ns: int, resend_all: bool = False) -> tuple[list[MarkerFields], int]:
        """Markers that bring subscribers up to date with the changed ``regions``, and how many regions changed.

        Args:
            regions: region -> its whole current mesh, or None (or an empty mesh) where it vanished; with
                ``resend_all``, every region of the map.
            vertex_colors: (N, 3) uint8 colors of a mesh's vertices.
            stamp_ns: header stamp of the markers (the map time).
            resend_all: start with a DELETEALL and send every region (for subscribers that joined late).
        Returns:
            (markers, number of regions added or changed); the markers are empty when nothing changed.
        """
        markers: list[MarkerFields] = []
        if resend_all:
            markers.append(self.delete_all_marker(stamp_ns))
            self._digests.clear()
        changed = 0
        for region, mesh in regions.items():
            if mesh is None or mesh.num_triangles == 0:
                if self._digests.pop(region, None) is not None:
                    markers.append(MarkerFields(frame_id=self.frame_id, stamp_ns=stamp_ns, ns=self.namespace,
                                                id=self._ids[region], type=TRIANGLE_LIST, action=DELETE))
                continue
            marker = triangle_list_marker(mesh, vertex_colors(mesh), self.frame_id, stamp_ns, self._region_id(region),
                                          self.namespace, self.alpha)
            digest = hashlib.blake2b(marker.points.tobytes() + marker.colors.tobytes(), digest_size=16).digest()
            if self._digests.get(region) != digest:
                self._digests[region] = digest
                markers.append(marker)
                changed += 1
        return markers, changed

    def delete_all_marker(self, stamp_ns: int) -> MarkerFields:
        """A DELETEALL marker for this namespace."""
        return MarkerFields(frame_id=self.frame_id, stamp_ns=stamp_ns, ns=self.namespace, id=0, type=TRIANGLE_LIST,
                            action=DELETEALL)

    def clear(self, stamp_ns: int) -> list[MarkerFields]:
        """Forget every region (map reset); returns the DELETEALL marker that clears the subscribers' view."""
        self._digests.clear()
        return [self.delete_all_marker(stamp_ns)]


def class_legend_markers(classes: ClassSet, frame_id: str, stamp_ns: int, text_height: float = 0.15) -> list[MarkerFields]:
    """One TEXT_VIEW_FACING marker per class (``ns`` "class_legend", id = class id, text "<id> <name>",
    color = class color), stacked downwards from the world origin, plus one for unlabeled (id = K)."""
    names = [f"{i} {name}" for i, name in enumerate(classes.names)] + ["unlabeled"]
    colors = np.concatenate([classes.colors, np.array([classes.unlabeled_color], np.uint8)]) / 255.0
    return [
        MarkerFields(frame_id=frame_id, stamp_ns=stamp_ns, ns="class_legend", id=i, type=TEXT_VIEW_FACING,
                     position=(0.0, 0.0, -1.5 * text_height * i), scale=(0.0, 0.0, text_height),
                     color=(float(r), float(g), float(b), 1.0), text=text)
        for i, (text, (r, g, b)) in enumerate(zip(names, colors))
    ]
