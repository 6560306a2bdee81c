"""The implicit-GEMM kernels (kernels/implicit_gemm*.cu) run on the CPU against a float64 reference.

tests/host_cuda/implicit_gemm_emulation/ builds the unchanged kernel sources with g++ (C++20): one
std::thread per CUDA thread, __shared__ arrays as statics, __syncthreads as a std::barrier, and mma.sync
emulated per warp from the PTX fragment tables. Each case checks every pass of every kernel kind on
NaN-poisoned outputs. This checks the index arithmetic, tiling and fragment layouts; only a GPU checks the
real asynchrony of cp.async, timing and races.

The "nhwc" case runs the opt-in channels-last float16 fprop (kernels/implicit_gemm_nhwc.cu): the layout
kernel, then every tile instantiation on 3x3 / 1x1 / strided, dilated, asymmetrically padded geometries with
C = 8 and 72 (partial k-tiles) and K = 8 and 136 (partial n-tiles), its 16-byte cp.async landing at the
wait (a missing wait shows) and, for two cases, at once (a slot overwritten while read shows).

"mma_bf16" runs the experimental bfloat16 tensor-core variants (bf16_native: mma.sync m16n8k16 .bf16, whose
fragments the emulation decodes as bfloat16) of all three passes, every tile shape, within one bfloat16
rounding of the float64 reference.

"nhwc_wgrad" runs the opt-in channels-last wgrad (kernels/implicit_gemm_nhwc_wgrad.cu): every tile on 3x3 /
1x1 / strided, dilated, asymmetrically padded geometries, P*Q below and Q above the 32-pixel k-tile, C and K
from 8 to 136 (partial tiles on both edges), 1 to 4 splits (the last one partial), then the ordered split
reduction. "nhwc_dgrad" runs the opt-in channels-last dgrad (kernels/implicit_gemm_nhwc_dgrad.cu): every
tile on strided geometries (3x3/2, 4x4/2 with a negative right pad as in a transposed conv, 2x2/2, 3x3/3
dilation 2 whose phases have 0..2 taps, 5x3/(2,3) dilated with K = 40) and on one stride-1 geometry.

"nonfinite" (issue 14, class 2): the NCHW dgrads (simt, mma half, TF32) and the channels-last dgrad with a NaN
or an infinite weight. Each kernel alone must get NaNs wrong (it multiplies padding zeros by the weight: the
case shows the bug), and after the experimental repair (kernels/experimental/nonfinite_weights.cu, feature
nonfinite_weights) gx must have the reference's NaNs and infinities exactly and its finite values within tol.
The NCHW forwards with the same weights must already have PyTorch's NaNs (its zero padding times the weight).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent
HARNESS = HERE / "host_cuda" / "implicit_gemm_emulation"
KERNELS = HERE.parent / "kernels"


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    exe = tmp_path_factory.mktemp("igemm") / "igemm_emulation"
    build = subprocess.run(
        [gxx, "-std=c++20", "-O1", "-w", "-pthread", f"-I{HARNESS / 'fake'}", f"-I{HARNESS}", f"-I{KERNELS}",
         f"-I{KERNELS / 'experimental'}", str(HARNESS / "harness.cpp"), "-o", str(exe)],
        capture_output=True, text=True, timeout=300,
    )
    if build.returncode != 0 and "barrier" in build.stderr:
        pytest.skip("this g++ lacks C++20 std::barrier")
    assert build.returncode == 0, build.stderr[-3000:]
    return exe


@pytest.mark.parametrize("kind", ["simt", "mma", "mma_bf16", "nhwc", "nhwc_wgrad", "nhwc_dgrad", "nonfinite"])
def test_implicit_gemm_kernels_match_the_float64_reference(emulator, kind):
    run = subprocess.run([str(emulator), kind], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("all ok"), run.stdout[-3000:] + run.stderr[-2000:]
