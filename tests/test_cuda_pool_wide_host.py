"""The opt-in wide pooling kernels (kernels/pool_wide.cu, GPUCONV_UNVERIFIED=pool_wide) on the CPU, no GPU needed.

They run through the real launcher (gpuconv._cuda.pool) on the g++ build of test_cuda_pool_host.py, and must give
the same bits as pool.cu's kernels on the same inputs (max: the same values and indices; avg: the same sums in
the same order), on friendly data and on nasty data (ties, NaN, infinities, signed zeros, subnormals); and
agree with PyTorch (float64 where it matters) on friendly data. Outputs are NaN-poisoned, so an element a kernel
does not write fails. Cases cover every (kernel_w, stride_w) the kernels are built for, pad_w 0 and 1, rows with
any kernel / stride / padding / dilation, ceil_mode, count_include_pad, divisor_override (negative too), odd
widths (element-by-element loads), output rows not a multiple of V (element-by-element stores), misaligned
pointers, tiny planes; the max backward with made-up indices (repeats, out of range, heapsort-sized runs).
"""

from __future__ import annotations

import zlib

import numpy
import pytest

from test_cuda_pool_host import (  # noqa: F401  (host_kernels and host_pool are fixtures)
    HostCupy,
    _geometry,
    _host,
    host_kernels,
    host_pool,
    needs_pool,
    needs_torch,
    pool,
    torch,
)

DTYPES = [numpy.float64, numpy.float32, numpy.float16]
BITS = {numpy.dtype(numpy.float16): numpy.uint16, numpy.dtype(numpy.float32): numpy.uint32,
        numpy.dtype(numpy.float64): numpy.uint64, numpy.dtype(numpy.int64): numpy.int64}


def assert_same_bits(new, old):
    assert new.dtype == old.dtype and new.shape == old.shape
    a, b = new.view(BITS[new.dtype]), old.view(BITS[old.dtype])
    bad = numpy.argwhere(a != b)
    assert bad.size == 0, f"{len(bad)} elements differ, first at {tuple(bad[0])}: {new[tuple(bad[0])]!r} vs " \
                          f"{old[tuple(bad[0])]!r}"


@pytest.fixture
def wide(host_pool, monkeypatch, tunables):
    """Runs a pooling op with the feature off (pool.cu's kernels) or on, and keeps the kernels it launched."""

    class Runner:
        launched = []

        def __call__(self, on, function, *args):
            if on:
                monkeypatch.setenv("GPUCONV_UNVERIFIED", "pool_wide")
            else:
                monkeypatch.delenv("GPUCONV_UNVERIFIED", raising=False)
            host_pool.launched.clear()
            result = function(*args)
            self.launched = list(host_pool.launched)
            monkeypatch.delenv("GPUCONV_UNVERIFIED", raising=False)
            return result

    tunables(smem_limit=pool.MAX_PLANE_SMEM_BYTES)
    return Runner()


def kinds(launched):
    return {name.split("<")[0] for _, name in launched}


def nasty(shape, dtype, rng):
    """Ties (a few distinct values), NaN, infinities, signed zeros, subnormals, huge values."""
    info = numpy.finfo(dtype)
    specials = numpy.array([numpy.nan, numpy.inf, -numpy.inf, 0.0, -0.0, float(info.tiny) / 4,
                            -float(info.tiny) / 2, float(info.max) / 2, -float(info.max) / 2], dtype)
    values = rng.integers(-3, 4, size=shape).astype(dtype)
    pick = rng.random(shape) < 0.15
    values[pick] = rng.choice(specials, size=int(pick.sum()))
    return values


def friendly(shape, dtype, rng):
    """Distinct values (no ties among maxima), exact in float16, one NaN."""
    values = (rng.permutation(int(numpy.prod(shape))).astype(numpy.float64) / 8.0 - 30.0).reshape(shape).astype(dtype)
    values.flat[rng.integers(values.size)] = numpy.nan
    return values


