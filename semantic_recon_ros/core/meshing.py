"""Marching cubes over the sparse volume, seamless across block borders, whole or region by region.

Every cube between 8 neighbouring voxel centres is meshed, including cubes that straddle block borders (their
corners come from up to 8 blocks). A cube belongs to the block of its lowest corner, so the cubes of block ``b``
read only ``b`` and its 7 neighbours at offsets in ``{0, 1}^3``. Vertices live on cube edges and are identified by
a global *edge key* (lower voxel + axis, :func:`edge_keys`), so a vertex shared by cubes of different blocks exists
once: the mesh has no duplicate vertices and no cracks.

Blocks are grouped into cubic *regions* of ``region_blocks^3`` blocks. A mesh lists its triangles region by region
(regions in key order), block by block within a region (key order), so the same volume always gives the same mesh,
vertex for vertex, and the mesh of a map equals the concatenation of its regions' meshes (:func:`assemble`) with the
vertices they share merged. Vertices come in edge-key order. :class:`~.incremental_meshing.RegionMesher` keeps one
mesh per region and re-meshes only the regions whose blocks changed.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from .config.completion import CompletionConfig
from .map.block_index import pack_coords, unpack_keys
from .map.tsdf_volume import SemanticTSDFVolume
from .marching_cubes_table import CORNER_OFFSETS, EDGE_AXIS, EDGE_CORNERS, TRIANGLE_COUNT, TRIANGLE_EDGES
from .mesh import SemanticMesh
from .surface_fields import SurfaceFields

EDGE_COORD_BITS = 20  # bits per voxel coordinate in an edge key: voxels within +-2^19 of the origin
EDGE_COORD_OFFSET = 1 << (EDGE_COORD_BITS - 1)
DEFAULT_REGION_BLOCKS = 3  # 3 blocks of 8 voxels of 4 cm: regions of 0.96 m (the mapper's default mesh_region_size)


def edge_keys(lower_voxels: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """(...,3) int64 lower voxels of edges and (...) their axes (0, 1, 2) -> (...) int64 keys, ordered like
    (x, y, z, axis) tuples. ValueError for voxels farther than 2^19 from the origin."""
    c = lower_voxels + EDGE_COORD_OFFSET
    if c.numel() and (c.min() < 0 or c.max() >= 1 << EDGE_COORD_BITS):
        raise ValueError(f"voxel coordinates outside +-{EDGE_COORD_OFFSET}: the map extends too far to be meshed")
    packed = (c[..., 0] << (2 * EDGE_COORD_BITS)) | (c[..., 1] << EDGE_COORD_BITS) | c[..., 2]
    return packed * 3 + axes


def edge_ends(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) edge keys -> ((N, 3) lower voxel, (N, 3) upper voxel)."""
    cell, axis = keys // 3, keys % 3
    mask = (1 << EDGE_COORD_BITS) - 1
    start = torch.stack((cell >> (2 * EDGE_COORD_BITS), (cell >> EDGE_COORD_BITS) & mask, cell & mask), 1)
    start = start - EDGE_COORD_OFFSET
    return start, start + torch.nn.functional.one_hot(axis, 3)


@dataclass
class RegionMesh:
    """The mesh of one region's cubes.

    Attributes:
        region: (x, y, z) region coordinates (block coordinates // ``region_blocks``).
        mesh: its triangles and vertices (vertices shared with neighbouring regions are repeated there).
        vertex_keys: (N,) int64 edge key of every vertex, increasing.
        vertex_voxels: (N, 2) int64 flat voxel indices (slot * V + voxel) of each vertex's edge ends.
        vertex_t: (N,) float32 position of each vertex between them (what :func:`relabel_regions` reads again).
    """

    region: tuple[int, int, int]
    mesh: SemanticMesh
    vertex_keys: np.ndarray
    vertex_voxels: np.ndarray
    vertex_t: np.ndarray


