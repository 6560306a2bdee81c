"""The kernels gpuconv's CUDA path launches for a table of calls, recorded on the CPU with the recording
runtime (``tests/support/fake_cupy.py``).

    python tests/cuda_dispatch_trace.py            prints the trace as JSON
    python tests/cuda_dispatch_trace.py --write    rewrites tests/data/cuda_dispatch_trace.json

For every (environment, call) of the table below it runs the public function on fake CuPy arrays and keeps
what reached the "driver": each kernel launch (name, grid, block, shared memory, every argument: arrays by
shape and dtype, scalars by type and value) and each cuBLAS product (``cupy.matmul`` operand shapes).
``tests/test_cuda_dispatch_host.py`` compares that with the committed file, so a change to the launchers
that was meant to leave the kernels' work alone (caching, argument packing) is checked here; a change meant
to alter it (a new rule, a new default kernel) rewrites the file and shows up in review.

The table covers every algorithm and the environment switches of the CUDA path (GPUCONV_CONV_ALGO,
GPUCONV_ALLOW_TF32, GPUCONV_IGEMM_REFERENCE, GPUCONV_POISON and GPUCONV_UNVERIFIED's features except
gemm_1x1, whose cuBLAS calls the fake does not model). It runs in a process of its own: the fake must be
the runtime it installs is process-wide.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from support import fake_cupy  # noqa: E402

GOLDEN = HERE / "data" / "cuda_dispatch_trace.json"

# (name, environment) pairs; each runs the whole call table.
ENVIRONMENTS = (
    ("auto", {}),
    ("direct", {"GPUCONV_CONV_ALGO": "direct"}),
    ("im2col", {"GPUCONV_CONV_ALGO": "im2col"}),
    ("implicit_gemm", {"GPUCONV_CONV_ALGO": "implicit_gemm"}),
    ("depthwise", {"GPUCONV_CONV_ALGO": "depthwise"}),
    ("tf32", {"GPUCONV_CONV_ALGO": "implicit_gemm", "GPUCONV_ALLOW_TF32": "1"}),
    ("igemm_reference", {"GPUCONV_CONV_ALGO": "implicit_gemm", "GPUCONV_IGEMM_REFERENCE": "1"}),
    ("poison", {"GPUCONV_POISON": "1"}),
    ("unverified", {"GPUCONV_UNVERIFIED": "igemm_nhwc,nhwc_wgrad,nhwc_dgrad,pool_wide,depthwise_v2,bias_grad,nonfinite_weights"}),
)

# conv2d problems: (name, x shape, w shape, keyword arguments). Sizes span the auto rule's branches: tiny
# (direct), thin (depthwise / direct), implicit GEMM, large float32 weights (im2col), strided, dilated,
# grouped, padding modes, unbatched.
CONVS = (
    ("tiny", (1, 16, 8, 8), (16, 16, 3, 3), dict(padding=1)),
    ("unbatched", (16, 8, 8), (16, 16, 3, 3), dict(padding=1)),
    ("mid", (8, 64, 28, 28), (64, 64, 3, 3), dict(padding=1)),
    ("large_weight", (4, 256, 14, 14), (512, 256, 3, 3), dict(padding=1)),
    ("strided", (4, 64, 30, 30), (64, 64, 3, 3), dict(stride=2, padding=1)),
    ("strided_4x4", (2, 32, 32, 32), (64, 32, 4, 4), dict(stride=2, padding=1)),
    ("dilated", (2, 64, 33, 33), (64, 64, 3, 3), dict(padding=2, dilation=2)),
    ("grouped", (4, 64, 28, 28), (64, 16, 3, 3), dict(padding=1, groups=4)),
    ("depthwise", (4, 96, 28, 28), (96, 1, 3, 3), dict(padding=1, groups=96)),
    ("depthwise_s2", (4, 96, 28, 28), (96, 1, 3, 3), dict(stride=2, padding=1, groups=96)),
    ("depthwise_5x5", (2, 64, 20, 20), (128, 1, 5, 5), dict(padding=2, groups=64)),
    ("pointwise", (8, 64, 28, 28), (256, 64, 1, 1), {}),
    ("stem", (2, 3, 64, 64), (64, 3, 7, 7), dict(stride=2, padding=3)),
    ("reflect", (2, 32, 20, 20), (32, 32, 3, 3), dict(padding=1, padding_mode="reflect")),
    ("circular", (2, 32, 20, 20), (32, 32, 3, 3), dict(padding=(2, 1), padding_mode="circular")),
)

# conv_transpose2d problems: (name, x shape, w shape (C_in, C_out/groups, kH, kW), keyword arguments).
TRANSPOSED = (
    ("up2x2", (2, 64, 16, 16), (64, 32, 2, 2), dict(stride=2)),
    ("up4x4", (2, 64, 8, 8), (64, 32, 4, 4), dict(stride=2, padding=1, output_padding=1)),
)

# pooling problems: (name, x shape, keyword arguments of max_pool2d / avg_pool2d).
POOLS = (
    ("max_3x3_s2", "max", (2, 64, 56, 56), dict(kernel_size=3, stride=2, padding=1)),
    ("max_2x2", "max", (2, 16, 8, 8), dict(kernel_size=2)),
    ("max_dilated_ceil", "max", (2, 8, 15, 15), dict(kernel_size=3, stride=2, dilation=2, ceil_mode=True)),
    ("avg_2x2", "avg", (2, 64, 28, 28), dict(kernel_size=2, stride=2)),
    ("avg_3x3_s1", "avg", (2, 32, 14, 14), dict(kernel_size=3, stride=1, padding=1, count_include_pad=False)),
    ("avg_divisor", "avg", (1, 8, 9, 9), dict(kernel_size=(3, 2), stride=(2, 1), divisor_override=5)),
)

DTYPES = ("float16", "float32", "float64")


def _calls(gpuconv, cupy, numpy):
    """(case name, zero-argument call) for every call of the table, operands made once per case."""
    rng = numpy.random.default_rng(0)

    def arr(shape, dtype):
        return cupy.asarray(rng.standard_normal(shape).astype(dtype))

    for dtype in DTYPES:
        for name, xs, ws, kw in CONVS:
            x, w, b = arr(xs, dtype), arr(ws, dtype), arr(ws[:1], dtype)
            y = gpuconv.conv2d(x, w, b, **kw)
            gy = arr(y.shape, dtype)
            yield f"conv2d/{name}/{dtype}", lambda x=x, w=w, b=b, kw=kw: gpuconv.conv2d(x, w, b, **kw)
            yield f"conv2d_backward/{name}/{dtype}", lambda gy=gy, x=x, w=w, kw=kw: gpuconv.conv2d_backward(
                gy, x, w, **kw)
        for name, xs, ws, kw in TRANSPOSED:
            x, w, b = arr(xs, dtype), arr(ws, dtype), arr(ws[1:2], dtype)
            y = gpuconv.conv_transpose2d(x, w, b, **kw)
            gy = arr(y.shape, dtype)
            yield f"conv_transpose2d/{name}/{dtype}", lambda x=x, w=w, b=b, kw=kw: gpuconv.conv_transpose2d(
                x, w, b, **kw)
            yield (f"conv_transpose2d_backward/{name}/{dtype}",
                   lambda gy=gy, x=x, w=w, kw=kw: gpuconv.conv_transpose2d_backward(gy, x, w, **kw))
        for name, kind, xs, kw in POOLS:
            x = arr(xs, dtype)
            if kind == "max":
                y, idx = gpuconv.max_pool2d(x, return_indices=True, **kw)
                gy = arr(y.shape, dtype)
                idx = cupy.asarray(numpy.zeros(y.shape, numpy.int64))  # any valid index: nothing is computed
                yield f"max_pool2d/{name}/{dtype}", lambda x=x, kw=kw: gpuconv.max_pool2d(x, return_indices=True, **kw)
                yield (f"max_pool2d_backward/{name}/{dtype}",
                       lambda gy=gy, idx=idx, s=xs: gpuconv.max_pool2d_backward(gy, idx, s))
            else:
                y = gpuconv.avg_pool2d(x, **kw)
                gy = arr(y.shape, dtype)
                yield f"avg_pool2d/{name}/{dtype}", lambda x=x, kw=kw: gpuconv.avg_pool2d(x, **kw)
                yield (f"avg_pool2d_backward/{name}/{dtype}",
                       lambda gy=gy, s=xs, kw=kw: gpuconv.avg_pool2d_backward(gy, s, **kw))
        for name, call in _calls_1d_3d(gpuconv, cupy, numpy, lambda shape: arr(shape, dtype)):
            yield f"{name}/{dtype}", call


def _calls_1d_3d(gpuconv, cupy, numpy, arr):
    """The 1-d ops (the 2-d kernels on views), the 3-d ones (2-d kernels and CuPy's own operations: depth
    folded into channels) and adaptive pooling (ordinary pooling, a reduction, or CuPy's gathers)."""
    x1, w1, gy1 = arr((2, 32, 50)), arr((64, 32, 3)), arr((2, 64, 50))
    x3, w3, gy3 = arr((2, 16, 6, 14, 14)), arr((32, 16, 3, 3, 3)), arr((2, 32, 6, 14, 14))
    wt3, gyt3 = arr((16, 8, 2, 2, 2)), arr((2, 8, 12, 28, 28))
    p3 = arr((2, 16, 3, 7, 7))
    idx3 = cupy.asarray(numpy.zeros((2, 16, 3, 7, 7), numpy.int64))
    xa, ga = arr((2, 64, 7, 9)), arr((2, 64, 3, 4))
    yield "conv1d/dilated", lambda: gpuconv.conv1d(x1, w1, padding=2, dilation=2)
    yield "conv1d_backward/dilated", lambda: gpuconv.conv1d_backward(gy1, x1, w1, padding=2, dilation=2)
    yield "conv3d/3x3x3", lambda: gpuconv.conv3d(x3, w3, padding=1)
    yield "conv3d_backward/3x3x3", lambda: gpuconv.conv3d_backward(gy3, x3, w3, padding=1)
    yield "conv3d/replicate", lambda: gpuconv.conv3d(x3, w3, padding=1, padding_mode="replicate")
    yield "conv_transpose3d/up2x2x2", lambda: gpuconv.conv_transpose3d(x3, wt3, stride=2)
    yield "conv_transpose3d_backward/up2x2x2", lambda: gpuconv.conv_transpose3d_backward(gyt3, x3, wt3, stride=2)
    yield "max_pool1d/3_s2", lambda: gpuconv.max_pool1d(x1, 3, 2, 1, return_indices=True)
    yield "max_pool3d/2x2x2", lambda: gpuconv.max_pool3d(x3, 2, return_indices=True)
    yield "max_pool3d_backward/2x2x2", lambda: gpuconv.max_pool3d_backward(p3, idx3, x3.shape)
    yield "avg_pool3d/2x2x2", lambda: gpuconv.avg_pool3d(x3, 2)
    yield "avg_pool3d_backward/2x2x2", lambda: gpuconv.avg_pool3d_backward(p3, x3.shape, 2)
    yield "adaptive_avg_pool2d/global", lambda: gpuconv.adaptive_avg_pool2d(xa, 1)
    yield "adaptive_avg_pool2d/uneven", lambda: gpuconv.adaptive_avg_pool2d(xa, (3, 4))
    yield "adaptive_avg_pool2d_backward/uneven", lambda: gpuconv.adaptive_avg_pool2d_backward(ga, xa.shape)
    yield "adaptive_max_pool2d/uneven", lambda: gpuconv.adaptive_max_pool2d(xa, (3, 4), return_indices=True)
    yield "adaptive_max_pool3d/regular", lambda: gpuconv.adaptive_max_pool3d(x3, (3, 7, 7), return_indices=True)


def _short(entry) -> str:
    """One line of a record: a kernel's name, or what CuPy itself would run."""
    if entry[0] == "launch":
        return entry[1]
    if entry[0] == "matmul":
        return f"matmul {entry[1]} @ {entry[2]} {entry[3]}"
    return f"{entry[0]} {entry[1]}"


def trace() -> dict:
    """{"<environment>/<case>": {"kernels": [...names and cuBLAS calls...], "sha256": digest of the full
    record}}, every environment of ENVIRONMENTS over every call of the table."""
    import numpy

    import gpuconv
    from gpuconv._cuda import _config, _runtime

    _runtime.install(fake_cupy.RecordingRuntime())
    cupy = fake_cupy

    switches = {k for _, env in ENVIRONMENTS for k in env}
    result = {}
    for env_name, env in ENVIRONMENTS:
        for k in switches:
            os.environ.pop(k, None)
        os.environ.update(env)
        _config.refresh()
        for case, call in _calls(gpuconv, cupy, numpy):
            fake_cupy.LAUNCHES.clear()
            call()
            # Host-to-device copies are left out: a call makes one only when no earlier call of the table
            # cached its constants (gpuconv._volume.constant); test_capture_safe checks that repeats make none.
            record = [e for e in fake_cupy.LAUNCHES if e[0] != "h2d"]
            names = [_short(e) for e in record]
            digest = hashlib.sha256(json.dumps(record, default=str).encode()).hexdigest()[:16]
            result[f"{env_name}/{case}"] = {"kernels": names, "sha256": digest}
    return result


def main() -> None:
    result = trace()
    text = json.dumps(result, indent=0, sort_keys=True) + "\n"
    if "--write" in sys.argv[1:]:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
        print(f"wrote {len(result)} cases to {GOLDEN}")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
