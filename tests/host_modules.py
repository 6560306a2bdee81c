"""Loading gpuconv's CUDA-path modules without CuPy or a GPU, for the host tests of the kernels.

``load_by_path`` imports one module from its file, without running ``gpuconv._cuda``'s ``__init__`` (which
imports CuPy). ``cuda_modules_on_host`` imports some of ``gpuconv/_cuda``'s modules under an alias
package with NumPy standing in for CuPy, and routes their kernel lookups (``_launch.get_function``) to a
host build: everything above the kernels is the real code.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy

ROOT = Path(__file__).resolve().parents[1]


def load_by_path(name: str, relpath: str):
    """The module at ROOT/relpath, imported under ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cuda_modules_on_host(alias: str, names: tuple, make_kernel) -> SimpleNamespace:
    """gpuconv/_cuda's modules ``names`` (which must include _loader and _launch) under package ``alias``,
    imported while ``cupy`` is NumPy; ``make_kernel(name)`` builds what ``get_function`` returns for a
    listed kernel name (unlisted names are refused as the real loader refuses them)."""
    package = types.ModuleType(alias)
    package.__path__ = [str(ROOT / "gpuconv" / "_cuda")]
    saved_cupy = sys.modules.get("cupy")
    sys.modules[alias] = package
    sys.modules["cupy"] = numpy
    try:
        modules = {n: importlib.import_module(f"{alias}.{n}") for n in names}
    finally:
        if saved_cupy is None:
            del sys.modules["cupy"]
        else:
            sys.modules["cupy"] = saved_cupy

    def get_function(source_file, name):
        modules["_loader"]._check_listed(source_file, name)
        return make_kernel(name)

    modules["_launch"].get_function = get_function
    return SimpleNamespace(**modules)


SHIM_DIR = ROOT / "tests" / "host_cuda"
GXX_FLAGS = ("-std=c++20", "-O1", "-fPIC", "-pthread", "-Wall", "-Wno-unknown-pragmas", f"-I{SHIM_DIR}")
# The kernels' tunables, as the loader passes them to NVRTC (-D options of the kernel table).
GXX_FLAGS += tuple(o for o in load_by_path("gpuconv_kernel_table_defines", "gpuconv/_cuda/_kernel_table.py")
                   .COMPILE_OPTIONS if o.startswith("-D"))


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
