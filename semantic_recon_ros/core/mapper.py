"""The map as one object: fusion, completion, meshes, voxel maps, saving and loading, safe across threads.

A :class:`Mapper` owns the :class:`~.map.SemanticTSDFVolume`, the optional completion network
(:class:`~.completion.CompletionEngine`; for RGB-only mapping the Atlas network,
:class:`~.rgb_only_completion.RgbOnlyCompletionEngine`) and its background scheduling, the lock that serializes every
access to the volume (granted in request order), the map's version, stamp and generation, and the
mapping and completion statistics. The ROS node, ``semantic-recon map`` and the trainer's fusion loops
all map through it, so the same frames give the same volume everywhere.

Threads: every public method may be called from any thread. :meth:`Mapper.integrate` and the
completion's reads and writes hold :attr:`Mapper.lock`; the network itself runs outside it, on a
low-priority thread when :meth:`Mapper.start_completion` runs completion in the background (the thread
that takes the lock keeps its priority: a low-priority thread holding the lock would stall integration
on a busy machine).

RGB-only mapping (``rgb_only_max_range``): frames carry no depth; :meth:`Mapper.integrate` computes the image
features of the Atlas checkpoint's feature source (:mod:`.rgb_only_features`, outside the lock) and back-projects
them into the volume's ``features`` layer along the camera rays up to ``rgb_only_max_range`` (under the lock); the
network reconstructs geometry, classes and color from them chunk by chunk, like the completion network, and the
map is its prediction alone (mesh source "completed", no additions). An RGB-only mapper needs its checkpoint.

Single-view fills (:meth:`Mapper.fill_unobserved`): a single-view network's prediction of one frame may be written
into the voxels never observed, with a low weight, in the completion network's prediction layers
(:mod:`.single_view_prediction`); they then show like the completion network's additions, never as observations.

Files (:meth:`Mapper.save`, :meth:`Mapper.load`): ``volume.pt`` (every layer, predictions and their confidences
included), ``mesh_rgb.ply`` and ``mesh_semantic.ply`` (the mesh of :attr:`Mapper.mesh_source`, fused colors / class
palette; both keep label and confidence per vertex) and, with a completion network of an RGB-D map,
``mesh_additions.ply`` (the surface the network adds where nothing was observed, only where its calibrated
confidence reaches ``completion.min_confidence``, with the confidence per vertex). A save is one consistent set: the
files of one map state go into a new numbered save folder that then becomes ``current`` at once, the usual names at
the top of the folder link through ``current`` (:mod:`.map_folder`, :func:`map_folder`).
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from .camera import PinholeCamera
from .classes import ClassSet, load_class_set
from .completion import CompletionEngine, CompletionNetwork, CompletionStats, resolve_checkpoint
from .completion_confidence import ConfidenceCalibration
from .concurrency import FairLock, lower_thread_priority
from .config import CompletionConfig, MapperConfig, VolumeConfig
from .device import resolve_device
from .map import (
    IntegrationStats,
    SemanticTSDFVolume,
    atomic_torch_save,
    read_volume_state,
    restore_volume,
    volume_state,
)
from .map_folder import MapFolder
from .mapping_statistics import CompletionStatistics, MappingStatistics
from .incremental_meshing import Region, RegionMesher, RegionVoxelMap
from .mesh import SemanticMesh
from .meshing import RegionMesh, assemble
from .ply import write_semantic_ply
from .process_memory import return_freed_memory
from .rgb_only_completion import RgbOnlyCompletionEngine, load_atlas_network, rgb_only_volume_config
from .rgb_only_features import ImageFeatureExtractor, feature_map_camera
from .segmentation.segmenter import Segmenter
from .single_view_prediction import FillStats, SingleViewPrediction, UnobservedFill, fill_unobserved

MESH_RGB_FILE, MESH_SEMANTIC_FILE, MESH_ADDITIONS_FILE, VOLUME_FILE = (
    "mesh_rgb.ply", "mesh_semantic.ply", "mesh_additions.ply", "volume.pt")
MAP_FILES = (VOLUME_FILE, MESH_RGB_FILE, MESH_SEMANTIC_FILE, MESH_ADDITIONS_FILE)
COMPLETION_NICENESS = 10  # nice value of the background network thread above the process's
MESH_STEP_BLOCKS = 2048  # blocks meshed (or sampled for the voxel map) per hold of the map lock
LIVE_STEP_BLOCKS = 512  # the same for the live outputs, which never chase changes made during their update


class Log(Protocol):
    """Where a mapper reports problems of its background work (e.g. an rclpy logger, or :class:`PrintLog`)."""

    def error(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...


class PrintLog:
    """A :class:`Log` that prints to stderr."""

    def error(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)

    def warning(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)


@dataclass
class MapFrame:
    """One registered frame, in the camera's optical frame.

    Attributes:
        camera: intrinsics of every image, ``(H, W) == camera.shape``.
        T_world_cam: (4, 4) camera-to-world pose.
        color: (H, W, 3) uint8 RGB.
        depth: (H, W) float32 metres; None for RGB-only mapping.
        labels: (H, W) integer class ids (values outside ``[0, K)`` unlabeled), or None.
        class_probs: (H, W, K) float class probabilities (instead of labels), or None.
        stamp_ns: capture time (0 when unknown).
    """

    camera: PinholeCamera
    T_world_cam: np.ndarray
    color: np.ndarray
    depth: np.ndarray | None = None
    labels: np.ndarray | None = None
    class_probs: np.ndarray | None = None
    stamp_ns: int = 0


@dataclass(frozen=True)
class MapState:
    """The map at one moment: ``version`` counts every change (frame, completion write, reset, load),
    ``stamp_ns`` is the newest fused frame's stamp (0 = none), ``blocks`` and ``volume_bytes`` its size."""

    version: int = 0
    stamp_ns: int = 0
    blocks: int = 0
    volume_bytes: int = 0


