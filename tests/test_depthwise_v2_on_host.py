"""The depthwise v2 kernels (kernels/conv_depthwise_v2.cu, opt-in GPUCONV_UNVERIFIED=depthwise_v2), compiled
with g++ and run on the CPU through the real launcher (gpuconv/_cuda/_conv_depthwise.py), against the float64
reference and against the version-1 kernels.

As tests/test_depthwise_on_host.py (the shim in tests/host_cuda: one std::thread per CUDA thread where a
kernel synchronises, __half as _Float16, numpy for cupy, grids capped at HOST_GRID blocks so every
grid-stride loop wraps, outputs poisoned with NaN). Both kernel files are built, since the v2 wgrad ends in
conv_depthwise.cu's chunk reduction and uncovered geometries fall back to version 1. Every check also
asserts which kernels ran, so a silent fallback cannot pass for a v2 result. The cases reach each of the
kernel's bodies: the vector path at every column offset O = (-pad_left) mod 4 and the element path (rows
not a multiple of 4, or a misaligned array), vector and element stores, tails of the 7-row strips and
of the column groups, tiny planes, both dtypes, channel multipliers, transposed convolutions.

Skips when g++ with C++20 <barrier> and _Float16 is not available.
"""

from __future__ import annotations

import random

import numpy
import pytest

from support import host_kernels
import reference
from gpuconv import _params
from gpuconv._cuda import _kernel_table as kernel_table
from gpuconv._cuda import _loader as loader
from support.host_modules import Family, cuda_modules_on_host

V2_SOURCES = ("experimental/conv_depthwise_v2.cu", "experimental/conv_depthwise_v2_5x5.cu")
HOST_GRID = 3
FEATURE = "depthwise_v2"

# kernel -> (pointer parameters, scalar parameter types: 'i' int, 'q' long long)
SIGNATURES = {
    "conv2d_fprop_depthwise": (4, "i" * 19),
    "conv2d_dgrad_depthwise": (4, "i" * 19),
    "conv2d_wgrad_depthwise": (3, "i" * 20),
    "conv2d_wgrad_depthwise_reduce": (2, "iiq"),
    "conv2d_fprop_depthwise_v2": (4, "i" * 22),
    "conv2d_wgrad_depthwise_v2": (3, "i" * 23),
    "conv2d_dgrad_depthwise_v2": (4, "i" * 17),
}
# Pointer parameters of the accumulator type (float for __half) instead of T.
ACC_POINTERS = {"conv2d_wgrad_depthwise": (2,), "conv2d_wgrad_depthwise_reduce": (0,), "conv2d_wgrad_depthwise_v2": (2,)}
USES_SYNCTHREADS = {"conv2d_fprop_depthwise", "conv2d_dgrad_depthwise", "conv2d_wgrad_depthwise",
                    "conv2d_wgrad_depthwise_v2"}
KERNELS = host_kernels.Signatures(SIGNATURES, ACC_POINTERS, frozenset(USES_SYNCTHREADS))



def _units():
    """(file stem, source, C++): one translation unit per kernel file, built in parallel."""
    for source in ("conv_depthwise.cu",) + V2_SOURCES:
        yield source.split("/")[-1][:-3], source, host_kernels.translation_unit(loader.source(source), kernel_table.KERNELS[source],
                                                                 KERNELS)


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    return host_kernels.build_library(tmp_path_factory.mktemp("host_depthwise_v2"), _units(), "libhostdepthwise2.so")


class HostKernel(host_kernels.HostKernel):
    """Stands in for a cupy kernel: checks what a CuPy launch would not (contiguous arrays of the
    parameter's element type, scalars of the exact numpy type, a 1-D grid, blocks a multiple of 32 and
    at most 256), then runs the host build over at most HOST_GRID blocks. Records each launch's name."""

    signatures = KERNELS
    host_grid = HOST_GRID
    launches: list = []

    def checks_block(self) -> bool:
        """The v2 kernels' blocks too, although only the wgrad synchronises."""
        return super().checks_block() or self.kernel.endswith("_v2")


