"""Host-side cost of one gpuconv call on the GPU: wall time per call of tiny problems (where the GPU work is
a few microseconds, so the host dominates), against PyTorch's functional ops, plus a cProfile of the
gpuconv calls, and the cost of each CuPy step such a call is made of (a kernel launch with 4 and with 20
arguments, an allocation, a device scope, CuPy's reduction). Batch-1 layers in the benchmark suite are bound
by this.

    python bench/host_overhead.py [--calls 2000] [--profile-top 25] [--out DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import cupy  # noqa: E402
import numpy  # noqa: E402

import gpuconv  # noqa: E402


def _ops(xp):
    """name -> zero-argument call on tiny float32 operands of the array module xp (cupy or torch)."""
    rng = numpy.random.default_rng(0)
    to = (lambda a: cupy.asarray(a)) if xp == "cupy" else (lambda a: __import__("torch").from_numpy(a).cuda())
    x = to(rng.standard_normal((1, 16, 8, 8), dtype=numpy.float32))
    w = to(rng.standard_normal((16, 16, 3, 3), dtype=numpy.float32))
    gy = to(rng.standard_normal((1, 16, 8, 8), dtype=numpy.float32))
    gyp = to(rng.standard_normal((1, 16, 4, 4), dtype=numpy.float32))  # a 2x2 max pool's output gradient
    idx = to(rng.integers(0, 64, size=(1, 16, 4, 4), dtype=numpy.int64))  # flat positions in the 8x8 planes
    if xp == "cupy":
        return {
            "conv2d": lambda: gpuconv.conv2d(x, w, padding=1),
            "conv2d_backward": lambda: gpuconv.conv2d_backward(gy, x, w, padding=1),
            "conv2d_backward, no grad_bias": lambda: gpuconv.conv2d_backward(
                gy, x, w, padding=1, output_mask=(True, True, False)),
            "max_pool2d": lambda: gpuconv.max_pool2d(x, 2),
            "max_pool2d_backward": lambda: gpuconv.max_pool2d_backward(gyp, idx, x.shape),
            "avg_pool2d": lambda: gpuconv.avg_pool2d(x, 2),
        }
    import torch
    import torch.nn.functional as F

    def backward(mask):
        # bias_sizes [K] so that mask[2] asks for grad_bias, as gpuconv's default output_mask does
        return lambda: torch.ops.aten.convolution_backward(gy, x, w, [w.shape[0]], (1, 1), (1, 1), (1, 1), False,
                                                           (0, 0), 1, mask)

    return {"conv2d": lambda: F.conv2d(x, w, padding=1), "conv2d_backward": backward((True, True, True)),
            "conv2d_backward, no grad_bias": backward((True, True, False)),
            "max_pool2d": lambda: F.max_pool2d(x, 2),
            "max_pool2d_backward": lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                gyp, x, [2, 2], [2, 2], [0, 0], [1, 1], False, idx),
            "avg_pool2d": lambda: F.avg_pool2d(x, 2)}


_NOP_SOURCE = r"""
extern "C" __global__ void nop4(const float* a, float* b, int n, int m) {
    if (n < 0) b[0] = a[m];  // never true: keeps the parameters alive
}
extern "C" __global__ void nop20(const float* a, const float* b, const float* c, float* d, int s0, int s1,
                                 int s2, int s3, int s4, int s5, int s6, int s7, int s8, int s9, int s10,
                                 int s11, int s12, int s13, int s14, int s15) {
    if (s0 < 0) d[0] = a[s1] + b[s2] + c[s3 + s4 + s5 + s6 + s7 + s8 + s9 + s10 + s11 + s12 + s13 + s14 + s15];
}
"""


def _primitives() -> dict:
    """name -> zero-argument call: the CuPy steps one gpuconv call is made of, each alone, to split the host
    time that gpuconv's own Python does not account for (bench/python_overhead.py measures that part)."""
    rng = numpy.random.default_rng(0)
    x = cupy.asarray(rng.standard_normal((1, 16, 8, 8), dtype=numpy.float32))
    idx = cupy.zeros((1, 16, 4, 4), dtype=numpy.int64)
    module = cupy.RawModule(code=_NOP_SOURCE)
    nop4, nop20 = module.get_function("nop4"), module.get_function("nop20")
    ints = tuple(numpy.int32(i) for i in range(16))

    def scope():
        with x.device:
            pass

    return {
        "RawKernel launch, 4 arguments": lambda: nop4((1,), (32,), (x, x, numpy.int32(1), numpy.int32(0))),
        "RawKernel launch, 20 arguments (4 arrays, 16 int32)": lambda: nop20((1,), (32,), (x, x, x, x) + ints),
        "cupy.empty((1, 16, 8, 8))": lambda: cupy.empty((1, 16, 8, 8), dtype=numpy.float32),
        "cupy.ascontiguousarray (already contiguous)": lambda: cupy.ascontiguousarray(x),
        "with x.device: pass": scope,
        "x.sum(axis=(0, 2, 3)) (grad_bias by CuPy)": lambda: x.sum(axis=(0, 2, 3), dtype=numpy.float32),
        "int(indices.min()) (a reduction and a sync)": lambda: int(idx.min()),
    }


def _per_call_us(fn, calls: int, sync) -> float:
    for _ in range(20):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - t0) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--profile-top", type=int, default=25)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ours = _ops("cupy")
    sync = cupy.cuda.get_current_stream().synchronize
    lines = [f"# host time per call, {args.calls} calls each, tiny float32 problems (1x16x8x8, 3x3 conv)",
             f"gpuconv algo rule: {os.environ.get('GPUCONV_CONV_ALGO', 'auto')}", "",
             "| op | gpuconv us/call | torch us/call |", "|---|---:|---:|"]
    try:
        import torch

        theirs = _ops("torch")
        tsync = torch.cuda.synchronize
    except Exception as e:  # torch is optional here
        theirs, tsync = {}, None
        lines.insert(1, f"torch unavailable: {e}")
    for name, fn in ours.items():
        t = _per_call_us(theirs[name], args.calls, tsync) if name in theirs else float("nan")
        lines.append(f"| {name} | {_per_call_us(fn, args.calls, sync):.1f} | {t:.1f} |")
    lines += ["", "## CuPy's steps alone", "", "| step | us/call |", "|---|---:|"]
    for name, fn in _primitives().items():
        lines.append(f"| {name} | {_per_call_us(fn, args.calls, sync):.1f} |")
    for name, fn in ours.items():
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls // 4):
            fn()
        sync()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(args.profile_top)
        lines += ["", f"## cProfile: {name}, {args.calls // 4} calls, by own time", "```", buf.getvalue().strip(), "```"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "host_overhead.md"), "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
