"""gemm_1x1 without a GPU: gpuconv/_cuda/_cublas.py and _conv_gemm1x1.py against a NumPy emulator of cuBLAS.

``CublasEmulator.gemmStridedBatchedEx`` stands in for ``cupy_backends.cuda.libs.cublas.gemmStridedBatchedEx``
with the same argument list. It knows nothing of the arrays: it reads A, B (and C when beta != 0) from the
raw addresses the wrapper passes, laid out as the cuBLAS documentation says (column-major, element (i, j)
of batch entry p at ptr + (p*stride + i + j*ld) * itemsize), multiplies in the compute type, and writes C
the same way. It refuses what cuBLAS refuses (a leading dimension below the stored matrix's row count,
unknown enums or type combinations) and what would corrupt memory on a GPU (an access outside the
allocation the pointer came from, overlapping output matrices). The emulator is checked first against
numpy.matmul on buffers filled element by element; then the real wrapper and the real conv launchers run
on it (numpy standing in for cupy), against the float64 reference, with NaN-poisoned outputs.

Not checked here: the real cuBLAS (its types, tensor cores, CuPy's handle and stream): tests/test_gpu_gemm_1x1.py.
"""

from __future__ import annotations

import ctypes
import types

import numpy
import pytest

import reference
from gpuconv import _params
import importlib

from gpuconv._cuda import _runtime
from support.host_modules import Family, HostRuntime

HANDLE = 0x5EED
OP_N, OP_T = 0, 1
TYPES = {2: numpy.float16, 0: numpy.float32, 1: numpy.float64}  # cudaDataType
COMPUTE = {68: numpy.float32, 70: numpy.float64}  # cublasComputeType_t -> compute and scalar type
ALLOWED = {(numpy.float16, numpy.float16, 68), (numpy.float16, numpy.float32, 68),
           (numpy.float32, numpy.float32, 68), (numpy.float64, numpy.float64, 70)}


class CublasEmulator:
    """A NumPy cublasGemmStridedBatchedEx over raw host addresses (see the module docstring)."""

    def __init__(self):
        self.calls = []
        self.ranges = {}  # address -> (first byte, end byte) of the allocation it points into

    def pointer(self, a) -> int:
        """Stands in for _cublas._pointer: the address, remembered with the bounds of a's allocation."""
        base = a
        while isinstance(base.base, numpy.ndarray):
            base = base.base
        lo = base.__array_interface__["data"][0]
        self.ranges[a.ctypes.data] = (lo, lo + base.nbytes)
        return a.ctypes.data

    def _matrices(self, ptr, dtype, rows, cols, ld, stride, batch):
        """(batch, rows, cols) view of column-major matrices at ptr, bounds-checked against the allocation."""
        assert ld >= max(1, rows), f"ld {ld} < max(1, rows {rows}): cuBLAS returns CUBLAS_STATUS_INVALID_VALUE"
        assert stride >= 0, stride
        item = numpy.dtype(dtype).itemsize
        extent = ((batch - 1) * stride + (cols - 1) * ld + rows) * item
        lo, hi = self.ranges[ptr]
        assert lo <= ptr and ptr + extent <= hi, f"access [{ptr}, {ptr + extent}) outside allocation [{lo}, {hi})"
        flat = numpy.frombuffer((ctypes.c_char * extent).from_address(ptr), dtype=dtype)
        return numpy.lib.stride_tricks.as_strided(flat, (batch, rows, cols), (stride * item, item, ld * item))

    def gemmStridedBatchedEx(self, handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb,
                             strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType, algo):
        args = (handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb, strideB, beta, C,
                Ctype, ldc, strideC, batchCount, computeType, algo)
        assert all(type(v) is int for v in args), [type(v) for v in args]
        assert handle == HANDLE and algo in (-1, 99) and transa in (OP_N, OP_T) and transb in (OP_N, OP_T)
        assert min(m, n, k) >= 1 and batchCount >= 1
        assert Atype == Btype and (TYPES[Atype], TYPES[Ctype], computeType) in ALLOWED
        in_type, out_type, compute = TYPES[Atype], TYPES[Ctype], COMPUTE[computeType]
        scalar = lambda address: float(numpy.frombuffer((ctypes.c_char * 8).from_address(address), compute, 1)[0])
        alpha, beta = scalar(alpha), scalar(beta)
        a = self._matrices(A, in_type, *((m, k) if transa == OP_N else (k, m)), lda, strideA, batchCount)
        b = self._matrices(B, in_type, *((k, n) if transb == OP_N else (n, k)), ldb, strideB, batchCount)
        c = self._matrices(C, out_type, m, n, ldc, strideC, batchCount)
        assert batchCount == 1 or strideC >= (n - 1) * ldc + m, "output matrices overlap"
        op = lambda x, t: x.transpose(0, 2, 1) if t == OP_T else x
        result = alpha * numpy.matmul(op(a, transa).astype(compute), op(b, transb).astype(compute))
        if beta != 0:  # beta == 0: C is not read (it may hold NaN)
            result = result + beta * c.astype(compute)
        assert c.flags.writeable
        c[...] = result.astype(out_type)
        self.calls.append(dict(m=m, n=n, k=k, batch=batchCount, transa=transa, transb=transb))


