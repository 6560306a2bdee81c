// Native bfloat16 instantiations of ../pad.cu (experimental, off by default:
// GPUCONV_UNVERIFIED=bf16_native). The kernels are ../pad.cu's templates with T = __nv_bfloat16: loads
// convert exactly to float, sums run in float, each output is rounded once to nearest even (types.cuh's
// Accumulator). A file of their own, so that compiling the verified file (and its cold start) stays as it
// was; their names are the kernel table's "experimental/bf16_pad.cu". A GPU run that promotes
// them moves the names back beside the float16 ones.
#include "../pad.cu"
