"""Host-side checks of the CUDA pooling path, no GPU needed.

1. The launcher's plain logic (kernel names, grid size, backward chunking) and the kernel table.
2. The kernels' arithmetic run on the CPU: kernels/pool.cu keeps each thread's work in a __host__ __device__
   function, so nvcc (when installed) builds a small host library that calls those functions for every
   element, and the results are compared with PyTorch. What this cannot check is the GPU side: the
   grid-stride loops, the launch, CuPy's sort and memory; the GPU tests do.
"""

from __future__ import annotations

import ctypes
import pathlib
import shutil
import subprocess
import zlib

import numpy
import pytest

from gpuconv._cuda._kernel_table import KERNELS

try:  # gpuconv._cuda imports every CUDA module; CuPy must import, no GPU is needed
    from gpuconv._cuda import pool
except ImportError as e:  # pragma: no cover - depends on the environment
    pool = None
    POOL_IMPORT_ERROR = str(e)

needs_pool = pytest.mark.skipif(pool is None, reason="gpuconv._cuda.pool does not import (CuPy missing?)")
KERNEL_SOURCE = pathlib.Path(__file__).resolve().parents[1] / "kernels" / "pool.cu"


# ------------------------------------------------------------------------------------- launcher logic


@needs_pool
def test_kernel_table_lists_exactly_the_launched_instantiations():
    assert sorted(pool.kernel_names()) == sorted(KERNELS["pool.cu"])


@needs_pool
def test_launch_blocks_cover_small_counts_and_cap_large_ones():
    assert pool.launch_blocks(1) == 1
    assert pool.launch_blocks(pool.THREADS_PER_BLOCK) == 1
    assert pool.launch_blocks(pool.THREADS_PER_BLOCK + 1) == 2
    assert pool.launch_blocks(3 << 31) == pool.MAX_BLOCKS  # grid-stride loops cover the rest


@needs_pool
@pytest.mark.parametrize(
    "planes, HW, PQ, max_keys",
    [(6, 16, 4, 1 << 27), (7, 16, 4, 9), (3, 100, 2000, 10), ((1 << 20) + 3, 4096, 1024, 1 << 27),
     (2, 1 << 33, 1 << 28, 1 << 27)],
)
def test_bprop_chunks_partition_the_planes_and_bound_keys(planes, HW, PQ, max_keys):
    chunks = pool.bprop_chunks(planes, HW, PQ, max_keys)
    assert [c[0] for c in chunks] == list(range(0, planes, chunks[0][1]))
    assert sum(c[1] for c in chunks) == planes
    for first, count, key_dtype in chunks:
        assert count >= 1 and (count == 1 or count * PQ <= max_keys)
        largest_key = count * HW * PQ - 1
        assert largest_key <= numpy.iinfo(key_dtype).max
        if key_dtype == numpy.int64:  # int32 is used whenever it suffices
            assert largest_key > numpy.iinfo(numpy.int32).max


@needs_pool
def test_bprop_chunks_refuse_a_plane_whose_keys_overflow():
    with pytest.raises(ValueError, match="too large"):
        pool.bprop_chunks(1, 1 << 33, 1 << 31)


# ------------------------------------------------------------------------ the kernels' arithmetic on CPU

