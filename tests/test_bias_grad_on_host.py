"""The bias-gradient kernels (kernels/bias_grad.cu, opt-in GPUCONV_UNVERIFIED=bias_grad) compiled with g++ and run
on the CPU through the real launcher (gpuconv/_cuda/_bias_grad.py), no GPU needed.

As the other host tests (the shim in tests/host_cuda: one std::thread per CUDA thread, meeting at a barrier for
__syncthreads; __half as _Float16; numpy for cupy; grids capped at HOST_GRID blocks so the grid-stride loops wrap;
outputs and the partial sums poisoned with NaN, so an unwritten element fails). Three checks per case:

- integer-valued gy (every partial sum exact in float32), followed in memory by NaN: gb equals the float64 sum
  exactly, whatever the order, so a unit read twice, skipped, read from the wrong channel or past gy's end fails
  however large the tensor;
- random normal gy: gb within the float64 sum's rounding bound, and bitwise equal to ``exact_order``, a NumPy
  model of the summation order the kernel header specifies (per-thread sums of units t, t + B, .. of each
  split, the block tree, the split reduction): the result does not depend on how the shim schedules the
  threads (they run concurrently; a barrier taken out of the tree made most cases differ when tried);
- the same bits on a second call, from a misaligned copy (16-byte-unit cases: element loads instead of 16-byte
  ones) and from a non-contiguous view (small cases: the launcher's copy).

Cases reach: one launch (splits == 1) and two (splits > 1); the 16-byte unit and the element unit (P*Q not a
multiple of 16 bytes, P*Q = 1); K = 1, N = 1; channels of ~80k elements; blocks of 32 to 256 threads; with
SPLIT_BYTES shrunk, one unit per split, empty splits and split reductions over more splits than threads; empty
tensors (N = 0, P*Q = 0: zeros; K = 0).

Skips when g++ with C++20 <barrier> and _Float16 is not available.
"""

from __future__ import annotations

import zlib

import numpy
import pytest

from support import host_kernels
from gpuconv._cuda import _kernel_table as kernel_table
from gpuconv._cuda import _loader as loader
from support.host_modules import cuda_modules_on_host

SOURCE = "experimental/bias_grad.cu"
HOST_GRID = 3
SIGNATURES = {"conv2d_bias_grad": (3, "iiii"), "conv2d_bias_grad_reduce": (2, "ii")}
ACC_POINTERS = {"conv2d_bias_grad": (1,), "conv2d_bias_grad_reduce": (0,)}
KERNELS = host_kernels.Signatures(SIGNATURES, ACC_POINTERS, frozenset(SIGNATURES))
DTYPES = (numpy.float16, numpy.float32, numpy.float64)
BITS = {numpy.dtype(numpy.float16): numpy.uint16, numpy.dtype(numpy.float32): numpy.uint32,
        numpy.dtype(numpy.float64): numpy.uint64}



@pytest.fixture(scope="module")
def host_lib(tmp_path_factory):
    unit = host_kernels.translation_unit(loader.source(SOURCE), kernel_table.KERNELS[SOURCE], KERNELS)
    return host_kernels.build_library(tmp_path_factory.mktemp("host_bias_grad"), [("bias_grad", SOURCE, unit)],
                                      "libhostbiasgrad.so")


class HostKernel(host_kernels.HostKernel):
    signatures = KERNELS
    host_grid = HOST_GRID
    launches: list = []


@pytest.fixture(scope="module")
def bg(host_lib):  # gpuconv/_cuda/experimental/bias_grad.py on the host runtime
    with cuda_modules_on_host(("_loader", "_launch", "_alloc", "_bias_grad"),
                              lambda name: HostKernel(host_lib, name)) as modules:
        yield modules._bias_grad


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setenv("GPUCONV_POISON", "1")
    HostKernel.launches.clear()


# ------------------------------------------------------------------------------------------- model


def _tree(a):
    """The kernel's block tree over the last axis (a power of two): a[t] += a[t + w], w = B/2 .. 1."""
    a = a.copy()
    w = a.shape[-1] // 2
    while w:
        a[..., :w] = a[..., :w] + a[..., w:2 * w]
        w //= 2
    return a[..., 0]


