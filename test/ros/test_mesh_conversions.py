"""Region meshes -> MarkerArray conversion: CDR bytes as rclpy reads them, incremental updates of a growing map
as RViz assembles them, additions namespace, legend."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("visualization_msgs")

from geometry_msgs.msg import Point  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from std_msgs.msg import ColorRGBA  # noqa: E402
from visualization_msgs.msg import Marker, MarkerArray  # noqa: E402

from semantic_recon_ros.core.classes import load_class_set  # noqa: E402
from semantic_recon_ros.core.mesh import SemanticMesh  # noqa: E402
from semantic_recon_ros.core.incremental_meshing import RegionMesher  # noqa: E402
from semantic_recon_ros.core.map import SemanticTSDFVolume  # noqa: E402
from semantic_recon_ros.core.config.volume import VolumeConfig  # noqa: E402
from semantic_recon_ros.ros.mesh_conversions import (  # noqa: E402
    ADDITIONS_ALPHA,
    ADDITIONS_NAMESPACE,
    DELETE,
    DELETEALL,
    TEXT_VIEW_FACING,
    TRIANGLE_LIST,
    MarkerFields,
    RegionMeshMarkers,
    class_legend_markers,
    mesh_vertex_colors,
    serialize_marker_array,
)

from support.frames import downscale  # noqa: E402

CLASSES = load_class_set()
SEC = 1_000_000_000


def kitchen_frames(seven_scenes) -> list:
    """8 half-size 7-Scenes frames with labels from depth bins (so classes vary)."""
    frames = []
    for frame in seven_scenes.subset(stride=25, max_frames=8):
        frame = downscale(frame, 2)
        labels = np.where(frame.depth > 0, (frame.depth / 0.3).astype(np.int64) % CLASSES.num_classes, 255)
        frames.append((frame, labels))
    return frames


def fuse(volume: SemanticTSDFVolume, frames: list) -> None:
    for frame, labels in frames:
        volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=labels)


@pytest.fixture(scope="module")
def kitchen_regions(seven_scenes) -> dict:
    """The region meshes of a real fused map (8 frames, 4 cm, regions of 3 blocks)."""
    volume = SemanticTSDFVolume(VolumeConfig(), CLASSES.names, "cpu")
    fuse(volume, kitchen_frames(seven_scenes))
    mesher = RegionMesher(volume, region_blocks=3)
    mesher.update()
    regions = {region: piece.mesh for region, piece in mesher.changes_since(0).items()}
    assert sum(mesh.num_triangles for mesh in regions.values()) > 5000
    return regions


def rgb(mesh: SemanticMesh) -> np.ndarray:
    return mesh_vertex_colors(mesh, CLASSES, "rgb")


def semantic(mesh: SemanticMesh) -> np.ndarray:
    return mesh_vertex_colors(mesh, CLASSES, "semantic")


def reference_marker(fields: MarkerFields) -> Marker:
    """The same marker built field by field with rclpy message classes."""
    marker = Marker()
    marker.header.stamp.sec, marker.header.stamp.nanosec = divmod(fields.stamp_ns, SEC)
    marker.header.frame_id = fields.frame_id
    marker.ns, marker.id, marker.type, marker.action = fields.ns, fields.id, fields.type, fields.action
    marker.pose.position.x, marker.pose.position.y, marker.pose.position.z = fields.position
    marker.pose.orientation.w = 1.0
    marker.scale.x, marker.scale.y, marker.scale.z = fields.scale
    marker.color.r, marker.color.g, marker.color.b, marker.color.a = fields.color
    marker.points = [Point(x=x, y=y, z=z) for x, y, z in fields.points.tolist()]
    marker.colors = [ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in fields.colors.tolist()]
    marker.text = fields.text
    return marker


def test_serialized_marker_array_is_what_rclpy_reads(kitchen_regions):
    markers, changed = RegionMeshMarkers("world").update(kitchen_regions, rgb, 1_700_000_000 * SEC + 123_456_789)
    assert changed == len(markers) == len(kitchen_regions) > 3
    markers += [
        MarkerFields("world", 5 * SEC, "mesh", 9, TRIANGLE_LIST, action=DELETE),
        MarkerFields("map", 7, "odd ns with ünïcode", -3, TRIANGLE_LIST, action=DELETEALL),
        *class_legend_markers(CLASSES, "world", 42),
    ]
    start = time.perf_counter()
    raw = serialize_marker_array(markers)
    seconds = time.perf_counter() - start
    expected = MarkerArray(markers=[reference_marker(m) for m in markers])
    # float32 fields (colors) compare after both pass through the wire format
    assert deserialize_message(raw, MarkerArray) == deserialize_message(serialize_message(expected), MarkerArray)
    assert len(raw) == len(serialize_message(expected))
    points = sum(len(m.points) for m in markers)
    print(f"\n{points // 3} triangles in {len(markers)} markers serialized in {seconds * 1000:.1f} ms ({len(raw) / 1e6:.1f} MB)")


def assembled(markers: list[Marker], shown: dict) -> dict:
    """Apply received markers the way RViz does: ADD replaces (ns, id), DELETE removes, DELETEALL clears the ns."""
    for marker in markers:
        if marker.action == DELETEALL:
            for key in [k for k in shown if k[0] == marker.ns]:
                del shown[key]
        elif marker.action == DELETE:
            shown.pop((marker.ns, marker.id), None)
        else:
            shown[(marker.ns, marker.id)] = marker
    return shown


def triangle_set(points: np.ndarray, colors: np.ndarray) -> set:
    """Triangles (and their vertex colors) as a set of rounded tuples, independent of order."""
    corners = np.concatenate([points.reshape(-1, 9), colors.reshape(-1, 12)], axis=1)
    return {tuple(row) for row in np.round(corners, 5).tolist()}


def shown_triangles(shown: dict) -> set:
    points = [np.array([[p.x, p.y, p.z] for p in m.points]) for m in shown.values()]
    colors = [np.array([[c.r, c.g, c.b, c.a] for c in m.colors], np.float32) for m in shown.values()]
    if not points:
        return set()
    return triangle_set(np.concatenate(points), np.concatenate(colors))


def mesh_triangles(mesh: SemanticMesh, colors: np.ndarray) -> set:
    rgba = np.concatenate([colors / np.float32(255), np.ones((len(colors), 1), np.float32)], axis=1)
    return triangle_set(mesh.vertices[mesh.triangles].astype(np.float64), rgba[mesh.triangles].astype(np.float32))


def test_incremental_updates_reproduce_each_mesh_of_a_growing_map(seven_scenes):
    frames = kitchen_frames(seven_scenes)
    volume = SemanticTSDFVolume(VolumeConfig(), CLASSES.names, "cpu")
    mesher = RegionMesher(volume, region_blocks=3)
    markers_of = RegionMeshMarkers("world")
    shown: dict = {}

    def publish(resend_all: bool = False, since: int = 0) -> tuple[list, int]:
        mesher.update()
        regions = {region: None if piece is None else piece.mesh
                   for region, piece in mesher.changes_since(since).items()}
        markers, changed = markers_of.update(regions, semantic, 1, resend_all=resend_all)
        return deserialize_message(serialize_marker_array(markers), MarkerArray).markers, changed

    fuse(volume, frames[:4])
    markers, changed = publish()
    assembled(markers, shown)
    assert shown_triangles(shown) == mesh_triangles(mesher.mesh(), semantic(mesher.mesh()))
    assert markers_of.num_regions == changed == len(shown)

    seen = mesher.revision
    assert publish(since=seen) == ([], 0)  # nothing changed: nothing sent

    # more frames: only the regions they changed are sent, and the view shows the whole new mesh
    fuse(volume, frames[4:5])
    markers, changed = publish(since=seen)
    assert 0 < changed <= len(markers) < markers_of.num_regions
    assembled(markers, shown)
    assert shown_triangles(shown) == mesh_triangles(mesher.mesh(), semantic(mesher.mesh()))

    # blocks removed (the clearing radius): their regions' markers are deleted or resent
    seen = mesher.revision
    before = markers_of.num_regions
    volume.grid.remove(volume.block_centers(volume.grid.slots)[:, 0] > float(np.median(
        volume.block_centers(volume.grid.slots)[:, 0])))
    markers, _ = publish(since=seen)
    assert [m.action for m in markers].count(DELETE) > 0 and markers_of.num_regions < before
    assembled(markers, shown)
    assert shown_triangles(shown) == mesh_triangles(mesher.mesh(), semantic(mesher.mesh()))

    # a late subscriber starts from nothing: resend_all brings it the whole mesh after a DELETEALL
    late: dict = {("mesh", 999): Marker(ns="mesh", id=999)}
    markers, changed = publish(resend_all=True)
    assert markers[0].action == DELETEALL and changed == len(markers) - 1 == markers_of.num_regions
    assembled(markers, late)
    assert shown_triangles(late) == mesh_triangles(mesher.mesh(), semantic(mesher.mesh()))

    assembled(deserialize_message(serialize_marker_array(markers_of.clear(6)), MarkerArray).markers, shown)
    assert shown == {} and markers_of.num_regions == 0


def test_the_additions_are_semi_transparent_in_a_namespace_of_their_own(kitchen_regions):
    additions = RegionMeshMarkers("world", ADDITIONS_NAMESPACE, ADDITIONS_ALPHA)
    markers, _ = additions.update(kitchen_regions, rgb, 1)
    received = deserialize_message(serialize_marker_array(markers), MarkerArray).markers
    assert received and all(m.ns == "mesh_additions" for m in received)
    assert {c.a for m in received for c in m.colors} == {ADDITIONS_ALPHA} and ADDITIONS_ALPHA < 1
    observed, _ = RegionMeshMarkers("world").update(kitchen_regions, rgb, 1)
    assert {c for m in observed for c in m.colors[:, 3].tolist()} == {1.0}
    # clearing the additions deletes only their namespace
    (clear,) = deserialize_message(serialize_marker_array(additions.clear(2)), MarkerArray).markers
    assert clear.action == DELETEALL and clear.ns == "mesh_additions" and additions.num_regions == 0


def test_vertex_colors_follow_the_mode(kitchen_regions):
    mesh = max(kitchen_regions.values(), key=lambda region: region.num_triangles)
    np.testing.assert_array_equal(mesh_vertex_colors(mesh, CLASSES, "rgb"), mesh.colors)
    semantic = mesh_vertex_colors(mesh, CLASSES, "semantic")
    labeled = mesh.labels >= 0
    assert labeled.any()
    np.testing.assert_array_equal(semantic[labeled], CLASSES.colors[mesh.labels[labeled]])
    np.testing.assert_array_equal(semantic[~labeled], np.broadcast_to(CLASSES.unlabeled_color, semantic[~labeled].shape))
    with pytest.raises(ValueError, match="unknown mesh color mode 'depth'"):
        mesh_vertex_colors(mesh, CLASSES, "depth")


def test_class_legend_lists_every_class_with_its_color():
    markers = deserialize_message(serialize_marker_array(class_legend_markers(CLASSES, "world", 3 * SEC)), MarkerArray).markers
    assert [m.text for m in markers] == [f"{i} {name}" for i, name in enumerate(CLASSES.names)] + ["unlabeled"]
    assert all(m.type == TEXT_VIEW_FACING and m.ns == "class_legend" and m.header.frame_id == "world" for m in markers)
    colors = np.round([[m.color.r * 255, m.color.g * 255, m.color.b * 255] for m in markers]).astype(np.uint8)
    np.testing.assert_array_equal(colors[:-1], CLASSES.colors)
    np.testing.assert_array_equal(colors[-1], CLASSES.unlabeled_color)
    assert len({m.pose.position.z for m in markers}) == len(markers)  # stacked, not overlapping
