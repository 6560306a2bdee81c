"""The device's measured memory bandwidth: the yardstick of the pooling target (">= 70% of measured HBM").

A device-to-device copy of a buffer far larger than L2 (CuPy's elementwise copy kernel, as STREAM's copy:
every byte read once and written once), timed with CUDA events; bandwidth = 2 * bytes / median time.
The spec sheet's 3.35 TB/s is not reachable by any kernel; the copy is what a memory-bound kernel can hope
for on this device, so pooling is measured against it.
"""

from __future__ import annotations

import statistics


def copy_bytes_per_s(cupy, nbytes: int = 1 << 30, reps: int = 20) -> float:
    """Median read+write bandwidth of copying nbytes (float32) between two device buffers, in bytes/s."""
    n = nbytes // 4
    src = cupy.arange(n, dtype=cupy.float32)
    dst = cupy.empty_like(src)
    stream = cupy.cuda.get_current_stream()
    times = []
    for i in range(reps + 2):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        cupy.copyto(dst, src)
        end.record(stream)
        end.synchronize()
        if i >= 2:  # the first calls compile and fault in pages
            times.append(cupy.cuda.get_elapsed_time(start, end) * 1e-3)
    if not bool((dst[-8:] == src[-8:]).all()):
        raise RuntimeError("hbm.copy_bytes_per_s: the copy did not copy")
    del src, dst
    cupy.get_default_memory_pool().free_all_blocks()
    return 2 * n * 4 / statistics.median(times)
