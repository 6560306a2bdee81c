"""Tunables that the launchers and the kernels share, defined here only.

The kernels receive them as ``-D`` options (``_kernel_table.COMPILE_OPTIONS``; a kernel source compiled without
them stops with ``#error``), the launchers read them from here, and the host builds of the tests pass the same
options. This module imports nothing, so the loader can use it without an import cycle.
"""

DEFINES = {
    # conv_depthwise.cu: the largest block, outputs per thread along a row, static shared memory per kernel.
    "DW_MAX_THREADS": 256, "DW_OUTPUTS_PER_THREAD": 4, "DW_SMEM_BYTES": 16384,
    # conv_depthwise_v2.cuh: output rows per unit, elements per vector load, block size; stride-2 dgrad tile.
    "DW2_ROWS": 7, "DW2_VEC": 4, "DW2_THREADS": 128, "DW2_DGRAD_ROWS": 8, "DW2_DGRAD_COLS": 8,
    # bias_grad.cu: the largest block (the shared tree's size, a power of two).
    "BG_THREADS": 256,
}

# The channels-last float16 implicit GEMMs' tiles (BM, BN) and the depth of their cp.async ring (static shared
# memory STAGES * (BM + BN) * 64 bytes <= 48 KB), for all three passes: their kernel names carry STAGES.
NHWC_STAGES = {(128, 128): 3, (128, 64): 4, (64, 128): 4, (64, 64): 4}

DEFINE_OPTIONS = tuple(f"-D{name}={value}" for name, value in DEFINES.items())
