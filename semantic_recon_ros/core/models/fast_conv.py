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
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

FAST_MEMORY_FORMAT = torch.channels_last_3d


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
        return self.fast_cpu and x.device.type == "cpu" and x.dtype == torch.float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uses_fast_path(x):
            return torch.ops.aten.mkldnn_convolution(
                x.contiguous(memory_format=FAST_MEMORY_FORMAT),
                self.weight.contiguous(memory_format=FAST_MEMORY_FORMAT),
                self.bias, self.padding, self.stride, self.dilation, self.groups)
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
    weight = (conv.weight * scale.view(-1, 1, 1, 1, 1)).contiguous(memory_format=FAST_MEMORY_FORMAT)
    bias = norm.bias - norm.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    x = x.contiguous(memory_format=FAST_MEMORY_FORMAT)
    unary = "relu" if relu else "none"
    if residual is None:
        return torch.ops.mkldnn._convolution_pointwise(
            x, weight, bias, conv.padding, conv.stride, conv.dilation, conv.groups, unary, [], "")
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual.contiguous(memory_format=FAST_MEMORY_FORMAT), weight, bias, conv.padding, conv.stride,
        conv.dilation, conv.groups, "add", None, unary, [], "")


def fast_cpu_path_available() -> bool:
    """True when this PyTorch build has the oneDNN ops the fast path calls."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.aten, "mkldnn_convolution")
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise"))


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
