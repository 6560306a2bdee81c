"""One pass of one layer as three callables over the same data: gpuconv, PyTorch, and a float64 reference.

The data is made once in PyTorch (on its device) and handed to gpuconv without a copy: NumPy views of CPU
tensors, CuPy views of CUDA tensors through DLPack. Results come back the same way, so every comparison is
done in PyTorch on the tensors the kernels wrote.

Passes: convolutions have fprop (forward), dgrad (gradient of the input) and wgrad (gradient of the weight);
for a transposed convolution these are its own forward / input gradient / weight gradient. Pooling has fwd
and bwd. PyTorch's side of each backward pass is the aten op its autograd calls (convolution_backward with an
output mask, max_pool2d_with_indices_backward, avg_pool2d_backward), so it does no more and no less work.
"""

from __future__ import annotations

from dataclasses import dataclass

import gpuconv
import torch
import torch.nn.functional as F

aten = torch.ops.aten

# Bytes per element of max-pool indices (int64), for the bandwidth of the pooling passes.
INDEX_BYTES = 8


@dataclass
class PassCase:
    """The callables of one (layer, pass). Each takes one input set (a dict of arrays of its framework)."""

    layer: object
    pass_name: str
    gpuconv: object  # set -> result (NumPy/CuPy array; a tuple for max-pool fwd: values, indices)
    torch: object  # set -> result (torch tensors, the same structure)
    work: float  # FLOPs (conv) or bytes moved (pooling) per call
    unit: str  # 'flop' or 'byte'


def _conv_args(layer):
    return dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)


def make_inputs(layer, dtype, device, seed):
    """One input set for every pass of a layer, as torch tensors: x, w, bias, gy (and max-pool indices).

    Values are standard normal, scaled for convolutions so outputs stay O(1) in float16."""
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def randn(shape, scale=1.0):
        return (torch.randn(shape, generator=gen, dtype=torch.float32) * scale).to(device=device, dtype=dtype)

    x = randn(layer.input_shape)
    out_shape = layer.output_shape
    if not layer.is_conv:
        s = {"x": x, "gy": randn(out_shape)}
        if layer.kind == "maxpool":
            _, idx = F.max_pool2d(x, layer.kernel, layer.stride, layer.padding, return_indices=True)
            s["idx"] = idx
        return s
    fan_in = layer.C // layer.groups * layer.kernel[0] * layer.kernel[1]
    s = {"x": x, "w": randn(layer.weight_shape, fan_in ** -0.5), "gy": randn(out_shape, 0.1)}
    if layer.bias:
        s["b"] = randn((layer.K,))  # one per output channel, for conv and transposed conv alike
    return s


def set_bytes(layer, pass_name, s) -> int:
    """Bytes a pass reads from its input set (what rotation must push out of L2)."""
    used = {"fprop": ("x", "w", "b"), "dgrad": ("gy", "w"), "wgrad": ("x", "gy"),
            "fwd": ("x",), "bwd": ("gy", "idx")}[pass_name]
    return sum(s[k].numel() * s[k].element_size() for k in used if k in s)


def build(layer, pass_name, itemsize) -> PassCase:
    """The PassCase for a layer, a pass and the element size of its dtype; the callables take a set from
    make_inputs (torch) or its gpuconv view."""
    if layer.is_conv:
        fn = _TCONV if layer.kind == "tconv" else _CONV
        gc_fn, t_fn = fn[pass_name](layer)
        return PassCase(layer, pass_name, gc_fn, t_fn, float(layer.geometry().flops), "flop")
    fn = _MAXPOOL if layer.kind == "maxpool" else _AVGPOOL
    gc_fn, t_fn = fn[pass_name](layer)
    return PassCase(layer, pass_name, gc_fn, t_fn, float(pool_bytes(layer, itemsize)), "byte")


