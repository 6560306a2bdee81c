"""Host-side checks of the CUDA pooling path, no GPU needed.

1. The launcher's plain logic (kernel names, grid size, backward chunking) and the kernel table.
2. The kernels' arithmetic run on the CPU: kernels/pool.cu keeps each thread's work in a __host__ __device__
   function, so nvcc (when installed) builds a small host library that calls those functions for every
   element, and the results are compared with PyTorch. What this cannot check is the GPU side: the
   grid-stride loops, the launch, CuPy's sort and memory; the GPU tests do.

The host library is built from kernels/experimental/pool_wide.cu, which includes pool.cu: it holds the kernels of both
files (the wide ones are checked in test_cuda_pool_wide_host.py, against these).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import re
import shutil
import subprocess
import zlib

import ml_dtypes
import numpy
import pytest

from gpuconv._cuda import _loader, _runtime
from gpuconv._cuda import pool as _pool
from gpuconv._cuda import pooling as _pooling
from gpuconv._cuda._kernel_table import KERNELS
from gpuconv._cuda.experimental import pool_wide as _pool_wide
from support.host_modules import HostRuntime

try:
    import torch
except ImportError:  # pragma: no cover - the suite runs without PyTorch too
    torch = None


class _Pooling:
    """The pooling names the tests use: the backend's entry (``pooling``), the verified launchers (``pool``)
    and the experimental wide ones (``experimental/pool_wide``), looked up in that order."""

    wide_kernel_names = staticmethod(_pool_wide.kernel_names)

    def __getattr__(self, name):
        for module in (_pooling, _pool, _pool_wide):
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(name)


pool = _Pooling()
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle of these checks")
needs_pool = pytest.mark.skipif(False, reason="gpuconv._cuda.pool imports without CuPy")
SOURCES = ("pool.cu", "experimental/pool_wide.cu")  # the host library: pool_wide.cu's text (pool.cu inlined)


# ------------------------------------------------------------------------------------- launcher logic


@needs_pool
def test_kernel_table_lists_exactly_the_launched_instantiations():
    assert sorted(pool.kernel_names()) == sorted(KERNELS["pool.cu"])
    assert sorted(pool.wide_kernel_names()) == sorted(KERNELS["experimental/pool_wide.cu"])


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
        largest_key = count * (HW + 1) * PQ - 1  # a slot past each plane for out-of-range indices
        assert largest_key <= numpy.iinfo(key_dtype).max
        if key_dtype == numpy.int64:  # int32 is used whenever it suffices
            assert largest_key > numpy.iinfo(numpy.int32).max


@needs_pool
def test_bprop_chunks_refuse_a_plane_whose_keys_overflow():
    with pytest.raises(ValueError, match="too large"):
        pool.bprop_chunks(1, 1 << 33, 1 << 31)


# ---------------------------------------------------------------- the kernels and launchers on the CPU

# pool.cu compiled as plain C++: __global__/__device__ vanish, and blockIdx, threadIdx, blockDim, gridDim become
# host variables that run_<kernel> sets while it calls the kernel once per (block, thread) of a small grid.
HARNESS_PRELUDE = r"""
#include <atomic>
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
#include <cuda_fp16.h>
#include <vector_types.h>
#undef __global__
#undef __device__
#undef __host__
#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)
static thread_local uint3 host_blockIdx, host_threadIdx;
static dim3 host_blockDim, host_gridDim;
#define blockIdx host_blockIdx
#define threadIdx host_threadIdx
#define blockDim host_blockDim
#define gridDim host_gridDim
// Kernels with __syncthreads run one std::thread per CUDA thread of a block, meeting at a std::barrier;
// the block's dynamic shared memory is one buffer, filled with garbage before every block.
static std::barrier<>* host_barrier = nullptr;
static unsigned char* host_smem = nullptr;
static inline void __syncthreads() { host_barrier->arrive_and_wait(); }
static inline int atomicAdd(int* address, int value) {
    return std::atomic_ref<int>(*address).fetch_add(value);
}
static inline unsigned atomicAdd(unsigned* address, unsigned value) {
    return std::atomic_ref<unsigned>(*address).fetch_add(value);
}
// Warp shuffles: a warp is 32 consecutive threads of the block (the last one may be partial); every thread of
// the block must make the same calls (each is two block barriers around an exchange buffer).
static long long* host_xchg = nullptr;
static inline int __shfl_up_sync(unsigned, int value, unsigned delta) {
    host_xchg[threadIdx.x] = value;
    __syncthreads();
    const int got = threadIdx.x % 32 >= delta ? (int)host_xchg[threadIdx.x - delta] : value;
    __syncthreads();
    return got;
}
static inline int __shfl_sync(unsigned, int value, int lane) {
    host_xchg[threadIdx.x] = value;
    __syncthreads();
    const int got = (int)host_xchg[threadIdx.x / 32 * 32 + lane];
    __syncthreads();
    return got;
}
#define GPUCONV_POOL_DYNAMIC_SMEM(name) unsigned char* name = host_smem
"""

# Serial: every thread of a block in turn (kernels without __syncthreads). Threaded: see the prelude.
HARNESS_RUNNER = r"""
extern "C" void run_{symbol}(unsigned grid, unsigned block, unsigned long long smem_bytes, {params}) {{
    host_gridDim.x = grid;
    host_blockDim.x = block;
    std::vector<unsigned char> smem(smem_bytes + 1);
    std::vector<long long> xchg(block);
    host_xchg = xchg.data();
    for (unsigned b = 0; b < grid; ++b) {{
        for (size_t k = 0; k < smem.size(); ++k) smem[k] = (unsigned char)(0xA5 ^ (k * 7) ^ b);
        host_smem = smem.data();
        if (!{threaded}) {{
            for (unsigned t = 0; t < block; ++t) {{
                host_blockIdx.x = b;
                host_threadIdx.x = t;
                {kernel}({names});
            }}
            continue;
        }}
        std::barrier<> barrier((std::ptrdiff_t)block);
        host_barrier = &barrier;
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t)
            threads.emplace_back([&, b, t] {{
                host_blockIdx.x = b;
                host_threadIdx.x = t;
                {kernel}({names});
            }});
        for (auto& th : threads) th.join();
        host_barrier = nullptr;
    }}
}}
"""
# Kernels that synchronise their blocks, and the emulated block size they run with: more threads than a
# plane's short rows, fewer than its elements, so that segments, strides and the scan all get exercised; the
# wide one's warp-shuffle scan gets a full warp and a partial one.
THREADED_KERNELS = {"max_pool2d_bprop_plane": 7, "max_pool2d_bprop_plane_wide": 40}

C_DTYPES = {"__half": numpy.float16, "float": numpy.float32, "double": numpy.float64, "int": numpy.int32,
            "__nv_bfloat16": numpy.dtype(ml_dtypes.bfloat16),  # experimental bf16_native (test_bf16_native_on_host)
            "long long": numpy.int64}
_KERNEL_DEF = re.compile(
    r"template\s*<([^>]*)>\s*__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(([^)]*)\)")


def kernel_signatures(text):
    """{name: (template parameter names, [(C type, parameter name), ...])} of the __global__ templates."""
    found = {}
    for tparams, name, params in _KERNEL_DEF.findall(text):
        tnames = [t.split()[-1] for t in tparams.split(",")]
        plist = []
        for param in params.split(","):
            words = param.replace("*", " * ").split()
            plist.append((" ".join(w for w in words[:-1] if w not in ("const", "__restrict__")), words[-1]))
        found[name] = (tnames, plist)
    return found


def _instantiation(expression, signatures):
    """(kernel name, template arguments, parameters with the arguments substituted) of 'name<a, b>'."""
    name, args = expression.split("<", 1)
    targs = [a.strip() for a in args.rstrip(">").split(",")]
    tnames, plist = signatures[name]
    subst = dict(zip(tnames, targs))
    params = [(" ".join(subst.get(w, w) for w in ctype.split()), pname) for ctype, pname in plist]
    return name, targs, params


def _symbol(expression):
    return re.sub(r"\W+", "_", expression).strip("_")


def _cuda_include_dir():
    """A CUDA toolkit include directory with cuda_fp16.h and crt/host_defines.h, or None."""
    roots = [os.environ.get(v) for v in ("CUDA_PATH", "CUDA_HOME")] + ["/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(str(pathlib.Path(nvcc).resolve().parents[1]))
    for root in roots:
        if root and (pathlib.Path(root) / "include" / "crt" / "host_defines.h").is_file():
            return pathlib.Path(root) / "include"
    return None


class HostKernel:
    """Stands in for a CuPy RawKernel: checks every argument against the kernel's C signature (a
    C-contiguous array of the pointee's dtype for a pointer, numpy.int64 for long long, numpy.int32 for
    int), then runs the kernel on the CPU over a grid of 2 blocks of 5 threads (THREADED_KERNELS' count for
    the kernels that synchronise, with the shared memory the launch asked for, which must not exceed what
    max_dynamic_shared_size_bytes allows)."""

    def __init__(self, function, params, threads=None):
        self.function, self.params, self.threads = function, params, threads
        self.max_dynamic_shared_size_bytes = 48 * 1024
        self.launches = []  # (grid, block, shared_mem) of every call

    def __call__(self, grid, block, args, shared_mem=0):
        assert shared_mem <= self.max_dynamic_shared_size_bytes, (shared_mem, self.max_dynamic_shared_size_bytes)
        self.launches.append((grid, block, shared_mem))
        assert len(args) == len(self.params), (len(args), self.params)
        converted = []
        for arg, (ctype, pname) in zip(args, self.params):
            if ctype.endswith("*"):
                pointee = C_DTYPES[ctype[:-1].strip()]
                assert isinstance(arg, numpy.ndarray) and arg.dtype == pointee, (pname, ctype, arg.dtype)
                assert arg.flags.c_contiguous, pname
                converted.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                assert type(arg) is C_DTYPES[ctype], (pname, ctype, type(arg))
                converted.append((ctypes.c_longlong if ctype == "long long" else ctypes.c_int)(int(arg)))
        assert grid[0] >= 1 and block[0] >= 1
        # Two blocks of a few threads, whatever the launch asked for: grid-stride loops cover any count.
        threads = self.threads or 5
        assert threads <= block[0]  # the launch's shared memory covers the emulated block's partial sums
        self.function(ctypes.c_uint(2), ctypes.c_uint(threads), ctypes.c_ulonglong(shared_mem), *converted)


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """{name expression: HostKernel} for every pool.cu and pool_wide.cu instantiation of the kernel table,
    built by g++."""
    compiler = shutil.which("g++") or shutil.which("c++")
    include = _cuda_include_dir()
    if compiler is None or include is None:
        pytest.skip("the host build of pool.cu needs g++ and a CUDA toolkit's headers (cuda_fp16.h)")
    text = _loader.source("experimental/pool_wide.cu")
    signatures = kernel_signatures(text)
    runners = []
    instances = {}
    for expression in (e for source in SOURCES for e in KERNELS[source]):
        name, targs, params = _instantiation(expression, signatures)
        instances[expression] = params
        runners.append(HARNESS_RUNNER.format(
            symbol=_symbol(expression), params=", ".join(f"{c} {n}" for c, n in params),
            kernel=f"{name}<{', '.join(targs)}>", names=", ".join(n for _, n in params),
            threaded="true" if name in THREADED_KERNELS else "false"))
    work = tmp_path_factory.mktemp("pool_host")
    source = work / "pool_host.cpp"
    source.write_text(HARNESS_PRELUDE + text + "".join(runners))
    lib_path = work / "libpool_host.so"
    cmd = [compiler, "-std=c++20", "-pthread", "-O1", "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-shared", "-fPIC",
           f"-I{include}", "-o",
           str(lib_path), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    lib = ctypes.CDLL(str(lib_path))
    return {e: HostKernel(getattr(lib, f"run_{_symbol(e)}"), p, THREADED_KERNELS.get(e.split("<")[0]))
            for e, p in instances.items()}


class HostArray(numpy.ndarray):
    """A NumPy array with CuPy's ``.device`` context manager, for running the launchers on the CPU."""

    @property
    def device(self):
        return contextlib.nullcontext()


