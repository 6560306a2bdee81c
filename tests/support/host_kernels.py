"""The host build of kernels/*.cu for the on-host kernel tests, and the stand-in for a cupy kernel.

A test file describes its kernels' parameters (``Signatures``: per-file tables, kept there as data); this
module writes the ``extern "C"`` wrappers that launch each instantiation through tests/host_cuda/launch.h,
the translation units around the loader's inlined source, builds them into one shared library with g++
(``build_library``), and runs launches through it (``HostKernel``) after checking what a CuPy launch
would not.
"""

from __future__ import annotations

import ctypes
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy

from support.host_modules import host_compiler

CTYPES = {numpy.dtype(numpy.float16): "__half", numpy.dtype(numpy.float32): "float",
          numpy.dtype(numpy.float64): "double"}
# Every element type a host kernel may take: CTYPES, the experimental bfloat16 (bf16_native), and flags.
ELEMENT_TYPES = {**CTYPES, numpy.dtype(ml_dtypes.bfloat16): "__nv_bfloat16", numpy.dtype(numpy.bool_): "bool"}
ACC = {"__half": "float", "float": "float", "double": "double", "__nv_bfloat16": "float"}
SCALAR_TYPES = {"i": numpy.int32, "q": numpy.int64}

# The shim's __launch_bounds__ takes one argument; the kernels give two.
PRELUDE = '#include "cuda_fp16.h"\n#undef __launch_bounds__\n#define __launch_bounds__(...)\n'


@dataclass(frozen=True)
class Signatures:
    """The kernels' parameters. ``params``: kernel -> (pointer parameters, scalar parameter types: 'i' int,
    'q' long long). ``acc_pointers``: kernel -> indices of the pointer parameters of the accumulator type
    (float for __half) instead of T. ``syncthreads``: the kernels that call __syncthreads. ``fixed_pointers``:
    kernel -> {pointer index: its C type, whatever T} (a ``const bool*`` of flags)."""

    params: dict
    acc_pointers: dict = field(default_factory=dict)
    syncthreads: frozenset = frozenset()
    fixed_pointers: dict = field(default_factory=dict)

    def pointer_type(self, kernel: str, i: int, ctype: str) -> str:
        fixed = self.fixed_pointers.get(kernel, {})
        if i in fixed:
            return fixed[i]
        return ACC[ctype] if i in self.acc_pointers.get(kernel, ()) else ctype

    def call_arguments(self, kernel: str, ctype: str) -> list:
        """The kernel's arguments as C++ casts of a wrapper's ``void* const* p`` and ``const long long* s``."""
        n_ptr, scalars = self.params[kernel]
        args = [f"({self.pointer_type(kernel, i, ctype)}*)p[{i}]" for i in range(n_ptr)]
        return args + [f"({'int' if t == 'i' else 'long long'})s[{i}]" for i, t in enumerate(scalars)]

    def sync(self, kernel: str) -> str:
        """host_launch's ``synchronises`` argument, as C++."""
        return "true" if kernel in self.syncthreads else "false"

    def pack(self, kernel: str, ctype: str, args) -> tuple:
        """(pointers, scalars) as ctypes arrays for a wrapper, after checking what a CuPy launch would not:
        the argument count, every array C-contiguous and of the parameter's element type, every scalar of
        the parameter's exact numpy type."""
        n_ptr, scalars = self.params[kernel]
        assert len(args) == n_ptr + len(scalars), (kernel, len(args))
        pointers = (ctypes.c_void_p * n_ptr)()
        for i, a in enumerate(args[:n_ptr]):
            if type(a) is numpy.uint64 and a == 0:  # _launch.pointer_or_null(None)
                continue
            assert isinstance(a, numpy.ndarray) and a.flags.c_contiguous, (kernel, i)
            assert ELEMENT_TYPES[a.dtype] == self.pointer_type(kernel, i, ctype), (kernel, i, a.dtype)
            pointers[i] = a.ctypes.data
        values = (ctypes.c_longlong * len(scalars))()
        for i, (a, t) in enumerate(zip(args[n_ptr:], scalars)):
            assert type(a) is SCALAR_TYPES[t], (kernel, i, type(a))
            values[i] = int(a)
        return pointers, values


