"""GPUCONV_CONV_ALGO=autotune: time each candidate algorithm once per problem, keep the fastest.

The first call of a pass with a new problem (geometry, dtype, pass, device, and the environment switches
that change the implicit-GEMM kernel) runs every candidate of ``_algo.candidates`` on the call's own
arrays: once untimed (kernel compile, workspace allocation), then up to TIMED_RUNS times between CUDA
events on the current stream, keeping the smallest time. A candidate slower than twice the best so far
is dropped after its first timed run. The winner is cached in memory for the rest of the process; later
calls of that problem cost one dictionary lookup. Each algorithm is deterministic on its own; another
process may pick another algorithm where two are within timing noise (cuDNN's benchmark mode behaves
alike).
"""

from __future__ import annotations

import cupy

from gpuconv._cuda import _env  # absolute: tests load this module by path, outside its package

from . import _algo

TIMED_RUNS = 3
_chosen: dict = {}


def _key(g, dtype, pass_name: str) -> tuple:
    switches = tuple(_env.get(v) for v in ("GPUCONV_ALLOW_TF32", "GPUCONV_IGEMM_REFERENCE", "GPUCONV_UNVERIFIED"))
    return (cupy.cuda.Device().id, g, str(dtype), pass_name, switches)


def _elapsed_ms(run) -> float:
    stream = cupy.cuda.get_current_stream()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record(stream)
    run()
    end.record(stream)
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end)


def choose(g, dtype, pass_name: str, run_with) -> str:
    """The cached or newly measured fastest algorithm; ``run_with(name)`` runs the pass with that one."""
    key = _key(g, dtype, pass_name)
    found = _chosen.get(key)
    if found is not None:
        return found
    options = _algo.candidates(g, dtype, pass_name)
    best, best_ms = options[0], float("inf")
    if len(options) > 1:
        for name in options:
            run_with(name)  # compile and allocate outside the timing
            ms = _elapsed_ms(lambda: run_with(name))
            if ms <= 2 * best_ms:
                for _ in range(TIMED_RUNS - 1):
                    ms = min(ms, _elapsed_ms(lambda: run_with(name)))
            if ms < best_ms:
                best, best_ms = name, ms
    _chosen[key] = best
    return best


def cached() -> dict:
    """A copy of the choices made so far: {(device, geometry, dtype, pass, switches): algorithm}."""
    return dict(_chosen)


def clear() -> None:
    _chosen.clear()
