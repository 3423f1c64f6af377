"""What RViz shows of a mesh topic (visualization_msgs/MarkerArray): ADD / DELETE / DELETEALL applied in order."""

from __future__ import annotations

import numpy as np

from semantic_recon_ros.ros.mesh_conversions import DELETE, DELETEALL

SEC = 1_000_000_000


def apply_marker_array(shown: dict, msg) -> None:
    """Update ``shown``, (ns, id) -> (frame_id, stamp ns, (3T, 3) triangle corners, (3T, 3) uint8 colors)."""
    for marker in msg.markers:
        if marker.action == DELETEALL:
            for key in [key for key in shown if key[0] == marker.ns]:
                del shown[key]
        elif marker.action == DELETE:
            shown.pop((marker.ns, marker.id), None)
        else:
            points = np.array([(p.x, p.y, p.z) for p in marker.points]).reshape(-1, 3)
            colors = np.round(np.array([(c.r, c.g, c.b) for c in marker.colors]).reshape(-1, 3) * 255)
            stamp = marker.header.stamp.sec * SEC + marker.header.stamp.nanosec
            shown[(marker.ns, marker.id)] = (marker.header.frame_id, stamp, points, colors.astype(np.uint8))


def shown_mesh(shown: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """(3T, 3) triangle corners, (3T, 3) uint8 colors and the newest marker stamp (ns; 0 when nothing is shown)."""
    if not shown:
        return np.zeros((0, 3)), np.zeros((0, 3), np.uint8), 0
    markers = list(shown.values())
    return (np.concatenate([m[2] for m in markers]), np.concatenate([m[3] for m in markers]),
            max(m[1] for m in markers))