@pytest.fixture(scope="module")
def host():
    names = {"_algo": "_algo", "_cublas": "experimental.cublas", "_conv_gemm1x1": "experimental.gemm_1x1",
             "_conv_im2col": "_conv_im2col", "conv": "conv"}
    modules = {k: importlib.import_module(f"gpuconv._cuda.{v}") for k, v in names.items()}
    return types.SimpleNamespace(im2col=Family("im2col"), **modules)


def _no_kernel(name):
    raise AssertionError(f"the gemm_1x1 path launched kernel {name}")


class EmulatedBlas(HostRuntime):
    """A host runtime whose cuBLAS is the emulator, and whose device pointers are the emulator's (host
    addresses remembered with their allocation's bounds)."""

    def __init__(self, emulator):
        super().__init__(_no_kernel, cublas=(emulator, HANDLE))
        self.pointer = emulator.pointer


@pytest.fixture()
def blas(host, monkeypatch):
    """The emulator as the runtime's cuBLAS, gemm_1x1 switched on, outputs poisoned."""
    emulator = CublasEmulator()
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "gemm_1x1")
    monkeypatch.setenv("GPUCONV_POISON", "1")
    with _runtime.use(EmulatedBlas(emulator)):
        yield emulator


# ----------------------------------------------------------------------------- the emulator itself


def _column_major_buffer(mats, ld, stride, extra=3):
    """A flat buffer holding mats (batch, rows, cols) column-major, filled element by element."""
    batch, rows, cols = mats.shape
    buf = numpy.full((batch - 1) * stride + (cols - 1) * ld + rows + extra, numpy.nan, mats.dtype)
    for p in range(batch):
        for i in range(rows):
            for j in range(cols):
                buf[p * stride + i * 1 + j * ld] = mats[p, i, j]
    return buf


