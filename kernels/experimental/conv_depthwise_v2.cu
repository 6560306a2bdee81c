// Depthwise convolution version 2 for 3x3 filters (opt-in: GPUCONV_UNVERIFIED=depthwise_v2): the
// instantiations conv2d_{fprop,wgrad}_depthwise_v2<T, 3, 3, S, S> of conv_depthwise_v2.cuh, which holds
// the kernels, their formulas, thread mapping and bounds. 5x5 filters: conv_depthwise_v2_5x5.cu.
#include "conv_depthwise_v2.cuh"