def _host(a):
    return numpy.asarray(a).view(HostArray)


class HostCupy:
    """The few CuPy functions the pooling launchers call, on NumPy arrays (``misalign``: new arrays start
    one element past an aligned address)."""

    misalign = False

    @staticmethod
    def ascontiguousarray(a, dtype=None):
        return _host(numpy.ascontiguousarray(a, dtype=dtype))

    @classmethod
    def empty(cls, shape, dtype=float):
        if not cls.misalign:
            return _host(numpy.empty(shape, dtype))
        dtype = numpy.dtype(dtype)
        size = int(numpy.prod(shape))
        return _host(numpy.empty(size + 1, dtype)[1:].reshape(shape))


@pytest.fixture
def host_pool(host_kernels, monkeypatch):
    """gpuconv._cuda's pooling (entry, selection, launchers) running pool.cu's kernels on the CPU through a
    host runtime (GPUCONV_UNVERIFIED unset: the default kernels); outputs are NaN-poisoned. ``launched``
    lists the (source, kernel) of every launch."""
    monkeypatch.delenv("GPUCONV_UNVERIFIED", raising=False)
    monkeypatch.setenv("GPUCONV_POISON", "1")
    launched = []

    class Runtime(HostRuntime):
        xp = HostCupy

        def get_function(self, source_file, name):
            launched.append((source_file, name))
            return super().get_function(source_file, name)

    with _runtime.use(Runtime(lambda name: host_kernels[name])):
        pool.launched = launched
        yield pool
    HostCupy.misalign = False


