// Depthwise convolution version 2 for 5x5 filters (opt-in: GPUCONV_UNVERIFIED=depthwise_v2): the
// instantiations conv2d_{fprop,wgrad}_depthwise_v2<T, 5, 5, S, S> of conv_depthwise_v2.cuh, which holds
// the kernels, their formulas, thread mapping and bounds. A separate file so that a network with 3x3
// depthwise layers only (MobileNetV2) does not compile these at first use.
#include "conv_depthwise_v2.cuh"
