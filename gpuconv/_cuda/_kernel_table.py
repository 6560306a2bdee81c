"""Every kernel instantiation gpuconv compiles, by source file under kernels/, and the NVRTC options.

Derived from the variants' declarations (``_registry``): each name is written once, by the module that
launches it. The loader compiles each file once per device with all of its names (CuPy ``name_expressions``);
the NVRTC check in CI compiles exactly this list with exactly these options. Importing it needs no GPU.
"""

from ._loader import COMPILE_OPTIONS
from ._registry import KERNELS, VARIANTS

__all__ = ["COMPILE_OPTIONS", "KERNELS", "VARIANTS"]