def _geometry(x_shape, kernel, stride, padding, dilation, ceil_mode):
    from gpuconv import _params

    x = numpy.empty(x_shape, numpy.float32)
    return _params.pool2d_call("test", x, kernel, stride, padding, dilation, ceil_mode, max_pool=True).geometry


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


# How max_pool2d_bprop may run: (shared-memory limit, MAX_KEYS_PER_CHUNK): the per-plane counting sort; the
# sort path in one chunk; the sort path one plane per chunk (2*P*Q - 1 keys).
BPROP_PATHS = {"plane": (1 << 30, 1 << 27), "sort": (1, 1 << 27), "sort-chunked": (1, None)}


def _bprop_on_path(host_pool, tunables, path, gy, idx, input_shape):
    """gx of max_pool2d_bprop forced onto one path (through the shared-memory and chunk tunables); checks
    the kernels it launched."""
    smem_limit, max_keys = BPROP_PATHS[path]
    P, Q = gy.shape[2], gy.shape[3]
    tunables(smem_limit=smem_limit, max_keys_per_chunk=max_keys if max_keys is not None else 2 * P * Q - 1)
    host_pool.launched.clear()
    gx = host_pool.max_pool2d_bprop(_host(gy), _host(idx), input_shape)
    kinds = {name.split("<")[0] for _, name in host_pool.launched}
    assert kinds == ({"max_pool2d_bprop_plane"} if path == "plane" else
                     {"max_pool2d_bprop_keys", "max_pool2d_bprop_gather"}), host_pool.launched
    return gx


