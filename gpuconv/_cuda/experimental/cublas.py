"""cuBLAS's strided-batched GEMM called directly, with row-major operands described by their strides.

CuPy's own ``matmul`` on 3-D operands converts float16 to float32 copies and runs a float32 GEMM (it has no
float16 batched path); ``gemm_strided_batched`` runs float16 in float16 (tensor cores, float32 compute),
writes into any strided output view (so a convolution can write NCHW directly) and takes a batch stride
of 0 for an operand shared by every batch entry.

Operands are cupy arrays of shape (batch, rows, cols) (or (rows, cols): a batch of one) whose last axis
is contiguous: ``strides[1]`` is the leading dimension, ``strides[0]`` the batch stride (0 = the same
matrix for every entry). The row-major product out[i] = op(a[i]) @ op(b[i]) is cuBLAS's column-major
out[i]^T = op(b[i])^T @ op(a[i])^T: a row-major (rows, cols) matrix with row stride ld is the column-major
(cols, rows) matrix with leading dimension ld, i.e. its transpose, so the call passes b as cuBLAS's A and
a as its B, swaps m and n, and keeps each operand's own transpose flag.

Types (A/B -> C, compute): float16 -> float16 or float32, CUBLAS_COMPUTE_32F; float32 -> float32,
CUBLAS_COMPUTE_32F (no TF32 unless the handle's math mode allows it: CuPy's handle keeps CUBLAS_DEFAULT_MATH
except under CuPy's own CUPY_TF32=1, which sets CUBLAS_TF32_TENSOR_OP_MATH, as for every CuPy matmul);
float64 -> float64, CUBLAS_COMPUTE_64F. alpha and beta are
host scalars of the compute type (CuPy's handle is in CUBLAS_POINTER_MODE_HOST, as its own calls assume).

The call goes through the runtime's cuBLAS (``_runtime``: ``cupy_backends.cuda.libs.cublas.gemmStridedBatchedEx``
on CuPy's handle for the current device); that wrapper sets the handle's stream to CuPy's current stream before
every call (its ``_setStream``), so the GEMM is ordered with our kernels.
"""

from __future__ import annotations

import numpy

from .. import _runtime


# cuBLAS / CUDA enum values (cublas_api.h, library_types.h; fixed by the ABI).
OP_N, OP_T = 0, 1
CUDA_R_16F, CUDA_R_32F, CUDA_R_64F = 2, 0, 1
COMPUTE_32F, COMPUTE_64F = 68, 70
GEMM_DEFAULT = -1

_DATA_TYPES = {numpy.dtype(numpy.float16): CUDA_R_16F, numpy.dtype(numpy.float32): CUDA_R_32F,
               numpy.dtype(numpy.float64): CUDA_R_64F}
# (operand dtype, output dtype) -> (compute type, dtype of alpha and beta)
_COMBINATIONS = {
    (numpy.dtype(numpy.float16), numpy.dtype(numpy.float16)): (COMPUTE_32F, numpy.float32),
    (numpy.dtype(numpy.float16), numpy.dtype(numpy.float32)): (COMPUTE_32F, numpy.float32),
    (numpy.dtype(numpy.float32), numpy.dtype(numpy.float32)): (COMPUTE_32F, numpy.float32),
    (numpy.dtype(numpy.float64), numpy.dtype(numpy.float64)): (COMPUTE_64F, numpy.float64),
}
_INT32_MAX = (1 << 31) - 1


def _pointer(a) -> int:
    """The device address of a's first element (the runtime's: a stand-in may track host addresses)."""
    return _runtime.current().pointer(a)


