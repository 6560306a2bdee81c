"""Issue 14, class 2 on the CUDA path (kernels built for the CPU): PyTorch's NaNs and infinities for a NaN or
infinite weight, through the experimental repairs (feature ``nonfinite_weights``:
kernels/experimental/nonfinite_weights.cu).

PyTorch's forward multiplies the zero padding by the weight (0 * inf is NaN), its input gradient adds only
the taps that hit. Two verified kernels differ (the implicit-GEMM dgrads too: the "nonfinite" case of
test_implicit_gemm_on_host.py):
- conv2d_dgrad_depthwise stages gy into a zero-filled shared tile and multiplies every tap with it: NaN at
  positions PyTorch leaves finite;
- conv2d_fprop_direct skips the taps that read padding: finite values (or infinities) where PyTorch has NaN.
Here the CUDA path's own pass (``gpuconv._cuda.conv.run_pass``: the selection, the launcher, then the repair
where turned on) runs on the host build against the NumPy path, whose NaNs are PyTorch's
(test_reliability_nonfinite.py). Without the feature both keep their difference: strict xfails pin that, so
that a change of the default path shows up. Finite weights: the repair leaves the output bit for bit.
"""

from __future__ import annotations

import numpy
import pytest

import test_depthwise_on_host as depthwise_cases
import test_kernels_on_host as direct_cases
from gpuconv import _numpy
from gpuconv._cuda import _kernel_table as kernel_table
from gpuconv._cuda import _loader as loader
from support import host_kernels
from support.host_modules import cuda_modules_on_host

SOURCES = ("conv_depthwise.cu", "conv_direct.cu", "experimental/nonfinite_weights.cu")
KERNELS = host_kernels.Signatures(
    {**depthwise_cases.KERNELS.params, **direct_cases.SIGNATURES,
     "conv2d_dgrad_nonfinite_repair": (5, "i" * 16), "conv2d_fprop_nonfinite_repair": (3, "i" * 16)},
    depthwise_cases.KERNELS.acc_pointers, depthwise_cases.KERNELS.syncthreads | direct_cases.KERNELS.syncthreads,
    fixed_pointers={"conv2d_dgrad_nonfinite_repair": {3: "bool"}, "conv2d_fprop_nonfinite_repair": {1: "bool"}})
DEPTHWISE = ("3x3_s1", "3x3_s2_n1", "3x3_m2_dil2_pad2", "pad3_s2", "transposed_m2_s2")  # test_depthwise_on_host
DIRECT = direct_cases.GEOMETRIES  # padded, dilated, strided, grouped, asymmetric, transposed
DTYPES = (numpy.float64, numpy.float32, numpy.float16)
TOLERANCE = {numpy.float64: 1e-12, numpy.float32: 1e-5, numpy.float16: 4e-3}


class HostKernel(host_kernels.HostKernel):
    signatures = KERNELS
    host_grid = 3  # every grid-stride loop wraps
    launches: list = []


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    units = [(name.replace("/", "_")[:-3], name,
              host_kernels.translation_unit(loader.source(name), kernel_table.KERNELS[name], KERNELS))
             for name in SOURCES]
    return host_kernels.build_library(tmp_path_factory.mktemp("host_repair"), units, "libhostrepair.so")


@pytest.fixture
def cuda(host_lib, monkeypatch):
    """gpuconv._cuda.conv on the host runtime, NaN-poisoned outputs."""
    monkeypatch.setenv("GPUCONV_POISON", "1")
    HostKernel.launches.clear()
    with cuda_modules_on_host(("conv",), lambda name: HostKernel(host_lib, name)) as modules:
        yield modules


def _weight(g, dtype, bad, rng):
    w = rng.standard_normal(g.weight_shape).astype(dtype)
    w[0, 0, g.R - 1, g.S - 1] = bad  # the last tap reaches past gy's start (dgrad), past x's end (fprop)
    w[-1, -1, 0, 0] = -bad
    return w


def _dgrad_case(g, dtype, bad, seed):
    rng = numpy.random.default_rng(seed)
    w = _weight(g, dtype, bad, rng)
    gy, bias = rng.standard_normal(g.output_shape).astype(dtype), rng.standard_normal(g.C).astype(dtype)
    want = _numpy.conv2d_dgrad(g, gy.astype(numpy.float64), w.astype(numpy.float64))
    return (gy, w, bias), want + bias.astype(numpy.float64).reshape(1, -1, 1, 1)