def _gather_extended(pool: torch.Tensor, neighbour_rows: torch.Tensor, fill: float) -> torch.Tensor:
    """(m, B, B, B) blocks -> (n, B+1, B+1, B+1): each block plus the first voxel layer of its +x/+y/+z
    neighbours (faces, edges and corner), ``fill`` where a neighbour is absent.

    ``neighbour_rows`` is (n, 8): row in ``pool`` of the block offset by (code & 1, code >> 1 & 1, code >> 2 & 1),
    -1 where absent (code 0, the block itself, is always present).
    """
    n, B = neighbour_rows.shape[0], pool.shape[1]
    ext = pool.new_full((n, B + 1, B + 1, B + 1), fill)
    ext[:, :B, :B, :B] = pool[neighbour_rows[:, 0]]
    for code in range(1, 8):
        rows = neighbour_rows[:, code]
        has = (rows >= 0).nonzero().squeeze(1)
        if has.numel() == 0:
            continue
        # along an axis where the neighbour is offset: target index B, source index 0
        target = tuple(B if code >> axis & 1 else slice(0, B) for axis in range(3))
        source = tuple(0 if code >> axis & 1 else slice(None) for axis in range(3))
        ext[(has, *target)] = pool[(rows[has], *source)]
    return ext


def _cube_cases(inside: torch.Tensor) -> torch.Tensor:
    """(n, B+1, B+1, B+1) uint8 0/1 corner flags -> (n, B, B, B) uint8 case = sum of flag << corner.

    Built separably: corner bit = dx + 2 dy + 4 dz, combined one axis at a time.
    """
    z = inside[..., :-1] | inside[..., 1:] << 4
    y = z[:, :, :-1] | z[:, :, 1:] << 2
    return y[:, :-1] | y[:, 1:] << 1


def _cube_all(flags: torch.Tensor) -> torch.Tensor:
    """(n, B+1, B+1, B+1) bool -> (n, B, B, B): true where all 8 corners of the cube are true."""
    z = flags[..., :-1] & flags[..., 1:]
    y = z[:, :, :-1] & z[:, :, 1:]
    return y[:, :-1] & y[:, 1:]


@dataclass
class _Triangles:
    """Triangles of some blocks, grouped by region in key order, and their vertices in (region, edge key) order.

    Attributes:
        triangles: (T, 3) int64 vertex numbers.
        region_keys: (T,) int64 region key of each triangle (non-decreasing).
        vertex_keys: (N,) int64 edge key of each vertex (increasing within a region).
        vertex_regions: (N,) int64 region key of each vertex (non-decreasing; all 0 unless split by region).
        vertex_voxels: (N, 2) int64 flat voxel indices of the lower and upper voxel of each vertex's edge.
        vertex_t: (N,) float32 where the vertex lies between them (0 at the lower, 1 at the upper voxel).
        vertex_positions: (N, 3) float32 in the world frame, metres.
    """

    triangles: torch.Tensor
    region_keys: torch.Tensor
    vertex_keys: torch.Tensor
    vertex_regions: torch.Tensor
    vertex_voxels: torch.Tensor
    vertex_t: torch.Tensor
    vertex_positions: torch.Tensor