def _as_batch(name: str, a):
    """a as (batch, rows, cols) and its (batch stride, leading dimension) in elements."""
    if a.ndim == 2:
        a = a[None]  # a view, whatever a's strides
    if a.ndim != 3:
        raise ValueError(f"gemm_strided_batched: {name} must be 2-D or 3-D, but got shape {a.shape}")
    batch, rows, cols = a.shape
    if a.size == 0:  # never read or written: its strides mean nothing
        return a, 0, max(1, cols)
    item = a.itemsize
    if any(s % item for s in a.strides):
        raise ValueError(f"gemm_strided_batched: {name}'s strides {a.strides} are not multiples of its "
                         f"element size {item}")
    batch_stride, ld, unit = (s // item for s in a.strides)
    if cols > 1 and unit != 1:
        raise ValueError(f"gemm_strided_batched: {name}'s last axis must be contiguous, but its strides are "
                         f"{a.strides} (bytes)")
    if rows == 1:
        ld = max(ld, cols)  # the leading dimension of a one-row matrix is never used; cuBLAS wants >= cols
    if batch == 1:
        batch_stride = 0
    if ld < cols:
        raise ValueError(f"gemm_strided_batched: {name}'s rows overlap: row stride {ld} < {cols} columns "
                         f"(strides {a.strides} bytes)")
    if batch_stride < 0:
        raise ValueError(f"gemm_strided_batched: {name} has a negative batch stride ({a.strides} bytes)")
    if _pointer(a) % item:
        raise ValueError(f"gemm_strided_batched: {name} is not aligned to its element size {item}")
    return a, int(batch_stride), int(ld)


def _int32(name: str, v: int) -> int:
    if not 0 <= v <= _INT32_MAX:
        raise ValueError(f"gemm_strided_batched: {name} = {v} does not fit cuBLAS's 32-bit int")
    return int(v)


def gemm_strided_batched(a, b, out, *, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0,
                         beta: float = 0.0):
    """out[i] = alpha * op(a[i]) @ op(b[i]) + beta * out[i] for every i of the batch; returns out.

    op(a) is a, or a's transpose when trans_a (a given as (batch, K, M)); likewise b ((batch, K, N), or
    (batch, N, K) when trans_b); out is (batch, M, N). An operand's batch may be 1 (or its batch stride 0):
    the same matrix for every entry. See the module docstring for the strides and types accepted.
    """
    a, stride_a, lda = _as_batch("a", a)
    b, stride_b, ldb = _as_batch("b", b)
    result = out
    out, stride_c, ldc = _as_batch("out", out)
    batch = out.shape[0]
    for name, operand in (("a", a), ("b", b)):
        if operand.shape[0] not in (1, batch):
            raise ValueError(f"gemm_strided_batched: {name}'s batch {operand.shape[0]} is neither 1 nor out's "
                             f"batch {batch}")
    m, k = a.shape[1:][::-1] if trans_a else a.shape[1:]
    k_b, n = b.shape[1:][::-1] if trans_b else b.shape[1:]
    if k != k_b or out.shape[1:] != (m, n):
        raise ValueError(f"gemm_strided_batched: shapes do not chain: op(a) {(m, k)} @ op(b) {(k_b, n)} -> out "
                         f"{out.shape[1:]} (trans_a={trans_a}, trans_b={trans_b})")
    if a.dtype != b.dtype:
        raise TypeError(f"gemm_strided_batched: a and b differ in dtype: {a.dtype} and {b.dtype}")
    combination = _COMBINATIONS.get((a.dtype, out.dtype))
    if combination is None:
        raise TypeError(f"gemm_strided_batched: no cuBLAS GEMM from {a.dtype} operands to a {out.dtype} output; "
                        f"supported: {[(str(x), str(y)) for x, y in _COMBINATIONS]}")
    if batch == 0 or m == 0 or n == 0:  # nothing to write (before the overlap test: an empty out has no strides)
        return result
    if batch > 1 and stride_c < (m - 1) * ldc + n:
        raise ValueError(f"gemm_strided_batched: out's matrices overlap (batch stride {stride_c}, each spans "
                         f"{(m - 1) * ldc + n} elements)")
    if k == 0:  # an empty sum: cuBLAS would only scale out by beta
        if beta == 0:
            out.fill(0)
        else:
            out *= beta
        return result
    compute, scalar_type = combination
    alpha_host = numpy.array(alpha, dtype=scalar_type)
    beta_host = numpy.array(beta, dtype=scalar_type)
    # Column-major: out^T (n x m, ldc) = op(b)^T (n x k) @ op(a)^T (k x m); b is cuBLAS's A, a its B.
    library, handle = _runtime.current().cublas()
    library.gemmStridedBatchedEx(
        handle, OP_T if trans_b else OP_N, OP_T if trans_a else OP_N,
        _int32("n", n), _int32("m", m), _int32("k", k),
        alpha_host.ctypes.data,
        _pointer(b), _DATA_TYPES[b.dtype], _int32("ldb", ldb), stride_b,
        _pointer(a), _DATA_TYPES[a.dtype], _int32("lda", lda), stride_a,
        beta_host.ctypes.data,
        _pointer(out), _DATA_TYPES[out.dtype], _int32("ldc", ldc), stride_c,
        _int32("batch", batch), compute, GEMM_DEFAULT)
    return result