@pytest.mark.parametrize("transa, transb", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("broadcast_a", (False, True))
def test_emulator_matches_numpy_matmul(transa, transb, broadcast_a):
    rng = numpy.random.default_rng(transa * 2 + transb)
    m, n, k, batch = 3, 4, 5, 3
    a_op = rng.standard_normal((1 if broadcast_a else batch, m, k))
    b_op = rng.standard_normal((batch, k, n))
    a_stored = a_op.transpose(0, 2, 1) if transa else a_op
    b_stored = b_op.transpose(0, 2, 1) if transb else b_op
    lda, ldb, ldc = a_stored.shape[1] + 2, b_stored.shape[1] + 1, m + 3
    stride_a = 0 if broadcast_a else lda * a_stored.shape[2] + 1
    stride_b, stride_c = ldb * b_stored.shape[2], ldc * n + 2
    a_buf = _column_major_buffer(a_stored, lda, stride_a)
    b_buf = _column_major_buffer(b_stored, ldb, stride_b)
    c_buf = numpy.full((batch - 1) * stride_c + (n - 1) * ldc + m, numpy.nan)
    emulator = CublasEmulator()
    alpha, beta = numpy.array(1.0), numpy.array(0.0)
    emulator.gemmStridedBatchedEx(HANDLE, transa, transb, m, n, k, alpha.ctypes.data, emulator.pointer(a_buf), 1,
                                  lda, stride_a, emulator.pointer(b_buf), 1, ldb, stride_b, beta.ctypes.data,
                                  emulator.pointer(c_buf), 1, ldc, stride_c, batch, 70, -1)
    expected = numpy.matmul(a_op, b_op)
    for p in range(batch):
        for i in range(m):
            for j in range(n):
                assert abs(c_buf[p * stride_c + i + j * ldc] - expected[p, i, j]) < 1e-12
    written = {p * stride_c + i + j * ldc for p in range(batch) for i in range(m) for j in range(n)}
    untouched = numpy.array([v for idx, v in enumerate(c_buf) if idx not in written])
    assert numpy.isnan(untouched).all(), "the emulator wrote outside C's matrices"


def test_emulator_refuses_out_of_bounds_and_small_ld():
    emulator = CublasEmulator()
    buf = numpy.zeros(12)
    one = numpy.array(1.0)
    call = lambda lda, batch: emulator.gemmStridedBatchedEx(
        HANDLE, 0, 0, 3, 2, 2, one.ctypes.data, emulator.pointer(buf), 1, lda, 6, emulator.pointer(buf), 1, 2, 0,
        one.ctypes.data, emulator.pointer(buf[6:]), 1, 3, 0, batch, 70, -1)
    with pytest.raises(AssertionError, match="ld 2"):
        call(2, 1)
    with pytest.raises(AssertionError, match="outside allocation"):
        call(3, 3)


# ----------------------------------------------------------------------------- the wrapper


def _operand(rng, batch, rows, cols, dtype, layout):
    """A (batch, rows, cols) operand: contiguous, a column slice of a wider array (ld > cols), or shared."""
    if layout == "shared":
        return rng.standard_normal((1, rows, cols)).astype(dtype)
    if layout == "sliced":
        wide = rng.standard_normal((batch, rows + 1, cols + 3)).astype(dtype)
        return wide[:, 1:, 2:2 + cols]
    return rng.standard_normal((batch, rows, cols)).astype(dtype)


@pytest.mark.parametrize("dtype", (numpy.float64, numpy.float32, numpy.float16), ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("layouts", [("plain", "plain", "plain"), ("shared", "sliced", "sliced"),
                                     ("sliced", "shared", "plain")])
def test_wrapper_against_matmul(host, blas, dtype, trans_a, trans_b, layouts):
    rng = numpy.random.default_rng(11)
    batch, m, n, k = 3, 5, 7, 6
    a = _operand(rng, batch, *((k, m) if trans_a else (m, k)), dtype, layouts[0])
    b = _operand(rng, batch, *((n, k) if trans_b else (k, n)), dtype, layouts[1])
    out_full = numpy.full((batch, m + 2, n + 4), numpy.nan, dtype)
    out = out_full[:, 1:1 + m, 3:3 + n] if layouts[2] == "sliced" else numpy.full((batch, m, n), numpy.nan, dtype)
    result = host._cublas.gemm_strided_batched(a, b, out, trans_a=trans_a, trans_b=trans_b)
    assert result is out and len(blas.calls) == 1
    f64 = lambda x, t: (x.transpose(0, 2, 1) if t else x).astype(numpy.float64)
    expected = numpy.matmul(f64(a, trans_a), f64(b, trans_b))
    tol = {numpy.float64: 1e-12, numpy.float32: 1e-5, numpy.float16: 4e-3}[dtype]
    numpy.testing.assert_allclose(out.astype(numpy.float64), expected, rtol=tol, atol=tol * 4)
    if layouts[2] == "sliced":  # nothing outside the view was touched
        mask = numpy.ones(out_full.shape, bool)
        mask[:, 1:1 + m, 3:3 + n] = False
        assert numpy.isnan(out_full[mask]).all()


def test_wrapper_float16_to_float32_and_beta(host, blas):
    rng = numpy.random.default_rng(12)
    a = rng.standard_normal((2, 4, 3)).astype(numpy.float16)
    b = rng.standard_normal((2, 3, 5)).astype(numpy.float16)
    out = rng.standard_normal((2, 4, 5)).astype(numpy.float32)
    start = out.copy()
    host._cublas.gemm_strided_batched(a, b, out, alpha=2.0, beta=0.5)
    expected = 2.0 * numpy.matmul(a.astype(numpy.float64), b.astype(numpy.float64)) + 0.5 * start
    numpy.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_wrapper_2d_operands(host, blas):
    rng = numpy.random.default_rng(13)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 2))
    out = numpy.full((4, 2), numpy.nan)
    host._cublas.gemm_strided_batched(a, b, out)
    numpy.testing.assert_allclose(out, a @ b, rtol=1e-12)


