"""What a segmentation model expects and returns: ``segmenter.yaml`` beside the model, and its defaults.

A segmenter is a model file (``.tflite``, ``.onnx``, ``.pt``/``.ts`` TorchScript, ``.pt2`` torch.export) plus
a description of its input and output::

    model: model.tflite            # the model file (default: the one model file in the folder)
    labels: labels.txt             # file or list of names (default: labels.txt in the folder)
    class_map: config/ade20k_to_classes.yaml  # model classes -> project classes (default: classes match by name)
    input:
      size: [513, 513]             # [height, width]; "any" (the image's own size); "auto" (default: the model's
                                   # fixed input size when it declares one, else any)
      size_multiple: 1             # with "any": the size is rounded to a multiple of this (e.g. 32)
      layout: NHWC                 # NCHW or NHWC (default: NHWC for TFLite, NCHW otherwise)
      channels: RGB                # RGB or BGR
      range: [-1.0, 1.0]           # pixel values 0..255 are scaled linearly onto this range (default [0, 1]),
      mean: [0.0, 0.0, 0.0]        # then (value - mean) / std per channel (defaults 0 and 1)
      std: [1.0, 1.0, 1.0]
    output:
      layout: NHWC                 # default: the input's layout
      type: logits                 # logits (softmaxed here) or probabilities

The labels file has one line per class: ``name`` (channel = line number, from 0) or ``ID<TAB>name`` (channel =
ID; channels no line names are "unlabeled", as ADE20K's channel 0). The model's output must have exactly as many
channels as the labels describe. Relative paths are relative to the folder of segmenter.yaml; one not found there
is looked up among the package's installed files (so ``config/ade20k_to_classes.yaml`` names the installed map).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ..resources import share_file

DESCRIPTION_FILE = "segmenter.yaml"
DEFAULT_LABELS_FILE = "labels.txt"
# model file suffix -> back-end
BACKENDS = {".tflite": "tflite", ".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".pt2": "export"}
LAYOUTS = ("NCHW", "NHWC")
SIZE_WORDS = ("auto", "any")


@dataclass(frozen=True)
class InputSpec:
    """How a color image becomes the model's input tensor (see the module doc)."""

    size: tuple[int, int] | str = "auto"  # (height, width), "any" or "auto"
    size_multiple: int = 1
    layout: str | None = None  # None: the back-end's usual layout
    channels: str = "RGB"
    range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class OutputSpec:
    """How to read the model's output tensor."""

    layout: str | None = None  # None: the input's layout
    type: str = "logits"  # "logits" or "probabilities"


@dataclass(frozen=True)
class SegmenterDescription:
    """One segmentation model and how to run it.

    Attributes:
        model: the model file; its suffix picks the back-end (:data:`BACKENDS`).
        labels: the class name of each output channel (``""``: unnamed, never mapped).
        labels_source: where ``labels`` come from (a file, or the YAML listing them), named in errors.
        class_map: YAML of model classes -> project classes; None: classes match project classes by name.
        input, output: tensor formats.
        source: the segmenter.yaml read, None for defaults.
    """

    model: Path
    labels: tuple[str, ...]
    labels_source: str
    class_map: Path | None = None
    input: InputSpec = InputSpec()
    output: OutputSpec = OutputSpec()
    source: Path | None = None

    @property
    def backend(self) -> str:
        return BACKENDS[self.model.suffix.lower()]


def read_labels(path: Path) -> tuple[str, ...]:
    """Class name per output channel from a labels file (``name`` or ``ID<TAB>name`` lines, see the module doc)."""
    lines = [line.strip("\r") for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path}: no class names")
    fields = [line.split("\t", 1) for line in lines]
    if not all(len(f) == 2 and f[0].strip().isdigit() for f in fields):
        return tuple(line.strip() for line in lines)
    names: dict[int, str] = {}
    for number, (channel, name) in enumerate(fields, 1):
        if int(channel) in names:
            raise ValueError(f"{path}: line {number}: channel {int(channel)} is named twice")
        names[int(channel)] = name.strip()
    return tuple(names.get(c, "") for c in range(max(names) + 1))


