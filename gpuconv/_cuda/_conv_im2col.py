"""Convolution as im2col + GEMM: ``kernels/im2col.cu`` moves the data, ``cupy.matmul`` (cuBLAS) multiplies.

For a chunk of n images, im2col builds cols = (C*R*S, n*P*Q), which the GEMMs read as (groups, Cg*R*S,
n*P*Q). ``_gemm`` multiplies the group batches: float16 as one 2-D cupy.matmul per group when there are few
groups (CuPy runs a 2-D product as one cublasGemmEx in the operands' dtype: float16 in, float32 compute, tensor
cores), one batched cupy.matmul for many (CuPy's batched matmul converts float16 operands to float32
copies and runs a float32 GEMM; the measurement: bench/notes/history.md, "im2col float16 GEMMs").

    fprop  y  = w (G, Kg, CgRS) @ cols                  -> (G, Kg, n*PQ), i.e. (K, n, PQ), permuted to y
    dgrad  cols = w^T (G, CgRS, Kg) @ gy (G, Kg, n*PQ)  -> col2im gathers cols into gx (+ bias)
    wgrad  gw^T = cols @ gy^T (G, n*PQ, Kg)             -> (G, CgRS, Kg), summed over chunks, transposed

Every operand is a contiguous C-order batch, so cupy.matmul copies nothing; gy is permuted once per
chunk. The batch is chunked so that cols stays under the configured workspace (``_config``, 256 MiB).

The passes take ``batched``, the product used for many groups: CuPy's converting batched matmul by default,
cuBLAS's float16 strided-batched GEMM in the experimental variant ``im2col_half_batched``
(gpuconv/_cuda/experimental/gemm_1x1.py).

Precision: both matmul forms sum float16 products in float32 (CUBLAS_COMPUTE_32F) and round the result to
float16 once; float32 computes in float32 (CuPy asks for TF32 only under its own CUPY_TF32=1). Two steps
round float16 once more than the direct kernels do: dgrad's cols are float16 before col2im sums up to R*S
of them (in float32), and wgrad rounds each chunk's sum before adding chunks (in float32).
"""

from __future__ import annotations

import functools

import numpy

from . import _config, _runtime
from ._alloc import empty
from ._launch import grid_2d, i32, launch, pointer_or_null

SOURCE = "im2col.cu"
KERNELS = {SOURCE: tuple(f"{k}<{t}>" for k in ("im2col", "col2im") for t in ("__half", "float", "double"))}


def im2col_bytes_per_image(g, dtype) -> int:
    """Bytes of one image's im2col matrix: (C*R*S) x (P*Q) elements."""
    return g.C * g.R * g.S * g.P * g.Q * numpy.dtype(dtype).itemsize


def fits(g, dtype) -> bool:
    """Whether one image's im2col matrix fits the workspace (the batch cannot be chunked finer)."""
    return im2col_bytes_per_image(g, dtype) <= _config.current().workspace_bytes


