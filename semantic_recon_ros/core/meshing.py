"""Marching cubes over the whole sparse volume, seamless across block borders.

Every cube between 8 neighbouring voxel centres is meshed, including cubes that straddle block
borders (their corners come from up to 8 blocks). Vertices live on cube edges and are identified
by their global edge (lower voxel + axis), so a vertex shared by cubes of different blocks exists
once: the mesh has no duplicate vertices and no cracks. Blocks are visited in key order, so the
same volume always gives the same mesh, vertex for vertex.
"""

from __future__ import annotations

import itertools

import torch

from .config.completion import CompletionConfig
from .marching_cubes_table import CORNER_OFFSETS, EDGE_AXIS, EDGE_CORNERS, TRIANGLE_COUNT, TRIANGLE_EDGES
from .mesh import SemanticMesh
from .surface_fields import SurfaceFields, labels_from_scores
from .map.tsdf_volume import SemanticTSDFVolume


def _gather_extended(pool: torch.Tensor, neighbour_slots: torch.Tensor, fill: float) -> torch.Tensor:
    """(slots, B, B, B) pool -> (n, B+1, B+1, B+1): each block plus the first voxel layer of its
    +x/+y/+z neighbours (faces, edges and corner), ``fill`` where a neighbour is absent.

    ``neighbour_slots`` is (n, 8): slot of the block offset by (code & 1, code >> 1 & 1, code >> 2 & 1).
    """
    n, B = neighbour_slots.shape[0], pool.shape[1]
    ext = pool.new_full((n, B + 1, B + 1, B + 1), fill)
    ext[:, :B, :B, :B] = pool[neighbour_slots[:, 0]]
    for code in range(1, 8):
        slots = neighbour_slots[:, code]
        has = (slots >= 0).nonzero().squeeze(1)
        if has.numel() == 0:
            continue
        # along an axis where the neighbour is offset: target index B, source index 0
        target = tuple(B if code >> axis & 1 else slice(0, B) for axis in range(3))
        source = tuple(0 if code >> axis & 1 else slice(None) for axis in range(3))
        ext[(has, *target)] = pool[(slots[has], *source)]
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


