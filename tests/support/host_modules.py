"""The g++ host build's plumbing, and the host runtime: gpuconv's CUDA-path modules run their real code on the
CPU with NumPy arrays and the host build of the kernels, plugged in through the runtime seam
(``gpuconv._cuda._runtime``): no module loaded by path, no sys.modules swap."""

from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from types import SimpleNamespace

import numpy

from gpuconv._cuda import _runtime

ROOT = Path(__file__).resolve().parents[2]


class HostRuntime:
    """The runtime seam over NumPy: ``xp`` is numpy, ``get_function`` hands out ``make_kernel(name)`` for a
    listed name (unlisted names are refused as the real loader refuses them), ``cublas()`` the given
    ``(library, handle)``, an H100's properties by default; ``pointer(a)`` a NumPy array's address."""

    xp = numpy

    def __init__(self, make_kernel, cublas=None, properties=(90, 132, 232448)):
        self._make_kernel, self._cublas, self._properties = make_kernel, cublas, properties

    def get_function(self, source_file, name):
        from gpuconv._cuda import _kernel_table, _loader  # noqa: F401 - the table registers the names

        _loader.check_listed(source_file, name)
        return self._make_kernel(name)

    def cublas(self):
        if self._cublas is None:
            raise RuntimeError("no cuBLAS stand-in given to this HostRuntime")
        return self._cublas

    @staticmethod
    def pointer(a):
        return a.ctypes.data

    @staticmethod
    def device_id():
        return 0

    def properties(self, device_id):
        return self._properties

    @staticmethod
    def elapsed_ms(run):
        run()
        return 1.0


class Family:
    """One algorithm's family of variants as the CUDA path runs it: each pass through the selection
    (``_algo.first``: an experimental variant where GPUCONV_UNVERIFIED turns it on and it supports the pass,
    else the verified one)."""

    def __init__(self, name: str):
        self.name = name

    def chosen(self, g, pass_name: str, dtype):
        """The name of the variant that runs the pass, or None."""
        from gpuconv._cuda import _algo

        variant = _algo.first(self.name, g, numpy.dtype(dtype), pass_name)
        return None if variant is None else variant.name

    def _run(self, pass_name, g, *arrays):
        from gpuconv._cuda import _algo

        return _algo.first(self.name, g, arrays[0].dtype, pass_name).run[pass_name](g, *arrays)

    def conv2d_fprop(self, g, x, w, bias=None):
        return self._run("fprop", g, x, w, bias)

    def conv2d_dgrad(self, g, gy, w, bias=None):
        return self._run("dgrad", g, gy, w, bias)

    def conv2d_wgrad(self, g, x, gy):
        return self._run("wgrad", g, x, gy)


_MODULES = {  # the names the host tests use -> gpuconv._cuda's modules
    "_bias_grad": "experimental.bias_grad", "_conv_gemm1x1": "experimental.gemm_1x1", "_cublas": "experimental.cublas",
    "_igemm_nhwc": "experimental.igemm_nhwc", "_igemm_nhwc_dgrad": "experimental.igemm_nhwc_dgrad",
    "_igemm_nhwc_wgrad": "experimental.igemm_nhwc_wgrad", "depthwise_v2": "experimental.depthwise_v2",
    "pool_wide": "experimental.pool_wide",
}


@contextlib.contextmanager
def cuda_modules_on_host(names: tuple, make_kernel, cublas=None):
    """gpuconv/_cuda's modules ``names`` (a SimpleNamespace of them), with a HostRuntime installed for the
    body: ``make_kernel(name)`` builds what ``get_function`` returns for a listed kernel name."""
    modules = {n: importlib.import_module(f"gpuconv._cuda.{_MODULES.get(n, n)}") for n in names}
    with _runtime.use(HostRuntime(make_kernel, cublas)):
        yield SimpleNamespace(**modules)


SHIM_DIR = ROOT / "tests" / "host_cuda"
GXX_FLAGS = ("-std=c++20", "-O1", "-fPIC", "-pthread", "-Wall", "-Wno-unknown-pragmas", f"-I{SHIM_DIR}")


def host_compiler(build: Path) -> tuple:
    """(g++, flags) that build the .cu files against the shim in tests/host_cuda; skips the calling test
    when g++, C++20 <barrier> or _Float16 is missing."""
    import shutil
    import subprocess

    import pytest

    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found")
    probe = build / "probe.cpp"
    probe.write_text('#include "cuda_fp16.h"\n#include "launch.h"\nint main() { return 0; }\n')
    if subprocess.run([gxx, *GXX_FLAGS, str(probe), "-o", str(build / "probe")], capture_output=True).returncode:
        pytest.skip("g++ lacks C++20 <barrier> or _Float16")
    return gxx, list(GXX_FLAGS)
