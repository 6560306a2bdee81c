"""The channels-last float16 implicit-GEMM launchers (gpuconv/_cuda/_igemm_nhwc*.py) driven on the CPU.

tests/host_cuda/implicit_gemm_emulation/nhwc_lib.cpp builds the unchanged kernels of
kernels/implicit_gemm_nhwc*.cu into a shared library under the warp emulation (mma.sync, ldmatrix, deferred
16-byte cp.async; one std::thread per CUDA thread). Here the real modules of gpuconv/_cuda (implicit_gemm,
_igemm_nhwc, _igemm_nhwc_wgrad, _alloc, _unverified) run with NumPy standing in for CuPy and that library for
the compiled kernels, so the whole path is checked: the GPUCONV_UNVERIFIED switch, ``supports``, the layout
copies, the tile / split choice, grids, argument types and order, the workspace, the reduction; against the
float64 reference with NaN-poisoned outputs and workspaces. Skips without g++ (C++20 <barrier>, _Float16).
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import types
from pathlib import Path

import numpy
import pytest

import reference
from gpuconv import _params
from gpuconv._cuda import _kernel_table as table
from gpuconv._cuda import _runtime
from support.host_modules import Family, HostRuntime, cuda_modules_on_host

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "tests" / "host_cuda" / "implicit_gemm_emulation"
MODULES = ("_algo", "_igemm_nhwc", "_igemm_nhwc_wgrad", "_igemm_nhwc_dgrad")


# ------------------------------------------------------------------------------------ the stand-ins


class HostArray(numpy.ndarray):
    """A NumPy array with CuPy's ``.data.ptr`` (the launchers check the workspaces' alignment)."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.ctypes.data)


class HostXp:
    """NumPy as the runtime's array module, except that ``empty`` returns HostArray (what _alloc.empty hands
    the launchers)."""

    ascontiguousarray = staticmethod(numpy.ascontiguousarray)

    @staticmethod
    def empty(shape, dtype=float):
        return numpy.empty(shape, dtype=dtype).view(HostArray)


class ImplicitGemm(Family):
    """The implicit-GEMM family (a channels-last variant where switched on and supported, else the tensor-core
    kernels), float16 by default."""

    def __init__(self):
        super().__init__("implicit_gemm")

    def chosen(self, g, pass_name, dtype=numpy.float16):
        return super().chosen(g, pass_name, dtype)


class EmulatedKernel:
    """Stands in for the CuPy kernel ``get_function`` returns: checks what a CuPy launch would not (arrays
    C-contiguous, float16 / float32; scalars numpy.int32, or numpy.uint64(0) for a null pointer; 256
    threads), then runs the whole grid in the emulation."""

    def __init__(self, lib, name, launched):
        self.lib, self.name, self.launched = lib, name, launched

    def __call__(self, grid, block, args):
        assert tuple(block) == (256,), (self.name, block)
        grid = tuple(grid) + (1,) * (3 - len(grid))
        assert all(1 <= v for v in grid) and max(grid[1:]) <= 65535, (self.name, grid)
        pointers = [a for a in args if isinstance(a, numpy.ndarray) or type(a) is numpy.uint64]
        scalars = args[len(pointers):]
        for a in pointers:
            if type(a) is numpy.uint64:
                assert a == 0, self.name
            else:
                assert a.flags.c_contiguous and a.dtype in (numpy.float16, numpy.float32), (self.name, a.dtype)
        assert all(type(s) is numpy.int32 for s in scalars), (self.name, [type(s) for s in scalars])
        p = (ctypes.c_void_p * len(pointers))(*[None if type(a) is numpy.uint64 else a.ctypes.data
                                               for a in pointers])
        s = (ctypes.c_longlong * max(1, len(scalars)))(*[int(v) for v in scalars])
        self.launched.append(self.name)
        assert self.lib.emu_launch(self.name.encode(), *grid, p, s) == 0, f"the emulation lacks {self.name}"


