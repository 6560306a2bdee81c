"""Host-side checks of the CUDA pooling path, no GPU needed.

1. The launcher's plain logic (kernel names, grid size, backward chunking) and the kernel table.
2. The kernels' arithmetic run on the CPU: kernels/pool.cu keeps each thread's work in a __host__ __device__
   function, so nvcc (when installed) builds a small host library that calls those functions for every
   element, and the results are compared with PyTorch. What this cannot check is the GPU side: the
   grid-stride loops, the launch, CuPy's sort and memory; the GPU tests do.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zlib

import numpy
import pytest

from gpuconv._cuda._kernel_table import KERNELS

try:  # gpuconv._cuda imports every CUDA module; CuPy must import, no GPU is needed
    from gpuconv._cuda import pool
except ImportError as e:  # pragma: no cover - depends on the environment
    pool = None
    POOL_IMPORT_ERROR = str(e)

try:  # imported before any test puts its stand-in CuPy into sys.modules (torch probes for cupy)
    import torch
except ImportError:  # pragma: no cover - the suite runs without PyTorch too
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is the oracle of these checks")
needs_pool = pytest.mark.skipif(pool is None, reason="gpuconv._cuda.pool does not import (CuPy missing?)")
KERNEL_SOURCE = pathlib.Path(__file__).resolve().parents[1] / "kernels" / "pool.cu"


# ------------------------------------------------------------------------------------- launcher logic


@needs_pool
def test_kernel_table_lists_exactly_the_launched_instantiations():
    assert sorted(pool.kernel_names()) == sorted(KERNELS["pool.cu"])


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


# ---------------------------------------------------------------- the kernels and launchers on the CPU

# pool.cu compiled as plain C++: __global__/__device__ vanish, and blockIdx, threadIdx, blockDim, gridDim become
# host variables that run_<kernel> sets while it calls the kernel once per (block, thread) of a small grid.
HARNESS_PRELUDE = r"""
#include <cmath>
#include <cuda_fp16.h>
#include <vector_types.h>
#undef __global__
#undef __device__
#undef __host__
#define __global__
#define __device__
#define __host__
static uint3 host_blockIdx, host_threadIdx;
static dim3 host_blockDim, host_gridDim;
#define blockIdx host_blockIdx
#define threadIdx host_threadIdx
#define blockDim host_blockDim
#define gridDim host_gridDim
"""

HARNESS_RUNNER = r"""
extern "C" void run_{symbol}(unsigned grid, unsigned block, {params}) {{
    host_gridDim.x = grid;
    host_blockDim.x = block;
    for (unsigned b = 0; b < grid; ++b)
        for (unsigned t = 0; t < block; ++t) {{
            host_blockIdx.x = b;
            host_threadIdx.x = t;
            {kernel}({names});
        }}
}}
"""

C_DTYPES = {"__half": numpy.float16, "float": numpy.float32, "double": numpy.float64, "int": numpy.int32,
            "long long": numpy.int64}
_KERNEL_DEF = re.compile(r"template\s*<([^>]*)>\s*__global__\s+void\s+(\w+)\s*\(([^)]*)\)")


def kernel_signatures(text):
    """{name: (template parameter names, [(C type, parameter name), ...])} of pool.cu's __global__ templates."""
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
    int), then runs the kernel on the CPU over a grid of 2 blocks of 5 threads."""

    def __init__(self, function, params):
        self.function, self.params = function, params

    def __call__(self, grid, block, args):
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
        # Two blocks of five threads, whatever the launch asked for: grid-stride loops cover any count.
        self.function(ctypes.c_uint(2), ctypes.c_uint(5), *converted)


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """{name expression: HostKernel} for every pool.cu instantiation of the kernel table, built by g++."""
    compiler = shutil.which("g++") or shutil.which("c++")
    include = _cuda_include_dir()
    if compiler is None or include is None:
        pytest.skip("the host build of pool.cu needs g++ and a CUDA toolkit's headers (cuda_fp16.h)")
    text = KERNEL_SOURCE.read_text()
    signatures = kernel_signatures(text)
    runners = []
    instances = {}
    for expression in KERNELS["pool.cu"]:
        name, targs, params = _instantiation(expression, signatures)
        instances[expression] = params
        runners.append(HARNESS_RUNNER.format(
            symbol=_symbol(expression), params=", ".join(f"{c} {n}" for c, n in params),
            kernel=f"{name}<{', '.join(targs)}>", names=", ".join(n for _, n in params)))
    work = tmp_path_factory.mktemp("pool_host")
    source = work / "pool_host.cpp"
    source.write_text(HARNESS_PRELUDE + text + "".join(runners))
    lib_path = work / "libpool_host.so"
    cmd = [compiler, "-std=c++17", "-O1", "-Wall", "-Wextra", "-shared", "-fPIC", f"-I{include}", "-o",
           str(lib_path), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    lib = ctypes.CDLL(str(lib_path))
    return {e: HostKernel(getattr(lib, f"run_{_symbol(e)}"), p) for e, p in instances.items()}


class HostArray(numpy.ndarray):
    """A NumPy array with CuPy's ``.device`` context manager, for running the launchers on the CPU."""

    @property
    def device(self):
        return contextlib.nullcontext()