class Depthwise(Family):
    """The depthwise family (version 2 where switched on and supported, else version 1); other names are
    those of the version-2 module (gpuconv/_cuda/experimental/depthwise_v2.py)."""

    def __init__(self, modules):
        super().__init__("depthwise")
        self._m = modules

    def __getattr__(self, name):
        return getattr(self._m.depthwise_v2, name)

    def v2_applies(self, g, dtype, pass_name):
        return self.chosen(g, pass_name, dtype) == "depthwise_v2"


@pytest.fixture(scope="module")
def dw(host_lib):
    with cuda_modules_on_host(("_algo", "_conv_depthwise", "depthwise_v2"),
                              lambda name: HostKernel(host_lib, name)) as modules:
        modules._conv_depthwise = Depthwise(modules)
        yield modules


@pytest.fixture(autouse=True)
def switch_on(monkeypatch):
    monkeypatch.setenv("GPUCONV_POISON", "1")
    monkeypatch.setenv("GPUCONV_UNVERIFIED", FEATURE)
    HostKernel.launches.clear()


# ------------------------------------------------------------------------------------------- cases

# (N, C, H, W, m, R, S, stride, padding): groups = C, K = C * m, dilation 1. The vector bodies are compiled
# for the column offsets O = (-pad_left) mod 4 of pad (S-1)/2 and of pad 0; the others take the element
# path. 3x3: pad 1 (O 3) and 0 vector, pads 2 and 3 element; dgrad (flipped pads 2 - pad): pad 1 and 2
# vector, 0 and 3 element. 5x5: pad 2 (O 2) and 0 vector, pad_left 1 element; dgrad: pad 2 vector.
CONV_CASES = {
    "3x3_s1_p1_w8": (2, 3, 9, 8, 1, 3, 3, 1, 1),          # P = 9: a full 7-row strip and a 2-row tail
    "3x3_s1_p1_w40": (1, 2, 15, 40, 1, 3, 3, 1, 1),       # several column groups, 3 strips
    "3x3_s1_p0": (2, 2, 10, 12, 1, 3, 3, 1, 0),           # O = 0, Q = 10: element stores
    "3x3_s1_p2": (1, 2, 6, 16, 1, 3, 3, 1, 2),            # O = 2; dgrad pads 0
    "3x3_s1_p3": (1, 2, 5, 8, 1, 3, 3, 1, 3),             # O = 1; dgrad pads -1
    "3x3_s1_w13": (2, 2, 8, 13, 1, 3, 3, 1, 1),           # W % 4 != 0: element loads
    "3x3_s1_tiny": (3, 2, 1, 1, 1, 3, 3, 1, 1),           # 1x1 planes
    "3x3_s1_m2": (2, 2, 7, 8, 2, 3, 3, 1, 1),             # channel multiplier: dgrad falls back to v1
    "3x3_s1_same_rect": (2, 1, 11, 20, 1, 3, 3, 1, "same"),
    "3x3_s1_pad_h0_w1": (1, 2, 9, 12, 1, 3, 3, 1, (0, 1)),
    "3x3_s2_p1": (2, 3, 15, 16, 1, 3, 3, 2, 1),           # P = 8: strip tail of 1 row
    "3x3_s2_p1_w14": (1, 2, 14, 14, 1, 3, 3, 2, 1),       # W % 4 != 0, Q = 7
    "3x3_s2_p0_w12": (2, 2, 11, 12, 1, 3, 3, 2, 0),
    "3x3_s2_m3": (1, 2, 9, 8, 3, 3, 3, 2, 1),
    "3x3_s2_p3": (1, 2, 11, 16, 1, 3, 3, 2, 3),          # dgrad: pad parity 1, vector offset 1: elements
    "5x5_s1_p2": (2, 2, 10, 12, 1, 5, 5, 1, 2),
    "5x5_s1_p0": (1, 2, 8, 12, 1, 5, 5, 1, 0),
    "5x5_s1_p_2_1": (1, 2, 9, 16, 1, 5, 5, 1, (2, 1)),    # O = 3, asymmetric pads
    "5x5_s2_p2": (2, 2, 17, 20, 1, 5, 5, 2, 2),
    "5x5_s2_w9": (1, 1, 9, 9, 2, 5, 5, 2, 1),
}
# Depthwise transposed convolutions whose forward is a v2 dgrad (with bias):
# (N, Cin, Hin, Win, R, stride, padding, output_padding) with groups = Cin = Cout.
TRANSPOSED_CASES = {
    "transposed_3x3_p1": (2, 3, 7, 8, 3, 1, 1, 0),
    "transposed_5x5_p0": (1, 2, 6, 9, 5, 1, 0, 0),
    "transposed_3x3_s2_p1_op1": (2, 2, 5, 8, 3, 2, 1, 1),   # gx 10 x 16: the stride-2 dgrad, vectors
    "transposed_5x5_s2_p2_op1": (1, 2, 7, 5, 5, 2, 2, 1),   # gx 14 x 10, gy rows of 5: elements
}
DTYPES = (numpy.float32, numpy.float16)


