"""Cutting a posed RGB-D sequence into cached training chunks, as in S4R.

1. A seeded random subset of the frames (``input_fraction``, e.g. half) is fused into the *input* volume,
   with their 2D labels: the incomplete scan (and its label votes) the network completes. All frames are fused into the *target* volume (the "more
   complete" fusion) and kept, at the reduced view resolution, as 2D supervision.
2. Chunks are the cells of a fixed grid (:class:`~.chunk_grid.ChunkGrid`, aligned to the volume's
   voxels) holding at least ``min_surface_voxels`` observed surface voxels of the input
   (``|sdf| < voxel_size``).
3. Each chunk takes the ``views_per_chunk`` frames that overlap it most (:mod:`.view_selection`,
   tested against the target fusion's surface); chunks with fewer qualifying views are dropped.
4. The selected views get 2D labels from a :class:`~.pseudo_labels.LabelSource` (the input's label source,
   or another one for the views alone: ground truth for SSR's labeled rooms, while the input keeps the
   segmenter's labels); synthetic sources also give the ground-truth TSDF and labels of every chunk.
5. Every chunk is written as one ``.pt`` file (:mod:`.chunk_dataset`), then ``manifest.json``.

Everything random comes from ``numpy.random.default_rng(config.seed)``, so the same source, config and
seed give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.config.fields import check_ranges, parameter
from semantic_recon_ros.core.datasets import FrameSequence, open_sequence
from semantic_recon_ros.core.synthetic import SyntheticGroundTruth, ground_truth_grid, load_ground_truth
from semantic_recon_ros.core.mapper import MapFrame, Mapper
from semantic_recon_ros.core.config.volume import VolumeConfig

from .chunk_dataset import CHUNK_FORMAT, CHUNK_VERSION, MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION
from .chunk_grid import ChunkGrid
from .dense_volume import DenseVolume
from .input_scan import draw_input_frames, fusion_volume_config
from .pseudo_labels import LabelSource, sequence_key
from .view_images import ViewImages, pick_pixels, reduced_view
from .view_selection import select_views, view_overlaps

GROUND_TRUTH_SCENE = Path("ground_truth") / "scene.json"


@dataclass
class ChunkExtractionConfig:
    """How a sequence is fused, cut into chunks and paired with views (see the module docstring)."""

    voxel_size: float = parameter(0.04, "Voxel edge length in metres.", 0.005, 0.5)
    truncation_voxels: float = parameter(4.0, "TSDF truncation in voxels.", 1.0, 16.0)
    block_size: int = parameter(8, "Block edge of the fusion volumes, in voxels.", 2, 32)
    chunk_dims: tuple = parameter((64, 64, 64), "Chunk size in voxels (x, y, z); multiples of 16 for the networks.")
    chunk_stride: tuple = parameter((32, 32, 32), "Spacing of the chunk grid in voxels (x, y, z); < dims overlaps.")
    frame_stride: int = parameter(1, "Use every n-th frame of the sequence.", 1, 10_000)
    max_frames: int = parameter(0, "At most this many frames after striding (0 = all).", 0, None)
    input_fraction: float = parameter(0.5, "Fraction of the frames fused into the incomplete input.", 0.01, 1.0)
    min_depth: float = parameter(0.1, "Depth readings closer than this (metres) are ignored.", 0.0, 100.0)
    max_depth: float = parameter(5.0, "Depth readings farther than this (metres) are ignored.", 0.01, 100.0)
    view_downscale: int = parameter(4, "Views are stored at the frame resolution divided by this.", 1, 64)
    views_per_chunk: int = parameter(5, "Views stored per chunk (chunks with fewer qualifying views are dropped).",
                                     1, 64)
    min_view_overlap: float = parameter(
        0.05, "A view qualifies when this fraction of its depth samples lies on the chunk's surface.", 0.0, 1.0)
    overlap_distance: float = parameter(
        0.02, "Depth samples within this distance (metres) of the fused surface count as overlap.", 0.0, 1.0)
    overlap_pixel_stride: int = parameter(2, "Overlap is measured on every n-th pixel of the views.", 1, 64)
    min_surface_voxels: int = parameter(
        256, "Chunks need at least this many observed input surface voxels (|sdf| < 1 voxel).", 1, None)
    max_chunks: int = parameter(0, "Keep at most this many chunks, chosen at random (0 = all).", 0, None)
    ground_truth: bool = parameter(True, "Store synthetic ground truth (gt_tsdf, gt_labels) when the source has it.")
    seed: int = parameter(0, "Seed of the input frame subset and the chunk subset.", 0, None)

    def __post_init__(self) -> None:
        self.chunk_dims = tuple(int(n) for n in self.chunk_dims)
        self.chunk_stride = tuple(int(n) for n in self.chunk_stride)
        check_ranges(self)
        ChunkGrid(self.chunk_dims, self.chunk_stride, self.voxel_size)  # validates dims and stride
        if self.min_depth >= self.max_depth:
            raise ValueError(f"ChunkExtractionConfig.min_depth ({self.min_depth}) must be below max_depth "
                             f"({self.max_depth})")

    @property
    def truncation(self) -> float:
        return self.voxel_size * self.truncation_voxels

    @property
    def grid(self) -> ChunkGrid:
        return ChunkGrid(self.chunk_dims, self.chunk_stride, self.voxel_size)

    def volume_config(self) -> VolumeConfig:
        return fusion_volume_config(self.voxel_size, self.block_size, self.truncation_voxels, self.min_depth,
                                    self.max_depth)


@dataclass
class ExtractionSummary:
    """What :func:`extract_chunks` wrote, and how long each stage took (seconds)."""

    cache_dir: Path
    num_chunks: int
    num_frames: int
    num_input_frames: int
    dropped_chunks: int  # candidate chunks with too few qualifying views
    seconds: dict[str, float] = field(default_factory=dict)


def ground_truth_chunk(gt: SyntheticGroundTruth, first_voxel: np.ndarray, dims: Sequence[int], voxel_size: float,
                       truncation: float) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth (X, Y, Z) float32 TSDF and int16 labels of the chunk whose voxel (0, 0, 0) is volume voxel
    ``first_voxel``.

    When the stored grid has the chunk's voxel size and truncation and lies on the same voxel lattice, it
    is cropped (outside it: TSDF 1, label -1); otherwise the exact TSDF is evaluated from the scene's boxes
    on the chunk's voxels (:func:`~semantic_recon_ros.core.synthetic.ground_truth_grid`).
    """
    grid = gt.grid
    shift = grid.origin / voxel_size
    aligned = (abs(grid.voxel_size - voxel_size) < 1e-9 and abs(grid.truncation - truncation) < 1e-9
               and np.allclose(shift, np.round(shift), atol=1e-6))
    dims = tuple(int(n) for n in dims)
    if not aligned:
        exact = ground_truth_grid(gt.scene, voxel_size, truncation, origin=np.asarray(first_voxel) * voxel_size,
                                  shape=dims)
        return exact.tsdf, exact.labels
    start = np.asarray(first_voxel, dtype=np.int64) - np.round(shift).astype(np.int64)
    tsdf = np.ones(dims, np.float32)
    labels = np.full(dims, -1, np.int16)
    src = [slice(max(s, 0), min(s + d, n)) for s, d, n in zip(start, dims, grid.shape)]
    dst = [slice(r.start - s, r.stop - s) for r, s in zip(src, start)]
    if all(r.stop > r.start for r in src):
        tsdf[tuple(dst)] = grid.tsdf[tuple(src)]
        labels[tuple(dst)] = grid.labels[tuple(src)]
    return tsdf, labels