def _host(a):
    return numpy.asarray(a).view(HostArray)


class HostCupy:
    """The few CuPy functions pool.py calls, on NumPy arrays."""

    @staticmethod
    def ascontiguousarray(a, dtype=None):
        return _host(numpy.ascontiguousarray(a, dtype=dtype))

    @staticmethod
    def empty(shape, dtype):
        return _host(numpy.empty(shape, dtype))


@pytest.fixture
def host_pool(host_kernels, monkeypatch):
    """gpuconv._cuda.pool running pool.cu's kernels on the CPU; outputs are NaN-poisoned."""
    monkeypatch.setitem(sys.modules, "cupy", HostCupy)
    monkeypatch.setattr(pool, "get_function", lambda source, name: host_kernels[name])
    poisoned = {numpy.dtype(numpy.int64): numpy.iinfo(numpy.int64).min}
    monkeypatch.setattr(pool, "empty", lambda shape, dtype: _host(
        numpy.full(shape, poisoned.get(numpy.dtype(dtype), numpy.nan), dtype)))
    return pool


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


@needs_pool
@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_host_max_pool2d_forward_and_backward_match_torch(host_pool, monkeypatch, case, dtype):
    shape, kernel, stride, padding, dilation, ceil_mode = case
    rng = numpy.random.default_rng(zlib.crc32(repr(case).encode()))
    x = _shuffled(shape, dtype, rng)
    x.flat[rng.integers(x.size)] = numpy.nan  # NaN wins its windows
    g = _geometry(shape, kernel, stride, padding, dilation, ceil_mode)
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
    for max_keys in (1 << 27, 2 * g.P * g.Q - 1):  # one chunk; one plane per chunk
        monkeypatch.setattr(pool, "MAX_KEYS_PER_CHUNK", max_keys)
        gx = host_pool.max_pool2d_bprop(_host(gy), _host(idx), g.input_shape)
        numpy.testing.assert_allclose(gx, txr.grad.numpy(), rtol=tol, atol=tol)


@needs_pool
def test_host_max_pool2d_backward_sums_repeated_indices_in_output_order(host_pool):
    """Indices a user made up (every output chose element 3 or 0, int32): sums run in output order."""
    gy = numpy.array([1e8, 1.0, -1e8, 1.0, 0.5, 0.25], numpy.float32).reshape(1, 1, 2, 3)
    idx = numpy.array([3, 3, 3, 3, 0, 0], numpy.int32).reshape(1, 1, 2, 3)
    gx = host_pool.max_pool2d_bprop(_host(gy), _host(idx), (1, 1, 2, 2))
    expected = numpy.zeros(4, numpy.float32)
    for o in range(6):  # PyTorch's CPU scatter order
        expected[idx.flat[o]] += gy.flat[o]
    numpy.testing.assert_array_equal(gx.reshape(-1), expected)
    assert expected[3] == 1.0  # in another order the 1e8 terms would swallow a different 1.0


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
def test_host_avg_pool2d_forward_and_backward_match_torch(host_pool, case, dtype):
    from gpuconv import _params

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
