"""Every kernel instantiation gpuconv compiles, by source file under kernels/, and the NVRTC options.

Derived from the variants' declarations (``_registry``): each name is written once, by the module that
launches it. The loader compiles each file once per device with all of its names (CuPy ``name_expressions``);
the NVRTC check in CI compiles exactly this list with exactly these options. Importing it needs no GPU.
"""

from ._defines import DEFINES, NHWC_STAGES
from ._registry import BF16_FAMILIES, COMPILE_OPTIONS, KERNELS, VARIANTS, bf16_source

__all__ = ["BF16_FAMILIES", "COMPILE_OPTIONS", "DEFINES", "KERNELS", "NHWC_STAGES", "VARIANTS", "bf16_source"]
