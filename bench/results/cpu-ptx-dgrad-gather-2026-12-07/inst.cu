#include "conv_direct.cu"
template __global__ void conv2d_dgrad_direct<float>(const float*, const float*, const float*, float*, int,int,int,int,int,int,int,int,int,int,int,int,int,int,int,int);
template __global__ void conv2d_dgrad_direct<double>(const double*, const double*, const double*, double*, int,int,int,int,int,int,int,int,int,int,int,int,int,int,int,int);
template __global__ void conv2d_dgrad_direct<__half>(const __half*, const __half*, const __half*, __half*, int,int,int,int,int,int,int,int,int,int,int,int,int,int,int,int);
template __global__ void conv2d_fprop_direct<float>(const float*, const float*, const float*, float*, int,int,int,int,int,int,int,int,int,int,int,int,int,int,int,int);