MAX_CASES = [  # (input shape, kernel, stride, padding, dilation, ceil_mode): kernel_w x stride_w in WIDE_COLUMNS
    ((2, 3, 12, 16), 3, 2, 1, 1, False),  # ResNet-50's pool, small: 16-byte loads and stores in every dtype
    ((2, 3, 12, 16), 3, 2, 1, 1, True),
    ((1, 2, 9, 13), 3, 2, 1, 1, True),  # odd W: element loads; Q = 7: element stores
    ((1, 2, 6, 24), 3, 2, 1, 1, False),  # vector loads, Q = 12 (float16: element stores)
    ((2, 2, 8, 16), 2, 2, 0, 1, False),  # DenseNet's 2x2/2
    ((1, 3, 7, 11), 2, 2, 1, 1, True),
    ((1, 2, 10, 8), 3, 1, 1, 1, False),  # 3x3/1
    ((1, 2, 6, 9), 3, 1, 0, 1, True),
    ((2, 1, 11, 24), (5, 3), (3, 2), (2, 1), (2, 1), True),  # rows: any kernel, stride, padding, dilation
    ((1, 2, 5, 8), (1, 2), 2, (0, 1), (3, 1), False),
    ((1, 1, 1, 5), (2, 3), (1, 2), 1, (2, 1), False),  # no in-bounds row: -inf and the clipped start's index
    ((3, 1, 2, 3), 3, 2, 1, 1, True),  # tiny planes
    ((1, 2, 7, 10), 3, 2, 0, 1, False),  # pad 0; the last column in no window
]


@needs_pool
@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MAX_CASES)
def test_wide_max_pool2d_forward_is_bitwise_the_old_kernel_and_torch(wide, case, dtype):
    shape, kernel, stride, padding, dilation, ceil_mode = case
    rng = numpy.random.default_rng(zlib.crc32(repr(case).encode()))
    g = _geometry(shape, kernel, stride, padding, dilation, ceil_mode)
    x = friendly(shape, dtype, rng)
    for data in (x, nasty(shape, dtype, rng)):
        y_old, idx_old = wide(False, pool.max_pool2d_fprop, g, _host(data))
        assert kinds(wide.launched) == {"max_pool2d_fprop"}
        y, idx = wide(True, pool.max_pool2d_fprop, g, _host(data))
        assert wide.launched == [("experimental/pool_wide.cu", f"max_pool2d_fprop_wide<{pool.VALUE_CTYPES[y.dtype]}, "
                                                  f"{g.kernel_w}, {g.stride_w}>")]
        assert_same_bits(idx, idx_old)
        assert_same_bits(y, y_old)
    ty, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x.astype(numpy.float32)), kernel, stride, padding,
                                              dilation, ceil_mode, return_indices=True)
    y, idx = wide(True, pool.max_pool2d_fprop, g, _host(x))
    numpy.testing.assert_array_equal(idx, tidx.numpy())
    numpy.testing.assert_array_equal(y, ty.numpy().astype(dtype))


AVG_CASES = [  # (input shape, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    ((2, 3, 8, 16), 2, 2, 0, False, True, None),  # DenseNet's transition pool, small
    ((2, 3, 12, 16), 3, 2, 1, False, True, None),
    ((2, 3, 12, 16), 3, 2, 1, True, False, None),
    ((1, 2, 9, 13), 3, 2, 1, True, True, None),
    ((1, 2, 7, 11), 2, 2, 1, True, False, None),
    ((1, 2, 10, 8), 3, 1, 1, False, False, None),
    ((1, 2, 6, 9), 3, 1, 0, True, True, 5),
    ((2, 1, 11, 24), (5, 3), (3, 2), (2, 1), True, False, -3),
    ((1, 2, 5, 8), (1, 2), (2, 2), (0, 1), False, True, None),
    ((3, 1, 2, 3), 3, 2, 1, True, True, None),
    ((1, 2, 6, 24), 3, 2, 1, False, True, 7),
    ((1, 2, 9, 9), 2, 2, 0, False, True, None),  # the last row and column in no window: gx 0
    ((2, 1, 7, 10), 3, 2, 0, False, False, None),
]


