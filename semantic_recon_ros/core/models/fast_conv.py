"""3D convolutions that can bypass PyTorch's slow CPU fallback.

On CPU, ``torch.nn.functional.conv3d`` sends most small-channel 3D convolutions (the kind these
networks are made of) to ``aten::slow_conv3d`` (an im2col + GEMM loop), which takes over 90 % of a
forward pass; giving the input and weight the ``channels_last_3d`` memory format is not enough,
because the dispatcher still picks the fallback for many shapes. Calling oneDNN directly on
``channels_last_3d`` tensors computes the same result (float32 round-off only) several times faster.

Every 3D convolution of the models is a :class:`Conv3d`, and every conv -> BatchNorm (-> + residual)
(-> ReLU) chain goes through :func:`conv_norm_act`. The fast path is off by default and is switched
per model::

    model = S4RNet(config).eval()
    set_fast_cpu_convolutions(model, True)      # weights -> channels_last_3d, convs -> oneDNN
    with torch.inference_mode():
        out = model(tsdf, observed, color)      # inputs are converted inside each convolution

On the fast path, float32 CPU convolutions call ``aten::mkldnn_convolution`` (autograd works, so it
can also train). At inference (eval mode and no autograd, e.g. under ``torch.inference_mode()``)
:func:`conv_norm_act` additionally folds the BatchNorm into the convolution and lets oneDNN apply the
residual sum and the ReLU in the same pass (``mkldnn::_convolution_pointwise``, the op PyTorch's own
compiler uses for this fusion), which removes most full-resolution elementwise passes. Outputs of a
fast model are ``channels_last_3d`` strided: index them freely, call ``.contiguous()`` before ``.view()``.

At inference the fast path can also compute in bfloat16: inside ``with inference_dtype(torch.bfloat16):`` (and
without autograd) every fast convolution casts its input and (BatchNorm-folded) weights to bfloat16 and returns
bfloat16, so the layers between convolutions run in bfloat16 too; callers cast the outputs back (``.float()``).
Training (autograd on) always computes in float32. On CPUs with native bfloat16 (AMX or AVX512-BF16,
:func:`native_bfloat16_available`) oneDNN runs these convolutions several times faster than in float32 and the
activations take half the memory; elsewhere it emulates them, slower than float32.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
from torch.nn import functional as F

FAST_MEMORY_FORMAT = torch.channels_last_3d
FAST_DTYPES = (torch.float32, torch.bfloat16)
_INFERENCE_DTYPE = contextvars.ContextVar("fast_conv_inference_dtype", default=torch.float32)


@contextmanager
def inference_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Fast-path convolutions called in this block (this thread) without autograd compute in ``dtype`` (float32
    or bfloat16). ValueError for another dtype, RuntimeError for bfloat16 where oneDNN cannot compute it
    (:func:`bfloat16_supported`)."""
    if dtype not in FAST_DTYPES:
        raise ValueError(f"the fast CPU path computes in {FAST_DTYPES}, not {dtype}")
    if dtype == torch.bfloat16 and not bfloat16_supported():
        raise RuntimeError("oneDNN cannot compute bfloat16 convolutions on this CPU (it needs AVX512 or newer); "
                           "use float32")
    token = _INFERENCE_DTYPE.set(dtype)
    try:
        yield
    finally:
        _INFERENCE_DTYPE.reset(token)