def pool_bytes(layer, itemsize) -> int:
    """Bytes an ideal pooling kernel reads plus writes, the same for forward and backward: forward reads x
    and writes y (and int64 indices for max pooling); backward reads gy (and the indices) and writes gx."""
    n_in, n_out = _numel(layer.input_shape), _numel(layer.output_shape)
    idx = INDEX_BYTES * n_out if layer.kind == "maxpool" else 0
    return itemsize * (n_in + n_out) + idx


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------------------- convolutions


def _conv_fprop(layer):
    a = _conv_args(layer)
    return (lambda s: gpuconv.conv2d(s["x"], s["w"], s.get("b"), **a),
            lambda s: F.conv2d(s["x"], s["w"], s.get("b"), **a))


def _conv_backward(mask_index):
    def make(layer):
        a = _conv_args(layer)
        mask = tuple(i == mask_index for i in range(3))

        def gc(s):
            return gpuconv.conv2d_backward(s["gy"], s["x"], s["w"], output_mask=mask, **a)[mask_index]

        def tt(s):
            return aten.convolution_backward(s["gy"], s["x"], s["w"], None, list(layer.stride),
                                             list(layer.padding), list(layer.dilation), False, [0, 0],
                                             layer.groups, list(mask))[mask_index]
        return gc, tt
    return make


def _tconv_args(layer):
    return dict(stride=layer.stride, padding=layer.padding, output_padding=layer.output_padding,
                groups=layer.groups, dilation=layer.dilation)


def _tconv_fprop(layer):
    a = _tconv_args(layer)
    return (lambda s: gpuconv.conv_transpose2d(s["x"], s["w"], s.get("b"), **a),
            lambda s: F.conv_transpose2d(s["x"], s["w"], s.get("b"), **a))


def _tconv_backward(mask_index):
    def make(layer):
        a = _tconv_args(layer)
        mask = tuple(i == mask_index for i in range(3))

        def gc(s):
            return gpuconv.conv_transpose2d_backward(s["gy"], s["x"], s["w"], output_mask=mask, **a)[mask_index]

        def tt(s):
            return aten.convolution_backward(s["gy"], s["x"], s["w"], None, list(layer.stride),
                                             list(layer.padding), list(layer.dilation), True,
                                             list(layer.output_padding), layer.groups, list(mask))[mask_index]
        return gc, tt
    return make


_CONV = {"fprop": _conv_fprop, "dgrad": _conv_backward(0), "wgrad": _conv_backward(1)}
_TCONV = {"fprop": _tconv_fprop, "dgrad": _tconv_backward(0), "wgrad": _tconv_backward(1)}


# --------------------------------------------------------------------------------------------- pooling


def _maxpool_fwd(layer):
    k, st, p = layer.kernel, layer.stride, layer.padding
    return (lambda s: gpuconv.max_pool2d(s["x"], k, st, p, return_indices=True),
            lambda s: F.max_pool2d(s["x"], k, st, p, return_indices=True))


def _maxpool_bwd(layer):
    k, st, p = layer.kernel, layer.stride, layer.padding
    return (lambda s: gpuconv.max_pool2d_backward(s["gy"], s["idx"], tuple(s["x"].shape)),
            lambda s: aten.max_pool2d_with_indices_backward(s["gy"], s["x"], list(k), list(st), list(p),
                                                            [1, 1], False, s["idx"]))


def _avgpool_fwd(layer):
    k, st, p = layer.kernel, layer.stride, layer.padding
    return (lambda s: gpuconv.avg_pool2d(s["x"], k, st, p),
            lambda s: F.avg_pool2d(s["x"], k, st, p))


def _avgpool_bwd(layer):
    k, st, p = layer.kernel, layer.stride, layer.padding
    return (lambda s: gpuconv.avg_pool2d_backward(s["gy"], tuple(s["x"].shape), k, st, p),
            lambda s: aten.avg_pool2d_backward(s["gy"], s["x"], list(k), list(st), list(p), False, True, None))


_MAXPOOL = {"fwd": _maxpool_fwd, "bwd": _maxpool_bwd}
_AVGPOOL = {"fwd": _avgpool_fwd, "bwd": _avgpool_bwd}
