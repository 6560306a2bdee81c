"""A stand-in for CuPy with NumPy arrays and kernels that do nothing but record their launch: the recording
double of the CUDA path's runtime seam (``RecordingRuntime``, installed with ``gpuconv._cuda._runtime.use`` or
``install``; this module is its array module, ``xp``).

It lets the CUDA backend's Python code (argument checks, algorithm choice, launch arguments) run end to end on
a machine without a GPU, for four uses:

- ``bench/python_overhead.py`` times that code alone: CuPy's own costs (allocation, the driver's launch) are
  near zero here, so what is left is gpuconv's share of a call's host time.
- ``tests/test_cuda_dispatch_host.py`` records which kernels a call launches, with which grid and scalar
  arguments, and compares the record with the one committed: a refactoring of the launchers must not change it.
- dry runs of the GPU scripts before a device session (bench/gpu_checks/): their plumbing runs; their numbers
  mean nothing (events read 1 ms).
- ``tests/test_capture_safe.py`` counts host transfers and synchronisations per op (``("transfer", ...)`` and
  ``("sync", ...)`` entries) and host-to-device copies (``("h2d", ...)`` entries): an op that a CUDA graph can
  capture reads nothing back and, once its constants are cached, copies nothing up.

Nothing computes: kernel outputs hold whatever ``numpy.empty`` gave; NumPy-backed methods (max, a comparison)
compute on those values, and sum returns zeros of the right shape and dtype. Arrays made here pass for CuPy
arrays (``gpuconv._params`` goes by the type's module name), so the public functions send them to the CUDA
path, which must then run on a ``RecordingRuntime``.

Only what gpuconv's default paths call is here; the cuBLAS wrapper of the ``gemm_1x1`` feature is not.
"""

from __future__ import annotations

import sys
import types

import numpy

__version__ = "0.0-fake"

LAUNCHES: list = []  # every record() appends one entry; tests and the benchmark clear it
RECORDING = [True]  # the benchmark turns recording off so that the log costs nothing


def record(entry) -> None:
    if RECORDING[0]:
        LAUNCHES.append(entry)


# Host data entering the device: ("h2d", how, what). CuPy copies a NumPy array, a list or (where an array is
# made from it) a number to the device; a scalar operand of a kernel or an element-wise operation is a launch
# argument instead, and a device array (this module's ndarray) moves nothing.

def _is_host_data(a, scalars: bool) -> bool:
    """Whether CuPy would copy ``a`` from the host: a NumPy array, a list or tuple holding anything but device
    arrays, or (``scalars``: where an array is made of it, as ``asarray(3.0)``) a number."""
    if isinstance(a, ndarray) or a is None:
        return False
    if isinstance(a, numpy.ndarray):
        return True
    if isinstance(a, (list, tuple)):
        return not a or not all(isinstance(x, ndarray) for x in a)
    return scalars and isinstance(a, (bool, int, float, complex, numpy.generic))


def _upload(how: str, *operands, scalars: bool = False) -> None:
    """Records an ("h2d", how, what) entry for each operand that is host data."""
    if not RECORDING[0]:
        return
    for a in operands:
        if _is_host_data(a, scalars):
            record(("h2d", how, _describe_host(a)))


def _describe_host(a):
    if isinstance(a, numpy.ndarray):
        return ("host array", tuple(int(s) for s in a.shape), str(a.dtype))
    if isinstance(a, (list, tuple)):
        return (type(a).__name__, len(a))
    return _describe(a)


class _DevicePointer:
    def __init__(self, ptr: int):
        self.ptr = ptr


class Device:
    """cupy.cuda.Device for one fake device 0 (compute capability 9.0, 132 SMs: an H100 SXM)."""

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)
        self.compute_capability = "90"
        self.attributes = {"MultiProcessorCount": 132, "MaxSharedMemoryPerBlockOptin": 232448, "ClockRate": 1980000}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_DEVICE = Device(0)


# ndarray methods for which CuPy launches a kernel of its own (a reduction, a cast, a copy): recorded.
_KERNEL_METHODS = frozenset({"sum", "all", "astype", "fill", "copy", "ravel", "flatten", "max", "min", "cumsum",
                             "argsort", "mean"})