def fast_dtype() -> torch.dtype:
    """What a fast-path convolution computes in now: :func:`inference_dtype`'s, float32 when autograd is on."""
    return torch.float32 if torch.is_grad_enabled() else _INFERENCE_DTYPE.get()


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (zero padding, integer padding) with an optional direct oneDNN CPU path.

    Input (B, C_in, X, Y, Z) -> output (B, C_out, X', Y', Z'), as ``nn.Conv3d``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError(f"Conv3d supports integer zero padding only, got padding={self.padding!r}, "
                             f"padding_mode={self.padding_mode!r}")
        self.fast_cpu = False

    def uses_fast_path(self, x: torch.Tensor) -> bool:
        return self.fast_cpu and x.device.type == "cpu" and x.dtype in FAST_DTYPES

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_fast_path(x):
            dtype = fast_dtype()
            bias = None if self.bias is None else self.bias.to(dtype)
            return torch.ops.aten.mkldnn_convolution(
                x.to(dtype, memory_format=FAST_MEMORY_FORMAT), self.weight.to(dtype, memory_format=FAST_MEMORY_FORMAT),
                bias, self.padding, self.stride, self.dilation, self.groups)
        return super().forward(x)


def conv_norm_act(x: torch.Tensor, conv: Conv3d, norm: nn.BatchNorm3d, relu: bool,
                  residual: torch.Tensor | None = None) -> torch.Tensor:
    """``act(norm(conv(x)) + residual)`` with ``act`` = ReLU or identity; fused at fast inference.

    ``residual`` (optional) has the shape of the output. The fused path (one oneDNN call, BatchNorm
    folded into the weights) is taken when ``conv`` is on the fast path, ``norm`` is in eval mode and
    autograd is off; otherwise the layers run one after the other.
    """
    if not (conv.uses_fast_path(x) and not norm.training and not torch.is_grad_enabled()):
        y = norm(conv(x))
        if residual is not None:
            y = y + residual
        return F.relu(y) if relu else y
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    dtype = fast_dtype()
    weight = (conv.weight * scale.view(-1, 1, 1, 1, 1)).to(dtype, memory_format=FAST_MEMORY_FORMAT)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    bias = bias.to(dtype)
    x = x.to(dtype, memory_format=FAST_MEMORY_FORMAT)
    unary = "relu" if relu else "none"
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, conv.padding, conv.stride, conv.dilation, conv.groups, unary, [], "")
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual.to(dtype, memory_format=FAST_MEMORY_FORMAT), weight, bias, conv.padding, conv.stride,
        conv.dilation, conv.groups, "add", None, unary, [], "")


def fast_cpu_path_available() -> bool:
    """True when this PyTorch build has the oneDNN ops the fast path calls."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.aten, "mkldnn_convolution")
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


def bfloat16_supported() -> bool:
    """True when the fast path can compute in bfloat16 on this CPU (natively or emulated by oneDNN)."""
    return fast_cpu_path_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def native_bfloat16_available() -> bool:
    """True when this CPU computes bfloat16 natively (AMX tiles or AVX512-BF16), where it is fast."""
    checks = (getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(check is not None and check() for check in checks) and bfloat16_supported()


def set_fast_cpu_convolutions(model: nn.Module, enabled: bool = True) -> int:
    """Route every :class:`Conv3d` of ``model`` through oneDNN on CPU (or back to the default).

    Enabling also stores the 3D conv weights as ``channels_last_3d`` so that no per-call weight
    conversion is needed (values and parameter objects are unchanged). Returns the number of
    convolutions switched. Raises RuntimeError when this PyTorch build lacks the oneDNN ops.
    """
    if enabled and not fast_cpu_path_available():
        raise RuntimeError("the fast CPU path needs a PyTorch build with oneDNN "
                           "(aten::mkldnn_convolution and mkldnn::_convolution_pointwise)")
    count = 0
    for module in model.modules():
        if isinstance(module, Conv3d):
            module.fast_cpu = enabled
            if enabled:
                module.weight.data = module.weight.data.contiguous(memory_format=FAST_MEMORY_FORMAT)
            count += 1
    return count


def uses_fast_cpu_convolutions(model: nn.Module) -> bool:
    """True when every :class:`Conv3d` of ``model`` is on the fast path (False if it has none)."""
    convs = [m for m in model.modules() if isinstance(m, Conv3d)]
    return bool(convs) and all(m.fast_cpu for m in convs)
