"""The conv and pad kernels of kernels/*.cu, compiled with g++ and run on the CPU, against the float64
reference; and the im2col / direct launchers of gpuconv._cuda driven through those host kernels.

The CUDA sources compile unchanged: tests/host_cuda/cuda_fp16.h stands in for the device environment
(threadIdx, __syncthreads as a barrier, __half as _Float16), so this checks the kernels' own index
arithmetic, bounds, gathers and grid-stride loops without a GPU. Each launch runs a small grid (at most
three blocks along each grid axis) so that every grid-stride loop wraps. What it cannot check: anything about real GPU
execution (races between blocks, memory model, occupancy), CuPy's launch of the compiled kernels, cuBLAS.

Skips when g++ with C++20 <barrier> and _Float16 is not available.
"""

from __future__ import annotations

import ctypes

import numpy
import pytest

import reference
from gpuconv import _params
from gpuconv._cuda import _kernel_table, _loader
from support import host_kernels
from support.host_modules import cuda_modules_on_host

SOURCES = ("im2col.cu", "conv_direct.cu", "pad.cu")
HOST_GRID = 3  # blocks per launch on the host: small, so grid-stride loops wrap

# Pointer parameters, then the scalar parameter types ('i' int, 'q' long long), of each kernel.
SIGNATURES = {
    "im2col": (2, "i" * 14),
    "col2im": (3, "i" * 14),
    "conv2d_fprop_direct": (4, "i" * 16),
    "conv2d_dgrad_direct": (4, "i" * 16),
    "conv2d_wgrad_direct": (3, "i" * 16),
    "pad2d": (2, "q" + "i" * 7),
    "pad2d_backward": (2, "q" + "i" * 7),
}
USES_SYNCTHREADS = {"conv2d_wgrad_direct"}
KERNELS = host_kernels.Signatures(SIGNATURES, syncthreads=frozenset(USES_SYNCTHREADS))


def _wrapper(kernel: str, ctype: str) -> str:
    params = KERNELS.call_arguments(kernel, ctype)
    return (f'extern "C" void host_{kernel}_{ctype}(unsigned grid_x, unsigned grid_y, unsigned block, '
            f"void* const* p, const long long* s) {{\n    host_launch_2d(grid_x, grid_y, block, "
            f"{KERNELS.sync(kernel)}, [&] {{ {kernel}<{ctype}>({', '.join(params)}); }});\n}}\n")


def _translation_unit(source_file: str) -> str:
    kernels = sorted({name.split("<")[0] for name in _kernel_names(source_file)})
    wrappers = "".join(_wrapper(k, t) for k in kernels for t in host_kernels.CTYPES.values())
    return _loader.source(source_file) + '\n#include "launch.h"\n' + wrappers


def _kernel_names(source_file):
    return _kernel_table.KERNELS[source_file]


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    units = [(source_file, source_file, _translation_unit(source_file)) for source_file in SOURCES]
    return host_kernels.build_library(tmp_path_factory.mktemp("host_kernels"), units, "libhostkernels.so")


class HostKernel:
    """Stands in for the cupy kernel ``get_function`` returns: runs the host build of one instantiation
    over a grid capped at HOST_GRID blocks, after checking what a CuPy launch would not: every array
    C-contiguous and of the kernel's element type, every scalar of the parameter's exact numpy type."""

    def __init__(self, lib, name: str):
        self.kernel, self.ctype = name[:-1].split("<")
        self.function = getattr(lib, f"host_{self.kernel}_{self.ctype}")

    def __call__(self, grid, block, args):
        pointers, values = KERNELS.pack(self.kernel, self.ctype, args)
        assert len(block) == 1 and len(grid) in (1, 2) and min(grid) >= 1 and (len(grid) == 1 or grid[1] <= 65535)
        grid_y = min(grid[1], HOST_GRID) if len(grid) == 2 else 1
        self.function(ctypes.c_uint(min(grid[0], HOST_GRID)), ctypes.c_uint(grid_y), ctypes.c_uint(block[0]),
                      pointers, values)