@pytest.fixture(scope="module")
def emu_lib(tmp_path_factory):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    out = tmp_path_factory.mktemp("nhwc_emulation") / "libnhwc_emulation.so"
    build = subprocess.run(
        # hidden, non-unique symbols: the other host-test libraries define the same inline variables
        # (threadIdx, blockIdx, ...) with other types; exported, the dynamic linker would merge them
        [gxx, "-std=c++20", "-O1", "-w", "-pthread", "-shared", "-fPIC", "-fvisibility=hidden", "-fno-gnu-unique",
         f"-I{HARNESS / 'fake'}", f"-I{HARNESS}",
         f"-I{ROOT / 'kernels'}", f"-I{ROOT / 'kernels' / 'experimental'}", str(HARNESS / "nhwc_lib.cpp"), "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    if build.returncode != 0 and ("barrier" in build.stderr or "_Float16" in build.stderr):
        pytest.skip("this g++ lacks C++20 std::barrier or _Float16")
    assert build.returncode == 0, build.stderr[-3000:]
    lib = ctypes.CDLL(str(out))
    lib.emu_launch.argtypes = (ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                               ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_longlong))
    lib.emu_launch.restype = ctypes.c_int
    return lib


@pytest.fixture
def backend(emu_lib, monkeypatch, tunables):
    """The modules on a host runtime with the emulated kernels, an sm_90 GPU of 132 SMs (tests change the
    count through the tunables), outputs poisoned; ``backend.launched`` lists the kernels run."""
    launched = []

    class Runtime(HostRuntime):
        xp = HostXp

    tunables(compute_capability=90, sm_count=132)
    monkeypatch.setenv("GPUCONV_POISON", "1")
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "nhwc_wgrad")
    with cuda_modules_on_host(MODULES, lambda name: None) as m:
        with _runtime.use(Runtime(lambda name: EmulatedKernel(emu_lib, name, launched))):
            m.implicit_gemm = ImplicitGemm()
            m.launched = launched
            yield m


# ------------------------------------------------------------------------------------------- cases


