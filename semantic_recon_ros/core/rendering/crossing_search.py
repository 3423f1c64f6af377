"""Search, without autograd, for the first + to - zero crossing of the trilinear TSDF along rays.

Each ray is sampled on the lattice ``t_m = min(t_start + m * step, t_end)``, ``m = 0, 1, ...``; the answer is
the first ``m`` with TSDF(t_{m-1}) > 0 >= TSDF(t_m). Free space (:mod:`.free_space`) is crossed without
sampling: a ray whose current lattice point lies in a free block leaps to the first lattice point past the
block's free box, and the lattice point before that one lies in the box, where the TSDF is positive. The
bracket found is therefore the one a plain lattice march finds, independent of the leaps and of the number of
samples evaluated per iteration. All rays advance together; finished rays are dropped every iteration.
"""

from __future__ import annotations

import torch

from .free_space import FreeSpaceMap
from .grid_sampling import sample_grid

MIN_SAMPLES_PER_RAY = 4  # lattice samples per probing ray and iteration, at least
MAX_SAMPLES_PER_RAY = 64  # and at most (reached when few rays are left)
DIRECTION_EPSILON = 1e-30  # stands in for zero direction components (their exit parameter becomes huge)

# columns of the packed per-ray state
_ORIGIN, _DIRECTION, _INVERSE = slice(0, 3), slice(3, 6), slice(6, 9)
_START, _STEP, _END, _BATCH, _LATTICE, _PREVIOUS = 9, 10, 11, 12, 13, 14


def lattice_parameter(t_start: torch.Tensor, step: torch.Tensor, t_end: torch.Tensor,
                      lattice: torch.Tensor) -> torch.Tensor:
    """``min(t_start + m * step, t_end)`` (all broadcastable), written once so search and refinement agree
    to the last bit."""
    return torch.minimum(t_start + lattice * step, t_end)


@torch.no_grad()
def first_crossings(
    tsdf: torch.Tensor,
    free_space: FreeSpaceMap,
    batch_index: torch.Tensor,
    origins: torch.Tensor,
    directions: torch.Tensor,
    t_start: torch.Tensor,
    t_end: torch.Tensor,
    step: torch.Tensor,
    samples_per_iteration: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """First lattice bracket of the zero crossing along every ray.

    Args:
        tsdf: (B, 1, X, Y, Z) chunks.
        free_space: their :class:`FreeSpaceMap`.
        batch_index: (R,) chunk of every ray.
        origins, directions: (R, 3) rays in voxel coordinates of their chunk.
        t_start, t_end: (R,) ray parameter interval inside the chunk's box (no search where start > end).
        step: (R,) lattice spacing.
        samples_per_iteration: probe samples per iteration over all rays (bounds memory).
    Returns:
        ``ray`` (M,) indices of the rays with a crossing and ``lattice`` (M,) int64 index ``m`` of the end of
        their bracket: TSDF(t_{m-1}) > 0 >= TSDF(t_m).
    """
    tsdf = tsdf.detach()
    device, dtype = tsdf.device, tsdf.dtype
    ray = (t_start <= t_end).nonzero().squeeze(1)
    safe = torch.where(directions == 0, torch.full_like(directions, DIRECTION_EPSILON), directions)
    state = torch.cat((
        origins.detach(), safe.detach(), 1.0 / safe.detach(),
        torch.stack((t_start, step, t_end, batch_index.to(dtype)), dim=1),
        torch.zeros((origins.shape[0], 1), device=device, dtype=dtype),  # next lattice index m
        torch.full((origins.shape[0], 1), -1.0, device=device, dtype=dtype),  # TSDF at m - 1 (-1: unknown)
    ), dim=1)[ray]
    size = free_space.block_size
    strides, batch_stride = free_space.block_strides(device, dtype)
    last_block = torch.tensor(free_space.block_dims, device=device, dtype=dtype) - 1
    hit_rays, hit_lattice = [], []
    while ray.numel():
        o, d = state[:, _ORIGIN], state[:, _DIRECTION]
        start, spacing, end, m = state[:, _START], state[:, _STEP], state[:, _END], state[:, _LATTICE]
        t = lattice_parameter(start, spacing, end, m)
        block = torch.minimum((torch.addcmul(o, t[:, None], d) / size).floor_().clamp_(min=0), last_block)
        radius = free_space.radius[((block * strides).sum(dim=1) + state[:, _BATCH] * batch_stride).long()]
        free = radius > 0

        # leap (free block): resume at the first lattice point past the free box around the block
        r = radius[:, None]
        bound = torch.where(d > 0, (block + r) * size, (block - r + 1) * size)
        exit_t = ((bound - o) * state[:, _INVERSE]).amin(dim=1)
        after = torch.maximum(torch.floor((exit_t - start) / spacing) + 1, m + 1)
        done = free & ((exit_t >= end) | (t >= end))
        next_m = torch.where(free, after, m)
        previous = torch.where(free, torch.ones_like(m), state[:, _PREVIOUS])

        # probe (occupied block): the next lattice samples, looking for the first + to - sign change
        probe = (~free).nonzero().squeeze(1)
        if probe.numel():
            count = max(MIN_SAMPLES_PER_RAY, min(MAX_SAMPLES_PER_RAY, samples_per_iteration // probe.numel()))
            rows = state[probe]
            lattice = rows[:, _LATTICE, None] + torch.arange(count, device=device, dtype=dtype)
            ts = lattice_parameter(rows[:, _START, None], rows[:, _STEP, None], rows[:, _END, None], lattice)
            points = rows[:, None, _ORIGIN] + ts[..., None] * rows[:, None, _DIRECTION]
            chunk = rows[:, _BATCH].long().repeat_interleave(count)
            values = sample_grid(tsdf, chunk, points.reshape(-1, 3)).view(-1, count)
            chain = torch.cat((rows[:, _PREVIOUS, None], values), dim=1)
            crossing = (chain[:, :-1] > 0) & (chain[:, 1:] <= 0)
            hit = crossing.any(dim=1)
            hit_rays.append(ray[probe][hit])
            hit_lattice.append(rows[hit, _LATTICE].long() + crossing[hit].to(torch.uint8).argmax(dim=1))
            next_m[probe] = lattice[:, -1] + 1
            previous[probe] = values[:, -1]
            done[probe] = hit | (ts[:, -1] >= rows[:, _END])

        state[:, _LATTICE] = next_m
        state[:, _PREVIOUS] = previous
        keep = (~done).nonzero().squeeze(1)
        state, ray = state[keep], ray[keep]
    if not hit_rays:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    return torch.cat(hit_rays), torch.cat(hit_lattice)
