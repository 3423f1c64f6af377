"""Runtimes that run one segmentation model file: TFLite, ONNX Runtime, TorchScript, torch.export.

Each runner takes the prepared input tensor (float32, batch of one, in the layout the description says) and
returns the model's first output as a torch tensor. ``input_shape`` / ``output_shape`` are what the model file
declares (None for a dimension it leaves open, or for the whole shape when it declares nothing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

Shape = tuple[int | None, ...] | None


def _declared(shape) -> Shape:
    return tuple(int(d) if isinstance(d, (int, np.integer)) and d > 0 else None for d in shape)


class TFLiteRunner:
    """A ``.tflite`` model with ai-edge-litert (CPU). A model with open input dimensions is re-allocated when the
    input size changes."""

    name = "TFLite"

    def __init__(self, path: Path, num_threads: int):
        from ai_edge_litert.interpreter import Interpreter  # imported here: optional dependency

        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        source, target = self._interpreter.get_input_details()[0], self._interpreter.get_output_details()[0]
        if source["dtype"] != np.float32:
            raise ValueError(f"{path}: the model takes {np.dtype(source['dtype']).name} input; only float32 models are "
                             "supported (not quantized ones)")
        self._input, self._output = source["index"], target["index"]
        self._shape = tuple(int(d) for d in source["shape"])
        self.input_shape = _declared(source["shape_signature"])
        self.output_shape = _declared(target["shape_signature"])

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        array = image.detach().cpu().contiguous().numpy()
        if array.shape != self._shape:
            self._interpreter.resize_tensor_input(self._input, list(array.shape))
            self._interpreter.allocate_tensors()
            self._shape = array.shape
        self._interpreter.set_tensor(self._input, array)
        self._interpreter.invoke()
        return torch.from_numpy(self._interpreter.get_tensor(self._output))


class OnnxRunner:
    """A ``.onnx`` model with ONNX Runtime: CUDA when ``device`` is a CUDA device and the installed onnxruntime has
    the CUDA provider (the PyPI ``onnxruntime-gpu`` build), else CPU."""

    name = "ONNX Runtime"

    def __init__(self, path: Path, num_threads: int, device: torch.device):
        import onnxruntime  # imported here: optional dependency

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        except Exception as error:  # onnxruntime raises its own exception types for unreadable models
            raise ValueError(f"{path}: ONNX Runtime cannot load the model ({error})") from None
        source, target = self._session.get_inputs()[0], self._session.get_outputs()[0]
        if source.type != "tensor(float)":
            raise ValueError(f"{path}: the model takes {source.type} input; only float32 models are supported")
        self._input, self._output = source.name, target.name
        self.input_shape = _declared(source.shape)
        self.output_shape = _declared(target.shape)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        array = image.detach().cpu().contiguous().numpy()
        return torch.from_numpy(self._session.run([self._output], {self._input: array})[0])


class TorchRunner:
    """A TorchScript (``.pt``/``.ts``, ``torch.jit.load``; deprecated by torch) or torch.export (``.pt2``,
    ``torch.export.load``) model on ``device``. Uses torch's own thread pool (``torch.set_num_threads``): the
    process's setting, not changed here. A model returning a tuple, list or dict gives its first (or ``"out"``)
    element."""

    input_shape: Shape = None
    output_shape: Shape = None

    def __init__(self, path: Path, device: torch.device):
        self._device = device
        try:
            if path.suffix.lower() == ".pt2":
                self.name = "torch.export"
                self._module = torch.export.load(str(path)).module().to(device)
            else:
                self.name = "TorchScript"
                self._module = torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, ValueError) as error:
            raise ValueError(f"{path}: not a {self.name} model torch can load ({str(error).splitlines()[0]})") from None

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            output = self._module(image.to(self._device))
        if isinstance(output, dict):
            output = output["out"] if "out" in output else next(iter(output.values()))
        elif isinstance(output, (tuple, list)):
            output = output[0]
        return output


def make_runner(path: Path, backend: str, device: torch.device, num_threads: int):
    """The runner of ``backend`` (``tflite``, ``onnx``, ``torchscript``, ``export``) for the model file."""
    if backend == "tflite":
        return TFLiteRunner(path, num_threads)
    if backend == "onnx":
        return OnnxRunner(path, num_threads, device)
    return TorchRunner(path, device)
