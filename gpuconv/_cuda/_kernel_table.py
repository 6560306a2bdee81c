"""Every kernel instantiation gpuconv compiles, by source file under kernels/, and the NVRTC options.

The loader compiles each file once per device with all of its names (CuPy ``name_expressions``); the
NVRTC check in CI compiles exactly this list with exactly these options. Importing this module needs no
CuPy and no GPU.
"""

# Options passed to NVRTC by the loader (CuPy adds the architecture of the device).
COMPILE_OPTIONS = ("--std=c++17",)

KERNELS = {
    # "conv.cu": ("im2col<float>", ...),          owned by the conv kernels
    # "pool.cu": ("max_pool2d_fprop<float>", ...), owned by the pooling kernels
}
