"""The memo of ``_params``' checks: a repeated call reuses its checked result, and nothing a check would
reject can slip through on the key of one it accepted."""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from gpuconv import _params


def _arrays(dtype=numpy.float32):
    rng = numpy.random.default_rng(0)
    return rng.standard_normal((1, 4, 6, 6)).astype(dtype), rng.standard_normal((8, 4, 3, 3)).astype(dtype)


def test_a_repeated_call_reuses_the_checked_result():
    x, w = _arrays()
    first = _params.conv2d_call("conv2d", x, w, None, 1, 1, 1, 1, "zeros")
    again = _params.conv2d_call("conv2d", x.copy(), w.copy(), None, 1, 1, 1, 1, "zeros")
    assert again is first
    other = _params.conv2d_call("conv2d", x, w, None, 2, 1, 1, 1, "zeros")
    assert other.geometry.P == 3 and first.geometry.P == 6


@pytest.mark.parametrize("bad, exc", [(True, TypeError), (numpy.bool_(True), TypeError), (1.0, TypeError),
                                      ((1, True), TypeError), ((1, 1.0), TypeError), (0, ValueError)])
def test_an_accepted_stride_does_not_vouch_for_a_look_alike(bad, exc):
    x, w = _arrays()
    gpuconv.conv2d(x, w, stride=1)
    gpuconv.conv2d(x, w, stride=(1, 1))
    with pytest.raises(exc):
        gpuconv.conv2d(x, w, stride=bad)


def test_dtype_and_shape_are_part_of_the_key():
    x, w = _arrays()
    assert gpuconv.conv2d(x, w).dtype == numpy.float32
    x16, w16 = _arrays(numpy.float16)
    assert gpuconv.conv2d(x16, w16).dtype == numpy.float16
    with pytest.raises(TypeError, match="one dtype"):
        gpuconv.conv2d(x, w16)
    with pytest.raises(ValueError, match="channels"):
        gpuconv.conv2d(x[:, :3], w)


def test_a_rejected_call_is_rejected_every_time():
    x, w = _arrays()
    for _ in range(3):
        with pytest.raises(ValueError, match="padding='same'"):
            gpuconv.conv2d(x, w, stride=2, padding="same")


def test_uncovered_argument_kinds_are_checked_anew():
    """A list or a NumPy integer is not keyed (the check runs each time) and gives the same result."""
    x, w = _arrays()
    by_tuple = _params.conv2d_call("conv2d", x, w, None, (2, 1), 1, 1, 1, "zeros")
    by_list = _params.conv2d_call("conv2d", x, w, None, [2, 1], 1, 1, 1, "zeros")
    by_numpy = _params.conv2d_call("conv2d", x, w, None, (numpy.int64(2), 1), 1, 1, 1, "zeros")
    assert by_list is not by_tuple and by_list == by_tuple == by_numpy


def test_the_memo_starts_over_when_full(monkeypatch):
    monkeypatch.setattr(_params, "_MEMO_LIMIT", 4)
    rng = numpy.random.default_rng(1)
    w = rng.standard_normal((2, 1, 1, 1)).astype(numpy.float32)
    for h in range(1, 12):
        x = rng.standard_normal((1, 1, h, 1)).astype(numpy.float32)
        assert gpuconv.conv2d(x, w).shape == (1, 2, h, 1)
        assert len(_params.conv2d_call.memo) <= 4


def test_pool_and_transposed_checks_are_memoised_too():
    x, w = _arrays()
    a = _params.pool2d_call("max_pool2d", x, 2, None, 0, 1, False, max_pool=True)
    assert _params.pool2d_call("max_pool2d", x, 2, None, 0, 1, False, max_pool=True) is a
    assert _params.pool2d_call("max_pool2d", x, 2, None, 0, 1, True, max_pool=True) is not a
    wt = w.transpose(1, 0, 2, 3).copy()  # (in_channels=4, out_channels=8, 3, 3)
    t = _params.conv_transpose2d_call("conv_transpose2d", x, wt, None, 2, 1, 1, 1, 1)
    assert _params.conv_transpose2d_call("conv_transpose2d", x, wt, None, 2, 1, 1, 1, 1) is t
    assert t.geometry.H == 12


class _Device:
    def __init__(self, i):
        self.id = i


class _CupyLike:
    """Passes for a cupy.ndarray on device ``device`` (module and class name are what _params looks at)."""

    __module__ = "cupy._core.core"

    def __init__(self, shape, device, dtype=numpy.float32):
        self.shape, self.ndim, self.dtype, self.device = shape, len(shape), numpy.dtype(dtype), _Device(device)


_CupyLike.__name__ = _CupyLike.__qualname__ = "ndarray"


def test_devices_are_part_of_the_key():
    """Arrays on one device are accepted (and remembered); the same shapes across two devices are not."""
    same = _params.conv2d_call("conv2d", _CupyLike((1, 4, 6, 6), 0), _CupyLike((8, 4, 3, 3), 0), None,
                               1, 1, 1, 1, "zeros")
    assert same.kind == "cupy"
    for devices in ((0, 1), (1, 0)):
        with pytest.raises(ValueError, match="one device"):
            _params.conv2d_call("conv2d", _CupyLike((1, 4, 6, 6), devices[0]), _CupyLike((8, 4, 3, 3), devices[1]),
                                None, 1, 1, 1, 1, "zeros")
