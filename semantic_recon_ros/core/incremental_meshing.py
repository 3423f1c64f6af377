"""Meshes and voxel maps kept region by region, redone only where the map changed.

A live map changes in a few blocks per frame, but meshing it whole costs time proportional to its size. These
caches keep one piece per region of ``region_blocks^3`` blocks (the regions of :mod:`.meshing`) and, at every
update, redo only the regions that hold a block whose content changed, appeared or vanished since the previous
update (:class:`BlockChanges`, from the grid's content versions), plus, for meshes, the regions of the blocks
whose cubes read such a block (its -x/-y/-z neighbours). Blocks only rewritten (the network's predictions) leave
the "observed" mesh's triangles as they are; its regions reading them only get their labels read again. The
assembled result is identical to meshing or sampling the whole map at once (tested), so consumers never see the
difference except in the time it takes.

Every update that changes regions counts one *revision*; each region remembers the revision of its last change
(vanished regions too), so several consumers (the mesh topic, a save) each ask for what changed since the
revision they saw last (:meth:`RegionMesher.changes_since`). Call :meth:`~RegionMesher.update` under the lock that
guards the volume; reading the pieces afterwards needs no lock (they are never modified, only replaced).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import torch

from .config.completion import CompletionConfig
from .map.block_grid import BlockGrid
from .map.block_index import pack_coords, unpack_keys
from .map.tsdf_volume import SemanticTSDFVolume
from .mesh import SemanticMesh
from .meshing import DEFAULT_REGION_BLOCKS, assemble, mesh_regions, relabel_regions
from .surface_fields import SurfaceFields
from .voxel_map import VOXEL_POINT_DTYPE, surface_voxel_blocks

Region = tuple[int, int, int]


class Changes(NamedTuple):
    """Block keys: ``observed``, blocks with new observations or newly allocated by them; ``rewritten``, blocks
    changed otherwise only (the network's predictions written); ``removed``, blocks gone."""

    observed: torch.Tensor
    rewritten: torch.Tensor
    removed: torch.Tensor


class BlockChanges:
    """The blocks of ``grid`` changed, allocated or removed since the previous :meth:`take` (the first call reports
    every block)."""

    def __init__(self, grid: BlockGrid) -> None:
        self._grid = grid
        self._seen_version = -1
        self._keys = torch.zeros(0, dtype=torch.int64, device=grid.device)

    def take(self) -> Changes:
        """The :class:`Changes` since the last call."""
        grid = self._grid
        keys = grid.keys
        observed = grid.block_versions() > self._seen_version
        changed = grid.content_versions() > self._seen_version
        removed = keys.new_zeros(0)
        if grid.removal_version > self._seen_version and self._keys.numel():
            removed = self._keys[~torch.isin(self._keys, keys)]
        self._keys, self._seen_version = keys, grid.version
        return Changes(keys[observed], keys[changed & ~observed], removed)


class _RegionCache:
    """Pieces by region key with the revision of their last change (None: the region vanished)."""

    def __init__(self, volume: SemanticTSDFVolume, region_blocks: int) -> None:
        if region_blocks < 1:
            raise ValueError(f"region_blocks must be >= 1, got {region_blocks}")
        self.volume = volume
        self.region_blocks = int(region_blocks)
        self.revision = 0
        self._changes = BlockChanges(volume.grid)
        self._pending = torch.zeros(0, dtype=torch.int64, device=volume.device)  # sorted region keys
        self._pieces: dict[int, object] = {}
        self._revisions: dict[int, int] = {}

    def _region_keys(self, block_coords: torch.Tensor) -> torch.Tensor:
        return pack_coords(torch.div(block_coords, self.region_blocks, rounding_mode="floor"))

    def _readers(self, blocks: torch.Tensor, readers_of: torch.Tensor) -> torch.Tensor:
        """Region keys of the pieces that read the blocks of the keys ``blocks``; ``readers_of``: (k, 3) block
        offsets o such that block b's piece reads block b + o."""
        return self._region_keys((unpack_keys(blocks)[:, None, :] - readers_of.to(blocks.device)).reshape(-1, 3))

    def _plan(self, readers_of: torch.Tensor, relabel: bool = False) -> Changes:
        """Add to :attr:`pending` the regions whose pieces read a block changed since the last plan (with
        ``relabel``, not for blocks only rewritten: the caller handles those); returns the changes."""
        changes = self._changes.take()
        affected = torch.cat((changes.observed, changes.removed) + (() if relabel else (changes.rewritten,)))
        if affected.numel():
            self._pending = torch.unique(torch.cat((self._pending, self._readers(affected, readers_of))))
        return changes

    @property
    def pending(self) -> bool:
        """True when regions wait to be redone (an update stopped at its ``max_blocks``)."""
        return self._pending.numel() > 0

    def _next_regions(self, max_blocks: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Take pending regions, in key order, while their blocks stay within ``max_blocks`` (at least one region):
        ((r,) region keys, (n,) slots of their blocks in key order)."""
        grid = self.volume.grid
        block_regions = self._region_keys(grid.block_coords())
        position = torch.searchsorted(self._pending, block_regions).clamp_(max=max(self._pending.numel() - 1, 0))
        in_pending = self._pending.numel() > 0 and self._pending[position] == block_regions
        count = len(self._pending)
        if max_blocks is not None and count > 1:
            blocks = torch.bincount(position[in_pending], minlength=count)
            count = max(1, int((torch.cumsum(blocks, 0) <= max_blocks).sum()))
        regions, self._pending = self._pending[:count], self._pending[count:]
        return regions, grid.slots[in_pending & (position < count)]

    def _store(self, regions: torch.Tensor, pieces: dict[int, object]) -> list[Region]:
        self.revision += 1
        for key in regions.tolist():
            piece = pieces.get(key)
            if piece is None:
                self._pieces.pop(key, None)
            else:
                self._pieces[key] = piece
            self._revisions[key] = self.revision
        return [tuple(c) for c in unpack_keys(regions).tolist()]

    def changes_since(self, revision: int) -> dict[Region, object]:
        """Region -> piece (None: vanished) of every region changed after ``revision`` (0: every region, vanished
        ones left out)."""
        keys = [key for key, changed in self._revisions.items() if changed > revision
                and (revision > 0 or key in self._pieces)]
        keys.sort()
        coords = unpack_keys(torch.tensor(keys, dtype=torch.int64)).tolist() if keys else []
        return {tuple(c): self._pieces.get(key) for c, key in zip(coords, keys)}

    def pieces(self) -> list:
        """Every present piece, regions in key order."""
        return [self._pieces[key] for key in sorted(self._pieces)]


NEIGHBOUR_OFFSETS = torch.tensor(list(itertools.product((0, 1), repeat=3)), dtype=torch.int64)  # b reads b + o
NO_OFFSET = torch.zeros((1, 3), dtype=torch.int64)


class RegionMesher(_RegionCache):
    """The mesh of one surface ``source`` of ``volume`` (:func:`~.meshing.extract_mesh`'s arguments), kept by
    region (see the module docstring).

    Attributes:
        revision: updates so far that changed a region.
    """

    def __init__(self, volume: SemanticTSDFVolume, source: str = "observed",
                 completion: CompletionConfig | None = None, region_blocks: int = DEFAULT_REGION_BLOCKS, min_weight: float = 0.0) -> None:
        super().__init__(volume, region_blocks)
        SurfaceFields(volume, source, min_weight, completion)  # validates the source now
        self.source, self.completion, self.min_weight = source, completion, min_weight

    def update(self, max_blocks: int | None = None, take_changes: bool = True) -> list[Region]:
        """Re-mesh the regions whose cubes read a block that changed since the last update, in key order, stopping
        once the next region would take the blocks meshed beyond ``max_blocks`` (:attr:`pending` then says more
        are waiting); returns the regions redone. ``take_changes`` False: only go on with the pending regions (the
        blocks changed since the last update wait for the next one that takes them).

        The "observed" mesh's geometry and colors depend on observations only: where blocks were only rewritten
        (the network's predictions, which can override fused labels), its regions keep their triangles and get
        their labels read again (:func:`~.meshing.relabel_regions`), and count as redone only if a label changed.
        """
        relabel = self.source == "observed"
        changes = self._plan(NEIGHBOUR_OFFSETS, relabel) if take_changes else None
        fields = SurfaceFields(self.volume, self.source, self.min_weight, self.completion)
        redone = []
        if relabel and changes is not None and changes.rewritten.numel():
            regions = torch.unique(self._readers(changes.rewritten, NEIGHBOUR_OFFSETS))
            regions = regions[~torch.isin(regions, self._pending)].tolist()  # those re-meshed anyway are not
            keys = [key for key in regions if key in self._pieces]
            pieces = relabel_regions(fields, [self._pieces[key] for key in keys])
            relabelled = {key: piece for key, piece in zip(keys, pieces) if piece is not None}
            if relabelled:
                redone = self._store(torch.tensor(sorted(relabelled), dtype=torch.int64), relabelled)
        if not self.pending:
            return redone
        regions, slots = self._next_regions(max_blocks)
        pieces = mesh_regions(self.volume, fields, slots, self.region_blocks)
        keys = pack_coords(torch.tensor([piece.region for piece in pieces], dtype=torch.int64).view(-1, 3)).tolist()
        return redone + self._store(regions, dict(zip(keys, pieces)))

    def mesh(self) -> SemanticMesh:
        """The whole mesh as of the last update (equal to :func:`~.meshing.extract_mesh` of that state)."""
        return assemble(self.pieces(), with_surface_confidence=self.source != "observed")


class RegionVoxelMap(_RegionCache):
    """The voxel map (:func:`~.voxel_map.surface_voxel_points`) of one ``source``, kept by region."""

    def __init__(self, volume: SemanticTSDFVolume, max_distance_voxels: float, source: str = "observed",
                 completion: CompletionConfig | None = None, region_blocks: int = DEFAULT_REGION_BLOCKS) -> None:
        super().__init__(volume, region_blocks)
        SurfaceFields(volume, source, completion=completion)  # validates the source now
        self.max_distance_voxels, self.source, self.completion = float(max_distance_voxels), source, completion

    def update(self, max_blocks: int | None = None, take_changes: bool = True) -> list[Region]:
        """Resample the regions holding a block that changed since the last update (``max_blocks``,
        ``take_changes`` and :attr:`pending` as for :meth:`RegionMesher.update`); returns them."""
        if take_changes:
            self._plan(NO_OFFSET)
        if not self.pending:
            return []
        regions, slots = self._next_regions(max_blocks)
        block_regions = self._region_keys(self.volume.grid.block_coords(slots))
        order = torch.argsort(block_regions, stable=True)
        slots, block_regions = slots[order], block_regions[order]
        points, counts = surface_voxel_blocks(self.volume, self.max_distance_voxels, self.source, self.completion,
                                              slots)
        keys, blocks_per_region = torch.unique_consecutive(block_regions, return_counts=True)
        ends = np.cumsum(counts)[np.cumsum(blocks_per_region.cpu().numpy()) - 1] if len(keys) else []
        starts = np.concatenate(([0], ends[:-1])) if len(keys) else []
        pieces = {key: points[start:end] for key, start, end in zip(keys.tolist(), starts, ends) if end > start}
        return self._store(regions, pieces)

    def points(self) -> np.ndarray:
        """(N,) :data:`~.voxel_map.VOXEL_POINT_DTYPE` points of every region, regions in key order."""
        pieces = self.pieces()
        points = np.empty(sum(len(piece) for piece in pieces), VOXEL_POINT_DTYPE)  # (concatenate drops the padding)
        ends = np.cumsum([len(piece) for piece in pieces], dtype=np.int64)
        for piece, end in zip(pieces, ends):
            points[end - len(piece):end] = piece
        return points