@needs_pool
@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("index_type", ["int", "long long"])
def test_host_max_pool2d_forward_and_backward_match_torch(host_pool, tunables, case, dtype, index_type):
    shape, kernel, stride, padding, dilation, ceil_mode = case
    rng = numpy.random.default_rng(zlib.crc32(repr(case).encode()))
    x = _shuffled(shape, dtype, rng)
    x.flat[rng.integers(x.size)] = numpy.nan  # NaN wins its windows
    g = _geometry(shape, kernel, stride, padding, dilation, ceil_mode)
    assert pool.index_ctype(g, g.N * g.C) == "int"
    if index_type == "long long":  # pretend nothing fits in 31 bits: the 64-bit kernels
        tunables(index_limit=-1)
    y, idx = host_pool.max_pool2d_fprop(g, _host(x)[:, :, ::-1].copy()[:, :, ::-1])  # a strided view
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
    tol = 2e-3 if dtype == numpy.float16 else 1e-6
    results = {}
    # index_limit = -1 also rules the plane kernel out and makes the sort keys int64, as on the GPU check
    for path in (["sort", "sort-chunked"] if index_type == "long long" else BPROP_PATHS):
        gx = _bprop_on_path(host_pool, tunables, path, gy, idx, g.input_shape)
        numpy.testing.assert_allclose(gx, txr.grad.numpy(), rtol=tol, atol=tol)
        results[path] = gx
    for gx in results.values():  # every path sums in output order: the same bits
        numpy.testing.assert_array_equal(gx, next(iter(results.values())))


@needs_pool
@pytest.mark.parametrize("path", list(BPROP_PATHS))
def test_host_max_pool2d_backward_sums_repeated_indices_in_output_order(host_pool, tunables, path):
    """Indices a user made up (every output chose element 3 or 0, int32): sums run in output order."""
    gy = numpy.array([1e8, 1.0, -1e8, 1.0, 0.5, 0.25], numpy.float32).reshape(1, 1, 2, 3)
    idx = numpy.array([3, 3, 3, 3, 0, 0], numpy.int32).reshape(1, 1, 2, 3)
    gx = _bprop_on_path(host_pool, tunables, path, gy, idx, (1, 1, 2, 2))
    expected = numpy.zeros(4, numpy.float32)
    for o in range(6):  # PyTorch's CPU scatter order
        expected[idx.flat[o]] += gy.flat[o]
    numpy.testing.assert_array_equal(gx.reshape(-1), expected)
    assert expected[3] == 1.0  # in another order the 1e8 terms would swallow a different 1.0


