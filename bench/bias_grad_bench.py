"""Device time of grad_bias on the GPU: CuPy's reduction (the default) against the opt-in bias_grad kernels
(GPUCONV_UNVERIFIED=bias_grad), on the output gradients of real layers, as a fraction of measured HBM copy
bandwidth (bench/hbm.py). Each side is checked against a float64 sum first; times are medians of
bench/timing.py's CudaTimer (cold L2, device time only).

    python bench/bias_grad_bench.py [--reps 20] [--dtypes float32 float16] [--only REGEX] [--out DIR]

grad_bias reads gy once and writes K values, so bytes = gy.nbytes. The benchmark suite does not time it (its
passes are fprop, dgrad and wgrad), and bench/host_overhead.py measures only the host side of small calls.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cupy  # noqa: E402
import numpy  # noqa: E402

import hbm  # noqa: E402
import timing  # noqa: E402
from gpuconv._cuda import conv as cuda_conv  # noqa: E402

# (label, N, K, P, Q): the output gradients of the suite's layers at their GPU batch, and batch 1 of one.
SHAPES = (
    ("ResNet-50 stem, batch 256", 256, 64, 112, 112),
    ("ResNet-50 stem, batch 32", 32, 64, 112, 112),
    ("ResNet-50 conv2_x 1x1 expand, batch 32", 32, 256, 56, 56),
    ("ResNet-50 conv4_x, batch 32", 32, 256, 14, 14),
    ("VGG-16 conv4_2, batch 16", 16, 512, 28, 28),
    ("MobileNetV2 depthwise, batch 64", 64, 144, 56, 56),
    ("ResNet-50 conv5_x 7x7, batch 32", 32, 2048, 7, 7),
    ("ResNet-50 conv2_x, batch 1", 1, 64, 56, 56),
)


def _with_switch(value: str, fn):
    from runner import refresh_cuda_config

    old = os.environ.get("GPUCONV_UNVERIFIED")
    os.environ["GPUCONV_UNVERIFIED"] = value
    refresh_cuda_config()
    try:
        return fn()
    finally:
        if old is None:
            os.environ.pop("GPUCONV_UNVERIFIED")
        else:
            os.environ["GPUCONV_UNVERIFIED"] = old
        refresh_cuda_config()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    ap.add_argument("--only", default="", help="a regex: only the shapes whose label matches")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    copy_bw = hbm.copy_bytes_per_s(cupy)
    # bench_gpu's timer: a cold L2 before each call, and a 1 ms spin queued ahead so that the events see
    # device time only (small calls would otherwise measure their host dispatch)
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    timer = timing.CudaTimer(props["l2CacheSize"], delay_ms=1.0)
    lines = [f"# grad_bias device time: CuPy's reduction against bias_grad.cu (median of {args.reps})", "",
             f"device: {cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, measured copy bandwidth "
             f"{copy_bw / 1e12:.2f} TB/s", "",
             "| gy | dtype | MB | CuPy ms | bias_grad ms | CuPy / bias_grad | bias_grad % of copy bw | max rel. err CuPy / bias_grad |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    cupy.random.seed(0)
    for dname in args.dtypes:
        dtype = numpy.dtype(dname)
        for label, N, K, P, Q in SHAPES:
            if not re.search(args.only, label):
                continue
            gy = cupy.random.uniform(-1, 1, size=(N, K, P, Q), dtype=numpy.float32).astype(dtype)
            ref = cupy.asnumpy(gy.astype(cupy.float64).sum(axis=(0, 2, 3)))
            scale = cupy.asnumpy(cupy.abs(gy.astype(cupy.float64)).sum(axis=(0, 2, 3)))
            results = {}
            for name, value in (("cupy", ""), ("bias_grad", "bias_grad")):
                fn = lambda: cuda_conv.conv2d_bias_grad(gy)  # noqa: E731
                got = cupy.asnumpy(_with_switch(value, fn)).astype(numpy.float64)
                err = float(numpy.max(numpy.abs(got - ref) / numpy.maximum(scale, 1e-30)))
                times = _with_switch(value, lambda: timer.time(lambda _: fn(), [None], flush=True,
                                                               min_reps=args.reps, max_reps=args.reps))
                results[name] = (statistics.median(times), err)
            (t_cupy, e_cupy), (t_bg, e_bg) = results["cupy"], results["bias_grad"]
            # error relative to sum |gy|: float32 sums in a tree stay near log2(n) * 6e-8; float16 adds its
            # final rounding (2^-11)
            bound = 2e-3 if dtype == numpy.float16 else 1e-4
            verdict = "" if max(e_cupy, e_bg) <= bound else " **CHECK FAILED**"
            nbytes = gy.nbytes
            lines.append(f"| {label} ({N}x{K}x{P}x{Q}) | {dname} | {nbytes / 1e6:.1f} | {t_cupy:.4f} | {t_bg:.4f} | "
                         f"{t_cupy / t_bg:.2f}x | {100 * nbytes / (t_bg * 1e-3) / copy_bw:.0f}% | "
                         f"{e_cupy:.1e} / {e_bg:.1e}{verdict} |")
            del gy
            cupy.get_default_memory_pool().free_all_blocks()
    text = "\n".join(lines)
    print(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "bias_grad_bench.md"), "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
