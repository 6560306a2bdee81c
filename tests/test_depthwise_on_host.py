"""The depthwise kernels of kernels/conv_depthwise.cu, compiled with g++ and run on the CPU through the real
launchers of gpuconv/_cuda/_conv_depthwise.py, against the float64 reference.

As tests/test_kernels_on_host.py: tests/host_cuda/cuda_fp16.h stands in for the device (one std::thread per
CUDA thread meeting at a std::barrier for __syncthreads, __shared__ as a function static, __half as
_Float16), numpy stands in for cupy, and each launch runs at most HOST_GRID blocks so every grid-stride
loop wraps. Outputs (and the wgrad workspace) come from _alloc.empty filled with NaN. This checks the tile
plans, the staging windows and their zero padding, the gathers, the chunked fixed-order wgrad sums and
the launchers' argument types; not real GPU execution (races, memory model, occupancy, speed).

Skips when g++ with C++20 <barrier> and _Float16 is not available.
"""

from __future__ import annotations

import numpy
import pytest

from support import host_kernels
import reference
from gpuconv import _params
from gpuconv._cuda import _kernel_table as kernel_table
from gpuconv._cuda import _loader as loader
from support.host_modules import cuda_modules_on_host

SOURCE = "conv_depthwise.cu"
HOST_GRID = 3

# kernel -> (pointer parameters, scalar parameter types: 'i' int, 'q' long long)
SIGNATURES = {
    "conv2d_fprop_depthwise": (4, "i" * 19),
    "conv2d_dgrad_depthwise": (4, "i" * 19),
    "conv2d_wgrad_depthwise": (3, "i" * 20),
    "conv2d_wgrad_depthwise_reduce": (2, "iiq"),
}
# Pointer parameters of the accumulator type (float for __half) instead of T.
ACC_POINTERS = {"conv2d_wgrad_depthwise": (2,), "conv2d_wgrad_depthwise_reduce": (0,)}
USES_SYNCTHREADS = {"conv2d_fprop_depthwise", "conv2d_dgrad_depthwise", "conv2d_wgrad_depthwise"}
KERNELS = host_kernels.Signatures(SIGNATURES, ACC_POINTERS, frozenset(USES_SYNCTHREADS))




@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    cpp = host_kernels.translation_unit(loader.source(SOURCE), kernel_table.KERNELS[SOURCE], KERNELS)
    return host_kernels.build_library(tmp_path_factory.mktemp("host_depthwise"), [("conv_depthwise", SOURCE, cpp)],
                                      "libhostdepthwise.so")


class HostKernel(host_kernels.HostKernel):
    """Stands in for a cupy kernel: checks what a CuPy launch would not (contiguous arrays of the
    parameter's element type, scalars of the exact numpy type, 1-D grid and block, block a multiple of 32
    and at most DW_MAX_THREADS), then runs the host build over at most HOST_GRID blocks."""

    signatures = KERNELS
    host_grid = HOST_GRID
    launches: list = []


@pytest.fixture(scope="module")
def dw(host_lib):
    """gpuconv/_cuda's _launch, _alloc and _conv_depthwise on the host runtime: numpy for the arrays, the
    host build for the compiled kernels."""
    with cuda_modules_on_host(("_loader", "_launch", "_alloc", "_conv_depthwise"),
                              lambda name: HostKernel(host_lib, name)) as modules:
        yield modules


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setenv("GPUCONV_POISON", "1")


# ------------------------------------------------------------------------------------------- cases

# (N, C, H, W, m, R, S, stride, padding, dilation): groups = C, K = C * m
CONV_CASES = {
    "3x3_s1": (2, 3, 7, 9, 1, 3, 3, 1, 1, 1),
    "3x3_s2_n1": (1, 2, 9, 8, 1, 3, 3, 2, 1, 1),
    "3x3_m2_dil2_pad2": (2, 2, 11, 10, 2, 3, 3, 1, 2, 2),
    "2x3_asym": (3, 2, 6, 7, 1, 2, 3, (2, 1), (0, 1), (1, 2)),
    "5x5_m3_c1": (2, 1, 5, 6, 3, 5, 5, 1, 2, 1),
    "2x2_s3_pad0": (1, 2, 13, 11, 1, 2, 2, 3, 0, 1),  # stride > filter: some pixels get no tap
    "wide_col_tiles": (1, 1, 3, 150, 1, 3, 3, 1, 1, 1),  # Q = 150: two column tiles
    "tall_row_tiles": (1, 1, 300, 5, 1, 3, 3, 1, 1, 1),  # three row tiles
    "images_per_tile": (90, 1, 3, 3, 1, 3, 3, 1, 1, 1),  # 85 images per tile, the second group partial
    "pad3_s2": (2, 2, 5, 4, 1, 3, 3, 2, 3, 1),
    "same_1x4": (2, 2, 5, 7, 1, 1, 4, 1, "same", (1, 2)),
}
# (N, Cin, Hin, Win, Cout, R, S, stride, padding, output_padding, dilation, groups): depthwise transposed
# convs (groups == Cout); output_padding > padding gives a negative pad_bottom / pad_right.
TRANSPOSED_CASES = {
    "transposed_m2_s2": (2, 4, 3, 4, 2, 3, 3, 2, 0, 1, 1, 2),
    "transposed_s3_dil2": (1, 3, 4, 3, 3, 3, 2, (3, 2), 1, (2, 1), (1, 2), 3),
}