def split_name(name: str) -> tuple:
    """(kernel, T) of a name expression such as 'conv2d_fprop_depthwise<float, 3, 3>'."""
    kernel, targs = name[:-1].split("<")
    return kernel, targs.split(",")[0].strip()


def symbol(name: str) -> str:
    """host_<kernel>_<template args> for a name expression such as 'conv2d_fprop_depthwise<float, 3, 3>'."""
    kernel, targs = name[:-1].split("<")
    return "host_" + kernel + "_" + "_".join(a.strip().replace(" ", "") for a in targs.split(","))


def wrapper_source(name: str, signatures: Signatures) -> str:
    """extern "C" symbol(name)(grid, block, pointers, scalars): the instantiation ``name`` through host_launch."""
    kernel, ctype = split_name(name)
    return (f'extern "C" void {symbol(name)}(unsigned grid, unsigned block, void* const* p, '
            f"const long long* s) {{\n    host_launch(grid, block, {signatures.sync(kernel)}, [&] {{ {name}("
            f"{', '.join(signatures.call_arguments(kernel, ctype))}); }});\n}}\n")


def translation_unit(source: str, names, signatures: Signatures) -> str:
    """A kernel file's inlined source (the loader's ``source``) with a wrapper for each of ``names``."""
    return PRELUDE + source + '\n#include "launch.h"\n' + "".join(wrapper_source(n, signatures) for n in names)


def build_library(build: Path, units, lib_name: str) -> ctypes.CDLL:
    """Compiles ``units`` ((stem, what, C++ text): ``what`` names the source in a failure) in parallel with
    g++ against the shim, links them into build/lib_name and loads it. Skips the calling test when g++,
    C++20 <barrier> or _Float16 is missing."""
    gxx, flags = host_compiler(build)

    def compile_one(unit):
        stem, what, text = unit
        cpp = build / f"{stem}.cpp"
        cpp.write_text(text)
        obj = build / f"{stem}.o"
        done = subprocess.run([gxx, *flags, "-c", str(cpp), "-o", str(obj)], capture_output=True, text=True)
        assert done.returncode == 0, f"{what} does not compile as host C++:\n{done.stderr}"
        return str(obj)

    with ThreadPoolExecutor() as pool:
        objects = list(pool.map(compile_one, list(units)))
    lib = build / lib_name
    subprocess.run([gxx, "-shared", "-pthread", *objects, "-o", str(lib)], check=True)
    return ctypes.CDLL(str(lib))


class HostKernel:
    """Stands in for a cupy kernel: checks what a CuPy launch would not (``Signatures.pack``; a 1-D grid
    and block; the block a multiple of 32 and at most MAX_BLOCK where ``checks_block``), then runs the host
    build over at most ``host_grid`` blocks. Records each launch's name in ``launches``.

    A test file subclasses it, setting ``signatures``, ``host_grid`` and its own ``launches`` list."""

    signatures: Signatures
    host_grid: int
    launches: list
    MAX_BLOCK = 256

    def __init__(self, lib, name: str):
        self.name = name
        self.kernel, self.ctype = split_name(name)
        self.function = getattr(lib, symbol(name))

    def checks_block(self) -> bool:
        """Whether the block must be a multiple of 32 and at most MAX_BLOCK: by default, where the kernel
        synchronises."""
        return self.kernel in self.signatures.syncthreads

    def __call__(self, grid, block, args):
        pointers, values = self.signatures.pack(self.kernel, self.ctype, args)
        assert len(block) == 1 and len(grid) == 1 and grid[0] >= 1
        if self.checks_block():
            assert block[0] % 32 == 0 and 32 <= block[0] <= self.MAX_BLOCK, block
        self.launches.append(self.name)
        self.function(ctypes.c_uint(min(grid[0], self.host_grid)), ctypes.c_uint(block[0]), pointers, values)