def extract_mesh(volume: SemanticTSDFVolume, min_weight: float = 0.0, source: str = "observed",
                 completion: CompletionConfig | None = None) -> SemanticMesh:
    """Triangle mesh of the zero level set of the TSDF, in the world frame.

    Args:
        volume: the map.
        min_weight: observed voxels count only with weight above this (0 = observed at least once);
            cubes are meshed only where all 8 corner voxels are valid.
        source: "observed", "completed", "both" or "additions", see :mod:`.surface_fields` ("additions": only
            the cubes of "both" with at least one unobserved corner).
        completion: which predictions are trusted and whose labels win (default: :class:`CompletionConfig`'s).
    Returns:
        SemanticMesh with per-vertex color, label (argmax of the interpolated class scores, -1 where there are
        none), confidence (winning share of the scores) and, for sources other than "observed", the interpolated
        surface confidence (1 on observed voxels, the network's calibrated confidence elsewhere).
    """
    device, cfg = volume.device, volume.config
    B, K = cfg.block_size, volume.num_classes
    fields = SurfaceFields(volume, source, min_weight, completion)
    if volume.num_blocks == 0:
        return SemanticMesh.empty(with_surface_confidence=source != "observed")
    grid = volume.grid
    slots = grid.slots
    coords = grid.block_coords(slots)  # (n, 3), key order
    offsets = torch.tensor(list(itertools.product((0, 1), repeat=3)), device=device).flip(1)  # code order
    neighbours = grid.lookup((coords[:, None, :] + offsets).reshape(-1, 3)).view(-1, 8)

    pool_shape = (-1, B, B, B)
    tsdf = _gather_extended(fields.tsdf.view(pool_shape), neighbours, 1.0)
    observed = _gather_extended(fields.valid.view(pool_shape), neighbours, False)
    measured = _gather_extended(fields.observed.view(pool_shape), neighbours, False) if source == "additions" else None
    inside = (tsdf < 0) & observed
    outside = (tsdf >= 0) & observed
    # only blocks with both signs among observed corners can hold surface
    flat_in, flat_out = inside.view(len(slots), -1), outside.view(len(slots), -1)
    keep = (flat_in.any(dim=1) & flat_out.any(dim=1)).nonzero().squeeze(1)
    if keep.numel() == 0:
        return SemanticMesh.empty(with_surface_confidence=source != "observed")
    coords, inside, observed = coords[keep], inside[keep], observed[keep]

    case = _cube_cases(inside.to(torch.uint8))
    valid = _cube_all(observed)
    if measured is not None:  # the additions: cubes the observed surface does not have
        valid &= ~_cube_all(measured[keep])
    case = torch.where(valid, case, torch.zeros_like(case)).view(-1)
    cube = ((case != 0) & (case != 255)).nonzero().squeeze(1)
    if cube.numel() == 0:
        return SemanticMesh.empty(with_surface_confidence=source != "observed")
    case = case[cube].long()

    # one row per triangle: its cube and its three edge ids
    table = torch.as_tensor(TRIANGLE_EDGES, device=device)
    count = torch.as_tensor(TRIANGLE_COUNT, device=device)[case]
    tri_cube = torch.repeat_interleave(torch.arange(cube.numel(), device=device), count)
    first = torch.cumsum(count, 0) - count
    tri_edges = table[case[tri_cube], torch.arange(tri_cube.numel(), device=device) - first[tri_cube]]  # (T, 3)

    # global edge ids -> unique vertices
    block, local = cube // B ** 3, cube % B ** 3
    cube_voxel = coords[block] * B + grid.local_coords[local]  # (A, 3)
    edge_lower = torch.as_tensor(CORNER_OFFSETS[EDGE_CORNERS[:, 0]], device=device)  # (12, 3)
    lower_voxel = cube_voxel[tri_cube][:, None, :] + edge_lower[tri_edges]  # (T, 3, 3)
    low = lower_voxel.view(-1, 3).amin(dim=0)
    extent = lower_voxel.view(-1, 3).amax(dim=0) - low + 1
    rel = lower_voxel - low
    edge_key = ((rel[..., 0] * extent[1] + rel[..., 1]) * extent[2] + rel[..., 2]) * 3 + torch.as_tensor(
        EDGE_AXIS, device=device)[tri_edges]
    unique_keys, vertex_of = torch.unique(edge_key.view(-1), return_inverse=True)

    # each vertex interpolates between the two voxels of its edge
    axis = unique_keys % 3
    cell = unique_keys // 3
    start = torch.stack((cell // (extent[1] * extent[2]), cell // extent[2] % extent[1], cell % extent[2]), 1) + low
    end = start + torch.nn.functional.one_hot(axis, 3)
    voxel = grid.voxel_indices(torch.stack((start, end), dim=1).view(-1, 3))  # (2N,), all allocated
    s = fields.tsdf.view(-1)[voxel].view(-1, 2)
    t = (s[:, 0] / (s[:, 0] - s[:, 1])).clamp_(0.0, 1.0)
    positions = (start.float() + t[:, None] * (end - start).float()) * cfg.voxel_size
    color = fields.color_at(voxel).view(-1, 2, 3)
    rgb = torch.lerp(color[:, 0], color[:, 1], t[:, None]).round_().clamp_(0, 255).to(torch.uint8)
    scores = fields.scores_at(voxel).view(-1, 2, K)
    label, confidence = labels_from_scores(torch.lerp(scores[:, 0], scores[:, 1], t[:, None]))
    surface_confidence = None
    if source != "observed":
        ends = fields.surface_confidence_at(voxel).view(-1, 2)
        surface_confidence = torch.lerp(ends[:, 0], ends[:, 1], t).float().cpu().numpy()

    return SemanticMesh(
        vertices=positions.cpu().numpy(),
        triangles=vertex_of.view(-1, 3).cpu().numpy(),
        colors=rgb.cpu().numpy(),
        labels=label.cpu().numpy(),
        confidence=confidence.float().cpu().numpy(),
        surface_confidence=surface_confidence,
    )
