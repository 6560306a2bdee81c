"""Issue 14, class 1 on the CUDA path: max-pool backward indices outside [0, H*W) never make a kernel read or
write out of bounds; their gradient is dropped, on every backward path (plane kernel, sort, chunked sort).

By default gpuconv does not range-check indices on CuPy arrays (a host check would synchronise the stream),
so the kernels themselves must be safe. These run pool.cu's kernels on the CPU (the host library of
test_cuda_pool_host.py). On the old sort path an index -1 in the first plane read gy[-P*Q + j] (before the
array) and an index past the plane moved the gradient into the next plane's elements; both now go nowhere.
"""

from __future__ import annotations

import numpy
import pytest

from test_cuda_pool_host import BPROP_PATHS, _bprop_on_path, host_kernels, host_pool, needs_pool  # noqa: F401

BAD = [-1, -7, 16, 17, 2**40, 2**62, -(2**63), 2**63 - 1]


def _expected(gy, idx, planes, HW):
    """The scatter in output order, out-of-range indices skipped (float32 sums as the kernels')."""
    out = numpy.zeros((planes, HW), numpy.float32)
    g2, i2 = gy.reshape(planes, -1), idx.reshape(planes, -1)
    for b in range(planes):
        for o in range(i2.shape[1]):
            if 0 <= i2[b, o] < HW:
                out[b, i2[b, o]] += g2[b, o]
    return out


@needs_pool
@pytest.mark.parametrize("path", list(BPROP_PATHS))
def test_host_max_pool2d_backward_drops_out_of_range_indices(host_pool, tunables, path):
    rng = numpy.random.default_rng(14)
    N, C, H, W, P, Q = 2, 2, 4, 4, 3, 3
    gy = rng.standard_normal((N, C, P, Q)).astype(numpy.float32)
    idx = rng.integers(0, H * W, (N, C, P, Q)).astype(numpy.int64)
    flat = idx.reshape(-1)
    # bad indices in the first output of the first plane, the last output of the last plane, and between
    spots = rng.choice(numpy.arange(1, flat.size - 1), len(BAD) - 2, replace=False)
    for where, bad in zip([0, flat.size - 1, *spots], BAD):
        flat[where] = bad
    gx = _bprop_on_path(host_pool, tunables, path, gy, idx, (N, C, H, W))
    numpy.testing.assert_array_equal(gx.reshape(N * C, -1), _expected(gy, idx, N * C, H * W))


@needs_pool
@pytest.mark.parametrize("path", list(BPROP_PATHS))
def test_host_max_pool2d_backward_with_only_out_of_range_indices_is_zero(host_pool, tunables, path):
    gy = numpy.full((1, 3, 2, 2), 5.0, numpy.float32)
    idx = numpy.array(BAD[:4] * 3, numpy.int64).reshape(1, 3, 2, 2)
    gx = _bprop_on_path(host_pool, tunables, path, gy, idx, (1, 3, 2, 2))
    numpy.testing.assert_array_equal(gx, numpy.zeros((1, 3, 2, 2), numpy.float32))