def _avg_geometry(shape, kernel, stride, padding, ceil_mode, cip, divisor):
    from gpuconv import _params

    return _params.pool2d_call("test", numpy.empty(shape, numpy.float32), kernel, stride, padding, 1, ceil_mode,
                               max_pool=False, count_include_pad=cip, divisor_override=divisor).geometry


@needs_pool
@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", AVG_CASES)
def test_wide_avg_pool2d_forward_and_backward_are_bitwise_the_old_kernels_and_torch(wide, case, dtype):
    shape, kernel, stride, padding, ceil_mode, cip, divisor = case
    rng = numpy.random.default_rng(zlib.crc32(repr(case).encode()))
    g = _avg_geometry(*case)
    ctype = pool.VALUE_CTYPES[numpy.dtype(dtype)]
    x = rng.standard_normal(shape).astype(dtype)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    for xs, gys in ((x, gy), (nasty(shape, dtype, rng), nasty(g.output_shape, dtype, rng))):
        y_old = wide(False, pool.avg_pool2d_fprop, g, _host(xs))
        y = wide(True, pool.avg_pool2d_fprop, g, _host(xs))
        assert wide.launched == [("experimental/pool_wide.cu", f"avg_pool2d_fprop_wide<{ctype}, {g.kernel_w}, {g.stride_w}>")]
        assert_same_bits(y, y_old)
        gx_old = wide(False, pool.avg_pool2d_bprop, g, _host(gys))
        gx = wide(True, pool.avg_pool2d_bprop, g, _host(gys))
        assert wide.launched == [("experimental/pool_wide.cu", f"avg_pool2d_bprop_wide<{ctype}, {g.kernel_w}, {g.stride_w}>")]
        assert_same_bits(gx, gx_old)

    tx = torch.from_numpy(x.astype(numpy.float64)).requires_grad_()
    ty = torch.nn.functional.avg_pool2d(tx, kernel, stride, padding, ceil_mode, cip, divisor)
    ty.backward(torch.from_numpy(gy.astype(numpy.float64)))
    tol = 2e-3 if dtype == numpy.float16 else (1e-6 if dtype == numpy.float32 else 1e-12)
    numpy.testing.assert_allclose(wide(True, pool.avg_pool2d_fprop, g, _host(x)), ty.detach().numpy(), rtol=tol,
                                  atol=tol)
    numpy.testing.assert_allclose(wide(True, pool.avg_pool2d_bprop, g, _host(gy)), tx.grad.numpy(), rtol=tol,
                                  atol=tol)


