"""Cold start on a GPU: what the first call of each op costs in a fresh process, with CuPy's kernel cache
empty and warm, and what the digits example's first epoch costs either way.

    python bench/coldstart_gpu.py --out bench/results/gpu-coldstart-<date> [--dtypes float32 float16 bfloat16]
    python bench/coldstart_gpu.py --fake --out /tmp/coldstart-dry     (plumbing only, on the CPU)

Each measurement is a new Python process (nothing compiled in memory) with ``CUPY_CACHE_DIR`` pointing at a
fresh directory ("cold": every kernel file it needs is compiled by NVRTC) or at the directory a cold run
just filled ("warm": CuPy >= 14.2 loads the binaries). A process imports gpuconv and CuPy, builds its
arrays, synchronises, then times its op's first call and a second call (device-synchronised wall time).
Also times ``python -m gpuconv --precompile`` into an empty cache, and the warm first calls after it.
``--fake`` runs the children on the recording runtime (tests/support/fake_cupy.py): the numbers mean
nothing, the plumbing runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (name, the call, with x of shape X, w of shape Wt, gy shaped like the op's output); ResNet-ish sizes.
OPS = {
    "conv2d": "gc.conv2d(x, w, padding=1)",
    "conv2d_backward": "gc.conv2d_backward(gy, x, w, padding=1)",
    "conv_transpose2d": "gc.conv_transpose2d(gy, w, padding=1)",
    "max_pool2d": "gc.max_pool2d(x, 3, 2, 1, return_indices=True)",
    "avg_pool2d": "gc.avg_pool2d(x, 2)",
    "avg_pool2d_backward": "gc.avg_pool2d_backward(gp, x.shape, 2)",
}

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path[:0] = [__ROOT__, __TESTS__]
import numpy, ml_dtypes
import gpuconv as gc
if __FAKE__:
    from support import fake_cupy as cupy
    from gpuconv._cuda import _runtime
    _runtime.install(cupy.RecordingRuntime())
else:
    import cupy
t_import = time.perf_counter() - t0
dtype = numpy.dtype(__DTYPE__)
rng = numpy.random.default_rng(0)
arr = lambda *s: cupy.asarray(rng.standard_normal(s).astype(numpy.float32)).astype(dtype)
x, w, gy, gp = arr(8, 64, 56, 56), arr(64, 64, 3, 3), arr(8, 64, 56, 56), arr(8, 64, 28, 28)
sync = cupy.cuda.Device().synchronize if hasattr(cupy.cuda.Device(), "synchronize") else (lambda: None)
sync()
times = []
for _ in range(2):
    t = time.perf_counter()
    __CALL__
    sync()
    times.append(time.perf_counter() - t)
print(json.dumps({"import_s": t_import, "first_s": times[0], "second_s": times[1]}))
"""


def child(op, dtype, cache_dir, fake) -> dict:
    code = (CHILD.replace("__ROOT__", repr(str(ROOT))).replace("__TESTS__", repr(str(ROOT / "tests")))
            .replace("__FAKE__", repr(fake)).replace("__DTYPE__", repr(dtype)).replace("__CALL__", OPS[op]))
    env = dict(os.environ, CUPY_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    if run.returncode != 0:
        return {"error": run.stderr[-2000:]}
    result = json.loads(run.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def timed_command(args, cache_dir) -> dict:
    env = dict(os.environ, CUPY_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    run = subprocess.run(args, capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=1800)
    return {"seconds": time.perf_counter() - start, "rc": run.returncode, "tail": (run.stdout + run.stderr)[-600:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtypes", nargs="*", default=["float32", "float16", "bfloat16"])
    ap.add_argument("--ops", nargs="*", default=list(OPS), choices=list(OPS))
    ap.add_argument("--fake", action="store_true", help="children on the recording runtime (a CPU dry run)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes:
            for op in args.ops:
                cache = Path(tmp) / f"{op}-{dtype}"
                cold = child(op, dtype, cache, args.fake)
                warm = child(op, dtype, cache, args.fake)
                rows.append({"op": op, "dtype": dtype, "cold": cold, "warm": warm})
                nan = float("nan")
                print(f"{op:22s} {dtype:9s} cold first call {cold.get('first_s', nan):8.3f} s, "
                      f"warm {warm.get('first_s', nan):8.3f} s, second {warm.get('second_s', nan):.4f} s", flush=True)
        extra = {}
        if not args.fake:
            pre = Path(tmp) / "precompiled"
            extra["precompile"] = timed_command([sys.executable, "-m", "gpuconv", "--precompile"], pre)
            extra["after_precompile"] = {op: child(op, "float32", pre, False) for op in args.ops}
            digits = [sys.executable, "examples/train_digits.py", "--device", "cuda", "--epochs", "1", "--quiet"]
            empty = Path(tmp) / "digits"
            extra["digits_one_epoch_cold"] = timed_command(digits, empty)
            extra["digits_one_epoch_warm"] = timed_command(digits, empty)
            extra["digits_one_epoch_after_precompile"] = timed_command(digits, pre)
    (out / "results.json").write_text(json.dumps({"fake": args.fake, "rows": rows, **extra}, indent=1) + "\n")
    lines = ["| op | dtype | cold: first call s | warm: first call s | second call s | import s |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        c, w = r["cold"], r["warm"]
        lines.append(f"| {r['op']} | {r['dtype']} | {c.get('first_s', float('nan')):.3f} | "
                     f"{w.get('first_s', float('nan')):.3f} | {w.get('second_s', float('nan')):.4f} | "
                     f"{w.get('import_s', float('nan')):.2f} |")
    for k, v in extra.items():
        if "seconds" in v:
            lines.append(f"\n{k}: {v['seconds']:.1f} s (rc {v['rc']})")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