def _fprop_case(g, dtype, bad, seed):
    rng = numpy.random.default_rng(seed)
    w = _weight(g, dtype, bad, rng)
    x, bias = rng.standard_normal(g.input_shape).astype(dtype), rng.standard_normal(g.K).astype(dtype)
    want = _numpy.conv2d_fprop(g, x.astype(numpy.float64), w.astype(numpy.float64))
    return (x, w, bias), want + bias.astype(numpy.float64).reshape(1, -1, 1, 1)


def _assert_like_numpy(got, want, dtype):
    got = got.astype(numpy.float64)
    numpy.testing.assert_array_equal(numpy.isnan(got), numpy.isnan(want), err_msg="NaN positions")
    numpy.testing.assert_array_equal(got[numpy.isinf(want)], want[numpy.isinf(want)], err_msg="infinities")
    finite = numpy.isfinite(want)
    if finite.any():  # (a geometry whose every output meets the bad weights has none)
        tol = TOLERANCE[dtype]
        numpy.testing.assert_allclose(got[finite], want[finite], rtol=tol, atol=tol * numpy.abs(want[finite]).max())


def _launched():
    return [n.split("<")[0] for n in HostKernel.launches]


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", DEPTHWISE)
def test_repaired_depthwise_dgrad_has_pytorchs_nans_and_infinities(cuda, monkeypatch, name, dtype, bad):
    monkeypatch.setenv("GPUCONV_CONV_ALGO", "depthwise")
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "nonfinite_weights")
    g = depthwise_cases.GEOMETRIES[name]
    arrays, want = _dgrad_case(g, dtype, bad, seed=22)
    got = cuda.conv.run_pass(g, numpy.dtype(dtype), "dgrad", arrays)
    assert _launched() == ["conv2d_dgrad_depthwise", "conv2d_dgrad_nonfinite_repair"]
    assert numpy.isfinite(want).any() and not numpy.isfinite(want).all()
    _assert_like_numpy(got, want, dtype)


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("g", DIRECT, ids=direct_cases.GEOMETRY_IDS)
def test_repaired_direct_fprop_has_pytorchs_nans_and_infinities(cuda, monkeypatch, g, dtype, bad):
    monkeypatch.setenv("GPUCONV_CONV_ALGO", "direct")
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "nonfinite_weights")
    arrays, want = _fprop_case(g, dtype, bad, seed=24)
    got = cuda.conv.run_pass(g, numpy.dtype(dtype), "fprop", arrays)
    assert _launched() == ["conv2d_fprop_direct", "conv2d_fprop_nonfinite_repair"]
    _assert_like_numpy(got, want, dtype)


@pytest.mark.parametrize("algo, pass_name, g", [("depthwise", "dgrad", depthwise_cases.GEOMETRIES["3x3_s1"]),
                                                ("direct", "fprop", DIRECT[0])], ids=["depthwise", "direct"])
@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float16])
def test_the_repairs_leave_a_pass_with_finite_weights_bitwise_alone(cuda, monkeypatch, algo, pass_name, g, dtype):
    monkeypatch.setenv("GPUCONV_CONV_ALGO", algo)
    arrays, _ = (_dgrad_case if pass_name == "dgrad" else _fprop_case)(g, dtype, 0.5, seed=23)
    plain = cuda.conv.run_pass(g, numpy.dtype(dtype), pass_name, arrays)
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "nonfinite_weights")
    repaired = cuda.conv.run_pass(g, numpy.dtype(dtype), pass_name, arrays)
    assert _launched()[-1] == f"conv2d_{pass_name}_nonfinite_repair"
    assert plain.tobytes() == repaired.tobytes()


@pytest.mark.xfail(strict=True, reason="without the repair, the default kernels keep their own NaNs")
@pytest.mark.parametrize("algo, pass_name, g", [("depthwise", "dgrad", depthwise_cases.GEOMETRIES["3x3_s1"]),
                                                ("depthwise", "dgrad", depthwise_cases.GEOMETRIES["3x3_s2_n1"]),
                                                ("direct", "fprop", DIRECT[0])], ids=["depthwise", "depthwise_s2", "direct"])
def test_default_kernels_with_a_nan_weight_have_pytorchs_nans(cuda, monkeypatch, algo, pass_name, g):
    monkeypatch.setenv("GPUCONV_CONV_ALGO", algo)
    arrays, want = (_dgrad_case if pass_name == "dgrad" else _fprop_case)(g, numpy.float32, numpy.nan, seed=22)
    got = cuda.conv.run_pass(g, numpy.dtype(numpy.float32), pass_name, arrays)
    assert len(_launched()) == 1
    numpy.testing.assert_array_equal(numpy.isnan(got), numpy.isnan(want))
