"""Timers: wall clock for the CPU, CUDA events for the GPU. Both return per-call times in milliseconds.

Each timer warms up first (the first call compiles kernels, autotunes cuDNN, faults in pages), estimates
one call, then repeats as many times as fit a time budget, within [min_reps, max_reps]. Callers take the
median. Calls rotate over the given input sets, so a timed call does not find its inputs in a warm cache
left by the previous one.
"""

from __future__ import annotations

import time


def repeats_for(estimate_s: float, budget_s: float, min_reps: int, max_reps: int) -> int:
    return int(min(max_reps, max(min_reps, budget_s / max(estimate_s, 1e-9))))


def time_cpu(fn, sets, *, warmup=1, budget_s=0.3, min_reps=3, max_reps=20) -> list:
    for i in range(warmup):
        fn(sets[i % len(sets)])
    t0 = time.perf_counter()
    fn(sets[warmup % len(sets)])
    reps = repeats_for(time.perf_counter() - t0, budget_s, min_reps, max_reps)
    times = []
    for i in range(reps):
        s = sets[i % len(sets)]
        t0 = time.perf_counter()
        fn(s)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def time_cpu_pair(fn_a, sets_a, fn_b, sets_b, *, warmup=1, budget_s=0.3, min_reps=3, max_reps=20):
    """Times two functions interleaved, call for call (A B, then B A, ...), so that both see the same
    machine: on a shared CPU the load drifts, and timing one side after the other would put the drift
    into their ratio. Returns (times_a, times_b) in ms; budget_s is per side."""
    for i in range(warmup):
        fn_a(sets_a[i % len(sets_a)])
        fn_b(sets_b[i % len(sets_b)])
    t0 = time.perf_counter()
    fn_a(sets_a[0])
    t1 = time.perf_counter()
    fn_b(sets_b[0])
    t2 = time.perf_counter()
    reps = repeats_for(max(t1 - t0, t2 - t1), budget_s, min_reps, max_reps)
    times_a, times_b = [], []
    for i in range(reps):
        order = ((fn_a, sets_a, times_a), (fn_b, sets_b, times_b))
        for fn, sets, times in (order if i % 2 == 0 else order[::-1]):
            s = sets[i % len(sets)]
            t = time.perf_counter()
            fn(s)
            times.append((time.perf_counter() - t) * 1e3)
    return times_a, times_b


# A one-thread kernel that spins for a number of clock cycles: queued before a timed call, it keeps the GPU
# busy while the host enqueues the call, so the events around the call see only device time.
_DELAY_SOURCE = r"""
extern "C" __global__ void gpuconv_bench_delay(long long cycles) {
    const long long start = clock64();
    while (clock64() - start < cycles) { }
}
"""


class CudaTimer:
    """Times calls on the current stream with a pair of CUDA events around each call.

    When the rotation over input sets does not cover twice the L2 cache, an L2 flush (a memset of a buffer
    of twice the L2 size) runs before each call, outside the events, so every call starts with a cold L2
    as it would inside a network.

    What the events measure is the GPU timeline from the call's first queued work to its last, which
    includes any time the GPU waits for the host to enqueue the rest of the call. For calls shorter than
    their host dispatch (gpuconv spends 40-200 us of Python per call; tiny problems, batch 1, ~50 us
    kernels) that wait is in the number, and it varies run to run. ``delay_ms`` > 0 queues a spin kernel of
    that length before each timed call (after the flush), so the host has enqueued the whole call before
    the GPU reaches it: the numbers are then device time only (bench_gpu.py --device-time)."""

    def __init__(self, l2_bytes: int, delay_ms: float = 0.0, cupy=None):
        """``cupy``: the array module (CuPy by default; a stand-in in tests)."""
        if cupy is None:
            import cupy

        self._cupy = cupy
        self.flush_buffer = cupy.empty(2 * l2_bytes, dtype=cupy.uint8)
        self.delay_cycles = 0
        if delay_ms > 0:
            clock_khz = cupy.cuda.Device().attributes["ClockRate"]
            self.delay_cycles = int(delay_ms * clock_khz)
            self._delay = cupy.RawKernel(_DELAY_SOURCE, "gpuconv_bench_delay")

    def flush(self):
        self.flush_buffer.fill(0)

    def _before_call(self, flush: bool):
        if flush:
            self.flush()
        if self.delay_cycles:
            import numpy

            self._delay((1,), (1,), (numpy.int64(self.delay_cycles),))

    def time(self, fn, sets, *, flush: bool, warmup=3, budget_s=0.3, min_reps=5, max_reps=100) -> list:
        cupy = self._cupy
        for i in range(warmup):
            fn(sets[i % len(sets)])
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        self._before_call(flush)
        start.record()
        fn(sets[warmup % len(sets)])
        end.record()
        end.synchronize()
        reps = repeats_for(cupy.cuda.get_elapsed_time(start, end) / 1e3, budget_s, min_reps, max_reps)
        events = [(cupy.cuda.Event(), cupy.cuda.Event()) for _ in range(reps)]
        for i, (s, e) in enumerate(events):
            self._before_call(flush)
            s.record()
            fn(sets[i % len(sets)])
            e.record()
        events[-1][1].synchronize()
        return [cupy.cuda.get_elapsed_time(s, e) for s, e in events]
