"""Finds the kernel sources, inlines their local headers, compiles them lazily and hands out kernels.

``get_function("im2col.cu", "im2col<float>")`` compiles ``kernels/im2col.cu`` once per device and dtype,
with the name expressions ``_kernel_table.KERNELS`` lists for that file whose first template argument is
the same type (here every ``<float>`` one; names without a float type form one group of their own), and
returns the kernel as a CuPy function. Compiling per dtype costs about the same in total as the whole file
at once and a third of it for a program that uses one dtype (bench/results/cpu-nvrtc-coldstart).

Local headers (``#include "x.cuh"``) are pasted into the source text before compiling, because CuPy's
compile cache is keyed on the source string alone: an edited header would otherwise leave a stale binary
in the cache. System headers (``#include <...>``) are left to NVRTC.

This module imports nothing from CuPy or from the rest of the package at import time, so the NVRTC check
in CI (tests/test_nvrtc_compile.py) can load it by path without CuPy or a GPU.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

# Options passed to NVRTC (CuPy adds the architecture of the device); the NVRTC check in CI uses the same.
COMPILE_OPTIONS = ("--std=c++17",)  # what NVRTC gets (CuPy adds the architecture)

_LOCAL_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*(?://.*)?$', re.MULTILINE)
_PRAGMA_ONCE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.MULTILINE)

_HERE = Path(__file__).resolve().parent
# An installed wheel holds the sources in the package gpuconv.kernels (pyproject maps it to kernels/);
# a source checkout holds them in kernels/ beside the gpuconv package.
_CANDIDATE_DIRS = (_HERE.parent / "kernels", _HERE.parent.parent / "kernels")


def kernel_dir() -> Path:
    """The directory holding the .cu / .cuh sources, in an installed wheel or a source checkout."""
    for d in _CANDIDATE_DIRS:
        if d.is_dir() and any(d.glob("*.cu")):
            return d
    raise FileNotFoundError(
        "gpuconv: cannot find the CUDA kernel sources (*.cu); looked in "
        + ", ".join(str(d) for d in _CANDIDATE_DIRS)
    )


def inline_headers(path: Path, _seen: set | None = None) -> str:
    """The text of ``path`` with every local ``#include "x.cuh"`` replaced by that header's text, found
    relative to the including file, recursively. Each header is pasted once (a later include of it is
    dropped, as ``#pragma once`` would), and its ``#pragma once`` is removed: in the one file NVRTC sees
    it would draw the warning "#pragma once in main file". ``#line`` markers keep compiler messages
    pointing at the right file and line. (kernels/experimental/ reaches the shared headers as "../x.cuh", so
    every file also compiles as it is with nvcc.)"""
    path = Path(path).resolve()
    seen = set() if _seen is None else _seen
    seen.add(path)
    text = _PRAGMA_ONCE.sub("", path.read_text())
    pieces = []
    last = 0
    for match in _LOCAL_INCLUDE.finditer(text):
        header = (path.parent / match.group(1)).resolve()
        pieces.append(text[last:match.start()])
        if header not in seen:
            if not header.is_file():
                raise FileNotFoundError(f"gpuconv: {path.name} includes {match.group(1)!r}, not found at {header}")
            line_after = text.count("\n", 0, match.end()) + 2
            pieces.append(f'#line 1 "{header.name}"\n')
            pieces.append(inline_headers(header, seen))
            pieces.append(f'\n#line {line_after} "{path.name}"')
        last = match.end()
    pieces.append(text[last:])
    return "".join(pieces)


def source(source_file: str) -> str:
    """The compilable text of ``kernels/<source_file>``, headers inlined."""
    return inline_headers(kernel_dir() / source_file)


_table: dict = {}  # source file -> its instantiation names: ``_registry`` hands the kernel table over
_modules: dict = {}  # (source file, dtype group, device id) -> cupy.RawModule
_functions: dict = {}  # (source file, device id, name expression) -> kernel
_lock = threading.Lock()
_listed: dict = {}  # source file -> frozenset of its names in the table, for a check without a tuple scan


def use_table(kernels: dict) -> None:
    """The instantiations to compile, by source file (the registry's ``KERNELS``; the loader imports nothing
    of the package, so that no import cycle runs through it and an installed copy loads on its own)."""
    _table.clear()
    _table.update(kernels)
    _listed.clear()


_DTYPE_ARGUMENT = re.compile(r"<\s*(__half|__nv_bfloat16|float|double)\s*[,>]")


def dtype_group(name: str) -> str:
    """The compile group of a name expression: its first template argument when that is a float type
    ('__half', 'float', ...), else '' (index-only kernels, non-templates)."""
    match = _DTYPE_ARGUMENT.search(name)
    return match.group(1) if match else ""


def _module(source_file: str, group: str, device_id: int, raw_module):
    """The RawModule of one source file's names of one dtype group on one device. CuPy compiles it (with
    those name expressions) at the first get_function, for the device current then; its cache key holds the
    source, the options, the architecture and the name expressions."""
    key = (source_file, group, device_id)
    module = _modules.get(key)
    if module is None:
        names = [n for n in _table[source_file] if dtype_group(n) == group]
        module = raw_module(code=source(source_file), options=COMPILE_OPTIONS, name_expressions=names)
        _modules[key] = module
    return module


def clear_cache() -> None:
    """Forgets every module and kernel this process compiled (CuPy's disk cache stays): for tests that count
    compilations."""
    with _lock:
        _modules.clear()
        _functions.clear()


def check_listed(source_file: str, name: str) -> None:
    """Only names in the table are compiled (and checked by NVRTC in CI): refuse any other."""
    if name in _listed.get(source_file, ()):
        return
    names = _table.get(source_file)
    if names is None:
        raise KeyError(f"gpuconv: {source_file!r} is not in _kernel_table.KERNELS (it lists {sorted(_table)})")
    _listed[source_file] = frozenset(names)
    if name not in names:
        raise KeyError(f"gpuconv: kernel {name!r} is not listed for {source_file!r} in _kernel_table.KERNELS")


def get_function(source_file: str, name: str, device_id: int | None = None, raw_module=None):
    """The kernel ``name`` (a name expression such as ``"im2col<float>"``) of ``kernels/<source_file>``,
    compiled for device ``device_id`` (default: CuPy's current one) by ``raw_module`` (default:
    ``cupy.RawModule``; the runtime seam passes its own). Call it inside ``with array.device:``; it launches
    on CuPy's current stream."""
    check_listed(source_file, name)
    if raw_module is None or device_id is None:
        import cupy

        raw_module = raw_module or cupy.RawModule
        device_id = cupy.cuda.runtime.getDevice() if device_id is None else device_id
    key = (source_file, device_id, name)
    function = _functions.get(key)
    if function is None:
        with _lock:
            function = _module(source_file, dtype_group(name), device_id, raw_module).get_function(name)
            _functions[key] = function
    return function