def _locate(value: Any, folder: Path, what: str, source: Path) -> Path:
    """A path of segmenter.yaml: relative to its folder, else an installed package file."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{source}: {what} must be a file name, got {value!r}")
    path = Path(value).expanduser()
    if path.is_absolute() or (folder / path).exists():
        found = path if path.is_absolute() else folder / path
        if not found.is_file():
            raise FileNotFoundError(f"{source}: {what} {found} not found")
        return found
    try:
        return share_file(value)
    except FileNotFoundError:
        raise FileNotFoundError(f"{source}: {what} {value!r} not found in {folder} nor among the package's "
                                "installed files") from None


def _check_keys(table: Any, known: tuple[str, ...], where: str) -> dict:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table, got {table!r}")
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known keys: {list(known)}")
    return table


def _numbers(value: Any, count: int, what: str, source: Path) -> tuple[float, ...]:
    if (not isinstance(value, (list, tuple)) or len(value) != count
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{source}: {what} must be a list of {count} numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _input_spec(table: dict, source: Path) -> InputSpec:
    table = _check_keys(table, ("size", "size_multiple", "layout", "channels", "range", "mean", "std"),
                        f"{source}: input")
    spec = InputSpec()
    size = table.get("size", spec.size)
    if isinstance(size, str):
        if size not in SIZE_WORDS:
            raise ValueError(f"{source}: input.size must be [height, width], 'any' or 'auto', got {size!r}")
    else:
        size = tuple(int(v) for v in _numbers(size, 2, "input.size [height, width]", source))
        if min(size) < 1:
            raise ValueError(f"{source}: input.size must be positive, got {list(size)}")
    multiple = table.get("size_multiple", spec.size_multiple)
    if not isinstance(multiple, int) or isinstance(multiple, bool) or multiple < 1:
        raise ValueError(f"{source}: input.size_multiple must be a positive integer, got {multiple!r}")
    layout = table.get("layout", spec.layout)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"{source}: input.layout must be one of {LAYOUTS}, got {layout!r}")
    channels = table.get("channels", spec.channels)
    if channels not in ("RGB", "BGR"):
        raise ValueError(f"{source}: input.channels must be RGB or BGR, got {channels!r}")
    std = _numbers(table.get("std", spec.std), 3, "input.std", source)
    if min(abs(s) for s in std) == 0:
        raise ValueError(f"{source}: input.std must not be 0")
    value_range = _numbers(table.get("range", spec.range), 2, "input.range", source)
    if value_range[0] == value_range[1]:
        raise ValueError(f"{source}: input.range must span an interval, got {list(value_range)}")
    return InputSpec(size, multiple, layout, channels, value_range,
                     _numbers(table.get("mean", spec.mean), 3, "input.mean", source), std)


def _output_spec(table: dict, source: Path) -> OutputSpec:
    table = _check_keys(table, ("layout", "type"), f"{source}: output")
    spec = OutputSpec(table.get("layout", None), table.get("type", "logits"))
    if spec.layout is not None and spec.layout not in LAYOUTS:
        raise ValueError(f"{source}: output.layout must be one of {LAYOUTS}, got {spec.layout!r}")
    if spec.type not in ("logits", "probabilities"):
        raise ValueError(f"{source}: output.type must be logits or probabilities, got {spec.type!r}")
    return spec


def model_backend(path: Path) -> str:
    """The back-end of a model file; ValueError naming the file for an unsupported type."""
    try:
        return BACKENDS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"{path}: unsupported segmenter file type {path.suffix or '(none)'!r}; supported: .tflite "
                         "(TFLite), .onnx (ONNX Runtime), .pt/.ts (TorchScript), .pt2 (torch.export), or a folder or "
                         f"{DESCRIPTION_FILE} describing one") from None


def _only_model_in(folder: Path, source: Path | str) -> Path:
    models = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in BACKENDS)
    if len(models) != 1:
        found = ", ".join(p.name for p in models) if models else "none"
        raise ValueError(f"{source}: name the model file (`model:` in {DESCRIPTION_FILE}): {folder} holds "
                         f"{len(models)} model files ({found}; types {', '.join(BACKENDS)})")
    return models[0]


def read_description(path: Path, model: Path | None = None) -> SegmenterDescription:
    """Read a segmenter.yaml; ``model`` (a model file) replaces its ``model`` entry."""
    path = Path(path)
    table = _check_keys(yaml.safe_load(path.read_text()), ("model", "labels", "class_map", "input", "output"),
                        str(path))
    folder = path.parent
    if model is None:
        model = _locate(table["model"], folder, "model", path) if "model" in table else _only_model_in(folder, path)
    model_backend(model)
    labels = table.get("labels", DEFAULT_LABELS_FILE)
    if isinstance(labels, list):
        if not labels or not all(isinstance(n, str) for n in labels):
            raise ValueError(f"{path}: labels must be a file name or a non-empty list of class names")
        names, labels_source = tuple(labels), f"labels of {path}"
    else:
        labels_file = _locate(labels, folder, "labels", path)
        names, labels_source = read_labels(labels_file), str(labels_file)
    class_map = _locate(table["class_map"], folder, "class_map", path) if table.get("class_map") else None
    return SegmenterDescription(model, names, labels_source, class_map, _input_spec(table.get("input"), path),
                                _output_spec(table.get("output"), path), path)


def default_description(model: Path) -> SegmenterDescription:
    """A model file without segmenter.yaml: labels.txt (and class_map.yaml when present) beside it, default
    formats (input of the model's own size or any, in [0, 1], RGB; logits)."""
    labels = model.parent / DEFAULT_LABELS_FILE
    if not labels.is_file():
        raise FileNotFoundError(f"{model}: no {DESCRIPTION_FILE} and no {DEFAULT_LABELS_FILE} beside it naming the "
                                "model's classes")
    class_map = model.parent / "class_map.yaml"
    return SegmenterDescription(model, read_labels(labels), str(labels), class_map if class_map.is_file() else None)


def describe(path: Path) -> SegmenterDescription:
    """The description of a segmenter given as a folder, a segmenter.yaml or a model file.

    A folder: its segmenter.yaml, else the defaults for its one model file. A model file: the segmenter.yaml
    beside it when that names this model (or none), else the defaults. Raises ValueError for an unsupported
    file type, FileNotFoundError for missing files (each naming the file).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"segmenter not found: {path}")
    if path.is_dir():
        yaml_file = path / DESCRIPTION_FILE
        return read_description(yaml_file) if yaml_file.is_file() else default_description(
            _only_model_in(path, path))
    if path.suffix.lower() in (".yaml", ".yml"):
        return read_description(path)
    model_backend(path)
    yaml_file = path.parent / DESCRIPTION_FILE
    if yaml_file.is_file():
        table = yaml.safe_load(yaml_file.read_text())
        named = table.get("model") if isinstance(table, dict) else None  # (read_description reports a bad table)
        if named is None or (path.parent / str(named)).resolve() == path.resolve():
            return read_description(yaml_file, model=path)
    return default_description(path)


def with_class_map(description: SegmenterDescription, class_map: str | Path | None) -> SegmenterDescription:
    """``description`` with another class map file (None keeps its own)."""
    if class_map is None:
        return description
    class_map = Path(class_map).expanduser()
    if not class_map.is_file():
        raise FileNotFoundError(f"class map not found: {class_map}")
    return replace(description, class_map=class_map)
