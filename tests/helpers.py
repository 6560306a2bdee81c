"""Shared by the table tests: test data, array layouts, the tolerance rule, and small checks.

Tolerance. Every op here is a sum of products (or a max, which is exact). Its rounding error is bounded by
    |computed - exact| <= (a few output roundings + n * accumulation unit roundoff) * bound
where ``bound`` is the same op applied to the absolute values of its inputs (it dominates every partial sum)
and n the length of the longest sum. float16 rounds its output to float16 but accumulates in float32, so a
float16 result is compared with the float64 reference of the float16-rounded inputs. bfloat16 alike: its
output unit roundoff is 2**-8 (8 significant bits), its accumulation float32's 2**-24; a bfloat16-accumulating
kernel would add up to n * 2**-8 and fails (tests/test_bf16.py plants one). A real bug gives an error of the
order of the values themselves, far above this bound.
"""

from __future__ import annotations

import functools

import ml_dtypes
import numpy


@functools.lru_cache(maxsize=None)
def cupy_with_gpu():
    """The cupy module when it imports and sees at least one GPU, else None."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU tests"
        pass
    return None


BFLOAT16 = numpy.dtype(ml_dtypes.bfloat16)
DTYPES = (numpy.float64, numpy.float32, numpy.float16, ml_dtypes.bfloat16)
HALF_DTYPES = (numpy.float16, ml_dtypes.bfloat16)  # 16-bit storage, float32 accumulation
LAYOUTS = ("contiguous", "transposed", "sliced", "channels_last", "reversed")

# ml_dtypes.finfo knows bfloat16 (eps 2**-7) and agrees with numpy.finfo on the others
_UNIT_ROUNDOFF = {numpy.dtype(t): float(ml_dtypes.finfo(t).eps) / 2 for t in DTYPES}


def is_float(dtype) -> bool:
    """A float dtype, bfloat16 included (NumPy files ml_dtypes' bfloat16 under kind 'V', not 'f')."""
    return numpy.dtype(dtype) in _UNIT_ROUNDOFF


def record_kernel_names(monkeypatch, launched: list, sources=None) -> list:
    """Wraps the CUDA runtime's kernel lookup (gpuconv._cuda._runtime) for the test's duration so that each
    kernel of ``sources`` (kernel files under kernels/; None: every file) appends its name to ``launched``
    (returned): proof of which kernels ran."""
    from gpuconv._cuda import _runtime

    runtime = _runtime.current()
    original = runtime.get_function

    def recording(source_file, kernel):
        if sources is None or source_file in sources:
            launched.append(kernel)
        return original(source_file, kernel)

    monkeypatch.setattr(runtime, "get_function", recording)
    return launched


def set_tunables(**values) -> None:
    """Overrides CUDA-path tunables (gpuconv._cuda._config.Config fields, e.g. sm_count) until the test ends
    (conftest.py resets them before each test)."""
    from gpuconv._cuda import _config

    current = _config.set_tunables({})
    _config.set_tunables({**current, **values})


def random_array(rng, shape, dtype):
    """Uniform in [-1, 1] away from zero, rounded to dtype: never zeros, never a degenerate all-equal array."""
    a = rng.uniform(0.25, 1.0, size=shape) * rng.choice((-1.0, 1.0), size=shape)
    return a.astype(dtype)


def tie_free_array(rng, shape, dtype):
    """A shuffled range: all values distinct, so max pooling's winner is unique. Multiples of 1/8 below 256
    in magnitude are exact in float16 too, so rounding cannot create ties. bfloat16 holds only 8 significant
    bits: there the values are consecutive bfloat16 numbers from 1 up (128 per octave), alternating in sign."""
    size = int(numpy.prod(shape))
    order = rng.permutation(size)
    if numpy.dtype(dtype) == BFLOAT16:
        magnitude = (numpy.uint16(0x3F80) + (order // 2).astype(numpy.uint16)).view(BFLOAT16)  # 0x3F80 is 1.0
        values = numpy.where(order % 2 == 0, magnitude, -magnitude).astype(BFLOAT16)
        return values.reshape(shape)
    values = (order - size // 2) * 0.125
    return values.reshape(shape).astype(dtype)


def on_backend(backend, a, layout="contiguous"):
    """The NumPy array ``a`` on ``backend`` with the same values, stored in ``layout``: 'contiguous';
    'transposed' (the last two axes swapped in memory); 'sliced' (every other element of a buffer filled
    with NaN, or -1 for integers, so reading a wrong element shows); 'channels_last' (channel axis last in
    memory); 'reversed' (negative strides: rows and columns stored back to front)."""
    if a is None:
        return None
    xp = backend.xp
    if layout == "contiguous" or a.ndim < 2 and layout != "sliced":
        return backend.put(a)
    if layout == "transposed":
        return backend.put(numpy.ascontiguousarray(a.swapaxes(-1, -2))).swapaxes(-1, -2)
    if layout == "sliced":
        fill = numpy.nan if is_float(a.dtype) else -1
        buf = xp.full(a.shape[:-1] + (2 * a.shape[-1],), fill, dtype=a.dtype)
        buf[..., ::2] = backend.put(a)
        return buf[..., ::2]
    if layout == "reversed":
        return backend.put(numpy.ascontiguousarray(a[..., ::-1, ::-1]))[..., ::-1, ::-1]
    if layout == "channels_last":
        if a.ndim == 4:
            return backend.put(numpy.ascontiguousarray(a.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
        if a.ndim == 3:
            return backend.put(numpy.ascontiguousarray(a.transpose(1, 2, 0))).transpose(2, 0, 1)
        return backend.put(a)
    raise ValueError(layout)


def tolerance(dtype, n_terms, bound):
    """Per-element error allowed for a result of ``dtype`` whose longest sum has n_terms terms."""
    dtype = numpy.dtype(dtype)
    u_out = _UNIT_ROUNDOFF[dtype]
    u_acc = _UNIT_ROUNDOFF[numpy.dtype(numpy.float32)] if dtype in HALF_DTYPES else u_out
    return 4 * (u_out + max(n_terms, 1) * u_acc) * numpy.abs(bound) + numpy.finfo(numpy.float64).tiny


def assert_close(actual, expected, bound, dtype, n_terms, what, slack=1.0):
    """actual (NumPy, any float dtype) against the float64 ``expected``, within the tolerance above;
    NaN must sit where the reference has NaN."""
    actual = numpy.asarray(actual, dtype=numpy.float64)
    expected = numpy.asarray(expected, dtype=numpy.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    nan_a, nan_e = numpy.isnan(actual), numpy.isnan(expected)
    assert numpy.array_equal(nan_a, nan_e), (
        f"{what}: NaN at {numpy.argwhere(nan_a != nan_e)[:5].tolist()} differs from the reference")
    ok = ~nan_e
    tol = slack * tolerance(dtype, n_terms, numpy.asarray(bound, dtype=numpy.float64))
    err = numpy.abs(actual - expected)
    bad = ok & ~(err <= tol)
    if bad.any():
        where = tuple(int(i) for i in numpy.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {actual.size} elements off; first at {where}: got {actual[where]:.17g}, "
            f"expected {expected[where]:.17g} (tolerance {tol[where]:.3g}, dtype {numpy.dtype(dtype).name})")


def assert_array(backend, a, dtype, shape, what):
    """``a`` is this backend's array kind, of dtype and shape."""
    assert isinstance(a, backend.xp.ndarray), f"{what}: got {type(a)}, expected {backend.xp.__name__}.ndarray"
    assert a.dtype == numpy.dtype(dtype), f"{what}: dtype {a.dtype}, expected {numpy.dtype(dtype)}"
    assert tuple(a.shape) == tuple(shape), f"{what}: shape {tuple(a.shape)}, expected {tuple(shape)}"


class Unchanged:
    """Copies a call's input arrays before it; ``check(outputs)`` after it asserts the call left them as they
    were and returned no output sharing memory with them (a caller writing to an output must not change an
    input, as with PyTorch, which always returns new tensors)."""

    def __init__(self, backend, **arrays):
        self.backend = backend
        self.arrays = {k: v for k, v in arrays.items() if v is not None}
        self.before = {k: backend.get(v).copy() for k, v in self.arrays.items()}

    def check(self, outputs):
        for k, v in self.arrays.items():
            assert numpy.array_equal(self.backend.get(v), self.before[k], equal_nan=True), f"{k} was modified"
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        for i, out in enumerate(o for o in outputs if o is not None):
            for k, v in self.arrays.items():
                assert not self.backend.xp.may_share_memory(out, v), f"output {i} shares memory with {k}"


def batch4(a):
    """A 3-D (unbatched) NumPy array as a batch of one; 4-D arrays unchanged."""
    return a if a is None or a.ndim == 4 else a[None]


def unbatch_like(a, like):
    return a[0] if like.ndim == 3 else a


def absolute(*arrays):
    return tuple(None if a is None else numpy.abs(a.astype(numpy.float64)) for a in arrays)


def call_unchanged(backend, layout, op, arrays: dict, *more_args, **kwargs):
    """Moves the named arrays to the backend (in the given memory layout), calls ``op`` with them in order,
    then ``more_args`` and ``kwargs``, and checks with :class:`Unchanged` that no input changed and no output
    shares memory with one. Returns op's result."""
    moved = {name: on_backend(backend, a, layout) for name, a in arrays.items()}
    guard = Unchanged(backend, **moved)
    out = op(*moved.values(), *more_args, **kwargs)
    guard.check(out)
    return out