@pytest.fixture(scope="module")
def backend(host_lib):
    """gpuconv/_cuda's own modules on the host runtime: numpy for the arrays and the host build for the
    compiled kernels. Everything above the kernels is the real code: _launch, _alloc, _algo, conv,
    _conv_direct, _conv_im2col, pad."""
    names = ("_loader", "_launch", "_alloc", "_algo", "_config", "_conv_direct", "_conv_im2col", "conv", "pad")
    with cuda_modules_on_host(names, lambda name: HostKernel(host_lib, name)) as modules:
        yield modules


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    """Every output comes from _alloc.empty filled with NaN: an unwritten element fails the comparison."""
    monkeypatch.setenv("GPUCONV_POISON", "1")


class _NullDevice:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class ArrayWithDevice(numpy.ndarray):
    """A numpy array with a no-op ``.device`` context, so that conv.py and pad.py can enter
    ``with x.device:`` as they do for cupy arrays."""

    @property
    def device(self):
        return _NullDevice()


def on_device(a):
    return None if a is None else a.view(ArrayWithDevice)


# ------------------------------------------------------------------------------------------- cases

# (N, C, H, W, K, R, S, stride, padding, dilation, groups)
CONV_CASES = [
    (2, 3, 7, 6, 4, 3, 2, 1, (1, 0), 1, 1),
    (1, 4, 9, 8, 6, 3, 3, (2, 1), (1, 2), (2, 1), 2),
    (3, 6, 5, 5, 6, 3, 3, 1, "same", 1, 6),
    (2, 4, 6, 7, 4, 2, 3, (2, 3), (0, 1), (1, 2), 1),
    (1, 2, 4, 5, 2, 2, 4, 1, "same", (1, 2), 2),
    (2, 2, 3, 3, 3, 2, 2, 1, "full", (2, 1), 1),
]
# (N, Cin, Hin, Win, Cout, R, S, stride, padding, output_padding, dilation, groups): transposed convs,
# several with output_padding > padding (negative pad_bottom / pad_right in the geometry)
TRANSPOSED_CASES = [
    (2, 4, 3, 4, 6, 3, 3, 2, 1, 1, 1, 2),
    (1, 3, 4, 3, 2, 2, 3, (3, 2), 0, (2, 1), 1, 1),
    (2, 2, 3, 3, 4, 4, 4, 2, (1, 0), (0, 1), (1, 2), 2),
]
DTYPES = (numpy.float64, numpy.float32, numpy.float16)