def _geometry(N, C, H, W, K, R, S, stride=1, padding=0, dilation=1, groups=1):
    x, w = numpy.empty((N, C, H, W)), numpy.empty((K, C // groups, R, S))
    return _params.conv2d_call("t", x, w, None, stride, padding, dilation, groups, "zeros").geometry


def _transposed_geometry(N, Cin, H, W, Cout, R, S, stride, padding=0, output_padding=0, dilation=1):
    """The convolution whose dgrad is this conv_transpose2d's forward (C = Cout, K = Cin)."""
    x, w = numpy.empty((N, Cin, H, W)), numpy.empty((Cin, Cout, R, S))
    return _params.conv_transpose2d_call("t", x, w, None, stride, padding, output_padding, 1, dilation).geometry


def _ref_args(g):
    return dict(stride=(g.stride_h, g.stride_w), pads=(g.pad_top, g.pad_bottom, g.pad_left, g.pad_right),
                dilation=(g.dil_h, g.dil_w), groups=g.groups)


def _check(actual, expected, magnitude, terms, what):
    """A float16 result against float64. The inputs are exact in float16 and their products exact in float32,
    so the error is at most `terms` float32 roundings of partial sums bounded by `magnitude` (the same op on
    |inputs|), plus one rounding to float16: tight enough that a single wrong or missing product shows."""
    assert actual.dtype == numpy.float16 and actual.shape == expected.shape, (what, actual.dtype, actual.shape)
    assert not numpy.isnan(actual).any(), f"{what}: unwritten (NaN) elements"
    err = numpy.abs(actual.astype(numpy.float64) - expected)
    summed = terms * 2.0 ** -23 * magnitude  # 2u a step: tensor cores may truncate, not round
    bound = summed + 2.0 ** -11 * (numpy.abs(expected) + summed) + 2.0 ** -24
    assert (err <= bound).all(), f"{what}: max error {err.max():.3g}, bound there {bound.flat[err.argmax()]:.3g}"


def _operands(g, seed):
    rng = numpy.random.default_rng(seed)
    pick = lambda shape: (rng.uniform(0.25, 1.0, shape) * rng.choice((-1.0, 1.0), shape)).astype(numpy.float16)
    return pick(g.input_shape), pick(g.weight_shape), pick(g.output_shape)


# (geometry, SM count, the (BM, BN) and splits that must be chosen)
WGRAD_CASES = {
    "3x3_pad1_C16_K24_3splits": (_geometry(2, 16, 24, 20, 24, 3, 3, padding=1), 132, (64, 128), 3),
    "1x1_s2_C8_K136": (_geometry(3, 8, 9, 7, 136, 1, 1, stride=2), 132, (128, 64), 1),
    "2x2_s21_d12_pad_C16_K8_2splits": (_geometry(2, 16, 23, 25, 8, 2, 2, stride=(2, 1), padding=(1, 0),
                                                 dilation=(1, 2)), 1, (64, 64), 2),
    "3x3_s2_d2_C72_K136": (_geometry(2, 72, 9, 8, 136, 3, 3, stride=2, padding=(2, 1), dilation=2), 1,
                           (128, 128), 1),
}


@pytest.mark.parametrize("case", WGRAD_CASES)
def test_nhwc_wgrad_through_the_launcher(backend, tunables, case):
    g, sms, tile, splits = WGRAD_CASES[case]
    tunables(sm_count=sms)
    assert backend._igemm_nhwc_wgrad.supports(g, numpy.float16)
    bm, bn, got_splits, _ = backend._igemm_nhwc_wgrad.plan(g)
    assert ((bm, bn), got_splits) == (tile, splits)
    x, w, gy = _operands(g, seed=3)
    _, gw_ref, _ = reference.conv2d_backward(gy.astype(numpy.float64), x.astype(numpy.float64),
                                             w.astype(numpy.float64), **_ref_args(g))
    _, gw_mag, _ = reference.conv2d_backward(numpy.abs(gy.astype(numpy.float64)), numpy.abs(x.astype(numpy.float64)),
                                             numpy.abs(w.astype(numpy.float64)), **_ref_args(g))
    gw = backend.implicit_gemm.conv2d_wgrad(g, x, gy)
    assert backend.launched == ["nchw_to_nhwc<__half>", "nchw_to_nhwc<__half>",
                                backend._igemm_nhwc_wgrad.kernel_name(bm, bn), "conv2d_wgrad_nhwc_reduce<__half>"]
    _check(numpy.asarray(gw), gw_ref, gw_mag, g.N * g.P * g.Q, f"nhwc wgrad {case}")
    assert numpy.array_equal(numpy.asarray(backend.implicit_gemm.conv2d_wgrad(g, x, gy)), numpy.asarray(gw))


def test_every_wgrad_instantiation_is_listed_and_reached(backend):
    names = backend._igemm_nhwc_wgrad.kernel_names()
    assert tuple(table.KERNELS["experimental/implicit_gemm_nhwc_wgrad.cu"]) == names
    reached = {backend._igemm_nhwc_wgrad.kernel_name(*tile) for _, _, tile, _ in WGRAD_CASES.values()}
    assert reached | {"conv2d_wgrad_nhwc_reduce<__half>"} == set(names)


def test_switch_and_supports_decide(backend, monkeypatch, tunables):
    """Without nhwc_wgrad in GPUCONV_UNVERIFIED (or with only the fprop feature) the existing kernels keep
    wgrad; unsupported problems stay there too."""
    ig, nw = backend.implicit_gemm, backend._igemm_nhwc_wgrad
    g = WGRAD_CASES["1x1_s2_C8_K136"][0]
    assert ig.chosen(g, "wgrad") == "igemm_nhwc_wgrad"
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "igemm_nhwc")
    assert ig.chosen(g, "wgrad") == "implicit_gemm_mma"
    monkeypatch.delenv("GPUCONV_UNVERIFIED")
    assert ig.chosen(g, "wgrad") == "implicit_gemm_mma"
    assert not nw.supports(g, numpy.float32)
    assert not nw.supports(_geometry(1, 12, 5, 5, 8, 3, 3), numpy.float16)    # C % 8
    assert not nw.supports(_geometry(1, 8, 5, 5, 12, 3, 3), numpy.float16)    # K % 8
    assert not nw.supports(_geometry(1, 16, 5, 5, 16, 3, 3, groups=2), numpy.float16)
    assert not nw.supports(g, numpy.float16, "dgrad")
    tunables(compute_capability=75)
    assert not nw.supports(g, numpy.float16)
    assert backend.launched == []


def _dgrad_reference(g, gy, w, bias):
    f64 = lambda a: a.astype(numpy.float64)
    x0 = numpy.zeros(g.input_shape)
    gx, _, _ = reference.conv2d_backward(f64(gy), x0, f64(w), **_ref_args(g))
    mag, _, _ = reference.conv2d_backward(numpy.abs(f64(gy)), x0, numpy.abs(f64(w)), **_ref_args(g))
    if bias is not None:
        gx = gx + f64(bias)[None, :, None, None]
        mag = mag + numpy.abs(f64(bias))[None, :, None, None]
    return gx, mag


# (geometry, SM count, the (BM, BN) that must be chosen, with a bias)
DGRAD_CASES = {
    "3x3_s2_pad1_C16_K24": (_geometry(2, 16, 9, 11, 24, 3, 3, stride=2, padding=1), 1 << 20, (64, 64), True),
    "5x3_s23_d21_asym_C8_K40": (_geometry(2, 8, 11, 10, 40, 5, 3, stride=(2, 3), padding=(3, 0), dilation=(2, 1)),
                                1, (128, 64), False),
    "transposed_4x4_s2_p1_op1_C72_K16": (_transposed_geometry(2, 16, 5, 4, 72, 4, 4, 2, 1, 1), 1, (128, 128), True),
    "transposed_2x2_s2_C136_K8": (_transposed_geometry(1, 8, 4, 5, 136, 2, 2, 2), 1 << 20, (64, 128), True),
    "3x3_s3_d2_phase_taps_C8_K8": (_geometry(1, 8, 13, 12, 8, 3, 3, stride=3, padding=2, dilation=2), 1 << 20,
                                   (64, 64), True),
}


@pytest.mark.parametrize("case", DGRAD_CASES)
def test_nhwc_dgrad_through_the_launcher(backend, monkeypatch, tunables, case):
    g, sms, tile, with_bias = DGRAD_CASES[case]
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "nhwc_dgrad")
    tunables(sm_count=sms)
    assert backend._igemm_nhwc_dgrad.supports(g, numpy.float16)
    assert backend._igemm_nhwc_dgrad.tile(g) == tile
    x, w, gy = _operands(g, seed=4)
    bias = numpy.random.default_rng(8).uniform(-1, 1, g.C).astype(numpy.float16) if with_bias else None
    expected, magnitude = _dgrad_reference(g, gy, w, bias)
    gx = backend.implicit_gemm.conv2d_dgrad(g, gy, w, bias)
    assert backend.launched == ["nchw_to_nhwc<__half>", "nchw_to_nhwc<__half>", backend._igemm_nhwc_dgrad.kernel_name(*tile)]
    _check(numpy.asarray(gx), expected, magnitude, g.K * g.R * g.S, f"nhwc dgrad {case}")
    assert numpy.array_equal(numpy.asarray(backend.implicit_gemm.conv2d_dgrad(g, gy, w, bias)), numpy.asarray(gx))


