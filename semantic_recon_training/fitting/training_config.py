"""The configuration of a training run: typed dataclasses with defaults; YAML files only fill them.

A run config (``semantic_recon_training/configs/*.yaml``) has one section per dataclass::

    data:        DataConfig          sources, label source, caches, train / validation split by scene
    extraction:  ChunkExtractionConfig (semantic_recon_training.data.chunk_extraction) defaults for every source
    model:       S4RNetConfig        (semantic_recon_ros.core.models)
    losses:      LossWeights         (semantic_recon_training.fitting.losses)
    objective:   ObjectiveConfig     (semantic_recon_training.fitting.objective)
    virtual_views: VirtualViewConfig (semantic_recon_training.data.virtual_views)
    optimizer:   OptimizerConfig
    trainer:     TrainerConfig

Layers: a config may start with ``base: <file>`` (relative to the config's own folder) and then hold only what
differs from that base. :func:`load_run_config` reads the base first (which may name its own base) and merges
the diff into it key by key: mappings (sections, and mappings inside them) are merged, anything else (numbers,
strings, lists) is replaced. A missing base file or a cycle of bases is a ValueError naming the file.

Unknown keys are errors that name the file and the known keys. Relative paths (``data.root``,
``data.segmenter_dir``, ``data.sequences[].path``, ``trainer.output_dir``, ``trainer.init_checkpoint``) are
relative to the repository root (:func:`semantic_recon_training.paths.repo_path`), whatever the working
directory; absolute paths stay as they are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import yaml

from semantic_recon_ros.core.config.fields import check_ranges, config_from_dict, parameter
from semantic_recon_ros.core.config.files import merge_layers
from semantic_recon_ros.core.models import S4RNetConfig

from ..data.chunk_extraction import ChunkExtractionConfig
from ..data.pseudo_labels import DEFAULT_SEGMENTER_DIR
from ..data.training_record import RESERVED_EVALUATION_SEEDS
from ..data.virtual_views import VirtualViewConfig
from .losses import LossWeights
from ..paths import repo_path
from .objective import ObjectiveConfig

LABEL_SOURCES = ("segmenter", "ground_truth")
LABELED_CACHE_SUFFIX = ".gt2d"  # chunk caches of the rooms of data.labeled_seeds


@dataclass
class SequenceSource:
    """One recorded sequence (RGB-D folder or bag) and its extraction settings.

    Attributes:
        path: sequence folder or bag (anything ``open_sequence`` reads).
        name: scene name: cache folder name and the unit of the train / validation split.
        format: reader format ("auto" detects).
        extraction: overrides of the run's ``extraction`` section for this source (e.g. ``frame_stride``,
            ``max_frames``, ``view_downscale``).
    """

    path: str
    name: str
    format: str = "auto"
    extraction: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the training chunks come from and where they are cached (plain fields: lists and mappings)."""

    root: str = "train_runs/data"  # generated scenes, chunk caches and the pseudo-label cache
    synthetic_seeds: list[int] = field(default_factory=list)  # rooms to generate (900-909 reserved for evaluation)
    synthetic_frames: int = 60  # frames rendered per synthetic room
    synthetic_width: int = 320  # synthetic image size in pixels
    synthetic_height: int = 240
    synthetic_depth_noise: bool = False  # Kinect-like depth noise in the synthetic frames
    synthetic_extraction: dict = field(default_factory=dict)  # extraction overrides for synthetic rooms
    sequences: list[SequenceSource] = field(default_factory=list)  # recorded sequences (mappings of SequenceSource)
    val_scenes: list[str] = field(default_factory=list)  # held out for validation ('synthetic_<seed:04d>' or names)
    labels: str = "segmenter"  # 2D labels of the views: "segmenter" pseudo-labels or "ground_truth"
    # SSR's semi-supervised mix: synthetic rooms (seeds, among synthetic_seeds) whose stored views carry their 2D
    # ground-truth labels as the 2D targets, while every other scene keeps the segmenter's pseudo-labels (needs
    # labels: segmenter). 2D only: no 3D label ever reaches the losses. The input's fused labels
    # (input_labels) stay the segmenter's in every scene, as at inference. Their chunk caches are kept apart
    # (chunks/<scene>.gt2d), so runs with different mixes share data.root.
    labeled_seeds: list[int] = field(default_factory=list)
    segmenter_dir: str = DEFAULT_SEGMENTER_DIR  # DeepLab ADE20K TFLite folder
    min_label_probability: float = 0.5  # pseudo-labels keep pixels whose best class reaches this probability

    def __post_init__(self) -> None:
        if self.labels not in LABEL_SOURCES:
            raise ValueError(f"DataConfig.labels must be one of {LABEL_SOURCES}, got {self.labels!r}")
        if not 0.0 <= float(self.min_label_probability) <= 1.0:
            raise ValueError(f"DataConfig.min_label_probability must be in [0, 1], got {self.min_label_probability}")
        for name in ("synthetic_frames", "synthetic_width", "synthetic_height"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DataConfig.{name} must be >= 1, got {getattr(self, name)}")
        self.synthetic_seeds = [int(seed) for seed in self.synthetic_seeds]
        reserved = sorted(set(self.synthetic_seeds) & set(RESERVED_EVALUATION_SEEDS))
        if reserved:
            raise ValueError(f"DataConfig.synthetic_seeds {reserved} are reserved evaluation scenes "
                             f"({RESERVED_EVALUATION_SEEDS.start}-{RESERVED_EVALUATION_SEEDS.stop - 1})")
        self.labeled_seeds = [int(seed) for seed in self.labeled_seeds]
        if self.labeled_seeds:
            if self.labels != "segmenter":
                raise ValueError(f"DataConfig.labeled_seeds needs labels: segmenter (labels: {self.labels} already "
                                 f"gives every scene its ground-truth labels), got {self.labeled_seeds}")
            unknown = sorted(set(self.labeled_seeds) - set(self.synthetic_seeds))
            if unknown:
                raise ValueError(f"DataConfig.labeled_seeds {unknown} are not among the synthetic_seeds "
                                 f"{self.synthetic_seeds}")
            if len(set(self.labeled_seeds)) != len(self.labeled_seeds):
                raise ValueError(f"DataConfig.labeled_seeds must be unique, got {self.labeled_seeds}")
        self.sequences = [s if isinstance(s, SequenceSource) else config_from_dict(SequenceSource, s, "data.sequences")
                          for s in self.sequences]
        self.root, self.segmenter_dir = repo_path(self.root), repo_path(self.segmenter_dir)
        for sequence in self.sequences:
            sequence.path = repo_path(sequence.path)
        names = self.scene_names()
        if len(set(names)) != len(names):
            raise ValueError(f"DataConfig: scene names must be unique, got {names}")
        unknown = sorted(set(self.val_scenes) - set(names))
        if unknown:
            raise ValueError(f"DataConfig.val_scenes {unknown} are not among the scenes {names}")

    @staticmethod
    def synthetic_name(seed: int) -> str:
        return f"synthetic_{seed:04d}"

    def scene_names(self) -> list[str]:
        """All scenes, synthetic first."""
        return [self.synthetic_name(s) for s in self.synthetic_seeds] + [s.name for s in self.sequences]

    def view_labels(self, name: str) -> str:
        """The 2D targets of scene ``name``: "ground_truth" (``labels: ground_truth``, or a room of
        ``labeled_seeds``) or "segmenter"."""
        if self.labels == "ground_truth" or name in {self.synthetic_name(s) for s in self.labeled_seeds}:
            return "ground_truth"
        return "segmenter"

    def train_scenes(self) -> list[str]:
        return [name for name in self.scene_names() if name not in self.val_scenes]

    @property
    def root_path(self) -> Path:
        return Path(self.root)

    def scene_dir(self, name: str) -> Path:
        """Generated synthetic scene folder."""
        return self.root_path / "scenes" / name

    def cache_dir(self, name: str) -> Path:
        """Chunk cache folder of a scene (``chunks/<scene>.gt2d`` for a room of ``labeled_seeds``, whose views carry
        ground-truth labels, so that it never mixes with the same room's pseudo-labeled cache)."""
        mixed = self.labels == "segmenter" and self.view_labels(name) == "ground_truth"
        return self.root_path / "chunks" / (f"{name}{LABELED_CACHE_SUFFIX}" if mixed else name)

    @property
    def label_cache_dir(self) -> Path:
        return self.root_path / "label_cache"


@dataclass
class OptimizerConfig:
    """AdamW with a linear warm-up followed by a cosine decay to ``final_lr_fraction * lr``."""

    lr: float = parameter(1e-3, "Peak learning rate.", 0.0, None)
    weight_decay: float = parameter(1e-4, "AdamW weight decay.", 0.0, None)
    warmup_steps: int = parameter(50, "Linear warm-up steps from 0 to lr.", 0, None)
    final_lr_fraction: float = parameter(0.05, "Learning rate at max_steps relative to lr.", 0.0, 1.0)

    def __post_init__(self) -> None:
        check_ranges(self)


@dataclass
class TrainerConfig:
    """Lightning Trainer settings, batching, logging and output."""

    output_dir: str = parameter("train_runs/run", "Folder of logs and Lightning checkpoints.")
    max_steps: int = parameter(1000, "Optimizer steps.", 1, None)
    batch_size: int = parameter(2, "Chunks per batch (per device).", 1, 1024)
    num_workers: int = parameter(1, "DataLoader worker processes (0 = load in the training process).", 0, 64)
    accelerator: str = parameter("auto", "Lightning accelerator: auto, cpu, gpu, ...")
    devices: int = parameter(1, "Devices per node (> 1 runs DDP).", 1, 1024)
    num_nodes: int = parameter(1, "Nodes (> 1 runs DDP).", 1, 1024)
    strategy: str = parameter("auto", "Lightning strategy; 'auto' picks DDP when devices * num_nodes > 1.")
    precision: str = parameter(
        "auto", "'auto' = bf16-mixed (or 16-mixed) on CUDA and 32 on CPU; or any Lightning precision string.")
    seed: int = parameter(0, "Seed of initialization, data order and virtual views.", 0, None)
    num_threads: int = parameter(2, "torch CPU threads of the training process (0 = torch's default).", 0, 256)
    fast_cpu_convolutions: bool = parameter(True, "oneDNN 3D convolutions on CPU (much faster training on CPU).")
    virtual_every_n_steps: int = parameter(
        1, "Apply the virtual-view semantic loss on every n-th step only (it runs the 2D segmenter).", 1, None)
    max_time: str = parameter("", "Stop after this wall time, 'DD:HH:MM:SS' (empty = no limit; resumable).")
    val_every_n_steps: int = parameter(200, "Validation every n training steps.", 1, None)
    limit_val_batches: int = parameter(8, "Validation batches per validation run (0 = all).", 0, None)
    checkpoint_every_n_steps: int = parameter(100, "Save the last Lightning checkpoint every n steps.", 1, None)
    log_every_n_steps: int = parameter(10, "Log the training losses every n steps.", 1, None)
    gradient_clip_val: float = parameter(1.0, "Clip the gradient norm to this (0 = off).", 0.0, None)
    deterministic: bool = parameter(True, "Ask torch for deterministic algorithms (warn where none exists).")
    progress_bar: bool = parameter(True, "Show a progress bar.")
    init_checkpoint: str = parameter(
        "", "Start from the weights of this inference checkpoint (same model config; a label-free one is widened "
            "with zero weights when model.label_input is set). Empty = random initialization.")
    label_input_dropout: float = parameter(
        0.3, "With model.label_input: fraction of training chunks whose fused-label input is withheld, so that "
             "the network also works where no 2D labels were fused.", 0.0, 1.0)
    trainable: tuple = parameter(
        (), "Top-level parts of the network to train, a list (e.g. [semantic_decoder, semantic_head, label_gain]); "
            "empty = all. The others keep their weights and BatchNorm statistics: a fine-tune of the semantic branch "
            "alone leaves the network's TSDF and color exactly as init_checkpoint's.")

    def __post_init__(self) -> None:
        if isinstance(self.trainable, list):  # as YAML gives it
            self.trainable = tuple(self.trainable)
        check_ranges(self)
        self.max_time_seconds()  # a ValueError for a malformed budget
        self.output_dir, self.init_checkpoint = repo_path(self.output_dir), repo_path(self.init_checkpoint)

    def max_time_seconds(self) -> float | None:
        """``max_time`` in seconds (None: no limit); ValueError unless it is 'DD:HH:MM:SS'."""
        if not self.max_time:
            return None
        try:
            days, hours, minutes, seconds = (int(part) for part in self.max_time.split(":"))
        except ValueError:
            raise ValueError(f"TrainerConfig.max_time must be 'DD:HH:MM:SS', got {self.max_time!r}") from None
        return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


class RunConfigMethods:
    """What every run config (this module's :class:`RunConfig`, the Atlas one) offers on top of its sections; each
    has ``data``, ``extraction``, ``model``, ``optimizer`` and ``trainer`` sections."""

    def extraction_for(self, overrides: dict, source: str = "extraction overrides"):
        """The run's extraction config with a scene's overrides applied (errors name ``source``)."""
        merged = {**dataclasses.asdict(self.extraction), **overrides}
        return _named(source, lambda: config_from_dict(type(self.extraction), merged, source))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class RunConfig(RunConfigMethods):
    """Everything a ``python -m semantic_recon_training`` command needs (sections as in the module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    extraction: ChunkExtractionConfig = field(default_factory=ChunkExtractionConfig)
    model: S4RNetConfig = field(default_factory=S4RNetConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    virtual_views: VirtualViewConfig = field(default_factory=VirtualViewConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


T = TypeVar("T")


def run_config_sections(run_class: type[T], values: dict, source: str = "config") -> T:
    """An instance of a run-config dataclass (:class:`RunConfig`, the Atlas one) from nested mappings: each field a
    section built from its mapping (missing sections and keys take their defaults); then every scene's extraction
    overrides are checked. ValueError naming ``source`` and the section."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: a run config must be a mapping of sections, got {type(values).__name__}")
    classes = {f.name: f.default_factory for f in dataclasses.fields(run_class)}
    unknown = sorted(set(values) - set(classes))
    if unknown:
        raise ValueError(f"{source}: unknown sections {unknown}; known: {sorted(classes)}")
    sections = {}
    for name, make in classes.items():
        section = values.get(name) or {}
        if not isinstance(section, dict):
            raise ValueError(f"{source}: section {name!r} must be a mapping, got {type(section).__name__}")
        cls = type(make())
        sections[name] = _named(f"{source} [{name}]", lambda: config_from_dict(cls, section, f"{source} [{name}]"))
    config = run_class(**sections)
    config.extraction_for(config.data.synthetic_extraction, f"{source} [data.synthetic_extraction]")
    for sequence in config.data.sequences:
        config.extraction_for(sequence.extraction, f"{source} [data.sequences {sequence.name!r} extraction]")
    return config


