"""Marching-cubes case table, derived from first principles instead of a hand-written list.

Cube corner ``c`` (0..7) sits at offset ``(c & 1, c >> 1 & 1, c >> 2 & 1)``. A corner is *inside*
when its signed distance is negative. For each of the 256 inside/outside patterns the surface is
the boundary of the inside region:

1. On every cube face, crossing edges (one end inside, one outside) are joined by segments. A face
   with four crossings (diagonal corners inside) is resolved by cutting off each inside corner
   separately. The rule depends only on the face's own corners, so two cubes sharing a face always
   agree and the mesh is crack-free.
2. Each segment is directed so that, seen from outside the cube, the inside corners lie on its
   left. Directed segments then chain into closed loops (every crossing edge starts one segment
   and ends one).
3. Each loop is fanned into triangles, wound counter-clockwise seen from the outside (positive)
   side, so triangle normals point into free space.
"""

from __future__ import annotations

import itertools

import numpy as np

CORNER_OFFSETS = np.array([(c & 1, (c >> 1) & 1, (c >> 2) & 1) for c in range(8)], dtype=np.int64)


def _edges() -> np.ndarray:
    """(12, 2) corner pairs; edge ``4 * axis + j`` runs along ``axis`` from its lower corner."""
    edges = []
    for axis in range(3):
        for corner in range(8):
            if not corner >> axis & 1:
                edges.append((corner, corner | 1 << axis))
    return np.array(edges, dtype=np.int64)


EDGE_CORNERS = _edges()
EDGE_AXIS = np.repeat(np.arange(3), 4)


def _faces() -> list[tuple[list[int], np.ndarray]]:
    """Six faces as (corners in cyclic order, outward normal)."""
    faces = []
    for axis, side in itertools.product(range(3), (0, 1)):
        a, b = [ax for ax in range(3) if ax != axis]
        cycle = [(0, 0), (1, 0), (1, 1), (0, 1)]
        corners = [side << axis | i << a | j << b for i, j in cycle]
        normal = np.zeros(3)
        normal[axis] = 1.0 if side else -1.0
        faces.append((corners, normal))
    return faces


def _edge_between(c0: int, c1: int) -> int:
    pair = sorted((c0, c1))
    return int(np.flatnonzero((EDGE_CORNERS[:, 0] == pair[0]) & (EDGE_CORNERS[:, 1] == pair[1]))[0])


def _edge_midpoint(edge: int) -> np.ndarray:
    return CORNER_OFFSETS[EDGE_CORNERS[edge]].mean(axis=0)


def _face_segments(case: int, corners: list[int], normal: np.ndarray) -> list[tuple[int, int]]:
    """Directed (from_edge, to_edge) segments on one face for inside-pattern ``case``."""
    inside = [bool(case >> c & 1) for c in corners]
    crossings = [k for k in range(4) if inside[k] != inside[(k + 1) % 4]]
    if not crossings:
        return []
    side_edges = [_edge_between(corners[k], corners[(k + 1) % 4]) for k in range(4)]
    if len(crossings) == 2:
        pairs = [([side_edges[k] for k in crossings], next(corners[k] for k in range(4) if inside[k]))]
    else:  # ambiguous face: cut off each inside corner on its own
        pairs = [([side_edges[(k - 1) % 4], side_edges[k]], corners[k]) for k in range(4) if inside[k]]
    segments = []
    for (e0, e1), inside_corner in pairs:
        p0, p1 = _edge_midpoint(e0), _edge_midpoint(e1)
        left = np.dot(np.cross(p1 - p0, CORNER_OFFSETS[inside_corner] - p0), normal)
        segments.append((e0, e1) if left > 0 else (e1, e0))
    return segments


def _case_triangles(case: int, faces) -> list[tuple[int, int, int]]:
    following = {}
    for corners, normal in faces:
        for e0, e1 in _face_segments(case, corners, normal):
            following[e0] = e1
    triangles = []
    while following:
        start = min(following)
        loop = [start]
        while following[loop[-1]] != start:
            loop.append(following[loop[-1]])
        for edge in loop:
            del following[edge]
        # The loop runs counter-clockwise around the inside region seen from outside the cube,
        # i.e. clockwise seen from the free-space side of the surface: reverse it.
        loop.reverse()
        triangles.extend((loop[0], loop[k], loop[k + 1]) for k in range(1, len(loop) - 1))
    return triangles


def build_table() -> tuple[np.ndarray, np.ndarray]:
    """Returns ``(triangle_edges (256, T, 3) int64 padded with -1, triangle_count (256,) int64)``."""
    faces = _faces()
    cases = [_case_triangles(case, faces) for case in range(256)]
    max_triangles = max(len(t) for t in cases)
    table = np.full((256, max_triangles, 3), -1, dtype=np.int64)
    for case, triangles in enumerate(cases):
        if triangles:
            table[case, : len(triangles)] = triangles
    return table, np.array([len(t) for t in cases], dtype=np.int64)


TRIANGLE_EDGES, TRIANGLE_COUNT = build_table()