def test_every_dgrad_instantiation_is_listed_and_reached(backend):
    names = backend._igemm_nhwc_dgrad.kernel_names()
    assert tuple(table.KERNELS["experimental/implicit_gemm_nhwc_dgrad.cu"]) == names
    assert {backend._igemm_nhwc_dgrad.kernel_name(*tile) for _, _, tile, _ in DGRAD_CASES.values()} == set(names)


def test_dgrad_switch_and_supports_decide(backend, monkeypatch):
    """nhwc_dgrad takes strided float16 dgrads only; stride 1 goes to igemm_nhwc's fprop path when that
    feature is on, else stays with the existing kernels."""
    ig, nd = backend.implicit_gemm, backend._igemm_nhwc_dgrad
    strided = DGRAD_CASES["3x3_s2_pad1_C16_K24"][0]
    unit = _geometry(2, 16, 9, 11, 24, 3, 3, padding=1)
    f16 = numpy.dtype(numpy.float16)
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "nhwc_dgrad")
    assert ig.chosen(strided, "dgrad") == "igemm_nhwc_dgrad" and ig.chosen(unit, "dgrad") == "implicit_gemm_mma"
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "nhwc_wgrad,igemm_nhwc")
    assert ig.chosen(strided, "dgrad") == "implicit_gemm_mma" and ig.chosen(unit, "dgrad") == "igemm_nhwc"
    assert not nd.supports(strided, numpy.float32)
    assert not nd.supports(_geometry(1, 12, 9, 9, 8, 3, 3, stride=2), f16)    # C % 8
    assert not nd.supports(_geometry(1, 8, 9, 9, 12, 3, 3, stride=2), f16)    # K % 8
    assert not nd.supports(_geometry(1, 16, 9, 9, 16, 3, 3, stride=2, groups=2), f16)
    assert not nd.supports(strided, f16, "wgrad")
    assert backend.launched == []


