"""Running NumPy's memory-bound steps (window copies, multiply-adds) on every core.

BLAS already spreads each GEMM over the cores; the copies and elementwise passes between GEMMs would run
on one core. NumPy releases the GIL inside those loops, so a small thread pool over disjoint slices gets
them onto all cores. Each output element is still written by exactly one thread in a fixed order, so
results do not depend on the thread count or on scheduling.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy

# Below this many elements a pass takes a few microseconds and a thread hand-off would cost more.
_MIN_PARALLEL_ELEMENTS = 1 << 16

_pool = None
_workers = None


def workers() -> int:
    """Threads to use: GPUCONV_NUM_THREADS if set, else the cores this process may run on (at most 8)."""
    global _workers
    if _workers is None:
        env = os.environ.get("GPUCONV_NUM_THREADS", "")
        if env.strip().isdigit() and int(env) > 0:
            _workers = int(env)
        else:
            try:
                n = len(os.sched_getaffinity(0))
            except AttributeError:  # not on Linux
                n = os.cpu_count() or 1
            _workers = max(1, min(n, 8))
    return _workers


def _forget_pool() -> None:
    # A forked child has none of the parent's threads: it must start its own pool.
    global _pool, _workers
    _pool, _workers = None, None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run(fn, items) -> None:
    """fn(item) for every item, on the pool; re-raises the first exception."""
    global _pool
    items = list(items)
    if workers() == 1 or len(items) < 2:
        for item in items:
            fn(item)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=workers(), thread_name_prefix="gpuconv")
    # NumPy's floating-point error state is per thread: the workers take the caller's.
    state = numpy.geterr()

    def task(item):
        with numpy.errstate(**state):
            fn(item)

    for f in [_pool.submit(task, item) for item in items]:
        f.result()


def run_parts(fn, items) -> None:
    """fn(part) for contiguous parts of items, one part per worker (one hand-off per worker rather than
    per item, for many small items)."""
    items = list(items)
    k = min(workers(), len(items))
    run(fn, [items[i * len(items) // k:(i + 1) * len(items) // k] for i in range(k)])


def _split_axis(shape) -> int | None:
    """The outermost axis long enough to give every worker a slice."""
    for axis, n in enumerate(shape):
        if n >= workers():
            return axis
    return None


def _sliced(op, dst, src) -> None:
    """op(dst_slice, src_slice) over slices of dst's outermost long axis, one per worker."""
    axis = _split_axis(dst.shape)
    if dst.size < _MIN_PARALLEL_ELEMENTS or workers() == 1 or axis is None:
        op(dst, src)
        return
    n, k = dst.shape[axis], workers()
    index = (slice(None),) * axis
    src = numpy.broadcast_to(src, dst.shape)

    def part(i):
        sl = index + (slice(i * n // k, (i + 1) * n // k),)
        op(dst[sl], src[sl])

    run(part, range(k))


def copyto(dst, src) -> None:
    """numpy.copyto(dst, src), casting as needed, across the pool."""
    _sliced(numpy.copyto, dst, src)


def add(dst, src) -> None:
    """dst += src (src broadcast to dst's shape), across the pool."""
    _sliced(lambda d, s: numpy.add(d, s, out=d), dst, src)
