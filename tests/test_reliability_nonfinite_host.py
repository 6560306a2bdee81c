"""Issue 14, class 2 on the CUDA path (kernels built for the CPU): a NaN or Inf weight in the input gradient.

conv2d_dgrad_direct and col2im gather only the (output, tap) pairs that hit an input position, so a tap that
reaches a position only through padding adds nothing there: their dgrad has exactly PyTorch's NaNs (the
NumPy path's, which test_reliability_nonfinite.py checks against PyTorch). Run on the host builds of
test_kernels_on_host.py, NaN-poisoned outputs.
"""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from test_kernels_on_host import GEOMETRIES, GEOMETRY_IDS, backend, host_lib, poison  # noqa: F401


def _numpy_dgrad(g, gy, w):
    from gpuconv import _numpy

    return _numpy.conv2d_dgrad(g, gy, w)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy's matmul as cuBLAS
@pytest.mark.parametrize("bad", [numpy.nan, numpy.inf])
@pytest.mark.parametrize("g", GEOMETRIES, ids=GEOMETRY_IDS)
@pytest.mark.parametrize("module", ["_conv_direct", "_conv_im2col"])
def test_host_dgrad_with_a_non_finite_weight_has_pytorchs_nans(backend, module, g, bad):
    rng = numpy.random.default_rng(21)
    w = rng.standard_normal(g.weight_shape)
    w[0, 0, g.R - 1, g.S - 1] = bad
    w[-1, -1, 0, 0] = bad
    gy = rng.standard_normal(g.output_shape)
    got = numpy.asarray(getattr(backend, module).conv2d_dgrad(g, gy, w, None))
    want = _numpy_dgrad(g, gy, w)
    numpy.testing.assert_array_equal(numpy.isnan(got), numpy.isnan(want))
    numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert gpuconv  # the public package imports alongside the host modules