@needs_pool
@pytest.mark.parametrize("path", list(BPROP_PATHS))
def test_host_max_pool2d_backward_many_outputs_per_element_bitwise(host_pool, tunables, path):
    """Made-up indices with up to ~60 outputs per element (the heapsort branch, >16) and elements chosen by
    none, over 3 planes (more than the 2 emulated blocks: grid-stride): each element's gy are summed in
    output order, bit for bit the scatter loop's float32 sums, on every path and every run (the threaded
    emulation's atomics hand out slots in a different order from run to run)."""
    rng = numpy.random.default_rng(7)
    N, C, H, W, P, Q = 1, 3, 5, 4, 9, 13
    gy = (rng.standard_normal((N, C, P, Q)) * 10.0 ** rng.integers(-4, 5, (N, C, P, Q))).astype(numpy.float32)
    idx = rng.choice([0, 1, 7, 19], size=(N, C, P, Q), p=[0.5, 0.3, 0.15, 0.05]).astype(numpy.int64)
    expected = numpy.zeros((N * C, H * W), numpy.float32)
    for b in range(N * C):
        for o in range(P * Q):
            expected[b, idx.reshape(N * C, -1)[b, o]] += gy.reshape(N * C, -1)[b, o]
    for _ in range(3):
        gx = _bprop_on_path(host_pool, tunables, path, gy, idx, (N, C, H, W))
        numpy.testing.assert_array_equal(gx.reshape(N * C, -1), expected)


@needs_pool
def test_index_type_is_int_exactly_when_everything_fits_31_bits():
    from gpuconv import _params

    def geometry(H, W, k, s, p, d=1):
        x = numpy.lib.stride_tricks.as_strided(numpy.empty(1, numpy.float16), (1, 1, H, W), (0, 0, 0, 0))
        return _params.pool2d_call("t", x, k, s, p, d, False, max_pool=True).geometry

    g = geometry(32768, 32768, 2, 2, 0)  # 2^30 elements per plane
    assert pool.index_ctype(g, 1) == "int"
    assert pool.index_ctype(g, 2) == "long long"  # 2^31 input elements
    assert 46340 * 46340 <= (1 << 31) - 1 < 46345 * 46345
    assert pool.index_ctype(geometry(46340, 46340, 3, 1, 1), 1) == "long long"  # window extent past 2^31
    assert pool.use_plane_kernel(112 * 112, 56 * 56, pool.MAX_PLANE_SMEM_BYTES)
    assert not pool.use_plane_kernel(224 * 224, 112 * 112, pool.MAX_PLANE_SMEM_BYTES)
    assert pool.plane_smem_bytes(112 * 112, 56 * 56) == 4 * (112 * 112 + 56 * 56 + pool.PLANE_THREADS)


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


@needs_pool
@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_CASES)
@pytest.mark.parametrize("index_type", ["int", "long long"])
def test_host_avg_pool2d_forward_and_backward_match_torch(host_pool, tunables, case, dtype, index_type):
    from gpuconv import _params

    if index_type == "long long":  # pretend nothing fits in 31 bits: the 64-bit kernels
        tunables(index_limit=-1)
    launched = host_pool.launched

    shape, kernel, stride, padding, ceil_mode, cip, divisor = case
    rng = numpy.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.standard_normal(shape).astype(dtype)
    g = _params.pool2d_call("test", x, kernel, stride, padding, 1, ceil_mode, max_pool=False,
                            count_include_pad=cip, divisor_override=divisor).geometry
    tx = torch.from_numpy(x.astype(numpy.float64)).requires_grad_()
    ty = torch.nn.functional.avg_pool2d(tx, kernel, stride, padding, ceil_mode, cip, divisor)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    ty.backward(torch.from_numpy(gy.astype(numpy.float64)))
    tol = 2e-3 if dtype == numpy.float16 else (1e-6 if dtype == numpy.float32 else 1e-12)
    y = host_pool.avg_pool2d_fprop(g, _host(x))
    numpy.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    gx = host_pool.avg_pool2d_bprop(g, _host(gy).transpose(0, 1, 3, 2).copy().transpose(0, 1, 3, 2))
    numpy.testing.assert_allclose(gx, tx.grad.numpy(), rtol=tol, atol=tol)
    assert len(launched) == 2 and all(name.endswith(f", {index_type}>") for _, name in launched), launched
