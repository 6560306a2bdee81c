"""Issue 14, class 1: max_pool2d_backward takes int64 indices only (either byte order), as PyTorch does.

The old check viewed the indices as unsigned of their own width, so int8 -1 read as 255 and passed on a
plane of 256 elements or more, and the gradient landed on another element (even in another channel).
Narrow and unsigned dtypes are now a TypeError; int64 is range-checked two-sided on NumPy arrays; on CuPy
arrays the check (a host synchronisation) runs only with GPUCONV_CHECK_INDICES=1, and the kernels drop an
out-of-range index's gradient (test_reliability_cuda_indices.py runs them on the CPU).
"""

from __future__ import annotations

import numpy
import pytest

import gpuconv



def test_int8_minus_one_is_refused_not_misrouted():
    """The issue's reproducer: channel 1's gradient used to land at [0, 0, 15, 15]."""
    gy = numpy.ones((1, 2, 1, 1), numpy.float32)
    idx = numpy.array([0, -1], numpy.int8).reshape(1, 2, 1, 1)
    with pytest.raises(TypeError, match=r"indices must have dtype int64.*int8"):
        gpuconv.max_pool2d_backward(gy, idx, (1, 2, 16, 16))


@pytest.mark.parametrize("dtype", ["i1", "i2", "<i4", ">i4", "u1", "u2", "<u4", "<u8", ">u8"])
def test_every_integer_dtype_but_int64_is_a_type_error(dtype):
    gy = numpy.ones((1, 1, 2, 2), numpy.float32)
    idx = numpy.zeros((1, 1, 2, 2), dtype)
    with pytest.raises(TypeError, match=rf"int64.*{numpy.dtype(dtype)}"):
        gpuconv.max_pool2d_backward(gy, idx, (1, 1, 4, 4))


@pytest.mark.parametrize("bad", [-1, -3, 256 * 256, 2**62, -(2**63), 2**63 - 1])
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_int64_out_of_range_is_a_value_error_in_either_byte_order(bad, byteorder):
    gy = numpy.ones((1, 2, 1, 2), numpy.float32)
    idx = numpy.array([[[[0, 5]], [[bad, 7]]]], byteorder + "i8")
    with pytest.raises(ValueError, match=rf"\[0, 65536\).*found values in \[{min(bad, 0)}, {max(bad, 7)}\]"):
        gpuconv.max_pool2d_backward(gy, idx, (1, 2, 256, 256))


def test_big_endian_int64_gives_the_native_result():
    x = numpy.random.default_rng(1).permutation(2 * 3 * 6 * 6).astype(numpy.float32).reshape(2, 3, 6, 6)
    y, idx = gpuconv.max_pool2d(x, 2, return_indices=True)
    gy = numpy.random.default_rng(2).standard_normal(y.shape).astype(numpy.float32)
    expected = gpuconv.max_pool2d_backward(gy, idx, x.shape)
    got = gpuconv.max_pool2d_backward(gy, idx.astype(">i8"), x.shape)
    numpy.testing.assert_array_equal(got, expected)
    assert got.dtype == numpy.float32 and got.dtype.isnative


def test_cupy_indices_are_checked_only_on_request(monkeypatch):
    """On CuPy arrays (the recording runtime of tests/support/fake_cupy.py) the range check would synchronise
    with the host: it is off by default (no reduction at all) and on with GPUCONV_CHECK_INDICES=1."""
    from gpuconv._cuda import _runtime
    from support import fake_cupy

    monkeypatch.delenv("GPUCONV_CHECK_INDICES", raising=False)
    with _runtime.use(fake_cupy.RecordingRuntime()):
        gy = fake_cupy.asarray(numpy.ones((1, 2, 1, 2), numpy.float32))
        idx = fake_cupy.asarray(numpy.array([[[[0, 5]], [[-1, 2**40]]]], numpy.int64))
        fake_cupy.LAUNCHES.clear()
        gpuconv.max_pool2d_backward(gy, idx, (1, 2, 4, 4))
        reductions = [e for e in fake_cupy.LAUNCHES if e[0] == "method" and e[1] in ("min", "max")]
        assert not reductions, reductions  # no reduction read back to the host: no synchronisation
        monkeypatch.setenv("GPUCONV_CHECK_INDICES", "1")
        with pytest.raises(ValueError, match=r"found values in \[-1, 1099511627776\]"):
            gpuconv.max_pool2d_backward(gy, idx, (1, 2, 4, 4))
