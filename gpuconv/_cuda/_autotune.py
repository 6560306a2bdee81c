"""GPUCONV_CONV_ALGO=autotune: time each candidate algorithm once per problem, keep the fastest.

The first call of a pass with a new problem (geometry, dtype, pass, device, and the configuration switches
that change the variants) runs every candidate algorithm ``_algo`` gives it on the call's own arrays: once untimed (kernel compile, workspace allocation), then up to TIMED_RUNS times between CUDA
events on the current stream, keeping the smallest time. A candidate slower than twice the best so far
is dropped after its first timed run. The winner is cached in memory for the rest of the process; later
calls of that problem cost one dictionary lookup. Each algorithm is deterministic on its own; another
process may pick another algorithm where two are within timing noise (cuDNN's benchmark mode behaves
alike).
"""

from __future__ import annotations

from . import _runtime

TIMED_RUNS = 3
_chosen: dict = {}


def choose(g, dtype, pass_name: str, switches: tuple, options: tuple, run_with) -> str:
    """The cached or newly measured fastest of ``options`` (algorithm names); ``run_with(name)`` runs the pass
    with that one."""
    runtime = _runtime.current()
    key = (runtime.device_id(), g, str(dtype), pass_name, switches)
    found = _chosen.get(key)
    if found is not None:
        return found
    best, best_ms = options[0], float("inf")
    if len(options) > 1:
        for name in options:
            run_with(name)  # compile and allocate outside the timing
            ms = runtime.elapsed_ms(lambda: run_with(name))
            if ms <= 2 * best_ms:
                for _ in range(TIMED_RUNS - 1):
                    ms = min(ms, runtime.elapsed_ms(lambda: run_with(name)))
            if ms < best_ms:
                best, best_ms = name, ms
    _chosen[key] = best
    return best


def cached() -> dict:
    """A copy of the choices made so far: {(device, geometry, dtype, pass, switches): algorithm}."""
    return dict(_chosen)


def clear() -> None:
    _chosen.clear()
