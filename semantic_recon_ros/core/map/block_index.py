"""A vectorized block hash: integer block coordinates <-> storage slots, on any torch device.

Keys are block coordinates packed into one int64 (21 bits per axis, so +-2^20 blocks per axis,
e.g. +-335 km at 4 cm voxels in 8^3 blocks). The index keeps the keys sorted, so a batch lookup is one
``torch.searchsorted`` and iteration order (by key) is deterministic, which makes meshes and saved
files independent of the order in which blocks were observed.
"""

from __future__ import annotations

import torch

COORD_BITS = 21
COORD_OFFSET = 1 << (COORD_BITS - 1)
COORD_MASK = (1 << COORD_BITS) - 1


def pack_coords(coords: torch.Tensor) -> torch.Tensor:
    """(N, 3) integer coordinates in [-2^20, 2^20) -> (N,) int64 keys, ordered like (x, y, z) tuples."""
    c = coords.to(torch.int64) + COORD_OFFSET
    if c.numel() and (c.min() < 0 or c.max() > COORD_MASK):
        raise ValueError(f"block coordinates outside +-{COORD_OFFSET}: the map extends too far from the origin")
    return (c[:, 0] << (2 * COORD_BITS)) | (c[:, 1] << COORD_BITS) | c[:, 2]


def unpack_keys(keys: torch.Tensor) -> torch.Tensor:
    """(N,) int64 keys -> (N, 3) int64 coordinates."""
    x = (keys >> (2 * COORD_BITS)) & COORD_MASK
    y = (keys >> COORD_BITS) & COORD_MASK
    z = keys & COORD_MASK
    return torch.stack((x, y, z), dim=1) - COORD_OFFSET


class BlockIndex:
    """Sorted map from block keys to slot numbers of a block pool.

    Attributes:
        keys: (N,) int64, strictly increasing.
        slots: (N,) int64, slot of each key.
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.keys = torch.zeros(0, dtype=torch.int64, device=self.device)
        self.slots = torch.zeros(0, dtype=torch.int64, device=self.device)

    def __len__(self) -> int:
        return int(self.keys.numel())

    def lookup(self, keys: torch.Tensor) -> torch.Tensor:
        """(M,) keys -> (M,) slots, -1 where the key is absent."""
        if len(self) == 0:
            return torch.full_like(keys, -1)
        pos = torch.searchsorted(self.keys, keys).clamp_(max=len(self) - 1)
        found = self.keys[pos] == keys
        return torch.where(found, self.slots[pos], torch.full_like(pos, -1))

    def insert(self, keys: torch.Tensor, slots: torch.Tensor) -> None:
        """Add (M,) new, unique keys (absent from the index) with their (M,) slots."""
        all_keys = torch.cat((self.keys, keys))
        all_slots = torch.cat((self.slots, slots))
        self.keys, order = torch.sort(all_keys)
        self.slots = all_slots[order]

    def remove(self, keep: torch.Tensor) -> None:
        """Keep only entries where the (N,) boolean mask ``keep`` is true."""
        self.keys = self.keys[keep]
        self.slots = self.slots[keep]


def unique_coords_keys(coords: torch.Tensor) -> torch.Tensor:
    """Sorted unique keys of (N, 3) int64 coordinates.

    Marks the coordinates in an occupancy grid over their bounding box instead of sorting all N
    keys: linear time, and the grid's row-major order equals key order. Falls back to a sort when
    the bounding box is much larger than N (scattered coordinates).
    """
    if coords.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=coords.device)
    low, high = coords.aminmax(dim=0)
    extent = high - low + 1
    cells = int(extent.prod())
    if cells > 8 * coords.shape[0] + 4096:
        return torch.unique(pack_coords(coords))
    local = coords - low
    linear = (local[:, 0] * extent[1] + local[:, 1]) * extent[2] + local[:, 2]
    occupied = torch.zeros(cells, dtype=torch.bool, device=coords.device)
    occupied[linear] = True
    cell = occupied.nonzero().squeeze(1)
    yz = extent[1] * extent[2]
    local = torch.stack((cell // yz, (cell // extent[2]) % extent[1], cell % extent[2]), dim=1)
    return pack_coords(local + low)
