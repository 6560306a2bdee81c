"""Compiles every kernel instantiation gpuconv uses through NVRTC, for sm_80 and sm_90, with the loader's
options and its header inlining, and fails on any error or warning.

Needs neither CuPy nor a GPU: it calls libnvrtc through ctypes (the pip wheel nvidia-cuda-nvrtc-cu12, or a
CUDA toolkit) with cuda_fp16.h from nvidia-cuda-runtime-cu12 or the toolkit. It skips only when libnvrtc
cannot be found. Files compile in parallel (ctypes releases the GIL during the call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpuconv._cuda import _kernel_table as kernel_table  # needs no CuPy device
from gpuconv._cuda import _loader as loader

ROOT = Path(__file__).resolve().parents[1]
ARCHES = ("compute_80", "compute_90")
# CuPy adds -ftz=true to every NVRTC compile (cupy/cuda/compiler.py); the check compiles as CuPy will.
CUPY_ADDED_OPTIONS = ("-ftz=true",)




# ------------------------------------------------------------------------------------ finding NVRTC


def _nvidia_wheel_dirs(component: str, sub: str) -> list:
    """Directories nvidia/<component>/<sub> of the pip CUDA wheels on sys.path."""
    found = []
    for entry in sys.path:
        d = Path(entry) / "nvidia" / component / sub
        if d.is_dir():
            found.append(d)
    return found


def _toolkit_roots() -> list:
    roots = [os.environ.get(v) for v in ("CUDA_PATH", "CUDA_HOME")] + ["/usr/local/cuda"]
    return [Path(r) for r in roots if r and Path(r).is_dir()]


def _find_nvrtc():
    """(loaded libnvrtc, the include directory holding matching cuda_fp16.h), or (None, reason)."""
    choices = []  # (library path, include dirs of the same CUDA release)
    for lib in _nvidia_wheel_dirs("cuda_nvrtc", "lib"):
        libraries = sorted(glob.glob(str(lib / "libnvrtc.so*"))) + sorted(glob.glob(str(lib.parent / "bin" / "nvrtc64*.dll")))
        for so in libraries:
            if "builtins" not in so and ".alt." not in so:
                choices.append((so, _nvidia_wheel_dirs("cuda_runtime", "include")))
    for root in _toolkit_roots():
        for so in sorted(glob.glob(str(root / "lib64" / "libnvrtc.so*"))):
            if "builtins" not in so:
                choices.append((so, [root / "include"]))
    found = ctypes.util.find_library("nvrtc")
    if found:
        choices.append((found, [r / "include" for r in _toolkit_roots()]))
    for so, includes in choices:
        includes = [d for d in includes if (Path(d) / "cuda_fp16.h").is_file()]
        if not includes:
            continue
        try:
            return ctypes.CDLL(so), str(includes[0])
        except OSError:
            continue
    return None, "libnvrtc (pip nvidia-cuda-nvrtc-cu12 or a CUDA toolkit) with cuda_fp16.h was not found"


NVRTC, INCLUDE_DIR = _find_nvrtc()


class _Program:
    """One NVRTC program through ctypes; each call checks its status."""

    def __init__(self, lib, text: str, name: str):
        self.lib = lib
        self.handle = ctypes.c_void_p()
        self._check(lib.nvrtcCreateProgram(ctypes.byref(self.handle), text.encode(), name.encode(), 0, None, None),
                    "nvrtcCreateProgram")

    def _check(self, status: int, what: str):
        if status != 0:
            self.lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            raise RuntimeError(f"{what} failed: {self.lib.nvrtcGetErrorString(status).decode()}")

    def add_name(self, expression: str):
        self._check(self.lib.nvrtcAddNameExpression(self.handle, expression.encode()), "nvrtcAddNameExpression")

    def compile(self, options) -> tuple:
        """(status, log)."""
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        status = self.lib.nvrtcCompileProgram(self.handle, len(options), opts)
        size = ctypes.c_size_t()
        self._check(self.lib.nvrtcGetProgramLogSize(self.handle, ctypes.byref(size)), "nvrtcGetProgramLogSize")
        log = ctypes.create_string_buffer(size.value)
        self._check(self.lib.nvrtcGetProgramLog(self.handle, log), "nvrtcGetProgramLog")
        return status, log.value.decode(errors="replace")

    def lowered_name(self, expression: str) -> str:
        out = ctypes.c_char_p()
        self._check(self.lib.nvrtcGetLoweredName(self.handle, expression.encode(), ctypes.byref(out)),
                    f"nvrtcGetLoweredName({expression})")
        return out.value.decode()

    def ptx_size(self) -> int:
        size = ctypes.c_size_t()
        self._check(self.lib.nvrtcGetPTXSize(self.handle, ctypes.byref(size)), "nvrtcGetPTXSize")
        return size.value

    def close(self):
        self.lib.nvrtcDestroyProgram(ctypes.byref(self.handle))


def _compile(source_file: str, arch: str) -> str:
    """Compiles one file for one architecture; returns '' when clean, else what went wrong."""
    program = _Program(NVRTC, loader.source(source_file), source_file)
    try:
        names = kernel_table.KERNELS[source_file]
        for name in names:
            program.add_name(name)
        options = tuple(kernel_table.COMPILE_OPTIONS) + CUPY_ADDED_OPTIONS + (f"-arch={arch}", f"-I{INCLUDE_DIR}")
        status, log = program.compile(options)
        if status != 0 or "error" in log.lower():
            return f"{source_file} ({arch}) failed to compile:\n{log}"
        if "warning" in log.lower():
            return f"{source_file} ({arch}) compiled with warnings:\n{log}"
        missing = [n for n in names if not program.lowered_name(n)]
        if missing:
            return f"{source_file} ({arch}): no kernel for {missing}"
        if program.ptx_size() <= 1:
            return f"{source_file} ({arch}): empty PTX"
        return ""
    finally:
        program.close()


CASES = [(f, a) for f in sorted(kernel_table.KERNELS) for a in ARCHES]


@pytest.fixture(scope="module")
def compile_results():
    """Every (file, arch) compiled once, two at a time."""
    if NVRTC is None:
        pytest.skip(INCLUDE_DIR)
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        results = pool.map(lambda case: _compile(*case), CASES)
        return dict(zip(CASES, results))


@pytest.mark.parametrize("source_file, arch", CASES)
def test_kernels_compile_cleanly(compile_results, source_file, arch):
    problem = compile_results[(source_file, arch)]
    assert problem == "", problem


def test_every_table_file_exists_and_lists_names():
    for source_file, names in kernel_table.KERNELS.items():
        assert (loader.kernel_dir() / source_file).is_file(), source_file
        assert names and len(set(names)) == len(names), source_file


def test_a_broken_kernel_is_reported(tmp_path):
    """The check itself works: a kernel with an error, and one with a warning, are both caught."""
    if NVRTC is None:
        pytest.skip(INCLUDE_DIR)
    cases = {
        "error": "template <typename T> __global__ void k(T* y) { y[0] = undefined_name; }",
        "warning": "template <typename T> __global__ void k(T* y) { int unused_but_set = 1; unused_but_set = 2; "
                   "y[0] = T(0); }\n#pragma unknown_pragma_here",
    }
    for kind, text in cases.items():
        program = _Program(NVRTC, text, f"{kind}.cu")
        try:
            program.add_name("k<float>")
            status, log = program.compile(tuple(kernel_table.COMPILE_OPTIONS) + (f"-I{INCLUDE_DIR}",))
        finally:
            program.close()
        assert kind in log.lower(), (kind, status, log)