def conv_geometry(case):
    N, C, H, W, m, R, S, stride, padding = case
    x, w = numpy.empty((N, C, H, W)), numpy.empty((C * m, 1, R, S))
    return _params.conv2d_call("t", x, w, None, stride, padding, 1, C, "zeros").geometry


def transposed_geometry(case):
    N, C, H, W, R, stride, padding, output_padding = case
    x, w = numpy.empty((N, C, H, W)), numpy.empty((C, 1, R, R))
    return _params.conv_transpose2d_call("t", x, w, None, stride, padding, output_padding, C, 1).geometry


GEOMETRIES = {**{k: conv_geometry(v) for k, v in CONV_CASES.items()},
              **{k: transposed_geometry(v) for k, v in TRANSPOSED_CASES.items()}}


def _reference_args(g):
    return dict(stride=(g.stride_h, g.stride_w), pads=(g.pad_top, g.pad_bottom, g.pad_left, g.pad_right),
                dilation=(g.dil_h, g.dil_w), groups=g.groups)


def check(actual, expected, magnitude, dtype, terms, what):
    """|error| <= eps * sqrt(terms) * 4 * sum(|products|) (+ one float16 rounding of the result)."""
    assert actual.dtype == dtype and actual.shape == expected.shape, (what, actual.dtype, actual.shape)
    assert not numpy.isnan(actual).any(), f"{what}: unwritten (NaN) elements"
    eps = {numpy.float32: 1e-6, numpy.float16: 1e-3}[numpy.dtype(dtype).type]
    err = numpy.abs(actual.astype(numpy.float64) - expected)
    rounding = 1e-3 if dtype == numpy.float16 else 0.0
    bound = eps * max(1, terms) ** 0.5 * 4 * (magnitude + 1e-30) + rounding * numpy.abs(expected)
    assert (err <= bound).all(), f"{what}: max error {err.max():.3g}, bound there {bound.flat[err.argmax()]:.3g}"


