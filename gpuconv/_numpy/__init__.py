"""The NumPy backend: the functions of the interface in ``gpuconv._backend``, on numpy.ndarray."""

from .conv import conv2d_bias_grad, conv2d_dgrad, conv2d_fprop, conv2d_wgrad
from .pad import pad2d, pad2d_backward
from .pool import avg_pool2d_bprop, avg_pool2d_fprop, max_pool2d_bprop, max_pool2d_fprop
