"""Running the completion network over the sparse map: chunking, scheduling, writing predictions.

The map is tiled by a grid of chunk *cores* (``core_size`` voxels per axis). The network sees each
core with ``chunk_margin`` voxels of context on every side and writes only the core, so every voxel
has exactly one prediction, made with full context (the overlap-tile scheme): there are no seams to
blend, and rerunning one chunk when its observations change gives exactly what a full rerun would.

Only chunks whose core holds *active* voxels are run: for this engine observed voxels near the surface
(``|tsdf| < 1``; :meth:`CompletionEngine.active_voxels`, which subclasses redefine, e.g. RGB-only mapping's voxels
seen by a view in :mod:`.rgb_only_completion`). The grid is shifted by whole blocks
(:attr:`CompletionEngine.grid_offset`) so that these chunks are as few as possible; the shift is chosen at the
first run that finds active voxels (with ``align_grid``) and kept until :meth:`CompletionEngine.reset`, because
moving the grid would invalidate every prediction.
Predictions live in their own layers beside the observed data:

* ``pred_tsdf`` (slots, V): predicted normalized TSDF (fill 1 = free),
* ``pred_color`` (slots, V, 3): predicted RGB in [0, 1],
* ``pred_semantic`` (slots, V, K): predicted class probabilities,
* ``pred_confidence`` (slots, V): calibrated probability that a surface predicted at the voxel is right
  (:mod:`.completion_confidence`: from the distance to the nearest observed surface voxel and the network's
  class probability; the engine's :attr:`~CompletionEngine.calibration` comes with the checkpoint),
* ``pred_weight`` (slots, V): 1 where predicted (0 where the network's ``weight`` output says it made no prediction).

Predictions are stored with their confidences; the map shows the network's surface only where the
confidence reaches ``completion.min_confidence`` (:mod:`.surface_fields`), and users can filter the saved
layers by a higher one. "Never observed" is ``weight == 0``. Blocks are allocated for predictions where a
predicted surface passes with that confidence (``|pred_tsdf| < 1`` and ``pred_confidence >= min_confidence``
somewhere in the block); blocks the map already has get every prediction.

A run is split into :meth:`CompletionEngine.plan` + :meth:`gather` (read the map), :meth:`predict`
(the network; does not touch the map) and :meth:`write`, so a live node can hold its map lock only
while reading and writing.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .completion_confidence import ConfidenceCalibration, observed_surface, surface_distance
from .map.block_index import pack_coords, unpack_keys
from .config.completion import CompletionConfig
from .resources import resolve_setting
from .map.tsdf_volume import SemanticTSDFVolume
from .models import load_checkpoint
from .models.fast_conv import bfloat16_supported, inference_dtype, native_bfloat16_available

# network(tsdf (B,1,X,Y,Z), observed (B,1,X,Y,Z), color (B,3,X,Y,Z) | None[, labels (B,X,Y,Z) with label_input])
#   -> {"tsdf", "color"?, "semantic_logits"}
CompletionNetwork = Callable[..., dict]
DEFAULT_CHECKPOINT = "default"  # checkpoint setting naming the installed default model
DEFAULT_CHECKPOINT_FILE = "models/default.pt"  # in the package's share directory
DEFAULT_RGB_ONLY_CHECKPOINT_FILE = "models/atlas_default.pt"  # the default of RGB-only mapping (Atlas), beside it


def resolve_checkpoint(value: str | Path | None, rgb_only: bool = False) -> Path | None:
    """The checkpoint file a ``checkpoint`` setting names.

    ``""`` or None: no network (fusion only). ``"default"``: the installed default model,
    ``share/semantic_recon_ros/models/default.pt`` (``rgb_only``: the default RGB-only model,
    ``models/atlas_default.pt``; see :func:`~.resources.share_file`). Anything else is a path (``~`` expanded).
    Raises FileNotFoundError naming the file (for ``"default"``, every place it was looked for) when it does not
    exist.
    """
    if rgb_only:
        return resolve_setting(value, DEFAULT_RGB_ONLY_CHECKPOINT_FILE, "checkpoint", "default RGB-only model")
    return resolve_setting(value, DEFAULT_CHECKPOINT_FILE, "checkpoint", "default completion model")


def network_dtype(precision: str, device: torch.device | str) -> torch.dtype:
    """What the network's fast 3D convolutions compute in for a ``completion.precision`` setting on ``device``
    (:mod:`.models.fast_conv`): bfloat16 for ``bfloat16``, and for ``auto`` on a CPU that computes it natively.
    ValueError for ``bfloat16`` on a CPU where oneDNN cannot compute it at all."""
    if torch.device(device).type != "cpu" or precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        if not bfloat16_supported():
            raise ValueError("completion.precision bfloat16: oneDNN cannot compute bfloat16 convolutions on this CPU "
                             "(it needs AVX512 or newer); use auto or float32")
        return torch.bfloat16
    return torch.bfloat16 if native_bfloat16_available() else torch.float32


def add_prediction_layers(volume: SemanticTSDFVolume) -> None:
    """Add the prediction layers of the module docstring to ``volume`` where missing (hold the map lock)."""
    V, K = volume.config.voxels_per_block, volume.num_classes
    for name, shape, fill in (("pred_tsdf", (V,), 1.0), ("pred_color", (V, 3), 0.0),
                              ("pred_semantic", (V, K), 0.0), ("pred_confidence", (V,), 0.0),
                              ("pred_weight", (V,), 0.0)):
        if not volume.grid.has_layer(name):
            volume.grid.add_layer(name, shape, fill)


@dataclass
class ChunkBatch:
    """Chunks read from the map, ready for the network.

    Attributes:
        chunks: (n, 3) int64 chunk grid coordinates.
        versions: (n,) int64 newest block version in each chunk's input when it was read.
        tsdf, observed: (n, 1, S, S, S) network inputs; color: (n, 3, S, S, S) in [0, 1].
        labels: (n, S, S, S) int64 fused 2D labels, the most voted class (-1 where a voxel has no votes), for
            networks with ``label_input``; None otherwise.
    """

    chunks: torch.Tensor
    versions: torch.Tensor
    tsdf: torch.Tensor
    observed: torch.Tensor
    color: torch.Tensor
    labels: torch.Tensor | None = None

    def select(self, keep: torch.Tensor) -> "ChunkBatch":
        """The chunks where ``keep`` ((n,) bool) holds."""
        return ChunkBatch(self.chunks[keep], self.versions[keep], self.tsdf[keep], self.observed[keep],
                          self.color[keep], None if self.labels is None else self.labels[keep])


@dataclass
class CompletionStats:
    chunks_run: int = 0
    chunks_skipped: int = 0  # too few observed voxels
    chunks_pending: int = 0  # dirty chunks left for the next run
    blocks_allocated: int = 0
    seconds: float = 0.0
    network_seconds: float = 0.0
    interrupted: bool = False  # stopped early by reset() (nothing pending then) or by ``cancelled``
    ran: list = field(default_factory=list)  # chunk coordinates run, in order


class CompletionEngine:
    """Keeps the map's prediction layers up to date with a completion network.

    Subclasses for other networks redefine :data:`ACTIVITY_LAYERS` and :meth:`active_voxels` (which chunks are run),
    :meth:`gather` (what is read, with :meth:`read_chunks`), :meth:`predict` (the network, cropped with
    :meth:`crop_cores`) and :meth:`resolve_network_dtype` (its precision); planning, scheduling, budgets, versions
    and writing stay this class's. A subclass's batch has ``chunks``, ``versions``, ``observed`` (n, 1, S, S, S) (its
    sum decides ``min_observed_voxels``) and ``select(keep)``, as :class:`ChunkBatch`.

    Args:
        network: callable as :class:`~semantic_recon_ros.core.models.S4RNet` (dict outputs).
        volume: the map; prediction layers are added to it if missing.
        config: chunking and scheduling.
        use_color: pass the fused color to the network (False for color-blind networks).
        calibration: how confidences are computed (the checkpoint's; None: :meth:`ConfidenceCalibration.uncalibrated`).

    Attributes:
        calibration: the :class:`~.completion_confidence.ConfidenceCalibration` in use.
        network_dtype: what the network's fast convolutions compute in (:func:`network_dtype` of
            ``config.precision``; the outputs are float32 either way).
        grid_offset: (3,) int64 shift of the chunk grid in blocks (chunk ``c``'s core holds the blocks
            ``c * core_blocks + grid_offset + [0, core_blocks)^3``), None until the first run with
            observations chooses it.
    """

    def __init__(self, network: CompletionNetwork, volume: SemanticTSDFVolume, config: CompletionConfig,
                 use_color: bool = True, calibration: ConfidenceCalibration | None = None):
        B = volume.config.block_size
        if config.chunk_size % B or config.chunk_margin % B:
            raise ValueError(f"chunk_size ({config.chunk_size}) and chunk_margin ({config.chunk_margin}) must be "
                             f"multiples of the volume's block_size ({B})")
        self.network, self.volume, self.config, self.use_color = network, volume, config, use_color
        self.network_dtype = self.resolve_network_dtype()
        self.calibration = calibration or ConfidenceCalibration.uncalibrated()
        model_config = getattr(network, "config", None)
        self.label_input = bool(getattr(model_config, "label_input", False))  # feed the fused 2D labels
        add_prediction_layers(volume)
        self.core_blocks = config.core_size // B
        self.margin_blocks = config.chunk_margin // B
        self.input_blocks = config.chunk_size // B
        self.grid_offset: torch.Tensor | None = None
        self._done: dict[int, int] = {}  # chunk key -> newest block version it was run with
        self._generation = 0  # number of resets: a run started before a reset writes nothing after it
        # per slot: the block holds an active voxel (active_voxels), and the block version that was computed at
        self._active = torch.zeros(0, dtype=torch.bool, device=volume.device)
        self._active_version = torch.zeros(0, dtype=torch.int64, device=volume.device)

    def resolve_network_dtype(self) -> torch.dtype:
        """What :meth:`predict` runs the network's fast convolutions in: :func:`network_dtype` of
        ``config.precision`` (subclasses whose networks are not measured in bfloat16 return float32)."""
        return network_dtype(self.config.precision, self.volume.device)

    @classmethod
    def from_checkpoint(cls, path, volume: SemanticTSDFVolume, config: CompletionConfig) -> "CompletionEngine":
        """Load an S4R checkpoint and its confidence calibration (ValueError when it does not fit the map's classes,
        voxel size, truncation, or its calibration is invalid)."""
        network, info = load_checkpoint(path, volume.device, expected_class_names=volume.class_names,
                                        expected_voxel_size=volume.config.voxel_size,
                                        expected_truncation=volume.config.truncation)
        if info.model not in ("s4r", "s4r_colorblind"):
            raise ValueError(f"{path}: model {info.model!r} reconstructs from images alone (RGB-only mapping, "
                             "rgb_only); completing a fused RGB-D map needs an S4R checkpoint (model 's4r')")
        try:
            calibration = None if info.calibration is None else ConfidenceCalibration.from_dict(info.calibration)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        return cls(network, volume, config, use_color=info.model == "s4r", calibration=calibration)

    def reset(self) -> None:
        """Forget which chunks were run and the grid offset (after the map was cleared or reloaded).

        Call it under the same lock as :meth:`run` uses: a run in progress then writes nothing more.
        """
        self._done.clear()
        self.grid_offset = None
        self._generation += 1
        self._active_version.fill_(-1)

    # ------------------------------------------------------------------ scheduling
    ACTIVITY_LAYERS: tuple[str, ...] = ("weight", "tsdf")  # the layers active_voxels() reads

    def active_voxels(self, layers: dict[str, torch.Tensor]) -> torch.Tensor:
        """The voxels that make a chunk worth running: ``{name: (m, V[, C]) values of ACTIVITY_LAYERS}`` of m blocks
        -> (m, V) bool; here observed voxels near the surface (``weight > 0`` and ``|tsdf| < 1``)."""
        return (layers["weight"] > 0) & (layers["tsdf"].abs() < 1.0)

    def _active_blocks(self, slots: torch.Tensor) -> torch.Tensor:
        """(m,) slots -> (m,) bool: the block holds an active voxel (:meth:`active_voxels`; cached per block
        version)."""
        grid = self.volume.grid
        missing = grid.capacity - self._active.numel()
        if missing > 0:
            self._active = torch.cat((self._active, self._active.new_zeros(missing)))
            self._active_version = torch.cat((self._active_version, self._active_version.new_full((missing,), -1)))
        versions = grid.block_versions(slots)
        stale = versions != self._active_version[slots]
        slots_stale = slots[stale]
        if slots_stale.numel():
            layers = {name: grid.layer(name)[slots_stale] for name in self.ACTIVITY_LAYERS}
            self._active[slots_stale] = self.active_voxels(layers).any(dim=1)
            self._active_version[slots_stale] = versions[stale]
        return self._active[slots]

    def best_grid_offset(self, blocks: torch.Tensor) -> torch.Tensor:
        """(3,) int64 grid shift in ``[0, core_blocks)^3`` whose chunk cores cover the (n, 3) ``blocks`` with the
        fewest chunks (the first such shift in x, y, z order)."""
        cb = self.core_blocks
        shifts = torch.cartesian_prod(*[torch.arange(cb, device=blocks.device)] * 3).view(-1, 3)
        blocks = torch.unique(blocks, dim=0)
        counts = [torch.unique(pack_coords(torch.div(blocks - shift, cb, rounding_mode="floor"))).numel()
                  for shift in shifts]
        return shifts[min(range(len(counts)), key=counts.__getitem__)].clone()

    def chunk_origins(self, chunks: torch.Tensor) -> torch.Tensor:
        """(n, 3) chunk coordinates -> (n, 3) int64 voxel coordinates of their input's first voxel (margin included)."""
        offset = self.grid_offset if self.grid_offset is not None else torch.zeros(3, dtype=torch.int64)
        first_block = chunks * self.core_blocks + offset.to(chunks.device) - self.margin_blocks
        return first_block * self.volume.config.block_size

    def chunk_versions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunks whose core holds an active voxel (:meth:`active_voxels`): ((m,) keys sorted, (m,) newest block
        version in their whole input box, margins included). Sets :attr:`grid_offset` when it is unset."""
        vol, grid = self.volume, self.volume.grid
        slots = grid.slots
        version = grid.block_versions(slots)
        source = version > 0  # blocks changed by integration (predicted-only blocks have version 0)
        slots, version = slots[source], version[source]
        blocks = grid.block_coords(slots)
        surface = blocks[self._active_blocks(slots)]
        if surface.numel() == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=vol.device)
            return empty, empty
        if self.grid_offset is None:
            self.grid_offset = (self.best_grid_offset(surface) if self.config.align_grid
                                else torch.zeros(3, dtype=torch.int64, device=vol.device))
        blocks, surface = blocks - self.grid_offset, surface - self.grid_offset  # in the grid's frame
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
        # run only chunks whose core holds active voxels (a margin alone is context, not work)
        cores = torch.unique(pack_coords(torch.div(surface, cb, rounding_mode="floor")))
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
    def chunk_slots(self, chunks: torch.Tensor) -> torch.Tensor:
        """(n, b) map slots of the blocks of the (n, 3) ``chunks``' input boxes, margins included (-1 where the map
        has no block; b = blocks per box, in :meth:`BlockGrid.box_blocks` order). Hold the map lock around this."""
        first = torch.div(self.chunk_origins(chunks), self.volume.config.block_size, rounding_mode="floor")
        return self.volume.grid.box_slots(first, (self.input_blocks,) * 3)

    def read_chunks(self, chunks: torch.Tensor, names: tuple[str, ...],
                    slots: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Dense copies of the layers ``names`` over the input boxes (margins included) of the (n, 3) ``chunks``:
        ``{name: (n, C, S, S, S)}`` (C = 1 for per-voxel scalars; each layer's fill value where a block is absent).
        ``slots``: their :meth:`chunk_slots`, when known. Hold the map lock around this."""
        slots = self.chunk_slots(chunks) if slots is None else slots
        return self.volume.grid.read_boxes(names, None, (self.input_blocks,) * 3, slots=slots)

    def read_labels(self, slots: torch.Tensor) -> torch.Tensor:
        """The fused 2D labels over the input boxes of chunks with :meth:`chunk_slots` ``slots``: (n, S, S, S) int64
        most voted class of each voxel (-1 where it has no votes). Hold the map lock around this."""
        grid = self.volume.grid
        votes = grid.layer("semantic")
        present = slots >= 0
        best, label = votes[slots[present]].max(dim=-1)  # (m, V) over the K classes' votes of the blocks present
        labels = torch.full((*slots.shape, votes.shape[1]), -1, dtype=torch.int64, device=votes.device)
        labels[present] = torch.where(best > 0, label, -1)
        return grid.to_boxes(labels[..., None], (self.input_blocks,) * 3)[:, 0]

    def crop_cores(self, values: torch.Tensor) -> torch.Tensor:
        """(n, C, S, S, S) values over the chunks' input boxes -> (n, C, c, c, c) over their cores (c = core size)."""
        m, c = self.config.chunk_margin, self.config.core_size
        return values[:, :, m:m + c, m:m + c, m:m + c]

    def gather(self, chunks: torch.Tensor, versions: torch.Tensor) -> ChunkBatch:
        """Read the network inputs of ``chunks`` from the map (hold the map lock around this)."""
        slots = self.chunk_slots(chunks)
        boxes = self.read_chunks(chunks, ("weight", "tsdf", "color"), slots)
        observed = boxes["weight"] > 0
        labels = self.read_labels(slots) if self.label_input else None
        return ChunkBatch(chunks, versions, boxes["tsdf"], observed.float(), boxes["color"] / 255.0, labels)

    @torch.inference_mode()
    def predict(self, batch: ChunkBatch) -> dict[str, torch.Tensor]:
        """Run the network; returns the chunks' core crops (c = core size): tsdf (n, 1, c, c, c), color (n, 3, ...),
        semantic (n, K, ...) class probabilities and confidence (n, 1, ...) (:mod:`.completion_confidence`; the
        distances to the observed surface are measured in the whole input, margins included)."""
        color = batch.color if self.use_color else None
        with inference_dtype(self.network_dtype):
            out = (self.network(batch.tsdf, batch.observed, color, batch.labels) if self.label_input
                   else self.network(batch.tsdf, batch.observed, color))
        out = {name: self.crop_cores(value).float() for name, value in out.items()}  # (from bfloat16 too)
        surface = observed_surface(batch.tsdf, batch.observed, self.volume.config.truncation_voxels)
        reach = min(self.calibration.max_distance, self.config.chunk_margin)
        distance = self.crop_cores(surface_distance(surface, reach))
        semantic = torch.softmax(out["semantic_logits"], dim=1)
        confidence = self.calibration.confidence(distance, semantic.amax(dim=1, keepdim=True))
        tsdf = out["tsdf"]
        color = (out["color"] if "color" in out
                 else torch.full_like(tsdf, 0.5).expand(-1, 3, -1, -1, -1))
        return {"tsdf": tsdf, "color": color, "semantic": semantic, "confidence": confidence}

    def write(self, batch: ChunkBatch, prediction: dict[str, torch.Tensor]) -> int:
        """Store predictions of the chunks' cores in the map (hold the map lock); returns blocks allocated.

        ``prediction``: :meth:`predict`'s crops; an optional ``weight`` (n, 1, c, c, c) in {0, 1} becomes
        ``pred_weight`` (1 everywhere without it). Only blocks the map has, or that a predicted surface (weight 1)
        with confidence at least ``min_confidence`` passes (then allocated), are written.
        """
        vol, grid, cb = self.volume, self.volume.grid, self.core_blocks
        n = len(batch.chunks)
        first_core_block = (torch.div(self.chunk_origins(batch.chunks), vol.config.block_size, rounding_mode="floor")
                            + self.margin_blocks)
        blocks = grid.box_blocks(first_core_block, (cb,) * 3).view(-1, 3)  # (n * cb^3, 3)

        def per_block(name: str) -> torch.Tensor:  # (n, C, c, c, c) -> (n * cb^3, V, C)
            values = grid.from_boxes(prediction[name].to(vol.device))
            return values.reshape(n * cb ** 3, *values.shape[2:])

        tsdf, confidence = per_block("tsdf")[..., 0], per_block("confidence")[..., 0]
        weight = per_block("weight")[..., 0] if "weight" in prediction else torch.ones_like(tsdf)
        slots = grid.lookup(blocks)
        surface = ((tsdf.abs() < 1.0) & (confidence >= self.config.min_confidence) & (weight > 0)).any(dim=1)
        wanted = (slots < 0) & surface
        room = grid.max_blocks - grid.num_blocks
        new = wanted.nonzero().squeeze(1)[:max(room, 0)]
        if new.numel():
            slots[new] = grid.allocate(blocks[new])
        rows = (slots >= 0).nonzero().squeeze(1)
        slots = slots[rows]
        grid.layer("pred_tsdf")[slots] = tsdf[rows]
        grid.layer("pred_color")[slots] = per_block("color")[rows]
        grid.layer("pred_semantic")[slots] = per_block("semantic")[rows]
        grid.layer("pred_confidence")[slots] = confidence[rows]
        grid.layer("pred_weight")[slots] = weight[rows]
        grid.mark_rewritten(slots)
        self._mark_done(batch.chunks, batch.versions)
        return int(new.numel())

    def _mark_done(self, chunks: torch.Tensor, versions: torch.Tensor) -> None:
        for key, version in zip(pack_coords(chunks).tolist(), versions.tolist()):
            self._done[key] = version

    def run(self, time_budget: float | None = None, lock=None, cancelled: Callable[[], bool] | None = None,
            progress: Callable[[int, int], None] | None = None,
            run_network: Callable[[Callable[[], dict]], dict] | None = None) -> CompletionStats:
        """Process dirty chunks, newest first, until none is left or the time budget is spent (the first
        batch always runs; a batch starts only if it is expected to end within the budget).

        ``lock`` (e.g. a ``threading.Lock`` guarding the map) is held while reading and writing the
        map, not while the network runs. The run stops before the next batch when ``cancelled()``
        returns true, and writes nothing more once :meth:`reset` was called (under ``lock``).
        ``progress(chunks processed, chunks planned)`` is called after every batch. ``run_network(compute)``
        must call ``compute()`` (the network on one batch) and return its result; a live node uses it to
        run the network on a low-priority thread while this thread, which takes the lock, keeps its priority.
        """
        budget = self.config.time_budget if time_budget is None else time_budget
        stats, start = CompletionStats(), time.perf_counter()

        def guard():
            return lock if lock is not None else nullcontext()

        with guard():
            generation = self._generation
            chunks, versions = self.plan()
        pending = list(zip(chunks, versions))
        planned = len(pending)
        last_batch, batches = 0.0, 0
        while pending and (batches == 0 or time.perf_counter() - start + last_batch <= budget):  # one batch always runs
            if cancelled is not None and cancelled():
                stats.interrupted = True
                break
            batch_start = time.perf_counter()
            take, pending = pending[: self.config.batch_size], pending[self.config.batch_size:]
            with guard():
                if self._generation != generation:
                    break
                batch = self.gather(torch.stack([c for c, _ in take]), torch.stack([v for _, v in take]))
            enough = batch.observed.flatten(1).sum(dim=1) >= self.config.min_observed_voxels
            if not bool(enough.all()):
                with guard():
                    if self._generation != generation:
                        break
                    self._mark_done(batch.chunks[~enough], batch.versions[~enough])
                stats.chunks_skipped += int((~enough).sum())
                batch = batch.select(enough)
            if len(batch.chunks):
                network_start = time.perf_counter()
                prediction = (self.predict(batch) if run_network is None
                              else run_network(lambda: self.predict(batch)))
                stats.network_seconds += time.perf_counter() - network_start
                with guard():
                    if self._generation != generation:
                        break
                    stats.blocks_allocated += self.write(batch, prediction)
                stats.chunks_run += len(batch.chunks)
                stats.ran.extend(batch.chunks.tolist())
            last_batch, batches = time.perf_counter() - batch_start, batches + 1
            if progress is not None:
                progress(planned - len(pending), planned)
        if self._generation != generation:
            stats.interrupted, pending = True, []
        stats.chunks_pending = len(pending)
        stats.seconds = time.perf_counter() - start
        return stats
