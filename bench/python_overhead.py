"""gpuconv's own Python time per call on the CUDA path, measured on any machine (no GPU needed).

    python bench/python_overhead.py [--calls 5000] [--rounds 5] [--against REV] [--out DIR]

The calls run through the real CUDA-path code (argument checks, algorithm choice, launch arguments) with
``tests/support/fake_cupy.py``'s recording runtime standing in for CuPy: its allocations are NumPy's and its kernel launches do nothing,
so CuPy's and the driver's share (measured on the GPU by bench/host_overhead.py) is left out and what is
timed is gpuconv's. The fake's array attributes cost a little more than CuPy's C ones, so the numbers are
slightly high, equally for both versions.

``--against REV`` checks out git revision REV in a temporary worktree and times it in the same run, the two
versions taking turns in fresh processes (``--rounds`` each); the table gives the median of each and the
ratio. Without it, only the working tree is timed. Each number is the least of 10 blocks of calls in the
thread's CPU time, so that a loaded machine (other tenants) changes it little.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ops(gpuconv, cupy, numpy) -> dict:
    """name -> zero-argument call. The tiny problems of bench/host_overhead.py (1x16x8x8, 3x3 conv), plus one
    layer that takes the implicit-GEMM path and one depthwise layer (longer algorithm choice)."""
    rng = numpy.random.default_rng(0)

    def arr(shape, dtype=numpy.float32):
        return cupy.asarray(rng.standard_normal(shape).astype(dtype))

    x, w, b, gy = arr((1, 16, 8, 8)), arr((16, 16, 3, 3)), arr((16,)), arr((1, 16, 8, 8))
    xm, wm, gym = arr((8, 64, 28, 28)), arr((64, 64, 3, 3)), arr((8, 64, 28, 28))
    xd, wd = arr((8, 96, 28, 28)), arr((96, 1, 3, 3))
    gyp = arr((1, 16, 4, 4))
    idx = cupy.asarray(numpy.zeros(gyp.shape, numpy.int64))  # valid flat indices (the fake computes none)
    return {
        "conv2d tiny": lambda: gpuconv.conv2d(x, w, padding=1),
        "conv2d tiny + bias": lambda: gpuconv.conv2d(x, w, b, padding=1),
        "conv2d_backward tiny": lambda: gpuconv.conv2d_backward(gy, x, w, padding=1),
        "conv2d_backward tiny, no grad_bias": lambda: gpuconv.conv2d_backward(
            gy, x, w, padding=1, output_mask=(True, True, False)),
        "conv2d 8x64x28x28 (implicit GEMM)": lambda: gpuconv.conv2d(xm, wm, padding=1),
        "conv2d_backward 8x64x28x28 (implicit GEMM)": lambda: gpuconv.conv2d_backward(gym, xm, wm, padding=1),
        "conv2d depthwise 8x96x28x28": lambda: gpuconv.conv2d(xd, wd, padding=1, groups=96),
        "max_pool2d": lambda: gpuconv.max_pool2d(x, 2),
        "max_pool2d_backward": lambda: gpuconv.max_pool2d_backward(gyp, idx, x.shape),
        "avg_pool2d": lambda: gpuconv.avg_pool2d(x, 2),
        "avg_pool2d_backward": lambda: gpuconv.avg_pool2d_backward(gyp, x.shape, 2),
    }


def measure(calls: int) -> dict:
    """us per call of every op, in this process (which must not have imported cupy yet)."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]
    if (ROOT / "gpuconv" / "_cuda" / "_runtime.py").exists():  # the recording runtime through the seam
        from gpuconv._cuda import _runtime
        from support import fake_cupy

        _runtime.install(fake_cupy.RecordingRuntime(record=False))
    else:  # a revision before the runtime seam: the fake replaced the cupy module
        import fake_cupy

        fake_cupy.install()
        fake_cupy.RECORDING[0] = False
    cupy = fake_cupy
    import numpy

    import gpuconv

    result = {}
    block = max(1, calls // 10)
    for name, fn in _ops(gpuconv, cupy, numpy).items():
        for _ in range(min(200, calls)):
            fn()
        best = float("inf")
        for _ in range(10):  # the least of 10 blocks, in this thread's CPU time: other tenants' load drops out
            t0 = time.thread_time()
            for _ in range(block):
                fn()
            best = min(best, (time.thread_time() - t0) / block)
        result[name] = best * 1e6
    return result


def _run_in(tree: Path, calls: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCONV_")}
    out = subprocess.run([sys.executable, str(tree / "bench" / "python_overhead.py"), "--worker", str(calls)],
                         capture_output=True, text=True, env=env, cwd=tree, check=True)
    return json.loads(out.stdout)


def _table(columns: dict) -> str:
    names = list(next(iter(columns.values())))
    head = "| op | " + " | ".join(f"{c} us/call" for c in columns) + (" | ratio |" if len(columns) == 2 else " |")
    rule = "|---|" + "---:|" * (len(columns) + (1 if len(columns) == 2 else 0))
    rows = [head, rule]
    for n in names:
        values = [columns[c][n] for c in columns]
        cells = " | ".join(f"{v:.1f}" for v in values)
        ratio = f" | {values[0] / values[1]:.2f}x |" if len(values) == 2 else " |"
        rows.append(f"| {n} | {cells}{ratio}")
    return "\n".join(rows)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(measure(int(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--against", help="a git revision to time side by side with the working tree")
    parser.add_argument("--out", type=Path, help="directory for python_overhead.md")
    args = parser.parse_args()

    trees = {"now": ROOT}
    tmp = None
    if args.against:
        tmp = tempfile.TemporaryDirectory()
        old = Path(tmp.name) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), args.against],
                       check=True, capture_output=True)
        # the old revision may predate this script: run today's copy against its code (and its own fake)
        for rel in ("bench/python_overhead.py",):
            (old / rel).write_text((ROOT / rel).read_text())
        trees = {args.against: old, "now": ROOT}
    try:
        samples = {label: [] for label in trees}
        for _ in range(args.rounds):
            for label, tree in trees.items():
                samples[label].append(_run_in(tree, args.calls))
    finally:
        if tmp is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp.name) / "old")],
                           capture_output=True)
            tmp.cleanup()
    medians = {label: {op: statistics.median(s[op] for s in runs) for op in runs[0]}
               for label, runs in samples.items()}
    text = (f"# gpuconv's Python time per call on the CUDA path (fake CuPy: no allocation or launch cost)\n\n"
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.calls} calls x {args.rounds} rounds, "
            f"median of rounds; versions alternate in fresh processes.\n\n{_table(medians)}\n")
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "python_overhead.md").write_text(text)


if __name__ == "__main__":
    main()