class ndarray:
    """A NumPy array in a wrapper that passes for a cupy.ndarray: ``gpuconv._params`` takes any
    numpy.ndarray (a subclass too) for the NumPy backend, so this is not one. Attributes and methods are
    NumPy's; array results come back wrapped."""

    __slots__ = ("_a",)
    # NumPy defers to this type's operators (``numpy_array * device_array`` reaches __rmul__, which records the
    # copy) instead of converting it silently through __array__; CuPy's ndarray does the same.
    __array_ufunc__ = None

    def __init__(self, a):
        self._a = a

    @property
    def device(self):
        return _DEVICE

    @property
    def data(self):
        return _DevicePointer(self._a.ctypes.data)

    # Reading a device value on the host: a transfer and a synchronisation on a real GPU.
    def _to_host(self, how):
        record(("transfer", how, _describe(self)))
        return self._a

    def get(self, *args, **kwargs):
        return numpy.array(self._to_host("get"))

    def item(self, *args):
        return self._to_host("item").item(*args)

    def tolist(self):
        return self._to_host("tolist").tolist()

    def __bool__(self):
        return bool(self._to_host("bool"))

    def __int__(self):
        return int(self._to_host("int"))

    def __float__(self):
        return float(self._to_host("float"))

    def __index__(self):
        return int(self._to_host("index"))

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)

    def __getattr__(self, name):
        value = getattr(self._a, name)
        if not callable(value):
            return value

        def method(*args, **kwargs):
            if RECORDING[0]:
                _upload(name, *(a for a in (*args, *kwargs.values()) if isinstance(a, numpy.ndarray)))
            if RECORDING[0] and name in _KERNEL_METHODS:
                record(("method", name, _describe(self), tuple(_describe(a) for a in args),
                        tuple(sorted((k, str(v)) for k, v in kwargs.items()))))
            if name == "sum":  # the values are never read: sum a stand-in with the reduced axes of length 1
                return _wrap_result(_reduced_stand_in(self._a, kwargs.get("axis")).sum(**kwargs))
            with numpy.errstate(all="ignore"):
                result = value(*_unwrap(args), **kwargs)
            if name in _KERNEL_METHODS and isinstance(result, numpy.generic):
                result = numpy.asarray(result)  # CuPy's reductions return 0-d device arrays, not host scalars
            return _wrap_result(result)
        return method

    def __getitem__(self, key):
        _upload("index", *(key if isinstance(key, tuple) else (key,)))
        return _wrap_result(self._a[_unwrap_key(key)])

    def __setitem__(self, key, value):
        _upload("index", *(key if isinstance(key, tuple) else (key,)))
        _upload("setitem", value)
        self._a[_unwrap_key(key)] = _unwrap((value,))[0]

    def __len__(self):
        return len(self._a)


ndarray.__module__ = "cupy"


def _reduced_stand_in(a, axis):
    """An array shaped like ``a`` but of length 1 along the axes a reduction removes: the same result shape and
    dtype for a fraction of the work (the benchmark would otherwise time NumPy's sum)."""
    axes = range(a.ndim) if axis is None else [axis] if isinstance(axis, int) else axis
    axes = {ax % a.ndim for ax in axes}
    return numpy.zeros(tuple(1 if i in axes else n for i, n in enumerate(a.shape)), a.dtype)


def _operator(name: str):
    """ndarray.<name> (an arithmetic dunder): CuPy would launch an elementwise kernel; record it, and
    compute it with NumPy (on values nobody reads) so that shapes and dtypes come out as CuPy's would."""
    def method(self, *args):
        _upload(name, *args)
        if RECORDING[0]:
            record(("elementwise", name, tuple(_describe(a) for a in (self,) + args)))
        with numpy.errstate(all="ignore"):
            result = getattr(self._a, name)(*_unwrap(args))
        if result is NotImplemented:
            return result
        return self if name.startswith("__i") else _wrap_result(result)
    return method


for _name in ("add", "sub", "mul", "truediv", "neg", "eq", "ne", "lt", "le", "gt", "ge", "abs", "or", "and",
              "invert"):
    for _form in (f"__{_name}__", f"__r{_name}__", f"__i{_name}__"):
        if hasattr(numpy.ndarray, _form):
            setattr(ndarray, _form, _operator(_form))


def _unwrap_key(key):
    """An index with device arrays in it (advanced indexing: a gather on the device, no transfer)."""
    if isinstance(key, tuple):
        return _unwrap(key)
    return _unwrap((key,))[0]