def run_config_from_dict(values: dict, source: str = "config") -> RunConfig:
    """Build a :class:`RunConfig` from nested mappings (missing sections and keys take their defaults)."""
    return run_config_sections(RunConfig, values, source)


def _named(source: str, build: Callable[[], T]) -> T:
    """``build()``, its TypeError / ValueError re-raised as a ValueError that starts with ``source`` (once)."""
    try:
        return build()
    except (TypeError, ValueError) as err:
        message = str(err)
        raise ValueError(message if message.startswith(source) else f"{source}: {message}") from None


BASE_KEY = "base"


def read_config_layers(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The mapping of the YAML config ``path`` with its ``base`` chain merged in (see the module docstring).

    ``chain``: the resolved files that named this one as their base (to find cycles). ValueError naming the file
    for invalid YAML, a non-mapping, a bad or missing base, and a cycle of bases.
    """
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a run config must be a mapping of sections, got {type(values).__name__}")
    base = values.pop(BASE_KEY, None)
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise ValueError(f"{path}: {BASE_KEY!r} must name a config file, got {base!r}")
    chain = (*chain, path.resolve())
    base_path = (path.resolve().parent / base).resolve()
    if base_path in chain:
        raise ValueError(f"{path}: base {base_path} makes a cycle of bases: "
                         + " -> ".join(str(p) for p in (*chain, base_path)))
    if not base_path.is_file():
        raise ValueError(f"{path}: base config not found: {base_path}")
    return merge_layers(read_config_layers(base_path, chain), values)


def read_run_config(path: str | Path, from_dict: Callable[[dict, str], T]) -> T:
    """A YAML run config and its bases through ``from_dict`` (FileNotFoundError / ValueError naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    return from_dict(read_config_layers(path), str(path))


def load_run_config(path: str | Path) -> RunConfig:
    """Read a YAML S4R run config and its bases."""
    return read_run_config(path, run_config_from_dict)
