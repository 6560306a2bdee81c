"""Issue 14, class 2, the depthwise CUDA kernels (built for the CPU): a NaN or Inf weight in the input gradient.

conv2d_dgrad_depthwise stages gy into a zero-filled shared tile (padding and, at stride > 1, the holes
between gy elements) and multiplies every tap with it, so a NaN or Inf weight turns those zeros into NaN
(0 * NaN) at positions PyTorch leaves finite (the implicit-GEMM dgrads do the same: the "nonfinite" case of
test_implicit_gemm_on_host.py). Finite weights are unaffected.

The experimental repair (feature ``dgrad_nonfinite``: kernels/experimental/dgrad_nonfinite.cu) follows such a
dgrad and recomputes the NaN pixels of the channels with a non-finite weight by the direct gather. Here the
CUDA path's own dgrad (``gpuconv._cuda.conv.dgrad_contiguous``: the selection, the depthwise launcher, then
the repair where turned on) runs on the host build against the NumPy path, whose NaNs are PyTorch's
(test_reliability_nonfinite.py). Without the feature the depthwise result keeps the extra NaNs: a strict xfail
pins that, so that a fix of the default path shows up.
"""

from __future__ import annotations

import numpy
import pytest

from support import host_kernels
from support.host_modules import cuda_modules_on_host
from gpuconv._cuda import _kernel_table as kernel_table
from gpuconv._cuda import _loader as loader
from test_depthwise_on_host import GEOMETRIES, KERNELS as DEPTHWISE_KERNELS

REPAIR_SOURCE = "experimental/dgrad_nonfinite.cu"
KERNELS = host_kernels.Signatures(
    {**DEPTHWISE_KERNELS.params, "conv2d_dgrad_nonfinite_repair": (5, "i" * 16)},
    DEPTHWISE_KERNELS.acc_pointers, DEPTHWISE_KERNELS.syncthreads,
    fixed_pointers={"conv2d_dgrad_nonfinite_repair": {3: "bool"}})
# Each geometry has a tap that reaches some pixel only through padding or a stride hole.
CASES = ("3x3_s1", "3x3_s2_n1", "3x3_m2_dil2_pad2", "pad3_s2", "transposed_m2_s2")


class HostKernel(host_kernels.HostKernel):
    signatures = KERNELS
    host_grid = 3  # every grid-stride loop wraps
    launches: list = []


@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    units = [(name.replace("/", "_")[:-3], name,
              host_kernels.translation_unit(loader.source(name), kernel_table.KERNELS[name], KERNELS))
             for name in ("conv_depthwise.cu", REPAIR_SOURCE)]
    return host_kernels.build_library(tmp_path_factory.mktemp("host_repair"), units, "libhostrepair.so")


@pytest.fixture
def cuda(host_lib, monkeypatch):
    """gpuconv._cuda.conv on the host runtime, the depthwise algorithm forced, NaN-poisoned outputs."""
    monkeypatch.setenv("GPUCONV_CONV_ALGO", "depthwise")
    monkeypatch.setenv("GPUCONV_POISON", "1")
    HostKernel.launches.clear()
    with cuda_modules_on_host(("conv",), lambda name: HostKernel(host_lib, name)) as modules:
        yield modules


def _operands(g, dtype, bad, seed):
    rng = numpy.random.default_rng(seed)
    w = rng.standard_normal(g.weight_shape).astype(dtype)
    w[0, 0, g.R - 1, g.S - 1] = bad
    w[-1, -1, 0, 0] = -bad
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    bias = rng.standard_normal(g.C).astype(dtype)
    return gy, w, bias


def _numpy_dgrad(g, gy, w, bias):
    from gpuconv import _numpy

    want = _numpy.conv2d_dgrad(g, gy.astype(numpy.float64), w.astype(numpy.float64))
    return want + bias.astype(numpy.float64).reshape(1, -1, 1, 1)


@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32, numpy.float16])
@pytest.mark.parametrize("name", CASES)
def test_repaired_depthwise_dgrad_has_pytorchs_nans_and_infinities(cuda, monkeypatch, name, dtype, bad):
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "dgrad_nonfinite")
    g = GEOMETRIES[name]
    gy, w, bias = _operands(g, dtype, bad, seed=22)
    got = cuda.conv.dgrad_contiguous(g, gy, w, bias).astype(numpy.float64)
    want = _numpy_dgrad(g, gy, w, bias)
    assert [n.split("<")[0] for n in HostKernel.launches] == ["conv2d_dgrad_depthwise", "conv2d_dgrad_nonfinite_repair"]
    numpy.testing.assert_array_equal(numpy.isnan(got), numpy.isnan(want))
    numpy.testing.assert_array_equal(got[numpy.isinf(want)], want[numpy.isinf(want)])
    finite = numpy.isfinite(want)
    assert finite.any() and (~finite).any()
    tol = {numpy.float64: 1e-12, numpy.float32: 1e-5, numpy.float16: 4e-3}[dtype]
    numpy.testing.assert_allclose(got[finite], want[finite], rtol=tol, atol=tol * numpy.abs(want[finite]).max())


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float16])
def test_repair_leaves_a_dgrad_with_finite_weights_bitwise_alone(cuda, monkeypatch, dtype):
    g = GEOMETRIES["3x3_s1"]
    gy, w, bias = _operands(g, dtype, 0.5, seed=23)
    plain = cuda.conv.dgrad_contiguous(g, gy, w, bias)
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "dgrad_nonfinite")
    repaired = cuda.conv.dgrad_contiguous(g, gy, w, bias)
    assert HostKernel.launches[-1].startswith("conv2d_dgrad_nonfinite_repair")
    assert plain.tobytes() == repaired.tobytes()


@pytest.mark.xfail(strict=True, reason="the default depthwise dgrad multiplies staged padding zeros by the weight")
@pytest.mark.parametrize("name", ["3x3_s1", "3x3_s2_n1"])
def test_default_depthwise_dgrad_with_a_nan_weight_has_pytorchs_nans(cuda, name):
    g = GEOMETRIES[name]
    gy, w, bias = _operands(g, numpy.float32, numpy.nan, seed=22)
    got = cuda.conv.dgrad_contiguous(g, gy, w, bias)
    assert [n.split("<")[0] for n in HostKernel.launches] == ["conv2d_dgrad_depthwise"]
    numpy.testing.assert_array_equal(numpy.isnan(got), numpy.isnan(_numpy_dgrad(g, gy, w, bias)))