def misaligned(a):
    """A C-contiguous copy of a whose data starts one element past an aligned address."""
    buf = numpy.empty(a.size + 16, a.dtype)
    start = (-buf.ctypes.data // a.dtype.itemsize) % 16 + 1
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and out.ctypes.data % (4 * a.dtype.itemsize) != 0
    return out


def run_passes(dw, g, dtype, seed, bias=True, shift=lambda a: a):
    """fprop, dgrad, wgrad of g through the launcher, checked against the float64 reference; returns the
    results and the kernels each pass launched."""
    cd = dw._conv_depthwise
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(g.input_shape).astype(dtype)
    w = rng.standard_normal(g.weight_shape).astype(dtype)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    bias_k = rng.standard_normal(g.K).astype(dtype) if bias else None
    bias_c = rng.standard_normal(g.C).astype(dtype) if bias else None
    f64 = lambda a: None if a is None else a.astype(numpy.float64)  # noqa: E731
    args = _reference_args(g)
    y = reference.conv2d(f64(x), f64(w), f64(bias_k), **args)
    y_mag = reference.conv2d(numpy.abs(f64(x)), numpy.abs(f64(w)),
                             None if bias_k is None else numpy.abs(f64(bias_k)), **args)
    gx, gw, _ = reference.conv2d_backward(f64(gy), f64(x), f64(w), **args)
    gx_mag, gw_mag, _ = reference.conv2d_backward(numpy.abs(f64(gy)), numpy.abs(f64(x)), numpy.abs(f64(w)), **args)
    if bias:
        gx = gx + f64(bias_c)[None, :, None, None]
        gx_mag = gx_mag + numpy.abs(f64(bias_c))[None, :, None, None]
    m = g.K // g.C
    results, kernels = {}, {}
    for name, call, ref, mag, terms in (
            ("fprop", lambda: cd.conv2d_fprop(g, shift(x), w, bias_k), y, y_mag, g.R * g.S),
            ("dgrad", lambda: cd.conv2d_dgrad(g, shift(gy), w, bias_c), gx, gx_mag, m * g.R * g.S),
            ("wgrad", lambda: cd.conv2d_wgrad(g, shift(x), shift(gy)), gw, gw_mag, g.N * g.P * g.Q)):
        HostKernel.launches.clear()
        results[name] = call()
        kernels[name] = list(HostKernel.launches)
        check(results[name], ref, mag, dtype, terms, name)
    return results, kernels


def assert_v2_ran(dw, g, dtype, kernels):
    """Each pass ran the v2 kernel exactly where v2_applies says it does, and version 1 elsewhere."""
    for pass_name, names in kernels.items():
        v2 = [n for n in names if "_v2<" in n]
        if dw._conv_depthwise.v2_applies(g, dtype, pass_name):
            assert len(v2) == 1, (pass_name, names)
            assert all("_v2<" in n or "reduce" in n for n in names), (pass_name, names)
        else:
            assert not v2, (pass_name, names)


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("name", list(GEOMETRIES))
def test_v2_passes(dw, name, dtype):
    g = GEOMETRIES[name]
    assert dw._conv_depthwise.v2_applies(g, dtype, "fprop") and dw._conv_depthwise.v2_applies(g, dtype, "wgrad")
    _, kernels = run_passes(dw, g, dtype, seed=1)
    assert_v2_ran(dw, g, dtype, kernels)


@pytest.mark.parametrize("name", ["3x3_s1_p1_w8", "3x3_s1_p3", "3x3_s2_p1", "5x5_s1_p_2_1"])
def test_v2_misaligned_arrays_take_the_element_path(dw, name):
    """x (and gy) starting one element past an aligned address: same answers through the element loads."""
    g = GEOMETRIES[name]
    for dtype in DTYPES:
        run_passes(dw, g, dtype, seed=2, bias=False, shift=misaligned)


def test_v2_matches_version_1(dw, monkeypatch):
    """float32 v2 against the v1 kernels on the same data: equal to rounding (both sum in float, taps in
    the same order; FMA contraction may differ)."""
    for name in ("3x3_s1_p1_w40", "3x3_s2_p1", "5x5_s2_p2"):
        g = GEOMETRIES[name]
        monkeypatch.setenv("GPUCONV_UNVERIFIED", FEATURE)
        new, _ = run_passes(dw, g, numpy.float32, seed=3)
        monkeypatch.delenv("GPUCONV_UNVERIFIED")
        old, kernels = run_passes(dw, g, numpy.float32, seed=3)
        assert not any("_v2<" in n for names in kernels.values() for n in names)
        for p in new:
            numpy.testing.assert_allclose(new[p], old[p], rtol=2e-5, atol=2e-5 * numpy.abs(old[p]).max())


@pytest.mark.parametrize("target", [1, 1 << 30])
def test_v2_wgrad_chunking(dw, tunables, target):
    """wgrad with one chunk per channel (each thread several units) and with one unit per thread per
    chunk (many chunks): the same sums, added in fixed orders."""
    cd = dw._conv_depthwise
    tunables(depthwise_v2_wgrad_blocks=target)
    g = conv_geometry((3, 2, 30, 24, 1, 3, 3, 1, 1))  # 3 images x 5 strips x 6 groups = 90 units per channel
    L = cd.v2_launch(g, numpy.float32, "wgrad")
    threads, per_chunk, chunks = cd.v2_wgrad_chunking(L)
    assert threads == 96 and (chunks == 1 if target == 1 else (per_chunk, chunks) == (96, 1))
    for dtype in DTYPES:
        run_passes(dw, g, dtype, seed=4)
    big = conv_geometry((4, 1, 60, 64, 1, 3, 3, 1, 1))  # 4 x 9 x 16 = 576 units: full blocks, several chunks
    threads, per_chunk, chunks = cd.v2_wgrad_chunking(cd.v2_launch(big, numpy.float32, "wgrad"))
    assert threads == cd.V2_THREADS == 128 and (chunks == 1 if target == 1 else chunks == 5)
    run_passes(dw, big, numpy.float32, seed=5)


def test_every_v2_kernel_runs_and_is_right(dw):
    """Each (dtype, filter, stride, body) instantiation, reached the way the launcher picks it: padding
    (R-1)/2 on rows of 16 and 0 on rows of 12 (vectors), rows of 13 (elements); each checked against the
    reference. The stride-2 dgrad: vectors for padding (R-1)/2 on rows of 16 (gy rows of 8), elements for
    rows of 13."""
    cd = dw._conv_depthwise
    launched = set()
    for dtype in DTYPES:
        for R in cd.V2_FILTERS:
            for stride in cd.V2_STRIDES:
                for W, pad, body in ((16, R // 2, (4, -(R // 2) % 4)), (12, 0, (4, 0)), (13, R // 2, (1, 0))):
                    g = conv_geometry((2, 2, 9, W, 1, R, R, stride, pad))
                    _, kernels = run_passes(dw, g, dtype, seed=R + W + pad)
                    assert_v2_ran(dw, g, dtype, kernels)
                    for p in ("fprop", "wgrad"):
                        (name,) = [n for n in kernels[p] if "_v2<" in n]
                        assert name.endswith(f", {body[0]}, {body[1]}>"), (name, body)
                        launched.add(name)
                    launched.update(n for n in kernels["dgrad"] if "_v2<" in n)
    assert launched == {n for f in V2_SOURCES for n in kernel_table.KERNELS[f]}


def test_v2_coverage_and_switch(dw, monkeypatch):
    cd = dw._conv_depthwise
    g = GEOMETRIES["3x3_s1_p1_w8"]
    assert cd.v2_applies(g, numpy.float16, "dgrad")
    assert not cd.v2_applies(g, numpy.float64, "fprop")  # float64 stays on version 1
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "")
    assert not any(cd.v2_applies(g, numpy.float32, p) for p in ("fprop", "dgrad", "wgrad"))
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "all")
    assert cd.v2_applies(g, numpy.float32, "fprop")
    uncovered = [(1, 2, 9, 9, 1, 3, 3, 1, 1, 2), (1, 2, 9, 9, 1, 3, 5, 1, 1, 1), (1, 2, 9, 9, 1, 3, 3, (2, 1), 1, 1),
                 (1, 2, 9, 9, 1, 7, 7, 1, 3, 1), (1, 2, 9, 9, 1, 3, 3, 3, 1, 1)]  # dilation, 3x5, stride, 7x7
    for N, C, H, W, m, R, S, stride, padding, dilation in uncovered:
        x, w = numpy.empty((N, C, H, W)), numpy.empty((C * m, 1, R, S))
        u = _params.conv2d_call("t", x, w, None, stride, padding, dilation, C, "zeros").geometry
        assert not any(cd.v2_applies(u, numpy.float32, p) for p in ("fprop", "dgrad", "wgrad")), u
    assert cd.v2_applies(GEOMETRIES["3x3_s2_p1"], numpy.float32, "dgrad")  # stride 2, pad parity of (R-1)/2
    assert not cd.v2_applies(GEOMETRIES["3x3_s2_p0_w12"], numpy.float32, "dgrad")  # other parity: version 1
    assert cd.v2_applies(GEOMETRIES["5x5_s2_p2"], numpy.float32, "dgrad")
    assert not cd.v2_applies(GEOMETRIES["5x5_s2_w9"], numpy.float32, "dgrad")  # multiplier 2
    assert not cd.v2_applies(GEOMETRIES["3x3_s1_m2"], numpy.float32, "dgrad")  # multiplier 2 dgrad: version 1
    x, w = numpy.empty((2, 4, 8, 8)), numpy.empty((4, 2, 3, 3))
    grouped = _params.conv2d_call("t", x, w, None, 1, 1, 1, 2, "zeros").geometry
    assert not cd.v2_applies(grouped, numpy.float32, "fprop")
    mobilenet = conv_geometry((64, 144, 56, 56, 1, 3, 3, 1, 1))
    L = cd.v2_launch(mobilenet, numpy.float16, "fprop")
    assert (L.V, L.strips, L.groups) == (8, 8, 7)
    assert cd.v2_launch(mobilenet, numpy.float32, "fprop").groups == 14
    assert cd.v2_launch(mobilenet, numpy.float16, "wgrad").V == 4
    with pytest.raises(ValueError):
        cd.v2_launch(g, numpy.float32, "bprop")
    assert cd.supports(g, numpy.float32, "fprop")  # the variant's own rule ignores the switch: _algo applies it


def test_divisor_magic(dw):
    """The launcher's (mul, shift) give floor(n / d) for every n < 2^31, as the kernel computes it
    (fast_divide.cuh: (umulhi(n, mul) + n) >> shift)."""
    divisor = dw._conv_depthwise.divisor
    rng = random.Random(7)
    ds = list(range(1, 300)) + [rng.randrange(1, 1 << 31) for _ in range(300)] + [(1 << 31) - 1, 1 << 30, 3 << 29]
    edges = [0, 1, (1 << 31) - 1, (1 << 31) - 2]
    for d in ds:
        d32, mul, shift = (int(v) for v in divisor(d))
        assert d32 == d
        mul &= 0xFFFFFFFF
        ns = edges + [rng.randrange(0, 1 << 31) for _ in range(40)] + [q * d + r for q in (1, 2, 1000) for r in (-1, 0)
                                                                       if 0 <= q * d + r < 1 << 31]
        for n in ns:
            got = (((n * mul) >> 32) + n) >> shift
            assert got == n // d, (n, d, mul, shift)
    with pytest.raises(ValueError):
        divisor(0)


def test_kernel_table_lists_every_v2_instantiation(dw):
    cd = dw._conv_depthwise
    assert tuple(sorted(cd.V2_SOURCES.values())) == V2_SOURCES
    for source in V2_SOURCES:
        assert tuple(kernel_table.KERNELS[source]) == cd.kernel_names_v2(source)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("W", (8, 14), ids=("vector_rows", "element_rows"))
def test_v2_wgrad_ignores_inputs_no_window_reads(dw, dtype, W):
    """3x3/2 without padding on 10 x W: no window reads x's last row and column (P = 4, Q = W/2 - 1). NaN
    and Inf there must not reach gw (PyTorch's gw stays finite), although the unit's columns past Q and
    the strip's rows past P meet them."""
    g = conv_geometry((2, 3, 10, W, 1, 3, 3, 2, 0))
    assert dw._conv_depthwise.v2_applies(g, dtype, "wgrad") and 2 * (g.Q - 1) + 2 == W - 2
    rng = numpy.random.default_rng(7)
    x = rng.standard_normal(g.input_shape).astype(dtype)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    x[..., :, W - 1] = numpy.nan
    x[..., 9, :] = numpy.inf
    clean = numpy.where(numpy.isfinite(x), x, 0).astype(numpy.float64)
    ones = numpy.ones(g.weight_shape)
    _, gw, _ = reference.conv2d_backward(gy.astype(numpy.float64), clean, ones, **_reference_args(g))
    _, gw_mag, _ = reference.conv2d_backward(numpy.abs(gy.astype(numpy.float64)), numpy.abs(clean), ones,
                                             **_reference_args(g))
    HostKernel.launches.clear()
    gw_got = dw._conv_depthwise.conv2d_wgrad(g, x, gy)
    assert any("_v2<" in n for n in HostKernel.launches), HostKernel.launches
    check(gw_got, gw, gw_mag, dtype, g.N * g.P * g.Q, "wgrad")
