#!/bin/sh
# Runs the implicit-GEMM kernels on the CPU (one std::thread per CUDA thread, mma.sync emulated per warp)
# against a float64 reference. Usage: sh run.sh [simt|mma|big|nhwc|nhwc_wgrad|nhwc_dgrad]   (from any directory; needs g++ >= 12)
set -e
here=$(cd "$(dirname "$0")" && pwd)
g++ -std=c++20 -O1 -w -pthread -I"$here/fake" -I"$here" -I"$here/../../../kernels" -I"$here/../../../kernels/experimental" "$here/harness.cpp" -o /tmp/igemm_emulation
/tmp/igemm_emulation "$@"