def test_wrapper_refuses_misuse(host, blas):
    gemm = host._cublas.gemm_strided_batched
    f32 = lambda *s: numpy.zeros(s, numpy.float32)
    with pytest.raises(ValueError, match="do not chain"):
        gemm(f32(2, 3, 4), f32(2, 5, 6), f32(2, 3, 6))
    with pytest.raises(ValueError, match="do not chain"):
        gemm(f32(2, 3, 4), f32(2, 4, 6), f32(2, 3, 5))
    with pytest.raises(ValueError, match="batch 3"):
        gemm(f32(3, 3, 4), f32(2, 4, 6), f32(2, 3, 6))
    with pytest.raises(ValueError, match="contiguous"):
        gemm(f32(2, 4, 3).transpose(0, 2, 1), f32(2, 4, 6), f32(2, 3, 6))
    with pytest.raises(ValueError, match="overlap"):
        gemm(f32(2, 3, 4), f32(2, 4, 6), numpy.broadcast_to(f32(1, 3, 6), (2, 3, 6)))
    with pytest.raises(TypeError, match="differ"):
        gemm(f32(2, 3, 4), numpy.zeros((2, 4, 6)), f32(2, 3, 6))
    with pytest.raises(TypeError, match="no cuBLAS GEMM"):
        gemm(f32(2, 3, 4), f32(2, 4, 6), numpy.zeros((2, 3, 6)))
    with pytest.raises(ValueError, match="2-D or 3-D"):
        gemm(f32(1, 2, 3, 4), f32(2, 4, 6), f32(2, 3, 6))
    assert blas.calls == []


def test_wrapper_empty_reduction_clears_out(host, blas):
    out = numpy.full((2, 3, 4), numpy.nan)
    host._cublas.gemm_strided_batched(numpy.zeros((2, 3, 0)), numpy.zeros((2, 0, 4)), out)
    assert (out == 0).all() and blas.calls == []


# ----------------------------------------------------------------------------- the conv launchers

# (N, C, H, W, K, groups, dilation): every case is 1x1, stride 1, padding 0
CASES = [
    (1, 3, 5, 7, 4, 1, 1),      # N = 1, odd plane
    (2, 6, 3, 5, 9, 3, 1),      # groups 3 > N: one call per image over the groups
    (5, 6, 2, 3, 3, 3, (2, 1)),  # N > groups: one call per group over the images; dilation is irrelevant
    (3, 4, 1, 1, 6, 2, 1),      # 1x1 planes
    (4, 5, 3, 3, 7, 1, 1),
]
DTYPES = (numpy.float64, numpy.float32, numpy.float16)