def _unwrap(args):
    return tuple(a._a if isinstance(a, ndarray) else a for a in args)


def _wrap_result(r):
    return ndarray(r) if isinstance(r, numpy.ndarray) else r


def _wrap(a):
    return ndarray(numpy.asarray(a))


def asarray(a, dtype=None):
    _upload("asarray", a, scalars=True)
    return _wrap(numpy.asarray(_unwrap((a,))[0], dtype=dtype))


def asnumpy(a):
    if isinstance(a, ndarray):
        return numpy.array(a._to_host("asnumpy"))
    return numpy.array(a)


def empty(shape, dtype=float, order="C"):
    return _wrap(numpy.empty(shape, dtype=dtype, order=order))


def zeros(shape, dtype=float):
    return _wrap(numpy.zeros(shape, dtype=dtype))


def ascontiguousarray(a, dtype=None):
    if isinstance(a, ndarray) and a._a.flags.c_contiguous and (dtype is None or a._a.dtype == dtype):
        return a  # as CuPy: no copy
    _upload("ascontiguousarray", a, scalars=True)
    if RECORDING[0]:
        record(("copy", "ascontiguousarray", _describe(a), str(dtype)))
    return _wrap(numpy.ascontiguousarray(_unwrap((a,))[0], dtype=dtype))


def copyto(dst, src, **kwargs):
    _upload("copyto", src, kwargs.get("where"))  # a scalar src is a fill
    if RECORDING[0]:
        record(("copy", "copyto", _describe(dst), _describe(src)))
    numpy.copyto(dst._a, numpy.asarray(src), **kwargs)


def matmul(a, b, out=None):
    _upload("matmul", a, b)
    if RECORDING[0]:
        record(("matmul", tuple(a.shape), tuple(b.shape), str(a.dtype)))
    shape = numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
    return out if out is not None else empty(shape, numpy.result_type(a.dtype, b.dtype))


def add(a, b, out=None):
    _upload("add", a, b)
    if RECORDING[0]:
        record(("elementwise", "add", _describe(a), _describe(b), _describe(out)))
    with numpy.errstate(all="ignore"):
        result = numpy.add(numpy.asarray(a), numpy.asarray(b), out=None if out is None else out._a)
    return out if out is not None else _wrap(result)


def _describe(arg):
    """A launch argument as the record keeps it: arrays by shape and dtype, scalars by type and value."""
    if isinstance(arg, ndarray):
        return ("array", tuple(int(s) for s in arg.shape), str(arg.dtype))
    if isinstance(arg, numpy.generic):
        return (type(arg).__name__, arg.item())
    return (type(arg).__name__, arg)


class _Function:
    """A compiled kernel: calling it records the launch and does nothing else."""

    def __init__(self, name: str):
        self.name = name
        self.max_dynamic_shared_size_bytes = 0

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        if RECORDING[0]:  # a scalar argument is part of the launch; an array from the host would be a copy
            _upload(f"kernel argument of {self.name}", *(a for a in args if isinstance(a, numpy.ndarray)))
            record(("launch", self.name, tuple(grid), tuple(block), int(shared_mem), tuple(_describe(a) for a in args)))


class RawModule:
    """Holds the name expressions it was built with; ``get_function`` refuses any other (as NVRTC would)."""

    def __init__(self, code="", options=(), name_expressions=(), **kwargs):
        self.names = tuple(name_expressions)

    def get_function(self, name):
        if self.names and name not in self.names:  # without name expressions: extern "C" names, any
            raise KeyError(f"fake RawModule: {name!r} was not among the name expressions")
        return _Function(name)


class _Stream:
    ptr = 0

    def synchronize(self):
        record(("sync", "stream"))


class _Event:
    """A CUDA event of the fake; every elapsed time is 1 ms."""

    def record(self, stream=None):
        pass

    def synchronize(self):
        record(("sync", "event"))


class _MemoryPool:
    def free_all_blocks(self):
        pass


def get_default_memory_pool():
    return _MemoryPool()


def arange(*args, dtype=None):
    return _wrap(numpy.arange(*args, dtype=dtype))


def empty_like(a, dtype=None):
    return _wrap(numpy.empty_like(numpy.asarray(a), dtype=dtype))