def _conv_geometry(case):
    N, C, H, W, m, R, S, stride, padding, dilation = case
    x, w = numpy.empty((N, C, H, W)), numpy.empty((C * m, 1, R, S))
    return _params.conv2d_call("t", x, w, None, stride, padding, dilation, C, "zeros").geometry


def _transposed_geometry(case):
    N, Cin, Hin, Win, Cout, R, S, stride, padding, output_padding, dilation, groups = case
    x, w = numpy.empty((N, Cin, Hin, Win)), numpy.empty((Cin, Cout // groups, R, S))
    return _params.conv_transpose2d_call("t", x, w, None, stride, padding, output_padding, groups,
                                         dilation).geometry


GEOMETRIES = {**{k: _conv_geometry(v) for k, v in CONV_CASES.items()},
              **{k: _transposed_geometry(v) for k, v in TRANSPOSED_CASES.items()}}
DTYPES = (numpy.float64, numpy.float32, numpy.float16)


def _reference_args(g):
    return dict(stride=(g.stride_h, g.stride_w), pads=(g.pad_top, g.pad_bottom, g.pad_left, g.pad_right),
                dilation=(g.dil_h, g.dil_w), groups=g.groups)


def _check(actual, expected, magnitude, dtype, terms, what):
    """|error| <= eps * sqrt(terms) * 4 * sum(|products|) (+ one float16 rounding of the result)."""
    assert actual.dtype == dtype, (what, actual.dtype)
    assert not numpy.isnan(actual).any(), f"{what}: unwritten (NaN) elements"
    eps = {numpy.float64: 1e-15, numpy.float32: 1e-6, numpy.float16: 1e-3}[numpy.dtype(dtype).type]
    err = numpy.abs(actual.astype(numpy.float64) - expected)
    rounding = 1e-3 if dtype == numpy.float16 else 0.0
    bound = eps * max(1, terms) ** 0.5 * 4 * (magnitude + 1e-30) + rounding * numpy.abs(expected)
    assert (err <= bound).all(), f"{what}: max error {err.max():.3g}, bound there {bound.flat[err.argmax()]:.3g}"


def _check_all_passes(dw, g, dtype, seed, bias=True):
    assert dw._conv_depthwise.supports(g, dtype, "fprop")
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(g.input_shape).astype(dtype)
    w = rng.standard_normal(g.weight_shape).astype(dtype)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    bias_k = rng.standard_normal(g.K).astype(dtype) if bias else None
    bias_c = rng.standard_normal(g.C).astype(dtype) if bias else None
    f64 = lambda a: None if a is None else a.astype(numpy.float64)
    args = _reference_args(g)
    y = reference.conv2d(f64(x), f64(w), f64(bias_k), **args)
    y_mag = reference.conv2d(numpy.abs(f64(x)), numpy.abs(f64(w)), None if bias_k is None else numpy.abs(f64(bias_k)),
                             **args)
    gx, gw, _ = reference.conv2d_backward(f64(gy), f64(x), f64(w), **args)
    gx_mag, gw_mag, _ = reference.conv2d_backward(numpy.abs(f64(gy)), numpy.abs(f64(x)), numpy.abs(f64(w)), **args)
    if bias:
        gx = gx + f64(bias_c)[None, :, None, None]
        gx_mag = gx_mag + numpy.abs(f64(bias_c))[None, :, None, None]
    m = g.K // g.C
    _check(dw._conv_depthwise.conv2d_fprop(g, x, w, bias_k), y, y_mag, dtype, g.R * g.S, "fprop")
    _check(dw._conv_depthwise.conv2d_dgrad(g, gy, w, bias_c), gx, gx_mag, dtype, m * g.R * g.S, "dgrad")
    _check(dw._conv_depthwise.conv2d_wgrad(g, x, gy), gw, gw_mag, dtype, g.N * g.P * g.Q, "wgrad")


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_depthwise_passes(dw, name, dtype):
    g = GEOMETRIES[name]
    _check_all_passes(dw, g, dtype, seed=1)
    if dtype == numpy.float32:
        _check_all_passes(dw, g, dtype, seed=2, bias=False)


@pytest.mark.parametrize("name", ["3x3_s1", "3x3_s2_n1", "3x3_m2_dil2_pad2", "images_per_tile"])
def test_generic_kernels_on_3x3(dw, tunables, name):
    """The <T, 0, 0> kernels (any filter) on 3x3 layers, which otherwise take the specialised ones."""
    tunables(depthwise_specialised=False)
    HostKernel.launches.clear()
    _check_all_passes(dw, GEOMETRIES[name], numpy.float32, seed=3)
    assert all("<float, 0, 0>" in n for n in HostKernel.launches if "reduce" not in n), HostKernel.launches


def test_wgrad_several_chunks_and_rounds(dw, tunables):
    """wgrad with one tile per chunk (many partial sums per channel), and with the reduction in several
    rounds (a shared memory that holds fewer than TAPS x threads sums)."""
    tunables(depthwise_wgrad_blocks=1 << 30)
    g = GEOMETRIES["tall_row_tiles"]
    assert dw._conv_depthwise.plan(g, numpy.float32, "wgrad").tiles_per_chunk == 1
    _check_all_passes(dw, g, numpy.float32, seed=4)
    _check_all_passes(dw, GEOMETRIES["3x3_m2_dil2_pad2"], numpy.float64, seed=4)
    tunables(depthwise_wgrad_blocks=4096)
    # float64 3x3 at 256 threads (29 rows x 8 threads): 9 taps x 256 > 2048 doubles, two rounds.
    g = _conv_geometry((2, 1, 29, 32, 1, 3, 3, 1, 1, 1))
    assert dw._conv_depthwise.plan(g, numpy.float64, "wgrad").threads * 9 > 2048
    _check_all_passes(dw, g, numpy.float64, seed=5)


def test_plans_fit_and_cover(dw):
    """Plans for the MobileNetV2 layers and others: within the block and shared-memory limits."""
    cd = dw._conv_depthwise
    for case in [(64, 144, 56, 56, 1, 3, 3, 1, 1, 1), (64, 144, 56, 56, 1, 3, 3, 2, 1, 1),
                 (64, 960, 7, 7, 1, 3, 3, 1, 1, 1), (8, 32, 112, 112, 1, 3, 3, 1, 1, 1),
                 (1, 4, 1000, 1000, 1, 7, 7, 1, 3, 1), (2, 3, 5, 9, 1, 31, 31, 1, 15, 1)]:
        g = _conv_geometry(case)
        for dtype in DTYPES:
            for p in ("fprop", "dgrad", "wgrad"):
                plan = cd.plan(g, dtype, p)
                assert plan is not None, (case, dtype, p)
                assert plan.threads % 32 == 0 and plan.threads <= cd.MAX_THREADS
                assert plan.images * plan.rows * plan.threads_x <= plan.threads
                cols = plan.threads_x * cd.OUTPUTS_PER_THREAD
                assert cd._smem_elements(g, p, plan.images, plan.rows, cols, plan.pitch) * cd._acc_itemsize(dtype) \
                    <= cd.SMEM_BYTES
    g = _conv_geometry((64, 144, 56, 56, 1, 3, 3, 1, 1, 1))
    assert cd.plan(g, numpy.float32, "fprop") == cd.Plan(rows=14, threads_x=14, images=1, pitch=78, threads=224)


def test_supports(dw):
    cd = dw._conv_depthwise
    assert cd.supports(GEOMETRIES["3x3_s1"], numpy.float16, "wgrad")
    assert cd.supports(GEOMETRIES["transposed_m2_s2"], numpy.float32, "dgrad")
    x, w = numpy.empty((2, 4, 8, 8)), numpy.empty((4, 2, 3, 3))
    grouped = _params.conv2d_call("t", x, w, None, 1, 1, 1, 2, "zeros").geometry  # 2 channels per group
    assert not cd.supports(grouped, numpy.float32, "fprop")
    assert not cd.supports(GEOMETRIES["3x3_s1"], numpy.int32, "fprop")
    huge = _conv_geometry((1, 1, 80, 80, 1, 70, 70, 1, 0, 1))  # a 70x70 window does not fit 16 KB
    assert not cd.supports(huge, numpy.float32, "fprop")
    with pytest.raises(ValueError):
        cd.supports(GEOMETRIES["3x3_s1"], numpy.float32, "bprop")


def test_kernel_table_lists_every_instantiation(dw):
    assert set(kernel_table.KERNELS[SOURCE]) == set(dw._conv_depthwise.kernel_names())


@pytest.mark.parametrize("dtype", (numpy.float32, numpy.float16), ids=lambda d: numpy.dtype(d).name)
def test_wgrad_ignores_inputs_no_window_reads(dw, dtype):
    """3x3/2 without padding on 10x8: no window reads row 9 or column 7 of x. NaN and Inf there must not
    reach gw (PyTorch's gw stays finite), although the tile's positions past P and Q meet them."""
    g = _conv_geometry((2, 3, 10, 8, 1, 3, 3, 2, 0, 1))
    rng = numpy.random.default_rng(7)
    x = rng.standard_normal(g.input_shape).astype(dtype)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    x[..., :, 7] = numpy.nan
    x[..., 9, :] = numpy.inf
    clean = numpy.where(numpy.isfinite(x), x, 0).astype(numpy.float64)
    _, gw, _ = reference.conv2d_backward(gy.astype(numpy.float64), clean, numpy.ones(g.weight_shape),
                                         **_reference_args(g))
    _, gw_mag, _ = reference.conv2d_backward(numpy.abs(gy.astype(numpy.float64)), numpy.abs(clean),
                                             numpy.ones(g.weight_shape), **_reference_args(g))
    _check(dw._conv_depthwise.conv2d_wgrad(g, x, gy), gw, gw_mag, dtype, g.N * g.P * g.Q, "wgrad")