def map_folder(directory: str | Path) -> MapFolder:
    """The map folder ``directory`` of :meth:`Mapper.save` (its newest save, leftovers of interrupted saves)."""
    return MapFolder(directory, MAP_FILES)


@dataclass
class SavedMap:
    """What :meth:`Mapper.save` wrote (paths in the new save folder ``folder``) and the meshes it wrote."""

    volume: Path
    mesh_rgb: Path
    mesh_semantic: Path
    mesh: SemanticMesh
    state: MapState
    mesh_additions: Path | None = None
    additions: SemanticMesh | None = None
    folder: Path | None = None

    def summary(self) -> dict:
        """Paths and sizes as plain JSON values."""
        out = {"folder": str(self.folder), "mesh_rgb": str(self.mesh_rgb), "mesh_semantic": str(self.mesh_semantic),
               "volume": str(self.volume),
               "triangles": self.mesh.num_triangles, "blocks": self.state.blocks, "map_stamp_ns": self.state.stamp_ns}
        if self.mesh_additions is not None:
            out.update(mesh_additions=str(self.mesh_additions), additions_triangles=self.additions.num_triangles)
        return out


class Mapper:
    """The live semantic map (see the module docstring).

    Args:
        volume_config: the fusion volume.
        classes: class names and palette (votes are kept in this order); bare names are colored as in the package's
            class list (:meth:`ClassSet.from_names`).
        device: torch device of the volume (and of the network).
        completion_config: chunking and scheduling of the completion network, and how meshes and voxel maps use
            its predictions (``min_confidence``, ``label_override_probability``).
        checkpoint: completion network: "default" (the installed model), a file, or ""/None for fusion only. For
            RGB-only mapping the Atlas network, required: "default" is the installed ``models/atlas_default.pt``.
        mesh_source: what :meth:`mesh` and the saved mesh_rgb.ply / mesh_semantic.ply show by default: "observed",
            "completed" or "both" (observed when there is no network; "completed" for RGB-only mapping).
        mesh_region_size: edge in metres of the regions meshes and voxel maps are kept by (rounded to whole blocks):
            a change redoes only its regions (:mod:`.incremental_meshing`).
        rgb_only_max_range: map without depth (see the module docstring): image features fill each camera ray up to
            this range in metres; None maps RGB-D frames. ``volume_config.feature_dim`` 0 takes the checkpoint's
            feature channels (another value must equal them).
        strict_checkpoint: raise when the checkpoint cannot be used; otherwise keep the reason in
            :attr:`completion_error` and map by fusion only. RGB-only mapping always raises (ValueError or
            FileNotFoundError): it maps nothing without its network.
        segmenter: the 2D segmenter over ``classes`` whose class probabilities an Atlas checkpoint of feature source
            "deeplab" back-projects (RGB-only mapping only).
        segmenter_factory: called once to make that segmenter when the checkpoint needs one and ``segmenter`` is
            None (so that callers load it only for such checkpoints).

    Attributes:
        volume, engine (None without a network), lock, stats, completion_stats, checkpoint (resolved path or None),
        completion_error (why a requested network is not used, or None), generation (number of resets and loads),
        feature_extractor (the image features of RGB-only mapping, None for RGB-D).
    """

    def __init__(self, volume_config: VolumeConfig, classes: ClassSet | Sequence[str], device: torch.device | str = "cpu",
                 completion_config: CompletionConfig | None = None, checkpoint: str | Path | None = None,
                 mesh_source: str = "observed", rgb_only_max_range: float | None = None,
                 strict_checkpoint: bool = True, mesh_region_size: float = 1.0, segmenter: Segmenter | None = None,
                 segmenter_factory: Callable[[], Segmenter] | None = None):
        self.classes = classes if isinstance(classes, ClassSet) else ClassSet.from_names(classes)
        self.rgb_only_max_range = rgb_only_max_range
        self.lock = FairLock()
        self.stats = MappingStatistics()
        self.completion_stats = CompletionStatistics()
        self.checkpoint: Path | None = None
        self.completion_error: str | None = None
        self.completion_config = completion_config or CompletionConfig()
        self.feature_extractor: ImageFeatureExtractor | None = None
        if rgb_only_max_range is None:
            self.volume = SemanticTSDFVolume(volume_config, self.classes.names, device)
            self.engine = self._load_network(checkpoint, self.completion_config, strict_checkpoint)
            self.mesh_source = mesh_source if self.engine is not None else "observed"
        else:
            self.engine = self._load_rgb_only_network(checkpoint, volume_config, device, segmenter, segmenter_factory)
            self.mesh_source = "completed"
        self.region_blocks = max(1, round(mesh_region_size / volume_config.block_length))
        self._meshers: dict[str, RegionMesher] = {}
        self._voxel_maps: dict[tuple[str, float], RegionVoxelMap] = {}
        self.generation = 0
        self._version = 0
        self._stamp_ns = 0
        self._size = (0, self.volume.memory_bytes())  # (blocks, bytes), updated under the lock
        self._filled = False  # single-view predictions were written (fill_unobserved)
        self._network_computing = threading.Event()
        self._stop = threading.Event()
        self._completion_thread: threading.Thread | None = None
        self._growth_thread: threading.Thread | None = None  # prepares the volume's next growth
        self._network_thread: ThreadPoolExecutor | None = None
        self._log: Log = PrintLog()

    @classmethod
    def from_config(cls, config: MapperConfig, volume_config: VolumeConfig, completion_config: CompletionConfig,
                    rgb_only_max_range: float | None = None, strict_checkpoint: bool = True,
                    segmenter_factory: Callable[[ClassSet], Segmenter] | None = None) -> "Mapper":
        """A mapper from the parameter sections (classes from ``classes_file``, device resolved);
        ``segmenter_factory(classes)`` makes the segmenter an RGB-only checkpoint may need (see :class:`Mapper`)."""
        try:
            classes = load_class_set(config.classes_file or None)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"classes_file: {error}") from None
        factory = None if segmenter_factory is None else (lambda: segmenter_factory(classes))
        return cls(volume_config, classes, resolve_device(config.device), completion_config, config.checkpoint,
                   config.mesh_source, rgb_only_max_range, strict_checkpoint, config.mesh_region_size,
                   segmenter_factory=factory)

    def attach_network(self, network: CompletionNetwork, config: CompletionConfig, use_color: bool = True,
                       calibration: ConfidenceCalibration | None = None) -> None:
        """Complete the map with an already loaded ``network`` (e.g. one being trained) instead of a checkpoint;
        ``calibration``: its confidence calibration (None: uncalibrated, see :mod:`.completion_confidence`)."""
        with self.lock:
            self.engine = CompletionEngine(network, self.volume, config, use_color=use_color, calibration=calibration)
            self.completion_config = config

    def _load_rgb_only_network(self, checkpoint, volume_config: VolumeConfig, device, segmenter: Segmenter | None,
                               segmenter_factory: Callable[[], Segmenter] | None) -> RgbOnlyCompletionEngine:
        """Load the Atlas checkpoint, then make the volume (its feature channels) and the feature extractor."""
        if checkpoint is None or str(checkpoint) == "":
            raise ValueError("RGB-only mapping needs an Atlas checkpoint (checkpoint 'default' or a file): without "
                             "its network it maps no geometry")
        max_range = self.rgb_only_max_range
        if not volume_config.min_depth < max_range <= volume_config.max_depth:
            raise ValueError(f"rgb_only_max_range ({max_range}) must lie in (volume.min_depth, volume.max_depth] = "
                             f"({volume_config.min_depth}, {volume_config.max_depth}]")
        self.checkpoint = resolve_checkpoint(checkpoint, rgb_only=True)
        network = load_atlas_network(self.checkpoint, volume_config, self.classes.names, device)
        self.volume = SemanticTSDFVolume(rgb_only_volume_config(volume_config, network.config), self.classes.names,
                                         device)
        if network.config.feature_source == "deeplab" and segmenter is None and segmenter_factory is not None:
            segmenter = segmenter_factory()
        try:
            self.feature_extractor = ImageFeatureExtractor(network, segmenter)
        except ValueError as error:
            raise ValueError(f"{self.checkpoint}: {error}") from None
        if segmenter is not None and tuple(segmenter.class_names) != tuple(self.classes.names):
            raise ValueError(f"the segmenter's classes {list(segmenter.class_names)} are not the map's "
                             f"{list(self.classes.names)}")
        return RgbOnlyCompletionEngine(network, self.volume, self.completion_config)

    def _load_network(self, checkpoint, config: CompletionConfig, strict: bool) -> CompletionEngine | None:
        if checkpoint is None or str(checkpoint) == "":
            return None
        try:
            self.checkpoint = resolve_checkpoint(checkpoint)
            return CompletionEngine.from_checkpoint(self.checkpoint, self.volume, config)
        except (FileNotFoundError, ValueError) as error:
            if strict:
                raise
            self.checkpoint, self.completion_error = None, str(error)
            return None

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> MapState:
        """The latest :class:`MapState` (read without the lock: never waits for a frame)."""
        blocks, volume_bytes = self._size
        return MapState(self._version, self._stamp_ns, blocks, volume_bytes)

    def _changed(self) -> MapState:
        """Record a change of the volume (hold the lock)."""
        self._version += 1
        self._size = (self.volume.num_blocks, self.volume.memory_bytes())
        return self.state

    @property
    def network_computing(self) -> bool:
        """True while the completion network computes a batch."""
        return self._network_computing.is_set()

    # ------------------------------------------------------------------ fusion
    def integrate(self, frame: MapFrame, generation: int | None = None) -> IntegrationStats | None:
        """Fuse one frame (depth, or for an RGB-only mapper the image features of its color, computed before the map
        lock is taken); returns what the volume did, or None when ``generation`` (the :attr:`generation` the frame
        was received in) predates a reset or load.

        Raises ValueError for invalid frames (the map is unchanged). Frames with no valid depth change nothing
        (``valid_pixels == 0``; RGB-only frames have none and always change the map).
        """
        start = time.perf_counter()
        if self.rgb_only:
            features, feature_camera = self._image_features(frame)
        feature_seconds = time.perf_counter() - start  # integration time: features + the work under the lock
        with self.lock:
            if generation is not None and generation != self.generation:
                return None
            start = time.perf_counter()
            if self.rgb_only:
                stats = self.volume.integrate_features(features, feature_camera, frame.T_world_cam,
                                                       max_range=self.rgb_only_max_range)
            else:
                if frame.depth is None:
                    raise ValueError("an RGB-D mapper needs a depth image")
                stats = self.volume.integrate(frame.depth, frame.camera, frame.T_world_cam, color=frame.color,
                                              labels=frame.labels, class_probs=frame.class_probs)
                if stats.valid_pixels == 0:
                    return stats
            seconds = feature_seconds + time.perf_counter() - start
            self._stamp_ns = max(self._stamp_ns, frame.stamp_ns)
            self._changed()
        self.stats.count_integration(seconds)
        self._prepare_growth()
        if self._network_computing.is_set():
            self.completion_stats.count_integration_while_computing()
        return stats

    def _prepare_growth(self) -> None:
        """When the volume's pools fill up, prepare their next growth on a background thread, outside the lock
        (:meth:`~.map.block_grid.BlockGrid.prepare_growth`): the frame that needs it then does not hold the map
        while fresh memory is mapped in."""
        grid = self.volume.grid
        if grid.growth_due() and (self._growth_thread is None or not self._growth_thread.is_alive()):
            self._growth_thread = threading.Thread(target=grid.prepare_growth, name="map-growth", daemon=True)
            self._growth_thread.start()

    def _image_features(self, frame: MapFrame) -> tuple[torch.Tensor, PinholeCamera]:
        """The (h, w, feature_dim) features of an RGB-only frame's color and the camera of that feature map."""
        if frame.color.shape[:2] != frame.camera.shape:
            raise ValueError(f"color must be {frame.camera.shape} (camera size), got {frame.color.shape[:2]}")
        return (self.feature_extractor(frame.color, frame.camera, frame.T_world_cam),
                feature_map_camera(frame.camera))

    def integrate_semantics(self, frame: MapFrame, class_probs: np.ndarray,
                            generation: int | None = None) -> IntegrationStats | None:
        """Fuse (H, W, K) class probabilities of a frame whose geometry was integrated before (a keyframe segmented
        later) into the label votes of the voxels near its depth; None when ``generation`` predates a reset or load.
        Nothing is allocated; TSDF, weight and color stay."""
        if frame.depth is None:
            raise ValueError("fusing class probabilities needs the frame's depth")
        with self.lock:
            if generation is not None and generation != self.generation:
                return None
            stats = self.volume.integrate_semantics(frame.depth, frame.camera, frame.T_world_cam,
                                                    class_probs=class_probs)
            if stats.voxels_updated:
                self._changed()
        return stats

    def fill_unobserved(self, prediction: SingleViewPrediction, weight: float,
                        generation: int | None = None) -> FillStats | None:
        """Write a single-view network's prediction of one frame into the voxels never observed, with ``weight`` in
        (0, 1) (:mod:`.single_view_prediction`: in the prediction layers, never over observations or the completion
        network's predictions; shown like the completion network's additions). It is resampled onto the map outside
        the lock, and written under it. None when ``generation`` predates a reset or load; ValueError for an RGB-only
        mapper (it observes nothing: its map is its network's prediction) or a prediction of other classes."""
        if self.rgb_only:
            raise ValueError("an RGB-only map has no observations to fill around: its map is the Atlas prediction")
        fill = UnobservedFill.of(self.volume, prediction)
        with self.lock:
            if generation is not None and generation != self.generation:
                return None
            stats = fill_unobserved(self.volume, fill, weight)
            if stats.voxels_filled or stats.blocks_allocated:
                self._filled = True
                self._changed()
        return stats

    # ------------------------------------------------------------------ completion
    def complete(self, time_budget: float | None = None, cancelled: Callable[[], bool] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> CompletionStats | None:
        """One completion run over the chunks whose observations changed (None without a network).

        ``time_budget`` defaults to ``completion.time_budget`` (``float("inf")``: until nothing is left);
        ``progress(done, planned)`` after every batch. The network runs on the background network thread
        when :meth:`start_completion` started one.
        """
        if self.engine is None:
            return None
        stamp_ns = self._stamp_ns  # every observation up to this stamp is in the run's plan
        run_network = self._run_network if self._network_thread is not None else None
        stats = self.engine.run(time_budget, lock=self.lock, cancelled=cancelled, progress=progress,
                                run_network=run_network)
        if stats.chunks_run:
            return_freed_memory()  # the network's activations: hundreds of MB the heap would otherwise keep
        if stats.chunks_run:
            with self.lock:  # the predictions changed the map: meshes and voxel maps are redone
                self._changed()
        caught_up = not stats.interrupted and stats.chunks_pending == 0
        self.completion_stats.count_run(stats, stamp_ns if caught_up else None)
        return stats

    def start_completion(self, period: float, log: Log | None = None) -> None:
        """Run :meth:`complete` every ``period`` seconds on a background thread (the network on a low-priority
        one) until :meth:`close`; errors are counted and logged to ``log``, never raised. No-op without a network."""
        if self.engine is None or self._completion_thread is not None:
            return
        self._log = log or self._log
        self._network_thread = ThreadPoolExecutor(1, "completion_network", initializer=self._lower_thread_priority)
        self._completion_thread = threading.Thread(target=self._complete_periodically, args=(period,),
                                                   name="completion", daemon=True)
        self._completion_thread.start()

    def _complete_periodically(self, period: float) -> None:
        next_run = time.monotonic() + period
        while not self._stop.wait(max(0.0, next_run - time.monotonic())):
            next_run = time.monotonic() + period
            try:
                self.complete(cancelled=self._stop.is_set)
            except Exception as error:  # noqa: BLE001 -- completion must not stop the mapper
                self.completion_stats.count_error()
                self._log.error(f"completion failed: {type(error).__name__}: {error}")

    def _run_network(self, compute):
        """Run ``compute`` (the network on one batch; touches no shared state) on the low-priority network thread."""
        self._network_computing.set()
        try:
            return self._network_thread.submit(compute).result()
        finally:
            self._network_computing.clear()

    def _lower_thread_priority(self) -> None:
        problem = lower_thread_priority(COMPLETION_NICENESS)
        if problem is not None:
            self._log.warning(f"the completion network runs at normal priority: {problem}")

    def close(self) -> None:
        """Stop background completion (the network finishes its batch; no further batch starts)."""
        self._stop.set()
        if self._completion_thread is not None:
            self._completion_thread.join()
            self._network_thread.shutdown()
            self._completion_thread = self._network_thread = None

    # ------------------------------------------------------------------ outputs
    def _mesher(self, source: str) -> RegionMesher:
        if source not in self._meshers:
            self._meshers[source] = RegionMesher(self.volume, source, self.completion_config, self.region_blocks)
        return self._meshers[source]

    def _up_to_date(self, caches: Sequence[RegionMesher | RegionVoxelMap], then: Callable[[MapState], object],
                    live: bool = False):
        """Bring ``caches`` up to date in steps of a bounded number of blocks, each under the lock (frames are fused
        in between), and return ``then(state)`` called under the lock of the step that left them all current.

        Not ``live``: steps of :data:`MESH_STEP_BLOCKS` until no change is left, also those made during the update;
        ``state`` is the map's at the end, which the caches show exactly (saving, whole meshes). ``live``: steps of
        :data:`LIVE_STEP_BLOCKS` over the changes made before the update began, ``state`` the map's then; what
        frames change meanwhile waits for the next update, so an update ends even while the camera keeps changing
        more blocks than one step redoes (live views: short holds of the map, every region at least as new as
        ``state``)."""
        planned = None
        while True:
            with self.lock:
                for cache in caches:
                    cache.update(LIVE_STEP_BLOCKS if live else MESH_STEP_BLOCKS, take_changes=planned is None)
                if live and planned is None:
                    planned = self.state
                if not any(cache.pending for cache in caches):
                    return then(self.state if planned is None else planned)

    def mesh(self, source: str | None = None) -> tuple[SemanticMesh, MapState]:
        """The mesh of ``source`` (default :attr:`mesh_source`; "additions": the network's additions) and the state
        it shows."""
        meshes, state = self.meshes((source or self.mesh_source,))
        return meshes[0], state

    def meshes(self, sources: Sequence[str]) -> tuple[list[SemanticMesh], MapState]:
        """The meshes of ``sources`` (see :mod:`.surface_fields`), all of one state of the map, and that state.
        Only regions changed since the last call are re-meshed; the whole meshes are assembled outside the lock."""
        meshers = [self._mesher(source) for source in sources]
        pieces, state = self._up_to_date(meshers, lambda state: ([mesher.pieces() for mesher in meshers], state))
        return [assemble(p, with_surface_confidence=source != "observed") for p, source in zip(pieces, sources)], state

    def mesh_changes(self, since: dict[str, int]) -> tuple[dict[str, tuple[dict[Region, RegionMesh | None], int]],
                                                            MapState]:
        """The regions of each source's mesh changed after the revision given for it (0: every region), all of one
        state of the map: ``{source: ({region: mesh, or None where it vanished}, current revision)}``, and that
        state. What a live view needs: work and data in proportion to the change (:mod:`.incremental_meshing`), in
        short holds of the map: the changes made while the regions are redone wait for the next call (every region
        shows at least the returned state)."""
        meshers = {source: self._mesher(source) for source in since}
        return self._up_to_date(list(meshers.values()), lambda state: (
            {source: (mesher.changes_since(since[source]), mesher.revision) for source, mesher in meshers.items()},
            state), live=True)

    @property
    def rgb_only(self) -> bool:
        """The mapper maps without depth (see the module docstring)."""
        return self.rgb_only_max_range is not None

    @property
    def has_additions(self) -> bool:
        """A network adds surface to an observed map (RGB-D mapping with a completion network, or single-view
        predictions written by :meth:`fill_unobserved`): the "additions" mesh, saved as mesh_additions.ply. An RGB-only
        map is the network's surface alone and has none."""
        return (self.engine is not None or self._filled) and not self.rgb_only

    @property
    def voxel_map_source(self) -> str:
        """What :meth:`voxel_map` shows: the observed voxels and, with a network, its trusted additions ("both";
        the points' ``observed`` flag and ``surface_confidence`` tell them apart); for RGB-only mapping the network's
        prediction ("completed")."""
        if self.rgb_only:
            return "completed"
        return "both" if self.has_additions else "observed"

    def voxel_map(self, max_distance_voxels: float, source: str | None = None) -> tuple[np.ndarray, MapState]:
        """The near-surface voxels (:data:`~.voxel_map.VOXEL_POINT_DTYPE`) of ``source`` (default
        :attr:`voxel_map_source`), region by region (:mod:`.incremental_meshing`; only changed regions are
        resampled), and the state they show."""
        key = (source or self.voxel_map_source, float(max_distance_voxels))
        if key not in self._voxel_maps:
            self._voxel_maps[key] = RegionVoxelMap(self.volume, key[1], key[0], self.completion_config,
                                                   self.region_blocks)
        cache = self._voxel_maps[key]
        return self._up_to_date([cache], lambda state: (cache.points(), state), live=True)

    def save(self, directory: str | Path) -> SavedMap:
        """Write volume.pt, mesh_rgb.ply, mesh_semantic.ply (and with :attr:`has_additions`, mesh_additions.ply) of one
        state of the map as one set: into a new save folder of the map folder ``directory`` that becomes its
        ``current`` save at once (:class:`~.map_folder.MapFolder`; a crash at any moment leaves the previous set or
        the new one). The map is held while the last changed regions are meshed and the volume is copied."""
        sources = [self.mesh_source] + (["additions"] if self.has_additions else [])
        meshers = [self._mesher(source) for source in sources]
        # a copy of the volume: written after the map is released
        pieces, volume, state = self._up_to_date(meshers, lambda state: (
            [mesher.pieces() for mesher in meshers], volume_state(self.volume), state))
        mesh, *rest = [assemble(p, with_surface_confidence=source != "observed") for p, source in zip(pieces, sources)]
        additions = rest[0] if rest else None
        names = self.classes.names

        def write(folder: Path) -> None:
            atomic_torch_save(volume, folder / VOLUME_FILE)
            write_semantic_ply(folder / MESH_RGB_FILE, mesh, names)
            write_semantic_ply(folder / MESH_SEMANTIC_FILE, mesh, names, colors=self.classes.colorize(mesh.labels))
            if additions is not None:
                write_semantic_ply(folder / MESH_ADDITIONS_FILE, additions, names)

        folder, _ = map_folder(directory).save(write)
        return SavedMap(volume=folder / VOLUME_FILE, mesh_rgb=folder / MESH_RGB_FILE,
                        mesh_semantic=folder / MESH_SEMANTIC_FILE, mesh=mesh, state=state,
                        mesh_additions=None if additions is None else folder / MESH_ADDITIONS_FILE,
                        additions=additions, folder=folder)

    def load(self, path: str | Path) -> MapState:
        """Replace the map by a saved one (a map folder written by :meth:`save`: its current save; a save
        folder; or a volume.pt): every layer, predictions included. Frames received before the load are not
        fused (as after :meth:`reset`); the completion network reruns the loaded chunks. ValueError (map
        unchanged) when the file does not fit the map's classes, voxel size, block size, truncation or features;
        FileNotFoundError when missing."""
        path = Path(path).expanduser()
        state = read_volume_state(map_folder(path).file(VOLUME_FILE) if path.is_dir() else path)
        with self.lock:
            restore_volume(self.volume, state, str(path))
            if self.engine is not None:
                self.engine.reset()  # a completion run in progress writes nothing more; loaded chunks rerun
                self.completion_stats.reset()
            self.generation += 1
            self._stamp_ns = 0
            return self._changed()

    def reset(self) -> tuple[int, MapState]:
        """Empty the map (and the predictions); returns (blocks cleared, new state)."""
        with self.lock:
            blocks = self.volume.num_blocks
            self.volume.clear()
            if self.engine is not None:
                self.engine.reset()  # a completion run in progress writes nothing more
                self.completion_stats.reset()
            self.generation += 1
            self._stamp_ns = 0
            return blocks, self._changed()
