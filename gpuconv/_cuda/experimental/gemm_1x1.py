"""1x1 stride-1 unpadded convolutions as cuBLAS strided-batched GEMMs on the NCHW tensors themselves.

With R = S = 1, stride 1 and no padding, image n's group gi is a plain matrix product over its P*Q = H*W
pixels, and NCHW already stores every operand as a row-major matrix: x[n, gi] is (Cg, PQ), y[n, gi]
(Kg, PQ), w[gi] (Kg, Cg). So no im2col copy and no output permute:

    fprop  y[n, gi]  = w[gi] @ x[n, gi]                 (Kg x Cg) @ (Cg x PQ), on y prefilled with bias[k]
    dgrad  gx[n, gi] = w[gi]^T @ gy[n, gi]              w read transposed by cuBLAS, no copy; on bias[c]
    wgrad  gw[gi]    = sum_n gy[n, gi] @ x[n, gi]^T     per-image products into a workspace (n, K, Cg) of
                                                        float32 (float64 for float64), summed over n

Each product set is one ``_cublas.gemm_strided_batched`` call per group with the batch running over the
images (w's batch stride 0), or one per image with the batch running over the groups, whichever makes
fewer calls. wgrad's sum over n is ``workspace.sum(axis=0)`` (a CuPy reduction: fixed order, no atomics)
followed by an ordered sum over batch chunks, which keep the workspace under the configured workspace size.

Dilation does not matter at 1x1. Two experimental variants of the im2col algorithm (feature ``gemm_1x1``):
``gemm_1x1`` where ``applies(g)``, and ``im2col_half_batched``, im2col whose float16 products over more than
``_conv_im2col.MAX_LOOPED_GROUPS`` groups are one float16 ``cublas.gemm_strided_batched`` call instead of
CuPy's converting batched matmul.

Precision: float16 multiplies on tensor cores and sums in float32 (CUBLAS_COMPUTE_32F), rounding each
output once; wgrad keeps the per-image products and their sum in float32 and rounds once at the end.
float32 computes in float32 (TF32 only under CuPy's own CUPY_TF32=1, as every CuPy matmul); float64 in float64.
"""

from __future__ import annotations

import numpy


from .. import _config, _conv_im2col, _runtime
from .._alloc import empty
from .cublas import gemm_strided_batched


def applies(g) -> bool:
    """True for a 1x1 convolution with stride 1 and no padding (output size == input size)."""
    return (g.R == 1 and g.S == 1 and g.stride_h == 1 and g.stride_w == 1
            and (g.pad_top, g.pad_bottom, g.pad_left, g.pad_right) == (0, 0, 0, 0)
            and (g.P, g.Q) == (g.H, g.W))


def half_batched_applies(g, dtype) -> bool:
    """Where ``im2col_half_batched`` differs from im2col: float16 products batched over many groups."""
    return numpy.dtype(dtype) == numpy.float16 and not _conv_im2col._per_group(numpy.dtype(dtype), g.groups)


def half_batched_fprop(g, x, w, bias=None):
    return _conv_im2col.conv2d_fprop(g, x, w, bias, batched=gemm_strided_batched)


def half_batched_dgrad(g, gy, w, bias=None):
    return _conv_im2col.conv2d_dgrad(g, gy, w, bias, batched=gemm_strided_batched)


def half_batched_wgrad(g, x, gy):
    return _conv_im2col.conv2d_wgrad(g, x, gy, batched=gemm_strided_batched)


def _gemms(a, b, out, *, trans_a=False, trans_b=False, beta=0.0):
    """out[n, gi] = op(a[n, gi]) @ op(b[n, gi]) (+ beta * out[n, gi]) for views (images, groups, rows, cols); a
    or b may have one image, shared by all. One batched call per group (batch over images) or per image
    (batch over groups)."""
    images, groups = out.shape[:2]
    if groups <= images:
        for gi in range(groups):
            gemm_strided_batched(a[:, gi], b[:, gi], out[:, gi], trans_a=trans_a, trans_b=trans_b, beta=beta)
    else:
        for n in range(images):
            gemm_strided_batched(a[min(n, a.shape[0] - 1)], b[min(n, b.shape[0] - 1)], out[n],
                                 trans_a=trans_a, trans_b=trans_b, beta=beta)
    return out


def _with_bias(out, bias) -> float:
    """Fills out with bias[channel] and returns the GEMM's beta: the GEMM then adds its products to the bias
    in its float32 (float64) sum and rounds once, as the kernels do. No bias: beta 0 (out is not read)."""
    if bias is None:
        return 0.0
    out[...] = bias.reshape(1, -1, 1, 1)
    return 1.0


def conv2d_fprop(g, x, w, bias=None):
    pq, groups = g.P * g.Q, g.groups
    y = empty(g.output_shape, x.dtype)
    beta = _with_bias(y, bias)
    _gemms(w.reshape(1, groups, g.k_per_group, g.c_per_group), x.reshape(g.N, groups, g.c_per_group, pq),
           y.reshape(g.N, groups, g.k_per_group, pq), beta=beta)
    return y


def conv2d_dgrad(g, gy, w, bias=None):
    pq, groups = g.P * g.Q, g.groups
    gx = empty(g.input_shape, gy.dtype)
    beta = _with_bias(gx, bias)
    _gemms(w.reshape(1, groups, g.k_per_group, g.c_per_group), gy.reshape(g.N, groups, g.k_per_group, pq),
           gx.reshape(g.N, groups, g.c_per_group, pq), trans_a=True, beta=beta)
    return gx


def wgrad_chunk(g, dtype) -> int:
    """Images per wgrad chunk: as many per-image products (K x Cg, float32 or float64) as fit
    the configured workspace, at least one."""
    per_image = g.K * g.c_per_group * numpy.dtype(_sum_dtype(dtype)).itemsize
    return max(1, min(g.N, _config.current().workspace_bytes // max(1, per_image)))


def _sum_dtype(dtype):
    return numpy.float64 if numpy.dtype(dtype) == numpy.float64 else numpy.float32


def conv2d_wgrad(g, x, gy):
    pq, groups, kg, cg = g.P * g.Q, g.groups, g.k_per_group, g.c_per_group
    sum_dtype = _sum_dtype(x.dtype)
    step = wgrad_chunk(g, x.dtype)
    workspace = empty((step, groups, kg, cg), sum_dtype)
    total = None  # (groups, Kg, Cg)
    for n0 in range(0, g.N, step):
        n = min(step, g.N - n0)
        products = _gemms(gy[n0:n0 + n].reshape(n, groups, kg, pq), x[n0:n0 + n].reshape(n, groups, cg, pq),
                          workspace[:n], trans_b=True)
        part = products.sum(axis=0)
        total = part if total is None else total + part
    gw = empty(g.weight_shape, x.dtype)
    _runtime.xp().copyto(gw.reshape(groups, kg, cg), total, casting="unsafe")
    return gw