# extern "C" wrappers that run each per-element function of pool.cu over every element, serially.
HARNESS = r"""
#include "@SOURCE@"
using namespace gpuconv_pool;
typedef long long i64;

#define VALUE_TYPES(X) X(f16, __half) X(f32, float) X(f64, double)

#define WRAP(suffix, T)                                                                                    \
extern "C" void max_fprop_##suffix(const T* x, T* y, i64* idx, i64 total, i64 H, i64 W, i64 P, i64 Q,      \
                                   i64 kH, i64 kW, i64 sH, i64 sW, i64 pH, i64 pW, i64 dH, i64 dW) {       \
    for (i64 o = 0; o < total; ++o) max_pool2d_fprop_one(x, y, idx, o, H, W, P, Q, kH, kW, sH, sW, pH, pW, dH, dW); \
}                                                                                                          \
extern "C" void avg_fprop_##suffix(const T* x, T* y, i64 total, i64 H, i64 W, i64 P, i64 Q, i64 kH, i64 kW,\
                                   i64 sH, i64 sW, i64 pH, i64 pW, int cip, i64 div) {                     \
    for (i64 o = 0; o < total; ++o) avg_pool2d_fprop_one(x, y, o, H, W, P, Q, kH, kW, sH, sW, pH, pW, cip != 0, div); \
}                                                                                                          \
extern "C" void avg_bprop_##suffix(const T* gy, T* gx, i64 total, i64 H, i64 W, i64 P, i64 Q, i64 kH,     \
                                   i64 kW, i64 sH, i64 sW, i64 pH, i64 pW, int cip, i64 div) {             \
    for (i64 t = 0; t < total; ++t) avg_pool2d_bprop_one(gy, gx, t, H, W, P, Q, kH, kW, sH, sW, pH, pW, cip != 0, div); \
}                                                                                                          \
extern "C" void max_gather_##suffix##_i32(const T* gy, const int* keys, T* gx, i64 total, i64 HW, i64 PQ) {\
    for (i64 t = 0; t < total; ++t) max_pool2d_bprop_gather_one(gy, keys, gx, t, HW, PQ);                 \
}                                                                                                          \
extern "C" void max_gather_##suffix##_i64(const T* gy, const i64* keys, T* gx, i64 total, i64 HW, i64 PQ) {\
    for (i64 t = 0; t < total; ++t) max_pool2d_bprop_gather_one(gy, keys, gx, t, HW, PQ);                 \
}
VALUE_TYPES(WRAP)

extern "C" void max_keys_i32(const i64* idx, int* keys, i64 total, i64 HW, i64 PQ) {
    for (i64 o = 0; o < total; ++o) max_pool2d_bprop_key_one(idx, keys, o, HW, PQ);
}
extern "C" void max_keys_i64(const i64* idx, i64* keys, i64 total, i64 HW, i64 PQ) {
    for (i64 o = 0; o < total; ++o) max_pool2d_bprop_key_one(idx, keys, o, HW, PQ);
}
"""