def _misaligned(a):
    """A C-contiguous copy of a whose data start one element past a 16-byte boundary."""
    buf = numpy.empty(a.size + 16 // a.itemsize + 1, a.dtype)
    start = (-buf.ctypes.data % 16) // a.itemsize + 1
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % 16 != 0 and out.flags.c_contiguous
    return _host(out)


@needs_pool
@pytest.mark.parametrize("dtype", DTYPES)
def test_wide_kernels_take_element_paths_for_misaligned_arrays(wide, monkeypatch, dtype):
    """Inputs and outputs one element off a 16-byte boundary (W and Q multiples of V, so only the pointers
    rule the vector paths out): the same bits as with aligned arrays."""
    rng = numpy.random.default_rng(5)
    shape = (2, 2, 12, 16)
    x = nasty(shape, dtype, rng)
    gmax = _geometry(shape, 3, 2, 1, 1, False)
    gavg = _avg_geometry(shape, 3, 2, 1, False, False, None)
    gy = nasty(gavg.output_shape, dtype, rng)
    y, idx = wide(True, pool.max_pool2d_fprop, gmax, _host(x))
    ya = wide(True, pool.avg_pool2d_fprop, gavg, _host(x))
    gx = wide(True, pool.avg_pool2d_bprop, gavg, _host(gy))
    gxm = wide(True, pool.max_pool2d_bprop, _host(gy), _host(idx), shape)
    assert kinds(wide.launched) == {"max_pool2d_bprop_plane_wide"}

    HostCupy.misalign = True  # every new output one element off an aligned address (reset by host_pool)
    y2, idx2 = wide(True, pool.max_pool2d_fprop, gmax, _misaligned(x))
    assert_same_bits(y2, y)
    assert_same_bits(idx2, idx)
    assert_same_bits(wide(True, pool.avg_pool2d_fprop, gavg, _misaligned(x)), ya)
    assert_same_bits(wide(True, pool.avg_pool2d_bprop, gavg, _misaligned(gy)), gx)
    assert_same_bits(wide(True, pool.max_pool2d_bprop, _misaligned(gy), _misaligned(idx), shape), gxm)
    assert kinds(wide.launched) == {"max_pool2d_bprop_plane_wide"}


@needs_pool
def test_wide_kernels_run_only_where_they_apply(wide, tunables):
    """Other column geometries, 64-bit indices, the feature off: pool.cu's kernels."""
    x = _host(numpy.random.default_rng(1).standard_normal((1, 2, 9, 10)).astype(numpy.float32))
    for kernel, stride, dilation in ((5, 2, 1), (3, 3, 1), (3, 2, (1, 2)), ((3, 1), (2, 3), 1)):
        g = _geometry(x.shape, kernel, stride, 0, dilation, False)
        wide(True, pool.max_pool2d_fprop, g, x)
        assert kinds(wide.launched) == {"max_pool2d_fprop"}, (kernel, stride, dilation)
    g = _avg_geometry(x.shape, 3, 2, 1, False, True, None)
    wide(True, pool.avg_pool2d_fprop, g, x)
    assert kinds(wide.launched) == {"avg_pool2d_fprop_wide"}
    wide(False, pool.avg_pool2d_fprop, g, x)
    assert kinds(wide.launched) == {"avg_pool2d_fprop"}
    tunables(index_limit=-1)  # nothing fits 31 bits: the 64-bit kernels
    wide(True, pool.avg_pool2d_bprop, g, _host(numpy.ones(g.output_shape, numpy.float32)))
    assert wide.launched == [("pool.cu", "avg_pool2d_bprop<float, long long>")]


@needs_pool
def test_wide_plane_kernel_limits():
    assert pool.use_wide_plane_kernel(112 * 112, 56 * 56, 4, pool.MAX_PLANE_SMEM_BYTES)
    assert pool.wide_plane_smem_bytes(112 * 112, 56 * 56, 4) == 12544 + 4 * 6272 + 4 * 3136 + 128  # 50.3 KB
    sm_bytes, reserved = 228 * 1024, 1024  # shared memory of an H100 SM, and what each block reserves
    assert 4 * (pool.wide_plane_smem_bytes(112 * 112, 56 * 56, 4) + reserved) <= sm_bytes  # 4 planes per SM
    assert 4 * (pool.plane_smem_bytes(112 * 112, 56 * 56) + reserved) > sm_bytes  # pool.cu's kernel: 3
    assert not pool.use_wide_plane_kernel(1, 65536, 2, 1 << 30)  # 16-bit counters
    assert pool.use_wide_plane_kernel(1, 65535, 2, 1 << 30)
    assert pool.wide_plane_threads(112 * 112, 4) == 512 and pool.wide_plane_threads(9, 8) == 64
    assert pool.wide_plane_threads(56 * 56, 4) % 32 == 0


# ---------------------------------------------------------------------------------------- max backward


def _bprop(wide, on, gy, idx, input_shape):
    gx = wide(on, pool.max_pool2d_bprop, _host(gy), _host(idx), input_shape)
    assert kinds(wide.launched) == ({"max_pool2d_bprop_plane_wide"} if on else {"max_pool2d_bprop_plane"})
    return gx


@needs_pool
@needs_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", MAX_CASES[:10])
def test_wide_max_pool2d_backward_is_bitwise_the_plane_kernel_and_torch(wide, case, dtype):
    shape, kernel, stride, padding, dilation, ceil_mode = case
    rng = numpy.random.default_rng(zlib.crc32(repr(case).encode()) + 1)
    x = friendly(shape, dtype, rng)
    g = _geometry(shape, kernel, stride, padding, dilation, ceil_mode)
    _, idx = wide(False, pool.max_pool2d_fprop, g, _host(x))
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    gx = _bprop(wide, True, gy, idx, shape)
    assert_same_bits(gx, _bprop(wide, False, gy, idx, shape))
    txr = torch.from_numpy(x.astype(numpy.float64)).requires_grad_()
    torch.nn.functional.max_pool2d(txr, kernel, stride, padding, dilation, ceil_mode).backward(
        torch.from_numpy(gy.astype(numpy.float64)))
    tol = 2e-3 if dtype == numpy.float16 else 1e-6
    numpy.testing.assert_allclose(gx, txr.grad.numpy(), rtol=tol, atol=tol)


BPROP_SHAPES = [  # (N, C, H, W, P, Q): made-up indices, so P, Q are free
    (1, 3, 5, 4, 9, 13),  # odd P*Q (element loads of the index pairs), 3 planes over 2 blocks
    (2, 2, 7, 9, 21, 17),  # P*Q = 357 > 4 * 40 * 2: two rounds of index pairs; odd H*W
    (1, 2, 8, 8, 6, 8),  # H*W and P*Q multiples of 8: every vector path
    (1, 1, 1, 1, 1, 1),
    (1, 2, 3, 31, 2, 2),
]


@needs_pool
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BPROP_SHAPES)
def test_wide_max_pool2d_backward_sums_made_up_indices_in_output_order(wide, shape, dtype):
    """Indices with long runs (the heapsort branch, > 16 outputs per element), elements chosen by none and
    indices outside [0, H*W) (ignored): bit for bit the old plane kernel and the scatter loop in output order,
    on every run (the emulated atomics hand out slots in a different order each time)."""
    N, C, H, W, P, Q = shape
    rng = numpy.random.default_rng(zlib.crc32(repr(shape).encode()))
    HW = H * W
    choices = numpy.array(sorted({0, HW - 1, HW // 2, 1 % HW, -1, HW, 1 << 40, -(1 << 40)}))
    weights = numpy.where((choices >= 0) & (choices < HW), 3.0, 1.0)
    idx = rng.choice(choices, size=(N, C, P, Q), p=weights / weights.sum()).astype(numpy.int64)
    anywhere = rng.random(idx.shape) < 0.3
    idx[anywhere] = rng.integers(0, HW, size=int(anywhere.sum()))
    gy = (rng.standard_normal((N, C, P, Q)) * 10.0 ** rng.integers(-4, 5, (N, C, P, Q))).astype(dtype)
    acc = numpy.float32 if dtype == numpy.float16 else dtype
    expected = numpy.zeros((N * C, HW), acc)
    for b in range(N * C):
        for o in range(P * Q):
            i = idx.reshape(N * C, -1)[b, o]
            if 0 <= i < HW:
                expected[b, i] += acc(gy.reshape(N * C, -1)[b, o])
    old = _bprop(wide, False, gy, idx, (N, C, H, W))
    assert_same_bits(old.reshape(N * C, HW), expected.astype(dtype))
    for _ in range(2):
        assert_same_bits(_bprop(wide, True, gy, idx, (N, C, H, W)), old)


@needs_pool
def test_fast_divisor_divides_exactly_below_2_to_31():
    """pool_wide.cu's divide(): (umulhi(n, mul) + n) >> shift == n // d for 0 <= n < 2^31, every d >= 1 tried."""
    rng = numpy.random.default_rng(3)
    n = numpy.concatenate([numpy.arange(0, 4096), rng.integers(0, 1 << 31, 20000),
                           (1 << 31) - 1 - numpy.arange(0, 4096)]).astype(numpy.uint64)
    divisors = list(range(1, 300)) + [(1 << k) + e for k in range(8, 31) for e in (-1, 0, 1)] + \
        [int(d) for d in rng.integers(1, 1 << 31, 300)] + [(1 << 31) - 1]
    for d in divisors:
        magic = int(pool.fast_divisor(d))
        mul, shift = magic & 0xFFFFFFFF, magic >> 32
        assert 0 < mul < (1 << 32) and shift <= 31
        high = (n * numpy.uint64(mul)) >> numpy.uint64(32)
        total = high + n
        assert (total < (1 << 32)).all()
        numpy.testing.assert_array_equal(total >> numpy.uint64(shift), n // numpy.uint64(d), err_msg=str(d))