def abs(a):  # noqa: A001 - CuPy's name
    _upload("abs", a)
    return _wrap(numpy.abs(numpy.asarray(a)))


def _library(name: str, data: tuple, launches: bool = True):
    """cupy.<name> as NumPy's namesake on the wrapped arrays; a function that runs a kernel of CuPy's own
    (a gather, a fill, an elementwise selection, a reduction) records it as ("cupy", name, operands).
    ``data``: the positions of the arguments that are arrays (not shapes or axes); host data there is copied
    to the device (a number too, for ``array``, which makes an array of it)."""
    fn = getattr(numpy, name)

    def library_call(*args, **kwargs):
        _upload(name, *(args[i] for i in data if i < len(args)), scalars=name == "array")
        _upload(name, *(v for v in kwargs.values() if isinstance(v, numpy.ndarray)))
        if launches and RECORDING[0]:
            record(("cupy", name, tuple(_describe(a) for a in args)))
        with numpy.errstate(all="ignore"):
            result = fn(*_unwrap(args), **{k: _unwrap((v,))[0] for k, v in kwargs.items()})
        return _wrap_result(result)

    library_call.__name__ = name
    return library_call


# Used by the compositions outside gpuconv/_cuda (the 3-d and adaptive ops): CuPy's own operations.
take, array, full, ones, where, argmax, take_along_axis, isfinite = (_library(n, data) for n, data in (
    ("take", (0, 1)), ("array", (0,)), ("full", (1,)), ("ones", ()), ("where", (0, 1, 2)), ("argmax", (0,)),
    ("take_along_axis", (0, 1)), ("isfinite", (0,))))
flip, expand_dims, broadcast_to = (_library(n, (0,), launches=False) for n in ("flip", "expand_dims", "broadcast_to"))


float16, float32, float64, uint8 = numpy.float16, numpy.float32, numpy.float64, numpy.uint8


class RawKernel:
    """A single extern "C" kernel (the benchmarks' helpers): calling it does nothing."""

    def __init__(self, code, name, **kwargs):
        self.name = name

    def __call__(self, grid, block, args, **kwargs):
        _upload(f"kernel argument of {self.name}", *(a for a in args if isinstance(a, numpy.ndarray)))
random = types.SimpleNamespace(
    seed=lambda s=None: None,
    uniform=lambda low=0.0, high=1.0, size=None, dtype=float: _wrap(
        numpy.random.default_rng(0).uniform(low, high, size).astype(dtype)),
)


def _namespace(**attrs):
    return types.SimpleNamespace(**attrs)


cuda = _namespace(
    Device=Device,
    runtime=_namespace(getDevice=lambda: 0, getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 13000,
                       getDeviceProperties=lambda i: {"name": b"fake H100", "l2CacheSize": 50 << 20}),
    get_current_stream=lambda: _Stream(),
    Event=_Event,
    get_elapsed_time=lambda start, end: 1.0,
    Stream=_namespace(null=_Stream()),
)


class RecordingRuntime:
    """The runtime seam (gpuconv._cuda._runtime) over this fake: arrays from this module, kernels that record
    their launch, an H100's properties, 1 ms per timed run. ``record=False`` keeps the log empty (the
    Python-overhead benchmark)."""

    xp = sys.modules[__name__]

    def __init__(self, record: bool = True):
        RECORDING[0] = record
        self._functions = {}

    def get_function(self, source_file: str, name: str):
        function = self._functions.get((source_file, name))
        if function is None:
            from gpuconv._cuda import _kernel_table, _loader  # noqa: F401 - the table registers the names

            _loader.check_listed(source_file, name)  # only listed names compile (NVRTC's name expressions)
            function = self._functions[(source_file, name)] = _Function(name)
        return function

    @staticmethod
    def cublas():
        raise NotImplementedError("the recording fake does not model cuBLAS (gemm_1x1)")

    @staticmethod
    def device_id() -> int:
        return 0

    @staticmethod
    def properties(device_id: int) -> tuple:
        attributes = _DEVICE.attributes
        return int(_DEVICE.compute_capability), attributes["MultiProcessorCount"], attributes[
            "MaxSharedMemoryPerBlockOptin"]

    @staticmethod
    def elapsed_ms(run) -> float:
        run()
        record(("sync", "event"))
        return 1.0
