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


class CudaTimer:
    """Times calls on the current stream with a pair of CUDA events around each call.

    When the rotation over input sets does not cover twice the L2 cache, an L2 flush (a memset of a buffer
    of twice the L2 size) runs before each call, outside the events, so every call starts with a cold L2
    as it would inside a network. What is measured is GPU time: a flush keeps the GPU busy while the host
    enqueues the call, so host-side dispatch is hidden unless it is longer than the call itself."""

    def __init__(self, l2_bytes: int):
        import cupy

        self._cupy = cupy
        self.flush_buffer = cupy.empty(2 * l2_bytes, dtype=cupy.uint8)

    def flush(self):
        self.flush_buffer.fill(0)

    def time(self, fn, sets, *, flush: bool, warmup=3, budget_s=0.3, min_reps=5, max_reps=100) -> list:
        cupy = self._cupy
        for i in range(warmup):
            fn(sets[i % len(sets)])
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        if flush:
            self.flush()
        start.record()
        fn(sets[warmup % len(sets)])
        end.record()
        end.synchronize()
        reps = repeats_for(cupy.cuda.get_elapsed_time(start, end) / 1e3, budget_s, min_reps, max_reps)
        events = [(cupy.cuda.Event(), cupy.cuda.Event()) for _ in range(reps)]
        for i, (s, e) in enumerate(events):
            if flush:
                self.flush()
            s.record()
            fn(sets[i % len(sets)])
            e.record()
        events[-1][1].synchronize()
        return [cupy.cuda.get_elapsed_time(s, e) for s, e in events]