def batch_chunk(g, dtype) -> int:
    """Images per im2col chunk: as many as fit the workspace, at least one."""
    per_image = max(1, im2col_bytes_per_image(g, dtype))
    return max(1, min(g.N, _config.current().workspace_bytes // per_image))


@functools.lru_cache(maxsize=256)
def _im2col_args(g, n: int) -> tuple:
    """n, C, H, W, R, S, P, Q, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w as int."""
    return tuple(i32(v) for v in (n, g.C, g.H, g.W, g.R, g.S, g.P, g.Q, g.stride_h, g.stride_w,
                                  g.pad_top, g.pad_left, g.dil_h, g.dil_w))


# float16 with up to this many groups runs one 2-D GEMM per group (see the module docstring); more groups
# run one batched call, whose per-group GEMMs are small anyway. float32 / float64 lose nothing in CuPy's
# batched matmul: one call covers every group (a loop would pay a launch per group).
MAX_LOOPED_GROUPS = 16


def _per_group(dtype, groups: int) -> bool:
    """Whether _gemm runs one 2-D matmul per group (else one batched call); Config.im2col_gemm_form forces
    either form (tests reach both for every dtype)."""
    form = _config.current().im2col_gemm_form
    if form != "auto":
        return form == "per_group"
    return groups == 1 or (dtype == numpy.float16 and groups <= MAX_LOOPED_GROUPS)


def _gemm(a, b, out=None, batched=None):
    """out (G, M, N) = a (G, M, K) @ b (G, K, N), all contiguous and of one dtype. One group, or float16 up to
    MAX_LOOPED_GROUPS: a 2-D matmul per group. Otherwise one batched product: ``batched(a, b, out)`` when
    given, else CuPy's batched matmul (float16 through float32 copies; float32 / float64 lose nothing)."""
    groups = a.shape[0]
    if not _per_group(a.dtype, groups):
        if batched is None:
            return _runtime.xp().matmul(a, b, out=out)
        if out is None:
            out = empty((groups, a.shape[1], b.shape[2]), a.dtype)
        return batched(a, b, out)
    if out is None:
        out = empty((groups, a.shape[1], b.shape[2]), a.dtype)
    for i in range(groups):
        _runtime.xp().matmul(a[i], b[i], out=out[i])
    return out


def _taps_per_group(g) -> int:
    return g.c_per_group * g.R * g.S


def _im2col(g, x_chunk):
    """cols of a chunk of images, as (groups, Cg*R*S, n*P*Q). The kernel indexes a row's pixels in int32."""
    n = x_chunk.shape[0]
    pixels, taps = n * g.P * g.Q, g.C * g.R * g.S
    i32(pixels)  # raises if a row's pixel index would not fit the kernel's int
    cols = empty((taps, pixels), x_chunk.dtype)
    launch(SOURCE, "im2col", x_chunk.dtype, cols.size, (x_chunk, cols) + _im2col_args(g, n),
           blocks=grid_2d(pixels, taps))
    return cols.reshape(g.groups, _taps_per_group(g), pixels)


def _col2im(g, cols, bias, out_chunk) -> None:
    """Writes every element of out_chunk (n, C, H, W) from cols (C*R*S, n*P*Q), plus bias[c] if given.
    The kernel indexes a plane's elements in int32."""
    n = out_chunk.shape[0]
    args = (cols, pointer_or_null(bias), out_chunk) + _im2col_args(g, n)
    launch(SOURCE, "col2im", out_chunk.dtype, out_chunk.size, args, blocks=grid_2d(i32(g.H * g.W), n * g.C))


def _channels_major(a, groups: int):
    """(n, K, P, Q) -> contiguous (groups, K/groups, n*P*Q); no copy when n == 1."""
    n, k = a.shape[:2]
    return _runtime.xp().ascontiguousarray(a.reshape(n, k, -1).transpose(1, 0, 2)).reshape(groups, k // groups, -1)


def _pixels_major(a, groups: int):
    """(n, K, P, Q) -> contiguous (groups, n*P*Q, K/groups)."""
    n, k = a.shape[:2]
    per_group = a.reshape(n, groups, k // groups, -1).transpose(1, 0, 3, 2)
    return _runtime.xp().ascontiguousarray(per_group).reshape(groups, -1, k // groups)


def _chunks(g, dtype):
    """(first image, image count) of each batch chunk."""
    step = batch_chunk(g, dtype)
    for n0 in range(0, g.N, step):
        yield n0, min(step, g.N - n0)


def conv2d_fprop(g, x, w, bias=None, batched=None):
    dtype = x.dtype
    pq = g.P * g.Q
    w_mat = w.reshape(g.groups, g.k_per_group, _taps_per_group(g))
    y = empty(g.output_shape, dtype)
    for n0, n in _chunks(g, dtype):
        cols = _im2col(g, x[n0:n0 + n])
        y_chunk = y[n0:n0 + n].reshape(n, g.K, pq)
        if n == 1:  # (K, 1, PQ) is already y's layout: the GEMM writes y in place
            _gemm(w_mat, cols, y_chunk.reshape(g.groups, g.k_per_group, pq), batched)
            if bias is not None:
                y_chunk += bias.reshape(1, g.K, 1)
        else:
            product = _gemm(w_mat, cols, None, batched).reshape(g.K, n, pq).transpose(1, 0, 2)
            if bias is None:
                _runtime.xp().copyto(y_chunk, product)
            else:
                _runtime.xp().add(product, bias.reshape(1, g.K, 1), out=y_chunk)
        del cols
    return y


def conv2d_dgrad(g, gy, w, bias=None, batched=None):
    dtype = gy.dtype
    w_t = _runtime.xp().ascontiguousarray(w.reshape(g.groups, g.k_per_group, _taps_per_group(g)).transpose(0, 2, 1))
    gx = empty(g.input_shape, dtype)
    for n0, n in _chunks(g, dtype):
        cols = _gemm(w_t, _channels_major(gy[n0:n0 + n], g.groups), None, batched)  # (G, CgRS, n*PQ)
        _col2im(g, cols, bias, gx[n0:n0 + n])
        del cols
    return gx


def conv2d_wgrad(g, x, gy, batched=None):
    dtype = x.dtype
    sum_dtype = numpy.float32 if dtype == numpy.float16 else dtype
    total = None  # gw^T as (G, CgRS, Kg)
    for n0, n in _chunks(g, dtype):
        cols = _im2col(g, x[n0:n0 + n])
        part = _gemm(cols, _pixels_major(gy[n0:n0 + n], g.groups), None, batched)
        del cols
        if total is None:
            total = part if n0 + n == g.N else part.astype(sum_dtype)
        else:
            total += part
    gw = empty(g.weight_shape, dtype)
    _runtime.xp().copyto(gw.reshape(g.groups, g.k_per_group, _taps_per_group(g)), total.transpose(0, 2, 1),
                casting="unsafe")
    return gw