def _march(volume: SemanticTSDFVolume, fields: SurfaceFields, slots: torch.Tensor, region_blocks: int,
           split: bool) -> _Triangles:
    """Triangles of the cubes of the blocks ``slots`` ((n,) in key order). With ``split``, each region has its own
    vertices (a vertex shared by two regions is in both), otherwise every vertex is made once."""
    device, B = volume.device, volume.config.block_size
    grid = volume.grid
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    if slots.numel() == 0:
        return _Triangles(empty.view(0, 3), empty, empty, empty, empty.view(0, 2), empty.float(),
                          empty.float().view(0, 3))
    coords = grid.block_coords(slots)  # (n, 3)
    regions = pack_coords(torch.div(coords, region_blocks, rounding_mode="floor"))
    by_region = torch.argsort(regions, stable=True)  # region by region, key order kept within a region
    slots, coords, regions = slots[by_region], coords[by_region], regions[by_region]
    region_keys, block_piece = torch.unique_consecutive(regions, return_inverse=True)
    if not split:
        region_keys, block_piece = region_keys.new_zeros(1), torch.zeros_like(block_piece)
    lowest, highest = coords.amin(dim=0) * B, coords.amax(dim=0) * B + B
    edge_keys(torch.stack((lowest, highest))[None], torch.zeros((1, 2), dtype=torch.int64, device=device))  # in range?
    offsets = torch.tensor(list(itertools.product((0, 1), repeat=3)), device=device).flip(1)  # code order
    neighbours = grid.lookup((coords[:, None, :] + offsets).reshape(-1, 3)).view(-1, 8)
    # the source's fields only on the blocks these cubes read
    needed, rows = torch.unique(neighbours.clamp(min=0), return_inverse=True)
    rows = torch.where(neighbours >= 0, rows, torch.full_like(rows, -1))
    block_fields = fields.blocks(needed)
    exclude = block_fields.observed if fields.source == "additions" else None  # cubes the observed surface lacks
    ops = volume.kernel_ops
    if ops is not None:
        triangles, triangle_block, keys, ends, t, positions, vertex_piece = ops.mesh_cubes(
            block_fields.tsdf.contiguous(), block_fields.valid.contiguous(),
            None if exclude is None else exclude.contiguous(), rows, coords.contiguous(), block_piece,
            *_kernel_tables(), B, volume.config.voxel_size, EDGE_COORD_BITS, EDGE_COORD_OFFSET)
        # vertices numbered as first used -> by (piece, edge key); pieces are already in order
        order = torch.sort(keys, stable=True).indices
        if split:
            order = order.index_select(0, torch.sort(vertex_piece.index_select(0, order), stable=True).indices)
        number = torch.empty_like(order)
        number[order] = torch.arange(len(order), device=device)
        ends = ends.index_select(0, order)  # (index_select: several times faster than indexing here)
        voxels = needed.index_select(0, ends.view(-1) // B ** 3).view(-1, 2) * B ** 3 + ends % B ** 3
        return _Triangles(number.index_select(0, triangles.view(-1)).view(-1, 3),
                          regions.index_select(0, triangle_block), keys.index_select(0, order),
                          region_keys.index_select(0, vertex_piece.index_select(0, order)), voxels,
                          t.index_select(0, order), positions.index_select(0, order))
    shape = (-1, B, B, B)
    tsdf = _gather_extended(block_fields.tsdf.view(shape), rows, 1.0)
    valid = _gather_extended(block_fields.valid.view(shape), rows, False)
    # only blocks with both signs among valid corners can hold surface
    inside, outside = ((tsdf < 0) & valid).view(len(slots), -1), ((tsdf >= 0) & valid).view(len(slots), -1)
    keep = (inside.any(dim=1) & outside.any(dim=1)).nonzero().squeeze(1)
    if exclude is not None:
        exclude = _gather_extended(exclude.view(shape), rows[keep], False)
    edge_key, triangle_block = _march_torch(tsdf[keep], valid[keep], exclude, coords[keep], grid.local_coords)
    triangle_block = keep[triangle_block]
    corner_piece = block_piece[triangle_block][:, None].expand(-1, 3).reshape(-1)
    vertices, triangles = torch.unique(torch.stack((corner_piece, edge_key.view(-1)), dim=1), dim=0,
                                       return_inverse=True)  # (piece, edge key) pairs in order
    keys = vertices[:, 1]
    start, end = edge_ends(keys)
    voxels = grid.voxel_indices(torch.stack((start, end), dim=1).view(-1, 3)).view(-1, 2)
    s = fields.tsdf_at(voxels.view(-1)).view(-1, 2)
    t = (s[:, 0] / (s[:, 0] - s[:, 1])).clamp_(0.0, 1.0)
    positions = (start.float() + t[:, None] * (end - start).float()) * volume.config.voxel_size
    return _Triangles(triangles.view(-1, 3), regions[triangle_block], keys, region_keys[vertices[:, 0]], voxels, t,
                      positions)


@functools.cache
def _kernel_tables() -> tuple[torch.Tensor, ...]:
    """The marching cubes tables as the kernel takes them (contiguous int64)."""
    tables = (TRIANGLE_EDGES, TRIANGLE_COUNT, CORNER_OFFSETS, CORNER_OFFSETS[EDGE_CORNERS[:, 0]], EDGE_AXIS)
    return tuple(torch.as_tensor(np.ascontiguousarray(table), dtype=torch.int64) for table in tables)


def _march_torch(tsdf: torch.Tensor, valid: torch.Tensor, exclude: torch.Tensor | None, coords: torch.Tensor,
                 local_coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The triangles of the kernel's ``mesh_cubes`` (same triangles, same order): ((T, 3) edge keys, (T,) block).
    ``local_coords``: (B^3, 3) in-block coordinates of the voxels in storage order."""
    device, B = tsdf.device, tsdf.shape[1] - 1
    cube_valid = _cube_all(valid)
    if exclude is not None:
        cube_valid &= ~_cube_all(exclude)
    case = _cube_cases(((tsdf < 0) & valid).to(torch.uint8))
    case = torch.where(cube_valid, case, torch.zeros_like(case)).view(-1)
    cube = ((case != 0) & (case != 255)).nonzero().squeeze(1)
    case = case[cube].long()
    # one row per triangle: its cube and its three edges
    table = torch.as_tensor(TRIANGLE_EDGES, device=device)
    count = torch.as_tensor(TRIANGLE_COUNT, device=device)[case]
    tri_cube = torch.repeat_interleave(torch.arange(cube.numel(), device=device), count)
    first = torch.cumsum(count, 0) - count
    tri_edges = table[case[tri_cube], torch.arange(tri_cube.numel(), device=device) - first[tri_cube]]  # (T, 3)
    block, local = cube // B ** 3, cube % B ** 3
    cube_voxel = coords[block] * B + local_coords[local]  # (A, 3)
    edge_lower = torch.as_tensor(CORNER_OFFSETS[EDGE_CORNERS[:, 0]], device=device)  # (12, 3)
    lower_voxel = cube_voxel[tri_cube][:, None, :] + edge_lower[tri_edges]  # (T, 3, 3)
    return edge_keys(lower_voxel, torch.as_tensor(EDGE_AXIS, device=device)[tri_edges]), block[tri_cube]


def _vertices(fields: SurfaceFields, triangles: _Triangles) -> dict[str, np.ndarray]:
    """Vertex attributes of the triangles' vertices: each vertex interpolates between the two voxels of its edge."""
    attributes = fields.interpolated(triangles.vertex_voxels, triangles.vertex_t)
    out = {"vertices": triangles.vertex_positions.cpu().numpy(), "colors": attributes.rgb.cpu().numpy(),
           "labels": attributes.label.cpu().numpy(), "confidence": attributes.confidence.float().cpu().numpy()}
    if attributes.surface_confidence is not None:
        out["surface_confidence"] = attributes.surface_confidence.float().cpu().numpy()
    return out


def _mesh(attributes: dict[str, np.ndarray], triangles: np.ndarray) -> SemanticMesh:
    return SemanticMesh(triangles=triangles, surface_confidence=attributes.get("surface_confidence"),
                        **{name: attributes[name] for name in ("vertices", "colors", "labels", "confidence")})


def mesh_regions(volume: SemanticTSDFVolume, fields: SurfaceFields, slots: torch.Tensor,
                 region_blocks: int = DEFAULT_REGION_BLOCKS) -> list[RegionMesh]:
    """The meshes of the regions of the blocks ``slots`` ((n,) in key order; pass every block of a region to get
    its whole mesh), regions in key order, only those with triangles."""
    triangles = _march(volume, fields, slots, region_blocks, split=True)
    if triangles.triangles.numel() == 0:
        return []
    attributes = _vertices(fields, triangles)
    keys, vertex_of = triangles.vertex_keys.cpu().numpy(), triangles.triangles.cpu().numpy()
    voxels, t = triangles.vertex_voxels.cpu().numpy(), triangles.vertex_t.cpu().numpy()
    triangle_regions, vertex_regions = triangles.region_keys.cpu().numpy(), triangles.vertex_regions.cpu().numpy()
    triangle_starts = np.flatnonzero(np.diff(triangle_regions, prepend=triangle_regions[0] - 1))
    regions = triangle_regions[triangle_starts]
    vertex_starts = np.searchsorted(vertex_regions, regions)  # each region's vertices follow the previous one's
    triangle_stops, vertex_stops = [*triangle_starts[1:], len(vertex_of)], [*vertex_starts[1:], len(keys)]
    pieces = []
    for coords, first, stop, first_vertex, stop_vertex in zip(unpack_keys(torch.from_numpy(regions)).tolist(),
                                                              triangle_starts, triangle_stops, vertex_starts,
                                                              vertex_stops):
        # copies, not views: a piece outlives this update's arrays
        piece = _mesh({name: values[first_vertex:stop_vertex].copy() for name, values in attributes.items()},
                      vertex_of[first:stop] - first_vertex)
        vertices = slice(first_vertex, stop_vertex)
        pieces.append(RegionMesh(tuple(coords), piece, keys[vertices].copy(), voxels[vertices].copy(),
                                 t[vertices].copy()))
    return pieces


def relabel_regions(fields: SurfaceFields, pieces: Sequence[RegionMesh]) -> list[RegionMesh | None]:
    """``pieces`` with their vertices' labels and label shares read again from ``fields`` (geometry and colors
    kept: what changes in an "observed" mesh when only the network's predictions changed); None for a piece whose
    labels and shares stay the same."""
    if not pieces:
        return []
    voxels = torch.from_numpy(np.concatenate([piece.vertex_voxels for piece in pieces])).to(fields.device)
    t = torch.from_numpy(np.concatenate([piece.vertex_t for piece in pieces])).to(fields.device)
    attributes = fields.interpolated(voxels, t)
    labels, shares = attributes.label.cpu().numpy(), attributes.confidence.float().cpu().numpy()
    relabelled, stops = [], np.cumsum([piece.mesh.num_vertices for piece in pieces])
    for piece, stop in zip(pieces, stops):
        vertices = slice(stop - piece.mesh.num_vertices, stop)
        if np.array_equal(labels[vertices], piece.mesh.labels) and np.array_equal(shares[vertices],
                                                                                   piece.mesh.confidence):
            relabelled.append(None)
            continue
        mesh = replace(piece.mesh, labels=labels[vertices].copy(), confidence=shares[vertices].copy())
        relabelled.append(replace(piece, mesh=mesh))
    return relabelled


def assemble(pieces: Sequence[RegionMesh], with_surface_confidence: bool = False) -> SemanticMesh:
    """One mesh of region meshes (in the given order), the vertices they share merged (vertices in edge-key order)."""
    if not pieces:
        return SemanticMesh.empty(with_surface_confidence)
    keys = np.concatenate([piece.vertex_keys for piece in pieces])
    first_vertex = np.cumsum([0] + [piece.mesh.num_vertices for piece in pieces[:-1]])
    triangles = np.concatenate([piece.mesh.triangles + offset for piece, offset in zip(pieces, first_vertex)])
    unique_keys, first, vertex_of = np.unique(keys, return_index=True, return_inverse=True)

    def merged(name: str) -> np.ndarray:
        return np.concatenate([getattr(piece.mesh, name) for piece in pieces])[first]

    surface_confidence = merged("surface_confidence") if with_surface_confidence else None
    return SemanticMesh(vertices=merged("vertices"), triangles=vertex_of.reshape(-1)[triangles], colors=merged("colors"),
                        labels=merged("labels"), confidence=merged("confidence"), surface_confidence=surface_confidence)


def extract_mesh(volume: SemanticTSDFVolume, min_weight: float = 0.0, source: str = "observed",
                 completion: CompletionConfig | None = None,
                 region_blocks: int = DEFAULT_REGION_BLOCKS) -> SemanticMesh:
    """Triangle mesh of the zero level set of the TSDF, in the world frame.

    Args:
        volume: the map.
        min_weight: observed voxels count only with weight above this (0 = observed at least once);
            cubes are meshed only where all 8 corner voxels are valid.
        source: "observed", "completed", "both" or "additions", see :mod:`.surface_fields` ("additions": only
            the cubes of "both" with at least one unobserved corner).
        completion: which predictions are trusted and whose labels win (default: :class:`CompletionConfig`'s).
        region_blocks: edge of the regions in blocks (the order of the triangles, see the module docstring).
    Returns:
        SemanticMesh with per-vertex color, label (argmax of the interpolated class scores, -1 where there are
        none), confidence (winning share of the scores) and, for sources other than "observed", the interpolated
        surface confidence (1 on observed voxels, the network's calibrated confidence elsewhere).
    """
    fields = SurfaceFields(volume, source, min_weight, completion)
    triangles = _march(volume, fields, volume.grid.slots, region_blocks, split=False)
    if triangles.triangles.numel() == 0:
        return SemanticMesh.empty(with_surface_confidence=source != "observed")
    return _mesh(_vertices(fields, triangles), triangles.triangles.cpu().numpy())
