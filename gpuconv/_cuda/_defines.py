"""Tunables that the launchers and the kernels share: read from the one place they are defined,
``kernels/tunables.cuh`` (a ``#define NAME integer`` line each), which the kernels include. So a kernel file
compiles on its own (nvcc, NVRTC) and a launcher can never disagree with it.

This module needs only the loader's search for the kernel directory (no CuPy), so importing it is cheap
and cycle-free.
"""

import re

from ._loader import kernel_dir

_DEFINE = re.compile(r"^#define\s+([A-Z][A-Z0-9_]*)\s+(\d+)\s*$", re.MULTILINE)

DEFINES = {name: int(value) for name, value in _DEFINE.findall((kernel_dir() / "tunables.cuh").read_text())}

# The channels-last float16 implicit GEMMs' tiles (BM, BN) and the depth of their cp.async ring (static shared
# memory STAGES * (BM + BN) * 64 bytes <= 48 KB), for all three passes: template arguments, so they live in
# the kernel names, not in a header.
NHWC_STAGES = {(128, 128): 3, (128, 64): 4, (64, 128): 4, (64, 64): 4}
