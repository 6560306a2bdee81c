"""The bias gradient of a convolution on cupy arrays: the launcher of ``kernels/bias_grad.cu``.

``bias_grad(gy)`` returns ``gb[k] = sum over n, p, q of gy[n, k, p, q]`` for a 4-D gy (N, K, P, Q) of float16 /
float32 / float64, as a new (K,) array of gy's dtype, summed in float32 (float16 and float32) or float64 and
rounded once. Opt-in (``GPUCONV_UNVERIFIED=bias_grad``, ``gpuconv._cuda.experimental``) until a GPU session has
verified it; the backend otherwise sums with CuPy's reduction, whose host time (bench/notes/history.md, "bias
gradient") is most of conv2d_backward's excess at batch 1.

The split rule. Channel k's N*P*Q elements are cut into ``splits`` contiguous chunks, one 256-thread block
each (the kernel's header describes the mapping and the fixed summation order):

- ``splits = ceil(N*P*Q*itemsize / SPLIT_BYTES)`` (at least 1, at most the channel's load units), with
  SPLIT_BYTES = 128 KiB. When every channel fits one chunk (a float32 channel of up to 32768 elements:
  batch 1 of ResNet-50's stem gradient, 112x112, is 12544), the kernel writes gb directly: one launch, which
  is what the host time of small calls wants. Otherwise the kernel writes float32/float64 partial sums
  (K, splits) and ``conv2d_bias_grad_reduce`` adds each channel's splits in order: two launches, negligible
  next to the reads of a tensor that large.
- 128 KiB per block is 512 bytes per thread (32 16-byte loads), long enough that the block's start and its
  closing tree cost ~1% of the stream, short enough that a large tensor makes thousands of blocks (ResNet-50's
  stem at batch 256, float32: 64 channels x 98 splits) and keeps every SM busy to the end.
- The rule depends on the shape and dtype only, not on the GPU (an SM-count rule would not): the summation
  order, hence the bits, are the same on every call and on every device. The cost is small tensors with few
  channels (under ~2 blocks per SM): a channel just under 128 KiB is read by one block at ~20-30 GB/s, a few us.

Blocks have 256 threads, fewer (a power of two, at least 32) when a split has fewer units than that, so that
tiny planes do not run 8 barrier rounds over idle threads. The load unit is 16 bytes (8 / 4 / 2 elements) when
P*Q is a multiple of it, one element otherwise; the kernel loads a unit with one 16-byte access when gy is
aligned and element by element otherwise, in the same order: misalignment changes no bit.

The launch plan (names, grid, blocks and the exact numpy scalar arguments) is cached per (N, K, P*Q, dtype,
split size) (tests and the GPU workload shrink the tunable ``bias_split_bytes`` to reach many splits on small
tensors).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy

from .. import _config, _launch, _runtime
from .._defines import DEFINES
from .._alloc import empty

SOURCE = "experimental/bias_grad.cu"

THREADS = DEFINES["BG_THREADS"]  # the kernel's shared tree's size, a power of two (kernels/tunables.cuh)
MIN_THREADS = 32
SPLIT_BYTES = 128 * 1024  # most bytes of gy one block sums (see the module docstring)
LANES = {numpy.dtype(numpy.float16): 8, numpy.dtype(numpy.float32): 4, numpy.dtype(numpy.float64): 2}
ACC_DTYPES = {numpy.dtype(numpy.float16): numpy.dtype(numpy.float32),
              numpy.dtype(numpy.float32): numpy.dtype(numpy.float32),
              numpy.dtype(numpy.float64): numpy.dtype(numpy.float64)}


def kernel_names() -> tuple:
    """Every instantiation the launcher may use, spelled as in ``_kernel_table.KERNELS["bias_grad.cu"]``."""
    return tuple(f"conv2d_bias_grad<{_launch.CTYPES[d]}, {vec}>" for d in LANES for vec in (1, LANES[d])) + tuple(
        f"conv2d_bias_grad_reduce<{_launch.CTYPES[d]}>" for d in LANES)


class Plan(NamedTuple):
    vec: int            # elements per load unit (1, or 16 bytes' worth)
    splits: int         # chunks per channel; 1: one launch
    name: str           # the split-sum kernel
    grid: int           # its blocks (grid-stride over K * splits items)
    threads: int        # its block size
    scalars: tuple      # (N, K, PQ, splits) as numpy.int32
    reduce_name: str    # the split reduction ("" when splits == 1)
    reduce_grid: int
    reduce_threads: int
    reduce_scalars: tuple  # (K, splits) as numpy.int32
    acc_dtype: numpy.dtype


def _block(units: int) -> int:
    """The smallest power of two >= units, clamped to [MIN_THREADS, THREADS]."""
    threads = MIN_THREADS
    while threads < units and threads < THREADS:
        threads *= 2
    return threads


def splits_for(N: int, PQ: int, dtype, split_bytes: int = SPLIT_BYTES) -> tuple:
    """(vec, splits) for a channel of N*PQ elements of ``dtype`` (see the module docstring)."""
    dtype = numpy.dtype(dtype)
    lanes = LANES[dtype]
    vec = lanes if PQ % lanes == 0 else 1
    units = N * (PQ // vec)
    splits = max(1, -(-(N * PQ * dtype.itemsize) // split_bytes))
    return vec, max(1, min(splits, units))


@functools.lru_cache(maxsize=1024)
def plan(N: int, K: int, PQ: int, dtype, split_bytes: int = SPLIT_BYTES) -> Plan:
    """The launches of one (N, K, P*Q, dtype) (K >= 1) under the split size ``split_bytes``."""
    dtype = numpy.dtype(dtype)
    ctype = _launch.CTYPES[dtype]
    vec, splits = splits_for(N, PQ, dtype, split_bytes)
    units_per_split = -(-(N * (PQ // vec)) // splits)
    i32 = _launch.i32
    reduce = splits > 1
    return Plan(
        vec=vec, splits=splits, name=f"conv2d_bias_grad<{ctype}, {vec}>",
        grid=min(K * splits, _launch.MAX_BLOCKS), threads=_block(units_per_split),
        scalars=(i32(N), i32(K), i32(PQ), i32(splits)),
        reduce_name=f"conv2d_bias_grad_reduce<{ctype}>" if reduce else "",
        reduce_grid=min(K, _launch.MAX_BLOCKS), reduce_threads=_block(splits),
        reduce_scalars=(i32(K), i32(splits)), acc_dtype=ACC_DTYPES[dtype])


def bias_grad(gy):
    """gb (K,) of gy's dtype: the sum of the 4-D gy (N, K, P, Q) over N, P and Q, on the current device and
    stream (call inside ``with gy.device:``). Every element of gb is written by a kernel (0 for an empty gy)."""
    N, K, P, Q = gy.shape
    gb = empty((K,), gy.dtype)
    if K == 0:
        return gb
    if not gy.flags.c_contiguous:  # RawKernel ignores strides
        gy = _runtime.xp().ascontiguousarray(gy)
    p = plan(N, K, P * Q, gy.dtype, _config.current().bias_split_bytes)
    if p.splits == 1:
        _launch.get_function(SOURCE, p.name)((p.grid,), (p.threads,),
                                             (gy, _launch.pointer_or_null(None), gb) + p.scalars)
        return gb
    partial = empty((K * p.splits,), p.acc_dtype)
    _launch.get_function(SOURCE, p.name)((p.grid,), (p.threads,), (gy, partial, gb) + p.scalars)
    _launch.get_function(SOURCE, p.reduce_name)((p.reduce_grid,), (p.reduce_threads,),
                                                (partial, gb) + p.reduce_scalars)
    return gb
