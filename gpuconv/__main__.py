"""``python -m gpuconv``: say where gpuconv runs, check every op and gradient against float64 references
from the definition on small random inputs, then time a few real layers.

Options: ``--backend numpy|cupy|auto`` (default auto: CuPy when a GPU is usable), ``--no-bench``.
Exits non-zero when a check fails.

``python -m gpuconv --precompile`` instead compiles every CUDA kernel for the current GPU into CuPy's kernel
cache (``CUPY_CACHE_DIR``, default ``~/.cupy/kernel_cache``), for container builds: later processes then
load the binaries instead of compiling at first use. Exits non-zero when a file fails to compile.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import ml_dtypes
import numpy as np

import gpuconv as gc

from . import _selfcheck as ref


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device: all mean "run on NumPy"
        return False


def _describe(backend: str) -> str:
    if backend == "cupy":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return (f"CUDA path on {name} (cuda:{cupy.cuda.Device().id}), CuPy {cupy.__version__}, "
                f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
    return (f"NumPy path on the CPU ({platform.processor() or platform.machine()}), NumPy {np.__version__}, "
            f"Python {platform.python_version()}")


class _Checker:
    def __init__(self, backend: str, dtype):
        self.xp = np
        if backend == "cupy":
            import cupy

            self.xp = cupy
        self.dtype = np.dtype(dtype)
        # float16 stores 11 significant bits, bfloat16 8; the sums run in float32.
        self.tol = {np.float64: 1e-10, np.float32: 1e-5, np.float16: 2e-3, ml_dtypes.bfloat16: 1.6e-2}[self.dtype.type]
        self.failures = 0
        self.count = 0

    def to(self, a):
        return self.xp.asarray(np.asarray(a, dtype=self.dtype))

    def back(self, a):
        return a.get() if hasattr(a, "get") else np.asarray(a)

    def compare(self, name, got, want):
        got = self.back(got).astype(np.float64)
        want = np.asarray(want, dtype=np.float64)
        if got.shape != want.shape:
            err = np.inf
        else:
            err = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300)
        ok = bool(err <= self.tol)  # NaN fails
        self.count += 1
        self.failures += not ok
        print(f"  [{'ok' if ok else 'FAIL':>4}] {name:<44} {self.dtype.name:<8} rel. error {err:.1e}")

    def exact(self, name, got, want):
        ok = np.array_equal(self.back(got), want)
        self.count += 1
        self.failures += not ok
        print(f"  [{'ok' if ok else 'FAIL':>4}] {name:<44} {self.dtype.name:<8} {'identical' if ok else 'differs'}")


def run_checks(backend: str, dtype, rng) -> _Checker:
    ck = _Checker(backend, dtype)
    rnd = lambda *s: ck.back(ck.to(rng.standard_normal(s))).astype(np.float64)  # values the dtype holds

    # conv2d: grouped, strided, padded, dilated
    x, w, b = rnd(2, 4, 9, 8), rnd(6, 2, 3, 2), rnd(6)
    stride, pad, dil, groups = (2, 1), (1, 2), (2, 1), 2
    y = ref.conv2d(x, w, b, stride, pad, dil, groups)
    ck.compare("conv2d", gc.conv2d(ck.to(x), ck.to(w), ck.to(b), stride, pad, dil, groups), y)
    gy = rnd(*y.shape)
    gx_r, gw_r, gb_r = ref.conv2d_grads(gy, x, w, stride, pad, dil, groups)
    gx, gw, gb = gc.conv2d_backward(ck.to(gy), ck.to(x), ck.to(w), stride, pad, dil, groups)
    ck.compare("conv2d_backward: grad_input", gx, gx_r)
    ck.compare("conv2d_backward: grad_weight", gw, gw_r)
    ck.compare("conv2d_backward: grad_bias", gb, gb_r)

    # conv_transpose2d is conv2d's input gradient; output_padding restores the exact input height/width
    P, Q = y.shape[2:]
    opad = tuple(int(s - ((o - 1) * st - 2 * p + d * (k - 1) + 1))
                 for s, o, st, p, d, k in zip(x.shape[2:], (P, Q), stride, pad, dil, w.shape[2:]))
    ct = gc.conv_transpose2d(ck.to(gy), ck.to(w), None, stride, pad, opad, groups, dil)
    ck.compare("conv_transpose2d", ct, gx_r)
    # its gradients: input -> conv2d of the upstream gradient, weight -> conv2d's weight gradient
    gt = rnd(*x.shape)
    gi, gwt, gbt = gc.conv_transpose2d_backward(ck.to(gt), ck.to(gy), ck.to(w), stride, pad, opad, groups, dil)
    ck.compare("conv_transpose2d_backward: grad_input", gi, ref.conv2d(gt, w, None, stride, pad, dil, groups))
    ck.compare("conv_transpose2d_backward: grad_weight", gwt, ref.conv2d_grads(gy, gt, w, stride, pad, dil, groups)[1])
    ck.compare("conv_transpose2d_backward: grad_bias", gbt, gt.sum(axis=(0, 2, 3)))

    # max pooling on a shuffled range (no ties), with indices
    xm = rng.permutation(2 * 3 * 9 * 10).reshape(2, 3, 9, 10)
    if ck.dtype == ml_dtypes.bfloat16:  # 8 significant bits: consecutive bfloat16 numbers from 1 up instead
        xm = (np.uint16(0x3F80) + xm.astype(np.uint16)).view(ml_dtypes.bfloat16)
    xm = xm.astype(np.float64)
    k, s, p, d = (3, 2), (2, 2), (1, 1), (1, 2)
    ym, im = ref.max_pool2d(xm, k, s, p, d)
    out, idx = gc.max_pool2d(ck.to(xm), k, s, p, d, return_indices=True)
    ck.compare("max_pool2d", out, ym)
    ck.exact("max_pool2d: indices", idx, im)
    gym = rnd(*ym.shape)
    ck.compare("max_pool2d_backward", gc.max_pool2d_backward(ck.to(gym), idx, xm.shape),
               ref.max_pool2d_grad(gym, im, xm.shape))

    # average pooling, padding counted in the divisor
    xa = rnd(2, 3, 8, 7)
    k, s, p = (3, 2), (2, 1), (1, 1)
    ya = ref.avg_pool2d(xa, k, s, p)
    ck.compare("avg_pool2d", gc.avg_pool2d(ck.to(xa), k, s, p), ya)
    gya = rnd(*ya.shape)
    ck.compare("avg_pool2d_backward", gc.avg_pool2d_backward(ck.to(gya), xa.shape, k, s, p),
               ref.avg_pool2d_grad(gya, xa.shape, k, s, p))
    _check_1d_3d(ck, rnd, rng)
    return ck


def _check_1d_3d(ck, rnd, rng):
    """The 1-d and 3-d convolutions and pools and the adaptive pools against the n-d references."""
    for nd, x_shape, w_shape, stride, pad, dil, groups in (
            (1, (2, 4, 11), (6, 2, 3), (2,), (1,), (2,), 2),
            (3, (2, 4, 5, 6, 5), (6, 2, 3, 2, 3), (2, 1, 1), (1, 0, 1), (1, 2, 1), 2)):
        x, w, b = rnd(*x_shape), rnd(*w_shape), rnd(w_shape[0])
        op = f"conv{nd}d"
        y = ref.conv_nd(x, w, b, stride, pad, dil, groups)
        ck.compare(op, getattr(gc, op)(ck.to(x), ck.to(w), ck.to(b), stride, pad, dil, groups), y)
        gy = rnd(*y.shape)
        want = ref.conv_nd_grads(gy, x, w, stride, pad, dil, groups)
        got = getattr(gc, op + "_backward")(ck.to(gy), ck.to(x), ck.to(w), stride, pad, dil, groups)
        for part, g, r in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
            ck.compare(f"{op}_backward: {part}", g, r)
        if nd == 3:  # the transposed conv is the input gradient (output_padding restores the size)
            opad = tuple(int(s - ((o - 1) * st - 2 * p + d * (k - 1) + 1)) for s, o, st, p, d, k in
                         zip(x.shape[2:], y.shape[2:], stride, pad, dil, w.shape[2:]))
            ck.compare("conv_transpose3d", gc.conv_transpose3d(ck.to(gy), ck.to(w), None, stride, pad, opad,
                                                               groups, dil), want[0])

    shape = (2, 3, 6, 7, 6)
    xm = rng.permutation(int(np.prod(shape))).reshape(shape)
    if ck.dtype == ml_dtypes.bfloat16:
        xm = (np.uint16(0x3F80) + xm.astype(np.uint16)).view(ml_dtypes.bfloat16)
    xm = xm.astype(np.float64)
    k, s, p = (3, 2, 3), (2, 2, 1), (1, 1, 1)
    ym, im = ref.pool_nd(xm, k, s, p, "max")
    out, idx = gc.max_pool3d(ck.to(xm), k, s, p, return_indices=True)
    ck.compare("max_pool3d", out, ym)
    ck.exact("max_pool3d: indices", idx, im)
    gym = rnd(*ym.shape)
    want = np.zeros((2, 3, int(np.prod(shape[2:]))))
    for n in range(2):
        for c in range(3):
            np.add.at(want[n, c], im[n, c].ravel(), gym[n, c].ravel())
    ck.compare("max_pool3d_backward", gc.max_pool3d_backward(ck.to(gym), idx, shape), want.reshape(shape))
    xa = rnd(*shape)
    ya, _ = ref.pool_nd(xa, k, s, p, "avg")
    ck.compare("avg_pool3d", gc.avg_pool3d(ck.to(xa), k, s, p), ya)
    # adaptive pooling with uneven windows; its backward through the adjoint <avg(x), g> = <x, avg'(g)>
    out_size = (4, 3, 5)
    yaa = ref.adaptive_avg_nd(xa, out_size)
    ck.compare("adaptive_avg_pool3d", gc.adaptive_avg_pool3d(ck.to(xa), out_size), yaa)
    g = rnd(*yaa.shape)
    gx = ck.back(gc.adaptive_avg_pool3d_backward(ck.to(g), shape)).astype(np.float64)
    ck.compare("adaptive_avg_pool3d_backward (adjoint)", np.array([np.vdot(xa, gx)]), np.array([np.vdot(yaa, g)]))
    ymax, imax = gc.adaptive_max_pool2d(ck.to(xm[:, :, 0]), (4, 5), return_indices=True)
    windows = [[(slice((i * 7) // 4, -((-(i + 1) * 7) // 4)), slice((j * 6) // 5, -((-(j + 1) * 6) // 5)))
                for j in range(5)] for i in range(4)]
    want = np.array([[[[xm[n, c, 0][rows, cols].max() for rows, cols in row] for row in windows]
                      for c in range(3)] for n in range(2)])
    ck.compare("adaptive_max_pool2d", ymax, want)


# (name, input shape, weight shape, stride, padding, dilation, groups)
_LAYERS = [
    ("ResNet-50 conv2_x 3x3", (2, 64, 56, 56), (64, 64, 3, 3), 1, 1, 1, 1),
    ("ResNet-50 conv2_x 1x1 expand", (2, 64, 56, 56), (256, 64, 1, 1), 1, 0, 1, 1),
    ("MobileNetV2 depthwise 3x3", (2, 144, 56, 56), (144, 1, 3, 3), 1, 1, 1, 144),
    ("DeepLabv3 dilated 3x3 (d=2)", (1, 256, 33, 33), (256, 256, 3, 3), 1, 2, 2, 1),
]


def _timed(fn, sync, repeats=5):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_bench(backend: str) -> None:
    xp = np
    sync = lambda: None
    if backend == "cupy":
        import cupy

        xp = cupy
        sync = cupy.cuda.Stream.null.synchronize
    rng = np.random.default_rng(0)
    print("\nTiming real layers (float32, median of 5; forward / forward + backward):")
    for i, (name, xs, ws, st, pd, dl, g) in enumerate(_LAYERS, 1):
        x = xp.asarray(rng.standard_normal(xs, dtype=np.float32))
        w = xp.asarray(rng.standard_normal(ws, dtype=np.float32))
        y = gc.conv2d(x, w, None, st, pd, dl, g)
        gy = xp.asarray(rng.standard_normal(y.shape, dtype=np.float32))
        t_f = _timed(lambda: gc.conv2d(x, w, None, st, pd, dl, g), sync)
        t_b = _timed(lambda: gc.conv2d_backward(gy, x, w, st, pd, dl, g), sync)
        flops = 2 * y.size * (ws[1] * ws[2] * ws[3])
        print(f"  [{i}/{len(_LAYERS)}] {name:<32} {t_f * 1e3:8.2f} ms {flops / t_f / 1e9:7.1f} GFLOP/s"
              f" | {(t_f + t_b) * 1e3:8.2f} ms {3 * flops / (t_f + t_b) / 1e9:7.1f} GFLOP/s", flush=True)


def _precompile() -> int:
    from . import _precompile as pc

    if not _gpu_available():
        print("gpuconv --precompile: needs CuPy and a CUDA GPU; none is usable here", file=sys.stderr)
        return 2
    print(f"gpuconv {gc.__version__}: compiling every kernel for {_describe('cupy')}")
    if pc.cache_on_disk():
        print(f"into CuPy's kernel cache at {pc.cache_dir()} (set CUPY_CACHE_DIR to choose another place)")
    else:
        print("warning: CUPY_CACHE_IN_MEMORY is set: the binaries will not outlive this process", file=sys.stderr)
    start = time.perf_counter()
    results = pc.precompile(verbose=True)
    failed = [f for f, _, error in results if error is not None]
    print(f"{len(results) - len(failed)} of {len(results)} files compiled in {time.perf_counter() - start:.1f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gpuconv", description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("auto", "numpy", "cupy"), default="auto")
    ap.add_argument("--no-bench", action="store_true", help="skip the timing of real layers")
    ap.add_argument("--precompile", action="store_true",
                    help="compile every CUDA kernel for the current GPU into CuPy's cache, then exit")
    args = ap.parse_args(argv)
    if args.precompile:
        return _precompile()
    backend = args.backend
    if backend == "auto":
        backend = "cupy" if _gpu_available() else "numpy"
    elif backend == "cupy" and not _gpu_available():
        print("gpuconv: --backend cupy needs CuPy and a CUDA GPU; none is usable here", file=sys.stderr)
        return 2
    print(f"gpuconv {gc.__version__}: {_describe(backend)}")
    print("Checking every op and gradient against float64 references from the definition:")
    rng = np.random.default_rng(2026)
    failures = count = 0
    for dtype in (np.float64, np.float32, np.float16, ml_dtypes.bfloat16):
        ck = run_checks(backend, dtype, rng)
        failures += ck.failures
        count += ck.count
    print(f"{count - failures} of {count} checks passed")
    if not args.no_bench:
        run_bench(backend)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