SUFFIX = {numpy.dtype(numpy.float16): "f16", numpy.dtype(numpy.float32): "f32", numpy.dtype(numpy.float64): "f64"}
KEY_SUFFIX = {numpy.dtype(numpy.int32): "i32", numpy.dtype(numpy.int64): "i64"}


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """pool.cu's per-element functions, built for the CPU by nvcc, as a ctypes library."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed: the kernels' host build needs it")
    work = tmp_path_factory.mktemp("pool_host")
    (work / "harness.cu").write_text(HARNESS.replace("@SOURCE@", str(KERNEL_SOURCE)))
    lib = work / "libpool_host.so"
    cmd = [nvcc, "-std=c++17", "-O1", "-arch=sm_90", "-shared", "-Xcompiler", "-fPIC", "-o", str(lib),
           str(work / "harness.cu")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0 and "warning" not in done.stderr.lower(), done.stderr
    return ctypes.CDLL(str(lib))


def _ptr(a):
    return ctypes.c_void_p(a.ctypes.data)


def _i64s(*values):
    return [ctypes.c_longlong(int(v)) for v in values]


def _geometry(x_shape, kernel, stride, padding, dilation, ceil_mode, max_pool):
    from gpuconv import _params

    x = numpy.empty(x_shape, numpy.float32)
    c = _params.pool2d_call("test", x, kernel, stride, padding, dilation, ceil_mode, max_pool=max_pool)
    return c.geometry


def _window(g):
    return _i64s(g.H, g.W, g.P, g.Q, g.kernel_h, g.kernel_w, g.stride_h, g.stride_w, g.pad_h, g.pad_w)


def host_max_pool2d(lib, g, x):
    y = numpy.full(g.output_shape, numpy.nan, x.dtype)
    idx = numpy.full(g.output_shape, -7, numpy.int64)
    getattr(lib, f"max_fprop_{SUFFIX[x.dtype]}")(
        _ptr(x), _ptr(y), _ptr(idx), *_i64s(y.size), *_window(g), *_i64s(g.dil_h, g.dil_w))
    return y, idx


def host_avg_pool2d(lib, g, x, count_include_pad, divisor):
    y = numpy.full(g.output_shape, numpy.nan, x.dtype)
    getattr(lib, f"avg_fprop_{SUFFIX[x.dtype]}")(
        _ptr(x), _ptr(y), *_i64s(y.size), *_window(g), ctypes.c_int(int(count_include_pad)),
        *_i64s(divisor or 0))
    return y


def host_avg_pool2d_backward(lib, g, gy, count_include_pad, divisor):
    gx = numpy.full(g.input_shape, numpy.nan, gy.dtype)
    getattr(lib, f"avg_bprop_{SUFFIX[gy.dtype]}")(
        _ptr(gy), _ptr(gx), *_i64s(gx.size), *_window(g), ctypes.c_int(int(count_include_pad)),
        *_i64s(divisor or 0))
    return gx


def host_max_pool2d_backward(lib, gy, indices, input_shape, max_keys):
    """pool.max_pool2d_bprop's steps with NumPy's sort in place of CuPy's."""
    N, C, H, W = input_shape
    HW, PQ = H * W, gy.shape[2] * gy.shape[3]
    gy_flat, idx_flat = gy.reshape(-1), numpy.ascontiguousarray(indices, numpy.int64).reshape(-1)
    gx = numpy.full(input_shape, numpy.nan, gy.dtype)
    gx_flat = gx.reshape(-1)
    for first, count, key_dtype in pool.bprop_chunks(N * C, HW, PQ, max_keys):
        outs = idx_flat[first * PQ:(first + count) * PQ]
        keys = numpy.full(count * PQ, -1, key_dtype)
        getattr(lib, f"max_keys_{KEY_SUFFIX[key_dtype]}")(_ptr(outs), _ptr(keys), *_i64s(keys.size, HW, PQ))
        keys.sort()
        part = numpy.full(count * HW, numpy.nan, gy.dtype)
        getattr(lib, f"max_gather_{SUFFIX[gy.dtype]}_{KEY_SUFFIX[key_dtype]}")(
            _ptr(numpy.ascontiguousarray(gy_flat[first * PQ:(first + count) * PQ])), _ptr(keys), _ptr(part),
            *_i64s(count * HW, HW, PQ))
        gx_flat[first * HW:(first + count) * HW] = part
    return gx


POOL_CASES = [  # (input shape, kernel, stride, padding, dilation, ceil_mode)
    ((2, 3, 9, 11), 3, 2, 1, 1, False),
    ((2, 3, 9, 11), 3, 2, 1, 1, True),
    ((1, 2, 10, 7), (2, 3), (1, 2), (1, 0), 1, False),
    ((1, 2, 10, 7), (3, 2), (2, 3), (1, 1), (2, 1), True),
    ((2, 1, 8, 8), 2, None, 0, 1, False),
    ((1, 3, 5, 6), 4, 3, 2, (1, 2), True),
    ((1, 1, 1, 5), 2, 1, 1, 2, False),  # a dilated window with no in-bounds row: PyTorch's -inf
    ((1, 2, 13, 4), (5, 1), (4, 1), (2, 0), 1, True),
]
DTYPES = [numpy.float64, numpy.float32, numpy.float16]


def _shuffled(shape, dtype, rng):
    """Distinct values (no ties among maxima), exactly representable in float16."""
    values = rng.permutation(numpy.prod(shape)).astype(numpy.float64) / 8.0 - 30.0
    return values.reshape(shape).astype(dtype)


