"""Block-sparse storage of named per-voxel layers: allocation, lookup, in-block layout, dense boxes.

Voxel ``g = (i, j, k)`` (integers, world frame) lies in block ``b = floor(g / B)`` (``B`` = block size)
at local coordinates ``l = g - b * B`` in ``[0, B)^3``, stored at in-block index ``(l_x * B + l_y) * B + l_z``.
Blocks occupy *slots* of preallocated pools; every layer is a float32 pool of shape ``(capacity, V, ...)``
with ``V = B^3``, so a voxel's *flat index* ``slot * V + in-block index`` addresses
``layer.flatten(0, 1)``. The sorted block index (:class:`~.block_index.BlockIndex`) gives every
iteration a deterministic order, by block key.

``version`` counts the changes the owner marked. Each slot remembers two versions: that of its last change of
observations (:meth:`BlockGrid.mark_changed`, what the completion network reruns on) and that of its last change
of any kind (:meth:`BlockGrid.content_versions`: observations, other writes marked with
:meth:`BlockGrid.mark_rewritten` such as the network's predictions, and the block's allocation), so consumers
(the completion network, incremental meshing) can tell what is new. :attr:`BlockGrid.removal_version` is the
version of the last removal of blocks.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .block_index import BlockIndex, pack_coords, unpack_keys

PREPARE_GROWTH_USAGE = 0.85  # share of the slots in use from which the next growth is prepared (growth_due)


class BlockGrid:
    """Sparse voxel blocks with named float32 layers on a torch device.

    Args:
        block_size: voxels per block edge ``B``.
        max_blocks: the most blocks :meth:`allocate` accepts (ValueError beyond).
        device: torch device of every pool.
    """

    def __init__(self, block_size: int, max_blocks: int, device: torch.device | str):
        self.block_size = int(block_size)
        self.voxels_per_block = self.block_size ** 3
        self.max_blocks = int(max_blocks)
        self.device = torch.device(device)
        self._index = BlockIndex(self.device)
        self._block_coords = torch.zeros((0, 3), dtype=torch.int64, device=self.device)  # per slot
        self._block_version = torch.zeros(0, dtype=torch.int64, device=self.device)  # per slot: observations
        self._content_version = torch.zeros(0, dtype=torch.int64, device=self.device)  # per slot: any change
        self._layers: dict[str, torch.Tensor] = {}
        self._fill: dict[str, float] = {}
        self._free_slots = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._slots_in_use = 0  # high-water mark of the pools
        self._prepared: tuple[int, dict[str, torch.Tensor]] | None = None  # pools of the next growth, filled
        self.version = 0
        self.removal_version = 0
        B = self.block_size
        r = torch.arange(B, device=self.device)
        # (V, 3) int64 local coordinates of a block's voxels, in storage order
        self.local_coords = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)

    # ------------------------------------------------------------------ layers
    def add_layer(self, name: str, shape: tuple[int, ...], fill: float) -> None:
        """Add a float32 layer of per-block shape ``shape`` (``(V,)``, ``(V, C)``), ``fill`` everywhere."""
        if name in self._layers:
            raise ValueError(f"layer {name!r} exists already")
        if not shape or shape[0] != self.voxels_per_block:
            raise ValueError(f"layer {name!r}: per-block shape must start with {self.voxels_per_block}, got {shape}")
        self._layers[name] = torch.full((self.capacity, *shape), fill, dtype=torch.float32, device=self.device)
        self._fill[name] = float(fill)

    def has_layer(self, name: str) -> bool:
        return name in self._layers

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(self._layers)

    def layer(self, name: str) -> torch.Tensor:
        """The ``(capacity, V, ...)`` pool of a layer (a view: writes go into the map). Rows of slots not in
        :attr:`slots` hold stale or fill values."""
        try:
            return self._layers[name]
        except KeyError:
            raise KeyError(f"no layer {name!r}; layers are {list(self._layers)}") from None

    def layer_fill(self, name: str) -> float:
        """The value of ``name`` in never-written voxels (e.g. 1 = free space for TSDF)."""
        return self._fill[name]

    def values(self, name: str, slots: torch.Tensor | None = None) -> torch.Tensor:
        """(n, V, ...) copy of a layer at ``slots`` (default: every block, in key order)."""
        return self.layer(name)[self.slots if slots is None else slots]

    # ------------------------------------------------------------------ blocks
    @property
    def num_blocks(self) -> int:
        return len(self._index)

    @property
    def capacity(self) -> int:
        return int(self._block_coords.shape[0])

    @property
    def slots(self) -> torch.Tensor:
        """(n,) int64 slots of every block, in key order (the order of :attr:`keys`)."""
        return self._index.slots

    @property
    def keys(self) -> torch.Tensor:
        """(n,) int64 sorted keys (:func:`~.block_index.pack_coords`) of every block."""
        return self._index.keys

    def block_coords(self, slots: torch.Tensor | None = None) -> torch.Tensor:
        """(n, 3) int64 block coordinates of ``slots`` (default: every block, in key order)."""
        return self._block_coords[self.slots if slots is None else slots]

    @property
    def coords_by_slot(self) -> torch.Tensor:
        """(capacity, 3) int64 block coordinates indexed by slot (rows of unused slots are stale)."""
        return self._block_coords

    def lookup(self, blocks: torch.Tensor) -> torch.Tensor:
        """(N, 3) block coordinates -> (N,) slots, -1 where a block is absent."""
        return self._index.lookup(pack_coords(blocks))

    def lookup_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """(N,) block keys -> (N,) slots, -1 where absent."""
        return self._index.lookup(keys)

    def key_positions(self, keys: torch.Tensor) -> torch.Tensor:
        """(N,) keys of existing blocks -> (N,) their positions in key order (indices into :attr:`slots`)."""
        return torch.searchsorted(self._index.keys, keys)

    def allocate_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """Add the blocks of (N,) unique keys that are absent; returns their (N,) slots, every layer at its fill
        value. ValueError (nothing allocated) beyond ``max_blocks``."""
        if self.num_blocks + keys.numel() > self.max_blocks:
            raise ValueError(f"{keys.numel()} new blocks would exceed max_blocks ({self.max_blocks}; "
                             f"{self.num_blocks} in use)")
        slots = self._take_slots(keys.numel())
        self._block_coords[slots] = unpack_keys(keys)
        self._index.insert(keys, slots)
        if slots.numel():
            self.mark_rewritten(slots)
        return slots

    def allocate(self, blocks: torch.Tensor) -> torch.Tensor:
        """Add the (N, 3) absent, unique ``blocks``; returns their (N,) slots (see :meth:`allocate_keys`)."""
        return self.allocate_keys(pack_coords(blocks))

    def remove(self, drop: torch.Tensor) -> int:
        """Remove the blocks where the (num_blocks,) mask ``drop`` (in key order) is true; returns how many."""
        count = int(drop.sum())
        if count:
            self._free_slots = torch.cat((self._free_slots, self._index.slots[drop]))
            self._index.remove(~drop)
            self.version += 1
            self.removal_version = self.version
        return count

    def clear(self) -> None:
        """Forget every block (the pools keep their capacity)."""
        self.remove(torch.ones(self.num_blocks, dtype=torch.bool, device=self.device))

    def memory_bytes(self) -> int:
        """Bytes held by the pools (allocated capacity, not only blocks in use)."""
        tensors = [*self._layers.values(), self._block_coords, self._block_version, self._content_version]
        return sum(t.numel() * t.element_size() for t in tensors)

    def growth_due(self, usage: float = PREPARE_GROWTH_USAGE) -> bool:
        """True when ``usage`` of the pools' slots have been used, they can grow and no growth is prepared."""
        prepared = self._prepared
        return (self._slots_in_use >= usage * self.capacity and self.capacity < self.max_blocks
                and (prepared is None or prepared[0] <= self.capacity))

    def prepare_growth(self) -> None:
        """Allocate and fill the layer pools of the next growth now. A growth happens under the owner's lock when
        new blocks need slots, and writing fresh memory (the operating system maps its pages in) is most of its
        time: 0.1-0.3 s at 250-600 MB on a CPU (bench/bench_block_growth.py), frames waiting meanwhile. With pools
        prepared, it only copies the rows in use. Call it without the owner's lock, from another thread (the pools
        are only read here); the prepared pools are used if the layers are still the same when the growth comes."""
        capacity = self._next_capacity(self.capacity + 1)
        layers, fills = list(self._layers.items()), dict(self._fill)
        pools = {name: torch.full((capacity, *pool.shape[1:]), fills[name], dtype=pool.dtype, device=pool.device)
                 for name, pool in layers}
        self._prepared = (capacity, pools)

    def _next_capacity(self, needed: int) -> int:
        return min(max(needed, 2 * self.capacity, 64), max(self.max_blocks, needed))

    def _grow(self, needed: int) -> None:
        """Larger pools, the old rows copied: the prepared ones (:meth:`prepare_growth`) if they fit, else pools
        written once (a concatenation with a filled extra part writes and maps in the memory twice)."""
        capacity = self._next_capacity(needed)
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared[0] >= needed and set(prepared[1]) == set(self._layers) and all(
                prepared[1][name].shape[1:] == pool.shape[1:] for name, pool in self._layers.items()):
            capacity, pools = prepared
            for name, pool in self._layers.items():
                pools[name][:len(pool)] = pool
            self._layers.update(pools)
        else:
            for name, pool in self._layers.items():
                self._layers[name] = _enlarged(pool, capacity, self._fill[name])
        self._block_coords = _enlarged(self._block_coords, capacity, 0)
        self._block_version = _enlarged(self._block_version, capacity, 0)
        self._content_version = _enlarged(self._content_version, capacity, 0)

    def _take_slots(self, count: int) -> torch.Tensor:
        """``count`` slots holding every layer's fill value: freed slots first (refilled), then never used ones."""
        reused = self._free_slots[:count]
        self._free_slots = self._free_slots[count:]
        if reused.numel():
            for name, pool in self._layers.items():
                pool[reused] = self._fill[name]
            self._block_version[reused] = 0
            self._content_version[reused] = 0
        fresh_count = count - reused.numel()
        if self._slots_in_use + fresh_count > self.capacity:
            self._grow(self._slots_in_use + fresh_count)
        fresh = torch.arange(self._slots_in_use, self._slots_in_use + fresh_count, device=self.device)
        self._slots_in_use += fresh_count
        return torch.cat((reused, fresh))

    # ------------------------------------------------------------------ versions
    def mark_changed(self, slots: torch.Tensor) -> None:
        """Record new observations in the blocks ``slots``: increments :attr:`version` and stamps them with it."""
        self.version += 1
        self._block_version[slots] = self.version
        self._content_version[slots] = self.version

    def mark_rewritten(self, slots: torch.Tensor) -> None:
        """Record a change of the blocks ``slots`` that brings no new observation (e.g. predictions written):
        increments :attr:`version` and stamps only their :meth:`content_versions` with it."""
        self.version += 1
        self._content_version[slots] = self.version

    def content_versions(self, slots: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) int64 version of the last change of any kind of ``slots`` (default: every block in key order),
        allocation included."""
        return self._content_version[self.slots if slots is None else slots]

    def block_versions(self, slots: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) int64 version of the last change of ``slots`` (default: every block in key order); 0 = never marked."""
        return self._block_version[self.slots if slots is None else slots]

    # ------------------------------------------------------------------ voxels
    def local_index(self, local: torch.Tensor) -> torch.Tensor:
        """(N, 3) local coordinates in ``[0, B)^3`` -> (N,) in-block storage index."""
        B = self.block_size
        return (local[..., 0] * B + local[..., 1]) * B + local[..., 2]

    def voxel_coords(self, flat: torch.Tensor) -> torch.Tensor:
        """(N,) flat voxel indices of allocated voxels -> (N, 3) int64 global voxel coordinates."""
        V = self.voxels_per_block
        return self._block_coords[flat // V] * self.block_size + self.local_coords[flat % V]

    def voxel_indices(self, voxels: torch.Tensor, allocate: bool = False) -> torch.Tensor:
        """(N, 3) global voxel coordinates -> (N,) flat indices (-1 where the block is absent).

        With ``allocate``, missing blocks are allocated first (ValueError beyond ``max_blocks``).
        """
        voxels = voxels.to(self.device, torch.int64)
        block = torch.div(voxels, self.block_size, rounding_mode="floor")
        keys = pack_coords(block)
        slots = self._index.lookup(keys)
        if allocate and bool((slots < 0).any()):
            self.allocate_keys(torch.unique(keys[slots < 0]))
            slots = self._index.lookup(keys)
        flat = slots * self.voxels_per_block + self.local_index(voxels - block * self.block_size)
        return torch.where(slots >= 0, flat, torch.full_like(flat, -1))

    def read_voxels(self, voxels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Layer values at (N, 3) global voxel coordinates; absent voxels read each layer's fill value.

        Returns ``{layer name: (N, ...) tensor}`` plus ``"allocated"``: (N,) bool.
        """
        flat = self.voxel_indices(voxels)
        allocated = flat >= 0
        out = {"allocated": allocated}
        for name, pool in self._layers.items():
            values = pool.flatten(0, 1)[flat.clamp(min=0)].clone()
            values[~allocated] = self._fill[name]
            out[name] = values
        return out

    def write_voxels(self, voxels: torch.Tensor, **values: torch.Tensor) -> None:
        """Set layers at (N, 3) global voxel coordinates, allocating blocks as needed; layers not given keep
        their values. Example: ``grid.write_voxels(coords, tsdf=t, weight=w)`` with ``t``, ``w`` of shape (N,)."""
        unknown = set(values) - set(self._layers)
        if unknown:
            raise ValueError(f"unknown layers {sorted(unknown)}; layers are {list(self._layers)}")
        flat = self.voxel_indices(voxels, allocate=True)
        for name, value in values.items():
            pool = self._layers[name]
            pool.flatten(0, 1)[flat] = value.to(self.device, pool.dtype)

    # ------------------------------------------------------------------ dense boxes
    def box_blocks(self, first_blocks: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """(n, 3) first block of each box and (3,) blocks per axis -> (n, nx * ny * nz, 3) block coordinates of
        every box, x slowest (the order :meth:`to_boxes` and :meth:`from_boxes` use)."""
        axes = [torch.arange(int(c), device=first_blocks.device) for c in counts]
        offsets = torch.cartesian_prod(*axes).view(-1, 3)
        return first_blocks[:, None, :] + offsets

    def box_slots(self, first_blocks: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """(n, nx * ny * nz) slots of the blocks of each box (-1 where absent), see :meth:`box_blocks`."""
        blocks = self.box_blocks(first_blocks, counts)
        return self.lookup(blocks.view(-1, 3)).view(blocks.shape[:2])

    def to_boxes(self, per_block: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """(n, nx * ny * nz, V, C) per-block values -> (n, C, nx * B, ny * B, nz * B) dense boxes."""
        n, B, (nx, ny, nz) = per_block.shape[0], self.block_size, [int(c) for c in counts]
        grid = per_block.reshape(n, nx, ny, nz, B, B, B, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return grid.reshape(n, -1, nx * B, ny * B, nz * B)

    def from_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(n, C, X, Y, Z) dense boxes (multiples of B) -> (n, nx * ny * nz, V, C) per-block values (inverse of
        :meth:`to_boxes`)."""
        n, C, X, Y, Z = boxes.shape
        B = self.block_size
        nx, ny, nz = X // B, Y // B, Z // B
        blocked = boxes.reshape(n, C, nx, B, ny, B, nz, B).permute(0, 2, 4, 6, 3, 5, 7, 1)
        return blocked.reshape(n, nx * ny * nz, self.voxels_per_block, C)

    def read_boxes(self, names: Sequence[str], first_blocks: torch.Tensor, counts: Sequence[int],
                   slots: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Dense copies of layers over block-aligned boxes: ``{name: (n, C, nx * B, ny * B, nz * B)}`` (C = 1 for
        per-voxel scalars), each layer's fill value where a block is absent. ``slots`` (from :meth:`box_slots`)
        saves the lookup when the caller has them."""
        slots = self.box_slots(first_blocks, counts) if slots is None else slots
        absent = slots < 0
        out = {}
        for name in names:
            pool = self.layer(name)
            values = pool.view(pool.shape[0], pool.shape[1], -1)[slots.clamp(min=0)]  # (n, nb, V, C)
            values[absent] = self._fill[name]
            out[name] = self.to_boxes(values, counts)
        return out


def _enlarged(pool: torch.Tensor, capacity: int, fill: float) -> torch.Tensor:
    """(capacity, ...) copy of the (n, ...) ``pool`` whose rows from n on hold ``fill``."""
    enlarged = pool.new_empty((capacity, *pool.shape[1:]))
    enlarged[:len(pool)] = pool
    enlarged[len(pool):] = fill
    return enlarged
