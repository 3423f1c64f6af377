"""Running the completion network over the sparse map: chunking, scheduling, writing predictions.

The map is tiled by a fixed grid of chunk *cores* (``core_size`` voxels per axis). The network sees
each core with ``chunk_margin`` voxels of context on every side and writes only the core, so every
voxel has exactly one prediction, made with full context (the overlap-tile scheme): there are no
seams to blend, and rerunning one chunk when its observations change gives exactly what a full
rerun would. Predictions live in their own layers beside the observed data:

* ``pred_tsdf`` (slots, V): predicted normalized TSDF (fill 1 = free),
* ``pred_color`` (slots, V, 3): predicted RGB in [0, 1],
* ``pred_semantic`` (slots, V, K): predicted class probabilities,
* ``pred_weight`` (slots, V): 1 where predicted.

"Never observed" is ``weight == 0``. Blocks are allocated for predictions where a predicted surface
passes (``|pred_tsdf| < 1`` somewhere in the block) or where the map already has the block.

A run is split into :meth:`CompletionEngine.plan` + :meth:`gather` (read the map), :meth:`predict`
(the network; does not touch the map) and :meth:`write`, so a live node can hold its map lock only
while reading and writing.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch

from .block_index import pack_coords, unpack_keys
from .completion_config import CompletionConfig
from .tsdf_volume import SemanticTSDFVolume

# network(tsdf (B,1,X,Y,Z), observed (B,1,X,Y,Z), color (B,3,X,Y,Z) | None) -> {"tsdf", "color"?, "semantic_logits"}
CompletionNetwork = Callable[..., dict]


@dataclass
class ChunkBatch:
    """Chunks read from the map, ready for the network.

    Attributes:
        chunks: (n, 3) int64 chunk grid coordinates.
        versions: (n,) int64 newest block version in each chunk's input when it was read.
        tsdf, observed: (n, 1, S, S, S) network inputs; color: (n, 3, S, S, S) in [0, 1].
    """

    chunks: torch.Tensor
    versions: torch.Tensor
    tsdf: torch.Tensor
    observed: torch.Tensor
    color: torch.Tensor


@dataclass
class CompletionStats:
    chunks_run: int = 0
    chunks_skipped: int = 0  # too few observed voxels
    chunks_pending: int = 0  # dirty chunks left for the next run
    blocks_allocated: int = 0
    seconds: float = 0.0
    network_seconds: float = 0.0
    ran: list = field(default_factory=list)  # chunk coordinates run, in order


class CompletionEngine:
    """Keeps the map's prediction layers up to date with a completion network.

    Args:
        network: callable as :class:`~semantic_recon_ros.core.models.S4RNet` (dict outputs).
        volume: the map; prediction layers are added to it if missing.
        config: chunking and scheduling.
        use_color: pass the fused color to the network (False for color-blind networks).
    """

    def __init__(self, network: CompletionNetwork, volume: SemanticTSDFVolume, config: CompletionConfig,
                 use_color: bool = True):
        B = volume.config.block_size
        if config.chunk_size % B or config.chunk_margin % B:
            raise ValueError(f"chunk_size ({config.chunk_size}) and chunk_margin ({config.chunk_margin}) must be "
                             f"multiples of the volume's block_size ({B})")
        self.network, self.volume, self.config, self.use_color = network, volume, config, use_color
        V, K = volume.config.voxels_per_block, volume.num_classes
        for name, shape, fill in (("pred_tsdf", (V,), 1.0), ("pred_color", (V, 3), 0.0),
                                  ("pred_semantic", (V, K), 0.0), ("pred_weight", (V,), 0.0)):
            if name not in volume.layers:
                volume.add_layer(name, shape, fill)
        self.core_blocks = config.core_size // B
        self.margin_blocks = config.chunk_margin // B
        self.input_blocks = config.chunk_size // B
        self._done: dict[int, int] = {}  # chunk key -> newest block version it was run with

    @classmethod
    def from_checkpoint(cls, path, volume: SemanticTSDFVolume, config: CompletionConfig) -> "CompletionEngine":
        """Load an S4R checkpoint (ValueError when it does not fit the map's classes, voxel size, truncation)."""
        from .models import load_checkpoint  # the models package is only needed with a network

        network, info = load_checkpoint(path, volume.device, expected_class_names=volume.class_names,
                                        expected_voxel_size=volume.config.voxel_size,
                                        expected_truncation=volume.config.truncation)
        if info.model not in ("s4r", "s4r_colorblind"):
            raise ValueError(f"{path}: a {info.model!r} model cannot complete a fused RGB-D map (needs s4r)")
        return cls(network, volume, config, use_color=info.model == "s4r")

    def reset(self) -> None:
        """Forget which chunks were run (after the map was cleared or reloaded)."""
        self._done.clear()

    # ------------------------------------------------------------------ scheduling
    def chunk_versions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunks whose core holds observed blocks: ((m,) keys sorted, (m,) newest block version in
        their whole input box, margins included)."""
        vol = self.volume
        slots = vol.index.slots
        version = vol.block_version[slots]
        source = version > 0  # blocks changed by integration (predicted-only blocks have version 0)
        blocks, version = vol.block_coords[slots][source], version[source]
        if blocks.numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=vol.device)
            return empty, empty
        cb, mb = self.core_blocks, self.margin_blocks
        # a block lies in the input box of chunk c when c*cb - mb <= b < (c+1)*cb + mb
        low = torch.div(blocks - mb - cb, cb, rounding_mode="floor") + 1
        high = torch.div(blocks + mb, cb, rounding_mode="floor")
        keys, versions = [], []
        span = int((high - low).max()) + 1
        for offset in torch.cartesian_prod(*[torch.arange(span, device=vol.device)] * 3).view(-1, 3):
            chunk = low + offset
            inside = (chunk <= high).all(dim=1)
            keys.append(pack_coords(chunk[inside]))
            versions.append(version[inside])
        keys, versions = torch.cat(keys), torch.cat(versions)
        unique, inverse = torch.unique(keys, return_inverse=True)
        newest = torch.zeros_like(unique).scatter_reduce_(0, inverse, versions, reduce="amax")
        # run only chunks whose core holds observations (a margin alone is context, not work)
        cores = torch.unique(pack_coords(torch.div(blocks, cb, rounding_mode="floor")))
        active = torch.isin(unique, cores)
        return unique[active], newest[active]

    def plan(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Dirty chunks, most recently changed first: ((d, 3) chunk coords, (d,) versions)."""
        keys, versions = self.chunk_versions()
        done = torch.tensor([self._done.get(int(k), 0) for k in keys.tolist()], dtype=torch.int64,
                            device=keys.device)
        dirty = versions > done
        order = torch.argsort(versions[dirty], descending=True, stable=True)
        return unpack_keys(keys[dirty][order]), versions[dirty][order]

    # ------------------------------------------------------------------ map -> network -> map
    def _input_slots(self, chunks: torch.Tensor) -> torch.Tensor:
        """(n, 3) chunks -> (n, nb^3) slots of their input blocks (-1 absent), block order x, y, z."""
        nb = self.input_blocks
        r = torch.arange(nb, device=chunks.device)
        offsets = torch.cartesian_prod(r, r, r)  # (nb^3, 3), x slowest
        first = chunks * self.core_blocks - self.margin_blocks
        blocks = (first[:, None, :] + offsets).view(-1, 3)
        return self.volume.index.lookup(pack_coords(blocks)).view(len(chunks), -1)

    def _dense(self, pool: torch.Tensor, slots: torch.Tensor, fill: float) -> torch.Tensor:
        """(slots, V, C) pool and (n, nb^3) slots -> (n, C, S, S, S) dense grids."""
        n, nb, B = slots.shape[0], self.input_blocks, self.volume.config.block_size
        pool = pool.view(pool.shape[0], pool.shape[1], -1)
        values = pool[slots.clamp(min=0)]  # (n, nb^3, V, C)
        values = torch.where((slots >= 0)[..., None, None], values, torch.full_like(values, fill))
        values = values.view(n, nb, nb, nb, B, B, B, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return values.reshape(n, -1, nb * B, nb * B, nb * B)

    def gather(self, chunks: torch.Tensor, versions: torch.Tensor) -> ChunkBatch:
        """Read the network inputs of ``chunks`` from the map (hold the map lock around this)."""
        layers = self.volume.layers
        slots = self._input_slots(chunks)
        observed = self._dense(layers["weight"], slots, 0.0) > 0
        tsdf = self._dense(layers["tsdf"], slots, 1.0)
        color = self._dense(layers["color"], slots, 0.0) / 255.0
        return ChunkBatch(chunks, versions, tsdf, observed.float(), color)

    @torch.inference_mode()
    def predict(self, batch: ChunkBatch) -> dict[str, torch.Tensor]:
        """Run the network; returns the core crop of tsdf (n,1,c,c,c), color (n,3,...), probabilities (n,K,...)."""
        out = self.network(batch.tsdf, batch.observed, batch.color if self.use_color else None)
        m, c = self.config.chunk_margin, self.config.core_size
        crop = (slice(None), slice(None), slice(m, m + c), slice(m, m + c), slice(m, m + c))
        tsdf = out["tsdf"][crop]
        color = out["color"][crop] if "color" in out else torch.full_like(tsdf, 0.5).expand(-1, 3, -1, -1, -1)
        return {"tsdf": tsdf, "color": color, "probabilities": torch.softmax(out["semantic_logits"][crop], dim=1)}

    def write(self, batch: ChunkBatch, prediction: dict[str, torch.Tensor]) -> int:
        """Store predictions of the chunks' cores in the map (hold the map lock); returns blocks allocated."""
        vol, cb, B = self.volume, self.core_blocks, self.volume.config.block_size
        V, n = vol.config.voxels_per_block, len(batch.chunks)

        def per_block(grid: torch.Tensor) -> torch.Tensor:  # (n, C, c, c, c) -> (n * cb^3, V, C)
            channels = grid.shape[1]
            blocks = grid.reshape(n, channels, cb, B, cb, B, cb, B).permute(0, 2, 4, 6, 3, 5, 7, 1)
            return blocks.reshape(n * cb ** 3, V, channels)

        tsdf, color, probs = (per_block(prediction[k].to(vol.device)) for k in ("tsdf", "color", "probabilities"))
        r = torch.arange(cb, device=vol.device)
        blocks = (batch.chunks[:, None, :] * cb + torch.cartesian_prod(r, r, r)).view(-1, 3)
        keys = pack_coords(blocks)
        slots = vol.index.lookup(keys)
        surface = tsdf.abs().amin(dim=(1, 2)) < 1.0
        wanted = (slots < 0) & surface
        room = vol.config.max_blocks - vol.num_blocks
        new = wanted.nonzero().squeeze(1)[:max(room, 0)]
        if new.numel():
            slots[new] = vol._add_blocks(keys[new])
        keep = slots >= 0
        slots = slots[keep]
        vol.layers["pred_tsdf"][slots] = tsdf[keep, :, 0]
        vol.layers["pred_color"][slots] = color[keep]
        vol.layers["pred_semantic"][slots] = probs[keep]
        vol.layers["pred_weight"][slots] = 1.0
        for key, version in zip(pack_coords(batch.chunks).tolist(), batch.versions.tolist()):
            self._done[key] = version
        return int(new.numel())

    def run(self, time_budget: float | None = None, lock=None) -> CompletionStats:
        """Process dirty chunks, newest first, until none is left or the time budget is spent.

        ``lock`` (e.g. a ``threading.Lock`` guarding the map) is held while reading and writing the
        map, not while the network runs.
        """
        budget = self.config.time_budget if time_budget is None else time_budget
        stats, start = CompletionStats(), time.perf_counter()
        with lock if lock is not None else nullcontext():
            chunks, versions = self.plan()
        pending = list(zip(chunks, versions))
        last_batch = 0.0
        while pending and time.perf_counter() - start + last_batch <= budget:
            batch_start = time.perf_counter()
            take, pending = pending[: self.config.batch_size], pending[self.config.batch_size:]
            with lock if lock is not None else nullcontext():
                batch = self.gather(torch.stack([c for c, _ in take]), torch.stack([v for _, v in take]))
            enough = batch.observed.flatten(1).sum(dim=1) >= self.config.min_observed_voxels
            if not bool(enough.all()):
                with lock if lock is not None else nullcontext():
                    for key, version in zip(pack_coords(batch.chunks[~enough]).tolist(),
                                            batch.versions[~enough].tolist()):
                        self._done[key] = version
                stats.chunks_skipped += int((~enough).sum())
                batch = ChunkBatch(*(getattr(batch, f)[enough] for f in
                                     ("chunks", "versions", "tsdf", "observed", "color")))
            if len(batch.chunks):
                network_start = time.perf_counter()
                prediction = self.predict(batch)
                stats.network_seconds += time.perf_counter() - network_start
                with lock if lock is not None else nullcontext():
                    stats.blocks_allocated += self.write(batch, prediction)
                stats.chunks_run += len(batch.chunks)
                stats.ran.extend(batch.chunks.tolist())
            last_batch = time.perf_counter() - batch_start
        stats.chunks_pending = len(pending)
        stats.seconds = time.perf_counter() - start
        return stats