def test_igemm_nhwc_fprop_and_unit_stride_dgrad_through_the_launcher(backend, monkeypatch):
    """The channels-last fprop (igemm_nhwc) and its stride-1 dgrad (the flipped filter), which share the
    header with the kernels above."""
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "igemm_nhwc")
    g = _geometry(2, 16, 7, 9, 24, 3, 3, padding=(1, 2), dilation=(1, 2))
    x, w, gy = _operands(g, seed=6)
    bias = numpy.random.default_rng(9).uniform(-1, 1, g.K).astype(numpy.float16)
    f64 = lambda a: a.astype(numpy.float64)
    y_ref = reference.conv2d(f64(x), f64(w), f64(bias), **_ref_args(g))
    y_mag = reference.conv2d(numpy.abs(f64(x)), numpy.abs(f64(w)), numpy.abs(f64(bias)), **_ref_args(g))
    y = backend.implicit_gemm.conv2d_fprop(g, x, w, bias)
    assert any(n.startswith("conv2d_fprop_implicit_gemm_nhwc<") for n in backend.launched)
    _check(numpy.asarray(y), y_ref, y_mag, g.C * g.R * g.S, "nhwc fprop")
    backend.launched.clear()
    expected, magnitude = _dgrad_reference(g, gy, w, None)
    gx = backend.implicit_gemm.conv2d_dgrad(g, gy, w)
    assert any(n.startswith("conv2d_fprop_implicit_gemm_nhwc<") for n in backend.launched)
    _check(numpy.asarray(gx), expected, magnitude, g.K * g.R * g.S, "nhwc stride-1 dgrad")


# Benchmark layers (batch suite): (geometry, BM x BN, splits chosen for a 132-SM H100).
SPLIT_LAYERS = {
    "vgg16_conv1_2": (_geometry(16, 64, 224, 224, 64, 3, 3, padding=1), (64, 128), 79),
    "vgg16_conv4_2": (_geometry(16, 512, 28, 28, 512, 3, 3, padding=1), (128, 128), 5),
    "resnet50_l1_3x3": (_geometry(32, 64, 56, 56, 64, 3, 3, padding=1), (64, 128), 79),
    "resnet50_l3_3x3": (_geometry(32, 256, 14, 14, 256, 3, 3, padding=1), (128, 128), 7),
    "resnet50_l2_3x3s2": (_geometry(32, 128, 56, 56, 128, 3, 3, stride=2, padding=1), (128, 128), 28),
    "deeplabv3_3x3_d2": (_geometry(16, 512, 33, 33, 512, 3, 3, padding=2, dilation=2), (128, 128), 5),
}


@pytest.mark.parametrize("layer", SPLIT_LAYERS)
def test_wgrad_plan_of_the_benchmark_layers(backend, layer):
    """The tile and split choice on the layers the benchmark times: waves nearly full, every split at least
    8 k-tiles long, the workspace far below the operands' size."""
    g, tile, splits = SPLIT_LAYERS[layer]
    nw = backend._igemm_nhwc_wgrad
    bm, bn, got, k_chunk = nw.plan(g)
    reduction = g.N * g.P * g.Q
    assert ((bm, bn), got) == (tile, splits)
    assert k_chunk % nw.BK == 0 and (got - 1) * k_chunk < reduction <= got * k_chunk
    assert k_chunk >= nw.MIN_TILES_PER_SPLIT * nw.BK
    blocks = -(-g.K // bm) * -(-(g.R * g.S * g.C) // bn) * got
    slots = nw.MIN_BLOCKS[(bm, bn)] * 132
    assert blocks / (-(-blocks // slots) * slots) >= 0.85
    assert got * g.K * g.R * g.S * g.C * 4 <= 64 << 20