def _save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to ``path`` via a temporary file. Serialized in memory first: torch names the archive
    after the file it writes, and the temporary name (with the process id) would make runs differ."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _clear_previous(cache_dir: Path, overwrite: bool) -> None:
    manifest = cache_dir / MANIFEST_FILE
    if not manifest.exists():
        return
    if not overwrite:
        raise FileExistsError(f"{cache_dir} already holds a chunk cache ({manifest}); pass overwrite=True")
    entries = json.loads(manifest.read_text()).get("chunks", [])
    manifest.unlink()
    for entry in entries:
        (cache_dir / entry["file"]).unlink(missing_ok=True)


def extract_chunks(
    source: str | Path,
    cache_dir: str | Path,
    labels: LabelSource,
    config: ChunkExtractionConfig | None = None,
    class_names: Sequence[str] | None = None,
    format: str = "auto",
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    progress: bool = True,
    view_labels: LabelSource | None = None,
) -> ExtractionSummary:
    """Fuse, cut and cache the training chunks of one sequence (see the module docstring).

    Args:
        source: any sequence folder ``open_sequence`` reads (7-Scenes, TUM, ScanNet-style, synthetic, ROS 2 bag).
        cache_dir: output folder (created).
        labels: 2D labels of the input frames, fused into the input (``input_labels``), and of the selected
            views (:mod:`.pseudo_labels`), unless ``view_labels`` is given.
        config: extraction parameters (defaults if None).
        class_names: the classes (default: config/classes.yaml).
        format: reader format ("auto" detects).
        device: torch device of the fusion volumes.
        overwrite: replace an existing cache in ``cache_dir`` (otherwise FileExistsError).
        progress: tqdm progress bars.
        view_labels: 2D labels of the selected views (the 2D targets) when they differ from the input's
            (None: ``labels``).
    Returns:
        ExtractionSummary. Raises ValueError for sequences without depth or without any usable chunk.
    """
    config = config or ChunkExtractionConfig()
    class_names = tuple(class_names) if class_names is not None else load_class_set().names
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _clear_previous(cache_dir, overwrite)
    start = time.perf_counter()
    base = open_sequence(source, format)
    try:
        return _extract(base, Path(source), cache_dir, labels, view_labels or labels, config, class_names, device,
                        progress, start)
    finally:
        close = getattr(base, "close", None)  # bag readers hold the bag open
        if close is not None:
            close()


