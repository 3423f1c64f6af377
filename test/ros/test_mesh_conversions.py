"""Mesh -> MarkerArray conversion: CDR bytes as rclpy reads them, region split, incremental updates, legend."""

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
from semantic_recon_ros.core.meshing import extract_mesh  # noqa: E402
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
    triangle_regions,
)

from support.frames import downscale  # noqa: E402

CLASSES = load_class_set()
SEC = 1_000_000_000


@pytest.fixture(scope="module")
def kitchen_mesh(seven_scenes) -> SemanticMesh:
    """A real fused mesh (8 quarter-size 7-Scenes frames, 4 cm), labels from depth bins so classes vary."""
    volume = SemanticTSDFVolume(VolumeConfig(), CLASSES.names, "cpu")
    for frame in seven_scenes.subset(stride=25, max_frames=8):
        frame = downscale(frame, 2)
        labels = np.where(frame.depth > 0, (frame.depth / 0.3).astype(np.int64) % CLASSES.num_classes, 255)
        volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color, labels=labels)
    mesh = extract_mesh(volume)
    assert mesh.num_triangles > 5000
    return mesh


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


def test_serialized_marker_array_is_what_rclpy_reads(kitchen_mesh):
    mesh = kitchen_mesh
    colors = mesh_vertex_colors(mesh, CLASSES, "rgb")
    markers, changed = RegionMeshMarkers("world", 1.0).update(mesh, colors, 1_700_000_000 * SEC + 123_456_789)
    assert changed == len(markers) > 3
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


def test_regions_partition_the_triangles_by_centroid(kitchen_mesh):
    mesh, size = kitchen_mesh, 0.75
    regions = triangle_regions(mesh, size)
    together = np.sort(np.concatenate(list(regions.values())))
    np.testing.assert_array_equal(together, np.arange(mesh.num_triangles))
    for cell, triangles in regions.items():
        centroids = mesh.vertices[mesh.triangles[triangles]].mean(axis=1)
        np.testing.assert_array_equal(np.floor(centroids / size).astype(int), np.broadcast_to(cell, centroids.shape))
    assert triangle_regions(SemanticMesh.empty(), size) == {}
    with pytest.raises(ValueError, match="region_size must be positive"):
        triangle_regions(mesh, 0.0)


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


def test_incremental_updates_reproduce_each_mesh(kitchen_mesh):
    mesh = kitchen_mesh
    colors = mesh_vertex_colors(mesh, CLASSES, "semantic")
    regions = RegionMeshMarkers("world", 1.0)
    shown: dict = {}

    def receive(markers):
        return assembled(deserialize_message(serialize_marker_array(markers), MarkerArray).markers, shown)

    markers, changed = regions.update(mesh, colors, 1)
    receive(markers)
    assert shown_triangles(shown) == mesh_triangles(mesh, colors)
    assert regions.num_regions == changed == len(triangle_regions(mesh, 1.0))

    assert regions.update(mesh, colors, 2) == ([], 0)  # nothing changed: nothing sent

    # move the vertices of one region: only that region (and any region sharing those vertices) is resent
    cells = triangle_regions(mesh, 1.0)
    cell, triangles = max(cells.items(), key=lambda item: len(item[1]))
    moved = SemanticMesh(mesh.vertices.copy(), mesh.triangles, mesh.colors, mesh.labels, mesh.confidence)
    vertex_ids = np.unique(mesh.triangles[triangles])
    moved.vertices[vertex_ids] += np.float32(0.001)
    touched = {c for c, t in triangle_regions(moved, 1.0).items() if np.isin(moved.triangles[t], vertex_ids).any()}
    markers, changed = regions.update(moved, colors, 3)
    assert changed == len(markers) == len(touched) < len(cells)
    receive(markers)
    assert shown_triangles(shown) == mesh_triangles(moved, colors)

    # drop the triangles of one region: it is deleted
    keep = np.setdiff1d(np.arange(mesh.num_triangles), triangles)
    smaller = SemanticMesh(mesh.vertices, mesh.triangles[keep], mesh.colors, mesh.labels, mesh.confidence)
    markers, changed = regions.update(smaller, colors, 4)
    assert [m.action for m in markers].count(DELETE) == 1 and regions.num_regions == len(cells) - 1
    receive(markers)
    assert shown_triangles(shown) == mesh_triangles(smaller, colors)

    # a late subscriber starts from nothing: resend_all brings it the whole mesh after a DELETEALL
    late: dict = {("mesh", 999): Marker(ns="mesh", id=999)}
    markers, changed = regions.update(smaller, colors, 5, resend_all=True)
    assert markers[0].action == DELETEALL and changed == len(markers) - 1 == regions.num_regions
    assembled(deserialize_message(serialize_marker_array(markers), MarkerArray).markers, late)
    assert shown_triangles(late) == mesh_triangles(smaller, colors)

    receive(regions.clear(6))
    assert shown == {} and regions.num_regions == 0


def test_the_additions_are_semi_transparent_in_a_namespace_of_their_own(kitchen_mesh):
    colors = mesh_vertex_colors(kitchen_mesh, CLASSES, "rgb")
    additions = RegionMeshMarkers("world", 1.0, ADDITIONS_NAMESPACE, ADDITIONS_ALPHA)
    markers, _ = additions.update(kitchen_mesh, colors, 1)
    received = deserialize_message(serialize_marker_array(markers), MarkerArray).markers
    assert received and all(m.ns == "mesh_additions" for m in received)
    assert {c.a for m in received for c in m.colors} == {ADDITIONS_ALPHA} and ADDITIONS_ALPHA < 1
    observed, _ = RegionMeshMarkers("world", 1.0).update(kitchen_mesh, colors, 1)
    assert {c for m in observed for c in m.colors[:, 3].tolist()} == {1.0}
    # clearing the additions deletes only their namespace
    (clear,) = deserialize_message(serialize_marker_array(additions.clear(2)), MarkerArray).markers
    assert clear.action == DELETEALL and clear.ns == "mesh_additions" and additions.num_regions == 0


def test_vertex_colors_follow_the_mode(kitchen_mesh):
    mesh = kitchen_mesh
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
