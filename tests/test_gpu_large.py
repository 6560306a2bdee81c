"""Pooling on a tensor past 2**31 elements, on the GPU only: 32-bit index arithmetic anywhere in a kernel
shows as wrong values or indices in the far half of the tensor.

Needs CuPy, a GPU and about 40 GiB of free device memory; skips otherwise (CI has no GPU). The checks use
CuPy's own reductions, not a loop reference: non-overlapping 2x2 windows are a reshape and a max.
"""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from helpers import cupy_with_gpu

N, C, H, W = 1, 2, 32768, 32776  # 2 * 32768 * 32776 = 2**31 + 524288 elements
NEEDED_BYTES = 40 << 30  # input, output, int64 indices and the checks' temporaries


@pytest.fixture(scope="module")
def cupy():
    cp = cupy_with_gpu()
    if cp is None:
        pytest.skip("needs CuPy and a GPU")
    free, _ = cp.cuda.runtime.memGetInfo()
    if free < NEEDED_BYTES:
        pytest.skip(f"needs {NEEDED_BYTES >> 30} GiB of free GPU memory, {free >> 30} GiB free")
    return cp


@pytest.fixture(scope="module")
def big_input(cupy):
    """float16 values from a hash of the flat position: cheap, deterministic, and varied at the far end."""
    assert N * C * H * W > 2**31
    x = cupy.empty((N, C, H, W), dtype=cupy.float16)
    rows = 2048  # filled in blocks of rows: one int64 position array for the whole tensor would take 17 GiB
    for n in range(N):
        for c in range(C):
            for r in range(0, H, rows):
                start = ((n * C + c) * H + r) * W
                flat = cupy.arange(start, start + rows * W, dtype=cupy.int64)
                x[n, c, r:r + rows] = ((flat * 2654435761) % 4093 - 2046).astype(cupy.float16).reshape(rows, W)
    return x


def _windows_2x2(cupy, a):
    """(N, C, H/2, 2, W/2, 2) view of a: each 2x2 window's elements on axes 3 and 5."""
    return a.reshape(N, C, H // 2, 2, W // 2, 2)


def test_max_pool2d_past_2_31_elements(cupy, big_input):
    y, idx = gpuconv.max_pool2d(big_input, 2, return_indices=True)
    assert y.shape == (N, C, H // 2, W // 2) and idx.dtype == numpy.int64
    expected = _windows_2x2(cupy, big_input).max(axis=(3, 5))
    assert bool((y == expected).all()), "max_pool2d values wrong on a tensor past 2**31 elements"
    # every index names a pixel of its own window holding the maximum
    planes = big_input.reshape(N * C, H * W)
    picked = cupy.take_along_axis(planes, idx.reshape(N * C, -1), axis=1).reshape(y.shape)
    assert bool((picked == y).all()), "max_pool2d indices do not point at the maxima"
    p = cupy.arange(H // 2, dtype=cupy.int64)[:, None]
    q = cupy.arange(W // 2, dtype=cupy.int64)[None, :]
    row, col = idx // W, idx % W
    assert bool(((row // 2 == p) & (col // 2 == q)).all()), "max_pool2d indices leave their window"
    del picked, row, col, expected

    gy = cupy.ones_like(y)
    gx = gpuconv.max_pool2d_backward(gy, idx, big_input.shape)
    assert gx.shape == big_input.shape
    # each window sends exactly its one gradient to one of its pixels
    window_sums = _windows_2x2(cupy, gx).sum(axis=(3, 5), dtype=cupy.float32)
    assert bool((window_sums == 1).all()), "max_pool2d_backward lost or misplaced gradients past 2**31"


def test_avg_pool2d_past_2_31_elements(cupy, big_input):
    y = gpuconv.avg_pool2d(big_input, 2)
    expected = _windows_2x2(cupy, big_input).astype(cupy.float32).mean(axis=(3, 5)).astype(cupy.float16)
    assert bool((cupy.abs(y.astype(cupy.float32) - expected.astype(cupy.float32))
                 <= 1e-3 * cupy.abs(expected.astype(cupy.float32)) + 1e-3).all()), "avg_pool2d wrong past 2**31"
    del expected
    gx = gpuconv.avg_pool2d_backward(cupy.ones_like(y), big_input.shape, 2)
    assert bool((gx == 0.25).all()), "avg_pool2d_backward wrong past 2**31"