def _extract(base: FrameSequence, source: Path, cache_dir: Path, labels: LabelSource, view_label_source: LabelSource,
             config: ChunkExtractionConfig, class_names: tuple[str, ...], device: torch.device | str, progress: bool,
             start: float) -> ExtractionSummary:
    """The body of :func:`extract_chunks` on an opened sequence (``start``: perf_counter when opening began)."""
    seconds: dict[str, float] = {}
    rng = np.random.default_rng(config.seed)
    frames = base.subset(stride=config.frame_stride, max_frames=config.max_frames or None)
    if len(frames) == 0:
        raise ValueError(f"{source}: no frames (after frame_stride {config.frame_stride}, max_frames "
                         f"{config.max_frames})")
    is_input = draw_input_frames(rng, len(frames), config.input_fraction)
    key = sequence_key(source)
    source_dense, target_dense, views = _fuse(frames, is_input, config, class_names, device, progress, source,
                                              lambda index: labels.labels(key, int(frames.indices[index]), frames[index]))
    seconds["fuse"] = time.perf_counter() - start

    start = time.perf_counter()
    selection = _select_chunks(source_dense, target_dense, views, config, rng, progress, source)
    seconds["select"] = time.perf_counter() - start

    start = time.perf_counter()
    view_labels = {}
    for index in tqdm(selection.frames_needed(), desc="labels", unit="view", disable=not progress):
        full = view_label_source.labels(key, int(frames.indices[index]), frames[index])
        view_labels[index] = pick_pixels(full, config.view_downscale).astype(np.int16)
    seconds["labels"] = time.perf_counter() - start

    start = time.perf_counter()
    gt = load_ground_truth(source) if config.ground_truth and (source / GROUND_TRUTH_SCENE).is_file() else None
    entries = []
    grid = config.grid
    for number, row in enumerate(tqdm(selection.keep, desc="chunks", unit="chunk", disable=not progress)):
        chunk, chosen = selection.candidates[row], selection.chosen[row]
        overlaps = selection.overlaps[row, chosen]
        record = _chunk_record(chunk, grid, config, source_dense, target_dense, gt, [views[v] for v in chosen],
                               [view_labels[v] for v in chosen], overlaps, is_input)
        file_name = f"chunk_{number:05d}.pt"
        _save_atomic(record, cache_dir / file_name)
        entries.append({"file": file_name, "chunk": chunk.tolist(), "origin": grid.origin(chunk[None])[0].tolist(),
                        "views": chosen, "overlaps": [round(float(x), 6) for x in overlaps],
                        "surface_voxels": int(selection.surface_counts[row])})
    seconds["write"] = time.perf_counter() - start

    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "source": str(source.resolve()),
        "sequence_key": key,
        "sequence_name": base.name,
        "reader": type(base).__name__,
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "class_names": list(class_names),
        "label_source": view_label_source.description,  # the views' labels (2D targets)
        "input_label_source": labels.description,  # the labels fused into the input
        "has_ground_truth": gt is not None,
        "num_frames": len(frames),
        "frame_indices": [int(i) for i in frames.indices],
        "input_frames": [int(i) for i in np.flatnonzero(is_input)],
        "candidate_chunks": len(selection.chosen),
        "dropped_chunks": selection.dropped,
        "chunks": entries,
    }
    tmp = cache_dir / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, cache_dir / MANIFEST_FILE)
    return ExtractionSummary(cache_dir, len(entries), len(frames), int(is_input.sum()), selection.dropped, seconds)


def _fuse(frames: FrameSequence, is_input: np.ndarray, config: ChunkExtractionConfig, class_names: tuple[str, ...],
          device: torch.device | str, progress: bool, source: Path, frame_labels: Callable[[int], np.ndarray]
          ) -> tuple[DenseVolume, DenseVolume, list[ViewImages]]:
    """Input fusion (frames where ``is_input``, with their 2D labels ``frame_labels(index)``, (H, W) class ids,
    -1 unlabeled), target fusion (all frames, no labels) and all reduced views."""
    input_map = Mapper(config.volume_config(), class_names, device)
    target_map = Mapper(config.volume_config(), class_names, device)
    views = []
    for index in tqdm(range(len(frames)), desc="fuse", unit="frame", disable=not progress):
        frame = frames[index]
        if frame.depth is None:
            raise ValueError(f"{source}: frame {index} ({frame.name!r}) has no depth; chunks need RGB-D input")
        target_map.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth))
        if is_input[index]:
            input_map.integrate(MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth, frame_labels(index)))
        views.append(reduced_view(index, frame, config.view_downscale))
    return DenseVolume.from_volume(input_map.volume), DenseVolume.from_volume(target_map.volume), views