def _geometry(case):
    N, C, H, W, K, groups, dilation = case
    x, w = numpy.empty((N, C, H, W)), numpy.empty((K, C // groups, 1, 1))
    return _params.conv2d_call("t", x, w, None, 1, 0, dilation, groups, "zeros").geometry


def _check(actual, expected, magnitude, dtype, terms, what):
    assert actual.dtype == dtype, (what, actual.dtype)
    assert not numpy.isnan(actual).any(), f"{what}: unwritten (NaN) elements"
    eps = {numpy.float64: 1e-15, numpy.float32: 1e-6, numpy.float16: 1e-3}[dtype]
    rounding = 1e-3 if dtype == numpy.float16 else 0.0
    bound = 4 * eps * max(1, terms) ** 0.5 * (magnitude + 1e-30) + rounding * numpy.abs(expected)
    err = numpy.abs(actual.astype(numpy.float64) - expected)
    assert (err <= bound).all(), f"{what}: max error {err.max():.3g}, bound there {bound.flat[err.argmax()]:.3g}"


def _run_all_passes(host, g, dtype, seed, bias):
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(g.input_shape).astype(dtype)
    w = rng.standard_normal(g.weight_shape).astype(dtype)
    gy = rng.standard_normal(g.output_shape).astype(dtype)
    bias_k = rng.standard_normal(g.K).astype(dtype) if bias else None
    bias_c = rng.standard_normal(g.C).astype(dtype) if bias else None
    f64 = lambda a: None if a is None else a.astype(numpy.float64)
    args = dict(groups=g.groups, dilation=(g.dil_h, g.dil_w))
    y = reference.conv2d(f64(x), f64(w), f64(bias_k), **args)
    y_mag = reference.conv2d(numpy.abs(f64(x)), numpy.abs(f64(w)), None if bias_k is None else numpy.abs(f64(bias_k)),
                             **args)
    gx, gw, _ = reference.conv2d_backward(f64(gy), f64(x), f64(w), **args)
    gx_mag, gw_mag, _ = reference.conv2d_backward(numpy.abs(f64(gy)), numpy.abs(f64(x)), numpy.abs(f64(w)), **args)
    if bias:
        gx = gx + f64(bias_c)[None, :, None, None]
        gx_mag = gx_mag + numpy.abs(f64(bias_c))[None, :, None, None]
    im2col = host.im2col
    _check(im2col.conv2d_fprop(g, x, w, bias_k), y, y_mag, dtype, g.c_per_group, "fprop")
    _check(im2col.conv2d_dgrad(g, gy, w, bias_c), gx, gx_mag, dtype, g.k_per_group, "dgrad")
    _check(im2col.conv2d_wgrad(g, x, gy), gw, gw_mag, dtype, g.N * g.P * g.Q, "wgrad")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
@pytest.mark.parametrize("wgrad_chunks", ("one", "two_per_chunk", "one_per_chunk"))
def test_conv_passes(host, blas, tunables, case, dtype, wgrad_chunks):
    g = _geometry(case)
    assert host._algo.first("im2col", g, dtype, "fprop").name == "gemm_1x1"
    per_image = g.K * g.c_per_group * (8 if dtype == numpy.float64 else 4)
    if wgrad_chunks != "one":
        tunables(workspace_bytes=per_image * (2 if wgrad_chunks == "two_per_chunk" else 1))
    expected_chunk = {"one": g.N, "two_per_chunk": min(2, g.N), "one_per_chunk": 1}[wgrad_chunks]
    assert host._conv_gemm1x1.wgrad_chunk(g, dtype) == expected_chunk
    _run_all_passes(host, g, dtype, seed=21, bias=True)
    _run_all_passes(host, g, dtype, seed=22, bias=False)
    calls_per_pass = min(g.groups, g.N)
    wgrad_calls = sum(min(g.groups, min(expected_chunk, g.N - n0)) for n0 in range(0, g.N, expected_chunk))
    assert len(blas.calls) == 2 * (2 * calls_per_pass + wgrad_calls)


def test_dispatch_through_conv_py(host, blas, monkeypatch):
    """conv.py with GPUCONV_CONV_ALGO=im2col, strided inputs: made contiguous, routed to the GEMM path."""

    class _Device:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class WithDevice(numpy.ndarray):
        device = property(lambda self: _Device())

    monkeypatch.setenv("GPUCONV_CONV_ALGO", "im2col")
    g = _geometry(CASES[1])
    rng = numpy.random.default_rng(5)
    x = numpy.asfortranarray(rng.standard_normal(g.input_shape)).view(WithDevice)
    w = numpy.asfortranarray(rng.standard_normal(g.weight_shape)).view(WithDevice)
    y = host.conv.conv2d_fprop(g, x, w)
    expected = reference.conv2d(numpy.asarray(x), numpy.asarray(w), groups=g.groups)
    numpy.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    assert len(blas.calls) == min(g.groups, g.N)


def test_only_1x1_stride1_unpadded_and_only_when_switched_on(host, blas, monkeypatch):
    make = lambda R, stride, padding: _params.conv2d_call(
        "t", numpy.empty((2, 4, 5, 5)), numpy.empty((6, 4, R, R)), None, stride, padding, 1, 1, "zeros").geometry
    uses = lambda g: host._algo.first("im2col", g, numpy.float32, "fprop").name == "gemm_1x1"  # noqa: E731
    assert uses(make(1, 1, 0))
    assert not host._conv_gemm1x1.applies(make(1, 2, 0))
    assert not host._conv_gemm1x1.applies(make(1, 1, 1))
    assert not host._conv_gemm1x1.applies(make(3, 1, 1))
    transposed = _params.conv_transpose2d_call("t", numpy.empty((2, 4, 5, 5)), numpy.empty((4, 6, 1, 1)), None, 1, 0,
                                               0, 1, 1).geometry
    assert host._conv_gemm1x1.applies(transposed)
    monkeypatch.setenv("GPUCONV_UNVERIFIED", "pool_wide")
    assert not uses(make(1, 1, 0))


def test_transposed_1x1_forward_is_dgrad(host, blas):
    """conv_transpose2d's forward is this dgrad with bias[c] (the transposed weight is (Cin, Cout, 1, 1))."""
    rng = numpy.random.default_rng(8)
    x, w, b = rng.standard_normal((2, 6, 3, 4)), rng.standard_normal((6, 4, 1, 1)), rng.standard_normal(4)
    g = _params.conv_transpose2d_call("t", x, w, b, 1, 0, 0, 1, 1).geometry
    out = host.im2col.conv2d_dgrad(g, x, w, b)
    numpy.testing.assert_allclose(out, reference.conv_transpose2d(x, w, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("switch", ("gemm_1x1", ""))
def test_group_batched_float16_gemm(host, blas, monkeypatch, switch):
    """_conv_im2col._gemm with more than MAX_LOOPED_GROUPS float16 groups: one float16 strided-batched cuBLAS
    call with the switch on (numpy's matmul stands in for cupy's converting batched matmul without it)."""
    monkeypatch.setenv("GPUCONV_UNVERIFIED", switch)
    rng = numpy.random.default_rng(9)
    groups = host._conv_im2col.MAX_LOOPED_GROUPS + 3
    a = rng.standard_normal((groups, 5, 7)).astype(numpy.float16)
    b = rng.standard_normal((groups, 7, 6)).astype(numpy.float16)
    batched = host._cublas.gemm_strided_batched if switch else None  # im2col_half_batched's product
    variant = host._algo.first("im2col", _geometry_with_groups(groups), numpy.float16, "fprop").name
    assert variant == ("im2col_half_batched" if switch else "im2col")
    out = host._conv_im2col._gemm(a, b, None, batched)
    assert out.dtype == numpy.float16 and out.shape == (groups, 5, 6)
    expected = numpy.matmul(a.astype(numpy.float64), b.astype(numpy.float64))
    numpy.testing.assert_allclose(out.astype(numpy.float64), expected, rtol=4e-3, atol=1e-2)
    assert [c["batch"] for c in blas.calls] == ([groups] if switch else [])
    given = numpy.full((groups, 5, 6), numpy.nan, numpy.float16)
    assert host._conv_im2col._gemm(a, b, given, batched) is given and not numpy.isnan(given).any()


def _geometry_with_groups(groups):
    return _params.conv2d_call("t", numpy.empty((1, 2 * groups, 5, 5)), numpy.empty((2 * groups, 2, 3, 3)), None, 1,
                               1, 1, groups, "zeros").geometry
