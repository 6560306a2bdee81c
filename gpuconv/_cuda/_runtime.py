"""The CUDA path's one seam to CuPy: every array operation, kernel, library call and device question of
gpuconv/_cuda goes through the runtime in use here.

``current()`` is ``CupyRuntime`` (CuPy's current device and stream) unless a stand-in is installed with
``use(runtime)`` / ``install(runtime)``: tests/support/ holds the CPU stand-ins (a recording double, the g++
host build of the kernels, the emulation). A runtime offers:

    xp                       the array module: empty, ascontiguousarray, matmul, copyto, add (CuPy's)
    get_function(src, name)  a compiled kernel of kernels/<src> (the loader's NVRTC cache)
    cublas(), pointer(a)     (the cuBLAS binding, the current device's handle); an array's device address
    device_id(), properties(device_id)   (compute capability, SM count, opt-in shared memory per block)
    elapsed_ms(run)          device time of run() between CUDA events: autotune's timing, the only host
                             synchronisation the CUDA path makes (first call of a problem under autotune)

Tunables (workspace sizes, the SM count a rule assumes) are configuration, not runtime: ``_config``.
"""

from __future__ import annotations

import contextlib
import functools

from . import _loader

DEFAULT_SMEM_BYTES = 48 * 1024  # what every device grants a block without the opt-in attribute


class CupyRuntime:
    """The real device, through CuPy."""

    @property
    def xp(self):
        import cupy

        return cupy

    @staticmethod
    def get_function(source_file: str, name: str):
        return _loader.get_function(source_file, name)

    @staticmethod
    def pointer(a) -> int:
        """The device address of a's first element."""
        return a.data.ptr

    @staticmethod
    def cublas() -> tuple:
        import cupy
        from cupy_backends.cuda.libs import cublas  # importing it loads libcublas

        return cublas, cupy.cuda.device.get_cublas_handle()

    @staticmethod
    def device_id() -> int:
        import cupy

        return cupy.cuda.runtime.getDevice()

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def properties(device_id: int) -> tuple:
        """(compute capability as an int such as 90, SM count, opt-in shared memory per block in bytes). Read
        once per device: Device().attributes queries every attribute (about a hundred driver calls)."""
        import cupy

        device = cupy.cuda.Device(device_id)
        attributes = device.attributes
        optin = int(attributes.get("MaxSharedMemoryPerBlockOptin", DEFAULT_SMEM_BYTES))
        return int(device.compute_capability), int(attributes["MultiProcessorCount"]), optin

    @staticmethod
    def elapsed_ms(run) -> float:
        """Device time of ``run()`` on the current stream, between two CUDA events (synchronises)."""
        import cupy

        stream = cupy.cuda.get_current_stream()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        run()
        end.record(stream)
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end)


_current: list = [CupyRuntime()]


def current():
    return _current[0]


def xp():
    """The array module of the runtime in use (cupy)."""
    return _current[0].xp


def get_function(source_file: str, name: str):
    """The kernel ``name`` of kernels/<source_file> from the runtime in use (CuPy: compiled for the current
    device, launched on the current stream)."""
    return _current[0].get_function(source_file, name)


def device_properties() -> tuple:
    """(compute capability, SM count, opt-in shared memory) of the current device."""
    runtime = _current[0]
    return runtime.properties(runtime.device_id())


def install(runtime) -> None:
    """Makes ``runtime`` stand in for the device for the rest of the process (scripts: dry runs, the
    recorded launch table)."""
    _current[0] = runtime


@contextlib.contextmanager
def use(runtime):
    """Runs the body with ``runtime`` standing in for the device."""
    saved = _current[0]
    _current[0] = runtime
    try:
        yield runtime
    finally:
        _current[0] = saved