@dataclass
class _Selection:
    """Candidate chunks (C of them), their view overlaps, chosen views, and which chunks are kept."""

    candidates: torch.Tensor  # (C, 3) chunk coords sorted by key
    surface_counts: torch.Tensor  # (C,) observed input surface voxels
    overlaps: torch.Tensor  # (C, F)
    chosen: list[list[int]]  # per candidate, the selected view indices, best first
    keep: list[int]  # rows of the kept chunks, increasing
    dropped: int  # candidates with too few qualifying views

    def frames_needed(self) -> list[int]:
        return sorted({v for row in self.keep for v in self.chosen[row]})


def _select_chunks(source_dense: DenseVolume, target_dense: DenseVolume, views: list[ViewImages],
                   config: ChunkExtractionConfig, rng: np.random.Generator, progress: bool, source: Path) -> _Selection:
    grid = config.grid
    candidates, surface_counts = grid.count(source_dense.surface_voxels())
    enough = surface_counts >= config.min_surface_voxels
    candidates, surface_counts = candidates[enough], surface_counts[enough]
    overlaps = view_overlaps(target_dense, grid, candidates, views, (config.min_depth, config.max_depth),
                             config.overlap_pixel_stride, config.overlap_distance, progress)
    chosen = select_views(overlaps, config.views_per_chunk, config.min_view_overlap)
    keep = [row for row, views_of_chunk in enumerate(chosen) if len(views_of_chunk) == config.views_per_chunk]
    dropped = len(chosen) - len(keep)
    if config.max_chunks and len(keep) > config.max_chunks:
        keep = sorted(int(i) for i in rng.choice(keep, size=config.max_chunks, replace=False))
    if not keep:
        raise ValueError(f"{source}: no chunk has {config.min_surface_voxels} observed surface voxels and "
                         f"{config.views_per_chunk} views overlapping >= {config.min_view_overlap:.0%} "
                         f"({len(chosen)} candidate chunks)")
    return _Selection(candidates, surface_counts, overlaps, chosen, keep, dropped)


def _chunk_record(chunk: torch.Tensor, grid: ChunkGrid, config: ChunkExtractionConfig, source_dense: DenseVolume,
                  target_dense: DenseVolume, gt: SyntheticGroundTruth | None, views: list[ViewImages],
                  labels: list[np.ndarray], overlaps: torch.Tensor, is_input: np.ndarray) -> dict:
    """The dict stored in one chunk file (layout in :mod:`.chunk_dataset`)."""
    first = grid.first_voxel(chunk[None])[0]
    source = source_dense.crop(first, grid.dims)
    target = target_dense.crop(first, grid.dims)
    record = {
        "format": CHUNK_FORMAT,
        "version": CHUNK_VERSION,
        "chunk": chunk.clone(),
        "origin": grid.origin(chunk[None])[0],
        "voxel_size": float(config.voxel_size),
        "truncation": float(config.truncation),
        "tsdf": source["tsdf"][None],
        "observed": source["observed"][None],
        "color": source["color"].permute(3, 0, 1, 2).contiguous(),
        "input_labels": source["labels"],
        "target_tsdf": target["tsdf"][None],
        "target_observed": target["observed"][None],
        "view_frames": torch.tensor([v.index for v in views], dtype=torch.int64),
        "view_overlap": overlaps.clone().to(torch.float32),
        "view_in_input": torch.from_numpy(is_input[[v.index for v in views]].copy()),
        "view_depth": torch.from_numpy(np.stack([v.depth for v in views])),
        "view_color": torch.from_numpy(np.stack([v.color for v in views])),
        "view_labels": torch.from_numpy(np.stack(labels)),
        "view_intrinsics": torch.tensor([[v.camera.fx, v.camera.fy, v.camera.cx, v.camera.cy] for v in views],
                                        dtype=torch.float64),
        "view_T_world_cam": torch.from_numpy(np.stack([v.T_world_cam for v in views])),
    }
    if gt is not None:
        tsdf, gt_labels = ground_truth_chunk(gt, first.numpy(), grid.dims, config.voxel_size, config.truncation)
        record["gt_tsdf"] = torch.from_numpy(np.ascontiguousarray(tsdf))[None]
        record["gt_labels"] = torch.from_numpy(np.ascontiguousarray(gt_labels))
    return record
