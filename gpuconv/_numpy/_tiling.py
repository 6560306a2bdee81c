"""The workspace cap of the NumPy conv methods, and the tiles (batch chunks, output-row blocks) it implies.

A method that needs a scratch buffer of ``bytes_per_row`` per output row of one image works on tiles of
whole images while a chunk of them fits under the cap, and on blocks of output rows of one image when a
single image does not fit. Tiles are visited in a fixed order, so results are deterministic.
"""

from __future__ import annotations

# 16 MiB: large enough that every GEMM stays long (thousands of columns), small enough that the scratch
# buffer is a fraction of the input plus output on any layer big enough for memory to matter, and below
# glibc's largest mmap threshold (32 MiB), so that malloc reuses the buffer's pages from call to call
# instead of mapping and faulting in fresh ones each time.
WORKSPACE_BYTES = 16 << 20


def tile_shape(N: int, P: int, bytes_per_row: int, cap: int = WORKSPACE_BYTES) -> tuple:
    """(images per chunk, output rows per block) so that images * rows * bytes_per_row <= cap, with at
    least one image and one row."""
    per_image = max(1, bytes_per_row) * P
    if per_image <= cap:
        return max(1, min(N, cap // per_image)), P
    return 1, max(1, min(P, cap // max(1, bytes_per_row)))


def chunks(total: int, step: int):
    """(start, stop) pairs covering range(total) in steps of step."""
    for start in range(0, total, step):
        yield start, min(total, start + step)
