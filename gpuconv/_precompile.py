"""Compile every CUDA kernel now, for a container build or before a timed run, instead of at first use.

gpuconv compiles its kernels lazily: the first call that needs a kernel compiles that kernel's source file
for that kernel's dtype (the instantiations of that dtype the file lists in
``gpuconv._cuda._kernel_table.KERNELS``) for the current device, and CuPy keeps the binary in its disk
cache (``CUPY_CACHE_DIR``, by default ``~/.cupy/kernel_cache``), keyed by the source text, the options,
the name expressions and the GPU architecture. Later processes read it back instead of compiling (CuPy >=
14.2 for modules built with name expressions, as gpuconv's are).

``precompile()`` walks the whole table on one device, so a container image built with it (on a machine
with the same GPU architecture, or with the cache directory copied over) never compiles at run time.
``python -m gpuconv --precompile`` runs it and prints a line per file.
"""

from __future__ import annotations

import contextlib
import os
import time


def precompile(device=None, files=None, *, verbose=False) -> list:
    """Compiles every kernel of ``_kernel_table.KERNELS`` (or of the source ``files`` named) for CuPy device
    ``device`` (default: the current one) into CuPy's kernel cache. Returns one ``(file, seconds, error)``
    per file, ``error`` None when it compiled; a file that fails (an architecture too old for its tensor-core
    kernels) does not stop the others. Needs CuPy and a GPU."""
    from ._cuda import _runtime
    from ._cuda._kernel_table import KERNELS

    chosen = sorted(KERNELS) if files is None else list(files)
    unknown = [f for f in chosen if f not in KERNELS]
    if unknown:
        raise ValueError(f"precompile: unknown kernel files {unknown}; known: {sorted(KERNELS)}")
    results = []
    with _device(device):
        for source_file in chosen:
            start = time.perf_counter()
            error = None
            try:
                for name in KERNELS[source_file]:  # the first of each dtype compiles, the rest are lookups
                    _runtime.get_function(source_file, name)
            except Exception as exc:  # noqa: BLE001 - reported per file, the others still compile
                error = f"{type(exc).__name__}: {exc}"
            seconds = time.perf_counter() - start
            results.append((source_file, seconds, error))
            if verbose:
                status = "ok" if error is None else f"FAILED ({error.splitlines()[0][:200]})"
                print(f"  {source_file:32s} {len(KERNELS[source_file]):3d} kernels {seconds:7.2f} s  {status}")
    return results


def _device(device):
    """CuPy's device scope for ``device``; the current device (and no CuPy import) for None."""
    if device is None:
        return contextlib.nullcontext()
    import cupy

    return cupy.cuda.Device(device)


def cache_dir() -> str:
    """Where CuPy keeps compiled kernels: ``CUPY_CACHE_DIR``, else ``~/.cupy/kernel_cache``."""
    return os.environ.get("CUPY_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cupy", "kernel_cache")


def cache_on_disk() -> bool:
    """False when ``CUPY_CACHE_IN_MEMORY=1`` keeps compiled kernels in the process only (precompiling is
    then useless for later processes)."""
    return os.environ.get("CUPY_CACHE_IN_MEMORY", "0") in ("", "0")
