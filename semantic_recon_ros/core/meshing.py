"""Marching cubes over the whole sparse volume, seamless across block borders.

Every cube between 8 neighbouring voxel centres is meshed, including cubes that straddle block
borders (their corners are gathered from up to 8 blocks). Vertices live on cube edges and are
identified by the global edge (lower voxel + axis), so a vertex shared by cubes of different blocks
exists once: the mesh has no duplicate vertices and no cracks. Blocks are visited in key order, so
the same volume always gives the same mesh, vertex for vertex.
"""

from __future__ import annotations

import torch

from .block_index import pack_coords
from .marching_cubes_table import CORNER_OFFSETS, EDGE_AXIS, EDGE_CORNERS, TRIANGLE_COUNT, TRIANGLE_EDGES
from .mesh import SemanticMesh
from .tsdf_volume import SemanticTSDFVolume


def _extended_block_layout(B: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For the (B+1)^3 corner grid of a block: which neighbour block (bit code 0..7) and local index."""
    r = torch.arange(B + 1, device=device)
    i, j, k = (g.reshape(-1) for g in torch.meshgrid(r, r, r, indexing="ij"))
    neighbour = (i == B).long() | (j == B).long() << 1 | (k == B).long() << 2
    local = ((i % B) * B + (j % B)) * B + (k % B)
    return neighbour, local


def extract_mesh(volume: SemanticTSDFVolume, min_weight: float = 0.0) -> SemanticMesh:
    """Triangle mesh of the zero level set of the fused TSDF, in the world frame.

    Args:
        volume: the map.
        min_weight: cubes are meshed only where all 8 corner voxels have weight above this
            (0 = observed at least once).
    Returns:
        SemanticMesh with per-vertex color, label (argmax of the interpolated class votes,
        -1 where no votes) and confidence (winning share of the votes).
    """
    device, cfg = volume.device, volume.config
    B, V, K = cfg.block_size, cfg.voxels_per_block, volume.num_classes
    n = volume.num_blocks
    if n == 0:
        return SemanticMesh.empty()
    coords = volume.block_coords[volume.index.slots]  # (n, 3), key order
    codes = torch.arange(8, device=device)
    offsets = torch.stack((codes & 1, codes >> 1 & 1, codes >> 2 & 1), dim=1)
    neighbour_slots = volume.index.lookup(pack_coords((coords[:, None, :] + offsets).reshape(-1, 3))).view(n, 8)

    ext_neighbour, ext_local = _extended_block_layout(B, device)
    ext_slot = neighbour_slots[:, ext_neighbour]  # (n, E)
    ext_voxel = torch.where(ext_slot >= 0, ext_slot * V + ext_local, torch.full_like(ext_slot, -1))
    present = ext_voxel >= 0
    safe = ext_voxel.clamp(min=0).view(-1)
    tsdf = volume.layers["tsdf"].view(-1)[safe].view(n, B + 1, B + 1, B + 1)
    observed = (volume.layers["weight"].view(-1)[safe] > min_weight).view(n, B + 1, B + 1, B + 1)
    observed &= present.view(n, B + 1, B + 1, B + 1)

    case = torch.zeros((n, B, B, B), dtype=torch.int64, device=device)
    valid = torch.ones((n, B, B, B), dtype=torch.bool, device=device)
    for corner, (dx, dy, dz) in enumerate(CORNER_OFFSETS.tolist()):
        view = (slice(None), slice(dx, dx + B), slice(dy, dy + B), slice(dz, dz + B))
        case |= (tsdf[view] < 0).long() << corner
        valid &= observed[view]
    case = torch.where(valid, case, torch.zeros_like(case)).view(-1)
    cube = ((case != 0) & (case != 255)).nonzero().squeeze(1)
    if cube.numel() == 0:
        return SemanticMesh.empty()
    case = case[cube]

    # one row per triangle: its cube and its three edge ids
    table = torch.as_tensor(TRIANGLE_EDGES, device=device)
    count = torch.as_tensor(TRIANGLE_COUNT, device=device)[case]
    tri_cube = torch.repeat_interleave(torch.arange(cube.numel(), device=device), count)
    first = torch.cumsum(count, 0) - count
    tri_edges = table[case[tri_cube], torch.arange(tri_cube.numel(), device=device) - first[tri_cube]]  # (T, 3)

    # global edge ids -> unique vertices
    block, local = cube // (B ** 3), cube % (B ** 3)
    cube_xyz = torch.stack((local // (B * B), local // B % B, local % B), dim=1)  # within block
    cube_voxel = coords[block] * B + cube_xyz  # (A, 3) global voxel of corner 0
    edge_lower = torch.as_tensor(CORNER_OFFSETS[EDGE_CORNERS[:, 0]], device=device)  # (12, 3)
    edge_axis = torch.as_tensor(EDGE_AXIS, device=device)
    corner_voxel = cube_voxel[tri_cube][:, None, :] + edge_lower[tri_edges]  # (T, 3, 3)
    low = corner_voxel.view(-1, 3).amin(dim=0)
    extent = corner_voxel.view(-1, 3).amax(dim=0) - low + 1
    rel = corner_voxel - low
    edge_key = (((rel[..., 0] * extent[1] + rel[..., 1]) * extent[2] + rel[..., 2]) * 3 + edge_axis[tri_edges])
    unique_keys, vertex_of = torch.unique(edge_key.view(-1), return_inverse=True)
    num_vertices = unique_keys.numel()
    slot_index = torch.arange(edge_key.numel(), device=device)
    first_use = torch.full((num_vertices,), edge_key.numel(), device=device).scatter_reduce_(
        0, vertex_of, slot_index, reduce="amin")

    # interpolate along each vertex's edge
    v_cube = tri_cube[first_use // 3]
    v_edge = tri_edges.view(-1)[first_use]
    corner_a = torch.as_tensor(EDGE_CORNERS, device=device)[v_edge]  # (N, 2) cube corners
    corner_xyz = torch.as_tensor(CORNER_OFFSETS, device=device)[corner_a]  # (N, 2, 3)
    ext_index = ((cube_xyz[v_cube][:, None, :] + corner_xyz) * torch.tensor(
        [(B + 1) ** 2, B + 1, 1], device=device)).sum(-1)  # (N, 2) position in the (B+1)^3 grid
    voxel = ext_voxel[block[v_cube][:, None], ext_index]  # (N, 2) pool indices
    s = volume.layers["tsdf"].view(-1)[voxel]  # (N, 2)
    t = (s[:, 0] / (s[:, 0] - s[:, 1])).clamp_(0.0, 1.0)
    p0 = cube_voxel[v_cube] + corner_xyz[:, 0]
    positions = (p0.float() + t[:, None] * (corner_xyz[:, 1] - corner_xyz[:, 0]).float()) * cfg.voxel_size

    color = volume.layers["color"].view(-1, 3)[voxel]  # (N, 2, 3)
    rgb = torch.lerp(color[:, 0], color[:, 1], t[:, None]).round_().clamp_(0, 255).to(torch.uint8)
    votes = torch.lerp(*volume.layers["semantic"].view(-1, K)[voxel].unbind(1), t[:, None])  # (N, K)
    total = votes.sum(dim=1)
    best, label = votes.max(dim=1)
    labeled = total > 0
    label = torch.where(labeled, label, torch.full_like(label, -1))
    confidence = torch.where(labeled, best / total.clamp(min=1e-12), torch.zeros_like(best))

    return SemanticMesh(
        vertices=positions.cpu().numpy(),
        triangles=vertex_of.view(-1, 3).cpu().numpy(),
        colors=rgb.cpu().numpy(),
        labels=label.cpu().numpy(),
        confidence=confidence.float().cpu().numpy(),
    )