def _conv_geometry(case):
    N, C, H, W, K, R, S, stride, padding, dilation, groups = case
    x, w = numpy.empty((N, C, H, W)), numpy.empty((K, C // groups, R, S))
    return _params.conv2d_call("t", x, w, None, stride, padding, dilation, groups, "zeros").geometry


def _transposed_geometry(case):
    N, Cin, Hin, Win, Cout, R, S, stride, padding, output_padding, dilation, groups = case
    x, w = numpy.empty((N, Cin, Hin, Win)), numpy.empty((Cin, Cout // groups, R, S))
    return _params.conv_transpose2d_call("t", x, w, None, stride, padding, output_padding, groups,
                                         dilation).geometry


GEOMETRIES = [_conv_geometry(c) for c in CONV_CASES] + [_transposed_geometry(c) for c in TRANSPOSED_CASES]
GEOMETRY_IDS = [f"conv{i}" for i in range(len(CONV_CASES))] + [f"transposed{i}" for i in range(len(TRANSPOSED_CASES))]


def _reference_args(g):
    return dict(stride=(g.stride_h, g.stride_w), pads=(g.pad_top, g.pad_bottom, g.pad_left, g.pad_right),
                dilation=(g.dil_h, g.dil_w), groups=g.groups)


def _operands(g, dtype, seed):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(g.input_shape).astype(dtype)
    w = rng.standard_normal(g.weight_shape).astype(dtype)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    bias_k = rng.standard_normal(g.K).astype(dtype)
    bias_c = rng.standard_normal(g.C).astype(dtype)
    return x, w, gy, bias_k, bias_c


def _tolerance(dtype, terms):
    """Absolute error allowed per unit of sum(|products|): float32/float16 sum in float32, float16 rounds
    the inputs' products exactly and the result once."""
    eps = {numpy.float64: 1e-15, numpy.float32: 1e-6, numpy.float16: 1e-3}[numpy.dtype(dtype).type]
    return eps * max(1, terms) ** 0.5 * 4


def _check(actual, expected, magnitude, dtype, terms, what):
    assert not numpy.isnan(actual).any(), f"{what}: unwritten (NaN) elements"
    err = numpy.abs(actual.astype(numpy.float64) - expected)
    rounding = 1e-3 if dtype == numpy.float16 else 0.0  # float16 rounds the result once more
    bound = _tolerance(dtype, terms) * (magnitude + 1e-30) + rounding * numpy.abs(expected)
    assert (err <= bound).all(), f"{what}: max error {err.max():.3g}, bound there {bound.flat[err.argmax()]:.3g}"


def _expected(g, x, w, gy, bias_k, bias_c):
    """float64 fprop (+bias_k), dgrad (+bias_c), wgrad and the matching sums of |products| for tolerances."""
    args = _reference_args(g)
    f64 = lambda a: a.astype(numpy.float64)
    y = reference.conv2d(f64(x), f64(w), f64(bias_k), **args)
    gx, gw, _ = reference.conv2d_backward(f64(gy), f64(x), f64(w), **args)
    y_mag = reference.conv2d(numpy.abs(f64(x)), numpy.abs(f64(w)), numpy.abs(f64(bias_k)), **args)
    gx_mag, gw_mag, _ = reference.conv2d_backward(numpy.abs(f64(gy)), numpy.abs(f64(x)), numpy.abs(f64(w)), **args)
    bias_c4 = f64(bias_c)[None, :, None, None]
    return (y, y_mag), (gx + bias_c4, gx_mag + numpy.abs(bias_c4)), (gw, gw_mag)


# ------------------------------------------------------------------------------------------- tests


def _check_all_passes(module, g, dtype, seed, bias=True):
    x, w, gy, bias_k, bias_c = _operands(g, dtype, seed)
    (y, y_mag), (gx, gx_mag), (gw, gw_mag) = _expected(g, x, w, gy, bias_k, bias_c)
    if not bias:
        y = y - bias_k.astype(numpy.float64)[None, :, None, None]
        gx = gx - bias_c.astype(numpy.float64)[None, :, None, None]
        bias_k = bias_c = None
    _check(numpy.asarray(module.conv2d_fprop(g, x, w, bias_k)), y, y_mag, dtype, g.c_per_group * g.R * g.S, "fprop")
    _check(numpy.asarray(module.conv2d_dgrad(g, gy, w, bias_c)), gx, gx_mag, dtype, g.k_per_group * g.R * g.S, "dgrad")
    _check(numpy.asarray(module.conv2d_wgrad(g, x, gy)), gw, gw_mag, dtype, g.N * g.P * g.Q, "wgrad")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("g", GEOMETRIES, ids=GEOMETRY_IDS)
def test_direct_algorithm(backend, g, dtype):
    _check_all_passes(backend._conv_direct, g, dtype, seed=1)
    _check_all_passes(backend._conv_direct, g, dtype, seed=5, bias=False)


@pytest.mark.parametrize("dtype", (numpy.float64, numpy.float32), ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("g", GEOMETRIES, ids=GEOMETRY_IDS)
@pytest.mark.parametrize("workspace", ("one_chunk", "chunked"))
@pytest.mark.parametrize("gemm", ("per_group", "batched"))
def test_im2col_algorithm(backend, g, dtype, workspace, gemm):
    """The whole im2col path (im2col / col2im kernels, per-group or group-batched GEMMs, layout permutes,
    bias, batch chunks), numpy's matmul standing in for cuBLAS (float16 is left to the GPU: numpy's float16
    matmul does not sum in float32)."""
    # chunked: room for one image's cols, every image is its own chunk
    workspace_bytes = backend._conv_im2col.im2col_bytes_per_image(g, dtype) if workspace == "chunked" else 1 << 30
    # either GEMM form for every dtype and group count (the real choice depends on both)
    with backend._config.override(workspace_bytes=workspace_bytes, im2col_gemm_form=gemm):
        _check_all_passes(backend._conv_im2col, g, dtype, seed=2)
        _check_all_passes(backend._conv_im2col, g, dtype, seed=6, bias=False)


@pytest.mark.parametrize("algorithm", ("direct", "im2col"))
def test_dispatch_with_any_strides(backend, monkeypatch, algorithm):
    """conv.py makes strided inputs contiguous and runs the forced algorithm."""
    monkeypatch.setenv("GPUCONV_CONV_ALGO", algorithm)
    g = GEOMETRIES[1]
    x, w, gy, bias_k, bias_c = _operands(g, numpy.float64, 7)
    (y, y_mag), (gx, gx_mag), (gw, gw_mag) = _expected(g, x, w, gy, bias_k, bias_c)
    strided = lambda a: on_device(numpy.asfortranarray(a))  # same values, other strides
    _check(numpy.asarray(backend.conv.conv2d_fprop(g, strided(x), strided(w), strided(bias_k))), y, y_mag,
           numpy.float64, 100, "fprop")
    _check(numpy.asarray(backend.conv.conv2d_dgrad(g, strided(gy), strided(w), strided(bias_c))), gx, gx_mag,
           numpy.float64, 100, "dgrad")
    _check(numpy.asarray(backend.conv.conv2d_wgrad(g, strided(x), strided(gy))), gw, gw_mag, numpy.float64, 100,
           "wgrad")
    assert backend._algo.choose(g, numpy.float64, "fprop") == algorithm


@pytest.mark.parametrize("g", GEOMETRIES, ids=GEOMETRY_IDS)
def test_col2im_is_the_adjoint_of_im2col(backend, g):
    """<im2col(x), c> == <x, col2im(c)> in float64, and im2col copies x exactly."""
    im2col = backend._conv_im2col
    rng = numpy.random.default_rng(3)
    x = rng.standard_normal(g.input_shape)
    cols = im2col._im2col(g, x).reshape(g.C * g.R * g.S, -1)
    c = rng.standard_normal(cols.shape)
    back = backend._alloc.empty(g.input_shape, numpy.float64)
    im2col._col2im(g, c, None, back)
    assert not numpy.isnan(cols).any() and not numpy.isnan(back).any()
    assert numpy.isin(cols, numpy.append(x.ravel(), 0.0)).all()
    lhs, rhs = float((cols * c).sum()), float((x * back).sum())
    assert abs(lhs - rhs) <= 1e-12 * (numpy.abs(cols * c).sum() + 1)


PAD_CASES = [
    ((2, 3, 5, 4), (1, 2, 3, 0)),
    ((1, 2, 4, 6), (3, 3, 5, 5)),
    ((1, 1, 1, 3), (0, 0, 2, 1)),
    ((2, 1, 3, 3), (2, 1, 0, 2)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("mode", ("reflect", "replicate", "circular"))
@pytest.mark.parametrize("shape, pads", PAD_CASES)
def test_pad(backend, shape, pads, mode, dtype):
    H, W = shape[2:]
    sizes = (H, H, W, W)
    if (mode == "reflect" and any(p >= s for p, s in zip(pads, sizes))) or (
            mode == "circular" and any(p > s for p, s in zip(pads, sizes))):
        pytest.skip("padding beyond what this mode allows (_params rejects it)")
    rng = numpy.random.default_rng(4)
    x = rng.standard_normal(shape).astype(dtype)
    xp = numpy.asarray(backend.pad.pad2d(on_device(x), pads, mode))
    assert numpy.array_equal(xp.astype(numpy.float64), reference.pad2d(x, pads, mode))
    gxp = rng.standard_normal(xp.shape).astype(dtype)
    gx = numpy.asarray(backend.pad.pad2d_backward(on_device(gxp), pads, mode))
    expected = reference.pad2d_backward(gxp, pads, mode, H, W)
    magnitude = reference.pad2d_backward(numpy.abs(gxp), pads, mode, H, W)
    _check(gx, expected, magnitude, dtype, (max(pads) + 1) ** 2, "pad2d_backward")