@needs_pool
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_host_max_pool2d_forward_and_backward_match_torch(host_kernels, case, dtype):
    torch = pytest.importorskip("torch")
    shape, kernel, stride, padding, dilation, ceil_mode = case
    rng = numpy.random.default_rng(zlib.crc32(repr(case).encode()))
    x = _shuffled(shape, dtype, rng)
    x.flat[rng.integers(x.size)] = numpy.nan  # NaN wins its windows
    g = _geometry(shape, kernel, stride, padding, dilation, ceil_mode, True)
    y, idx = host_max_pool2d(host_kernels, g, x)
    ty, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x.astype(numpy.float32)), kernel, stride, padding,
                                              dilation, ceil_mode, return_indices=True)
    numpy.testing.assert_array_equal(idx, tidx.numpy())
    numpy.testing.assert_array_equal(y, ty.numpy().astype(dtype))

    if (idx >= g.H * g.W).any():  # PyTorch's out-of-plane index of an all-padding window: no backward
        return
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    txr = torch.from_numpy(x.astype(numpy.float64)).requires_grad_()
    ty64 = torch.nn.functional.max_pool2d(txr, kernel, stride, padding, dilation, ceil_mode)
    ty64.backward(torch.from_numpy(gy.astype(numpy.float64)))
    for max_keys in (1 << 27, 2 * g.P * g.Q - 1):  # one chunk; one plane per chunk
        gx = host_max_pool2d_backward(host_kernels, gy, idx, g.input_shape, max_keys)
        tol = 2e-3 if dtype == numpy.float16 else 1e-6
        numpy.testing.assert_allclose(gx, txr.grad.numpy(), rtol=tol, atol=tol)


@needs_pool
def test_host_max_pool2d_backward_sums_repeated_indices_in_output_order(host_kernels):
    """Indices a user made up (every output chose element 3 or 0): sums run in output order, in float."""
    gy = numpy.array([1e8, 1.0, -1e8, 1.0, 0.5, 0.25], numpy.float32).reshape(1, 1, 2, 3)
    idx = numpy.array([3, 3, 3, 3, 0, 0], numpy.int64).reshape(1, 1, 2, 3)
    gx = host_max_pool2d_backward(host_kernels, gy, idx, (1, 1, 2, 2), 1 << 27)
    expected = numpy.zeros(4, numpy.float32)
    for o in range(6):  # PyTorch's CPU scatter order
        expected[idx.flat[o]] += gy.flat[o]
    numpy.testing.assert_array_equal(gx.reshape(-1), expected)


AVG_CASES = [  # (input shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    ((2, 3, 9, 11), 3, 2, 1, False, True, None),
    ((2, 3, 9, 11), 3, 2, 1, True, True, None),
    ((2, 3, 9, 11), 3, 2, 1, True, False, None),
    ((1, 2, 10, 7), (2, 3), (1, 2), (1, 0), False, False, None),
    ((1, 2, 10, 7), (4, 2), (3, 3), (2, 1), True, True, 5),
    ((1, 2, 10, 7), (4, 2), (3, 3), (2, 1), True, False, -3),
    ((2, 1, 8, 8), 2, None, 0, False, True, None),
    ((1, 3, 5, 6), 5, 4, 2, True, True, None),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_CASES)
def test_host_avg_pool2d_forward_and_backward_match_torch(host_kernels, case, dtype):
    torch = pytest.importorskip("torch")
    shape, kernel, stride, padding, ceil_mode, cip, divisor = case
    rng = numpy.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.standard_normal(shape).astype(dtype)
    from gpuconv import _params

    g = _params.pool2d_call("test", x, kernel, stride, padding, 1, ceil_mode, max_pool=False,
                            count_include_pad=cip, divisor_override=divisor).geometry
    tx = torch.from_numpy(x.astype(numpy.float64)).requires_grad_()
    ty = torch.nn.functional.avg_pool2d(tx, kernel, stride, padding, ceil_mode, cip, divisor)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    ty.backward(torch.from_numpy(gy.astype(numpy.float64)))
    tol = 2e-3 if dtype == numpy.float16 else (1e-6 if dtype == numpy.float32 else 1e-12)
    y = host_avg_pool2d(host_kernels, g, x, cip, divisor)
    numpy.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    gx = host_avg_pool2d_backward(host_kernels, g, gy, cip, divisor)
    numpy.testing.assert_allclose(gx, tx.grad.numpy(), rtol=tol, atol=tol)