def exact_order(gy, plan):
    """gb as the kernels compute it, operation by operation (float32 or float64 additions in numpy round as the
    device's do; float16 converts exactly to float32)."""
    N, K, P, Q = gy.shape
    acc_t = plan.acc_dtype
    vec, splits, B = plan.vec, plan.splits, plan.threads
    L = (P * Q) // vec
    M = N * L
    units = gy.reshape(N, K, L, vec).transpose(1, 0, 2, 3).reshape(K, M, vec).astype(acc_t)
    chunk = -(-M // splits)
    first = numpy.arange(splits)[:, None] * chunk + numpy.arange(B)[None, :]
    end = numpy.minimum((numpy.arange(splits)[:, None] + 1) * chunk, M)
    count = numpy.where(first < end, (end - first + B - 1) // B, 0)
    acc = numpy.zeros((K, splits, B), acc_t)
    for i in range(int(count.max())):
        valid = i < count
        j = numpy.where(valid, first + i * B, 0)
        for e in range(vec):
            acc = numpy.where(valid, acc + units[:, j, e], acc)
    partial = _tree(acc)  # (K, splits)
    if splits == 1:
        return partial[:, 0].astype(gy.dtype)
    B2 = plan.reduce_threads
    acc2 = numpy.zeros((K, B2), acc_t)
    for i in range(-(-splits // B2)):
        s = numpy.arange(B2) + i * B2
        acc2 = numpy.where(s < splits, acc2 + partial[:, numpy.minimum(s, splits - 1)], acc2)
    return _tree(acc2).astype(gy.dtype)


# ------------------------------------------------------------------------------------------- cases

# name -> (N, K, P, Q, SPLIT_BYTES or None for the launcher's)
CASES = {
    "tiny_1x16x8x8": (1, 16, 8, 8, None),          # batch-1 call: one launch, 16-byte units, 32-thread blocks
    "pq1": (9, 5, 1, 1, None),                     # P*Q = 1: element units, one per row
    "pq35": (3, 4, 5, 7, None),                    # P*Q odd: element units across row ends
    "pq12": (2, 3, 6, 2, None),                    # 16-byte units for float / double, elements for float16
    "k1": (4, 1, 6, 6, None),
    "n1_pq144": (1, 3, 12, 12, None),
    "rows_shorter_than_block": (40, 3, 3, 4, None),  # 480 units per channel, several rows per 256-unit step
    "big_vec": (2, 3, 200, 200, None),             # 80000 per channel: 2 / 3 / 5 splits by dtype
    "big_odd": (3, 2, 151, 151, None),             # 68403 per channel, element units: 2 / 3 / 5 splits
    "many_splits": (1, 1, 20, 60, 16),             # one unit per split, 300 (150 / 600) splits: reduce wraps
    "empty_splits": (1, 2, 4, 6, 20),              # float32: 6 units, 5 splits of 2 (the last two empty)
    "uneven_splits": (5, 2, 7, 9, 1000),           # 315 per channel: splits of a few rows, ragged ends
}


def make(shape, dtype, seed, integer):
    """gy, followed in memory by as many NaN: a read past its end (a split or row past the channel's last) gives
    a NaN in gb rather than a crash or a silent pass."""
    rng = numpy.random.default_rng(seed)
    size = int(numpy.prod(shape))
    values = rng.integers(-8, 9, size=shape) if integer else rng.standard_normal(shape)
    guarded = numpy.full(2 * size, numpy.nan, dtype)
    gy = guarded[:size].reshape(shape)
    gy[...] = values
    return gy


def run(bg, monkeypatch, case, gy):
    from gpuconv._cuda import _config

    N, K, P, Q, split_bytes = CASES[case]
    split_bytes = split_bytes or bg.SPLIT_BYTES
    HostKernel.launches.clear()
    with _config.override(bias_split_bytes=split_bytes):  # a tunable, shrunk to reach many splits
        gb = bg.bias_grad(gy)
    return gb, list(HostKernel.launches), bg.plan(N, K, P * Q, gy.dtype, split_bytes)


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and numpy.array_equal(a.view(BITS[a.dtype]), b.view(BITS[b.dtype]))


def misaligned(a):
    """A C-contiguous copy of a whose data starts one element past a 16-byte boundary."""
    buf = numpy.empty(a.size + 16, a.dtype)
    start = (-buf.ctypes.data // a.dtype.itemsize) % 16 + 1
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    assert out.flags.c_contiguous and out.ctypes.data % 16 != 0
    return out


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("case", list(CASES))
def test_bias_grad(bg, monkeypatch, case, dtype):
    N, K, P, Q, _ = CASES[case]
    seed = zlib.crc32(f"{case}{numpy.dtype(dtype).name}".encode())

    exact = make((N, K, P, Q), dtype, seed, integer=True)
    gb, launches, plan = run(bg, monkeypatch, case, exact)
    assert gb.shape == (K,) and gb.dtype == dtype
    numpy.testing.assert_array_equal(gb, exact.astype(numpy.float64).sum(axis=(0, 2, 3)).astype(dtype))
    assert launches == [plan.name] + ([plan.reduce_name] if plan.splits > 1 else [])

    gy = make((N, K, P, Q), dtype, seed + 1, integer=False)
    gb, _, plan = run(bg, monkeypatch, case, gy)
    assert not numpy.isnan(gb).any()
    ref = gy.astype(numpy.float64).sum(axis=(0, 2, 3))
    magnitude = numpy.abs(gy.astype(numpy.float64)).sum(axis=(0, 2, 3))
    eps = numpy.finfo(plan.acc_dtype).eps
    bound = 4 * eps * max(1, N * P * Q) ** 0.5 * magnitude + numpy.finfo(dtype).eps * numpy.abs(ref)
    err = numpy.abs(gb.astype(numpy.float64) - ref)
    assert (err <= bound).all(), f"max error {err.max():.3g}, bound there {bound[err.argmax()]:.3g}"
    model = exact_order(gy, plan)
    assert same_bits(gb, model), f"not the specified order: {gb} vs {model}"

    again, _, _ = run(bg, monkeypatch, case, gy)
    assert same_bits(again, gb)
    if plan.vec > 1:  # element loads instead of 16-byte ones: the same values in the same order
        shifted, _, _ = run(bg, monkeypatch, case, misaligned(gy))
        assert same_bits(shifted, gb)
    if gy.size <= 4096:  # the launcher's contiguous copy (the same for any shape)
        strided = numpy.empty((N, K, P, Q, 2), dtype)[..., 0]  # every other element
        strided[...] = gy
        assert not strided.flags.c_contiguous
        viewed, _, _ = run(bg, monkeypatch, case, strided)
        assert same_bits(viewed, gb)


def test_cases_reach_every_instantiation_and_path(bg):
    """The cases' plans (test_bias_grad checks that the launches follow them) use every kernel of the table, one
    launch and two, blocks of 32 and 256 threads, split reductions over more splits than threads, empty splits."""
    seen, plans = set(), []
    for N, K, P, Q, split_bytes in CASES.values():
        for dtype in DTYPES:
            plan = bg.plan(N, K, P * Q, numpy.dtype(dtype), split_bytes or bg.SPLIT_BYTES)
            seen.update(n for n in (plan.name, plan.reduce_name) if n)
            plans.append((plan, N * ((P * Q) // plan.vec)))
    assert seen == set(kernel_table.KERNELS[SOURCE]) == set(bg.kernel_names())
    assert {p.threads for p, _ in plans} >= {32, 256} and {p.splits == 1 for p, _ in plans} == {True, False}
    assert any(p.splits > p.reduce_threads for p, _ in plans)
    assert any((p.splits - 1) * -(-units // p.splits) >= units for p, units in plans)  # an empty split


def test_split_rule(bg):
    """splits = ceil(bytes per channel / 128 KiB): one launch for small channels, ~128 KiB per block for large
    ones; a function of the shape and dtype only."""
    f16, f32, f64 = (numpy.dtype(d) for d in DTYPES)
    assert bg.plan(1, 16, 64, f32, bg.SPLIT_BYTES)[:2] == (4, 1)        # 1x16x8x8: one launch
    assert bg.plan(1, 64, 112 * 112, f32, bg.SPLIT_BYTES).splits == 1   # ResNet-50 stem, batch 1
    assert bg.plan(256, 64, 112 * 112, f32, bg.SPLIT_BYTES).splits == 98  # batch 256: 12.8 MB per channel
    assert bg.plan(32, 256, 56 * 56, f32, bg.SPLIT_BYTES).splits == 4
    assert bg.splits_for(2, 32768, f16) == (8, 1) and bg.splits_for(2, 32769, f16) == (1, 2)
    assert bg.splits_for(1, 16384, f64) == (2, 1) and bg.splits_for(1, 16385, f64) == (1, 2)
    assert bg.splits_for(0, 49, f32) == (1, 1) and bg.splits_for(7, 0, f32) == (4, 1)
    p = bg.plan(3, 5, 35, f16, bg.SPLIT_BYTES)
    assert all(type(s) is numpy.int32 for s in p.scalars + p.reduce_scalars)
    assert p.scalars == (3, 5, 35, 1) and p.threads == 128 and p.grid == 5


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
def test_empty_tensors(bg, dtype):
    numpy.testing.assert_array_equal(bg.bias_grad(numpy.ones((0, 3, 4, 4), dtype)), numpy.zeros(3, dtype))
    numpy.testing.assert_array_equal(bg.bias_grad(numpy.ones((2, 3, 0, 4), dtype)), numpy.zeros(3, dtype))
    assert bg.bias_grad(numpy.ones((2, 0, 4, 4), dtype)).shape == (0,)
