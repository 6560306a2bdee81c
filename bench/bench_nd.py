"""1-d, 3-d and adaptive layers: gpuconv against PyTorch on the same device, forward and forward + backward.

The layers of issue 16, each from a real network: a WaveNet dilated conv1d, an R3D-18 3x3x3 conv3d, a C3D
2x2x2 max pool, a 3-D U-Net 2x2x2 transposed conv3d (the up-convolution) and the global average pool of a
ResNet-50 head. Every pass is checked against PyTorch before it is timed. Calls of the two libraries are
interleaved (bench/timing.py) so that both see the same load; the table gives the ratio of medians and of
the fastest calls (PyTorch time / gpuconv time: above 1, gpuconv is faster). The peak memory of the R3D layer
is tracemalloc's (NumPy path).

    python bench/bench_nd.py                    # NumPy path vs PyTorch CPU
    python bench/bench_nd.py --device cuda      # CUDA path vs PyTorch/cuDNN (needs a GPU)
    python bench/bench_nd.py --quick            # smaller batches, shorter budget: a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import gpuconv  # noqa: E402
from bench.timing import time_cpu_pair  # noqa: E402


@dataclass(frozen=True)
class NdLayer:
    name: str
    network: str
    op: str  # the functional name, the same in gpuconv and torch.nn.functional
    input_shape: tuple  # per image (C, *spatial)
    weight_shape: tuple = ()
    kwargs: dict = field(default_factory=dict)
    cpu_batch: int = 1
    gpu_batch: int = 8


LAYERS = (
    NdLayer("wavenet_dilated_conv1d", "WaveNet", "conv1d", (64, 16000), (128, 64, 2), dict(dilation=256),
            cpu_batch=4, gpu_batch=32),
    NdLayer("r3d18_conv3x3x3", "R3D-18", "conv3d", (64, 8, 56, 56), (64, 64, 3, 3, 3), dict(padding=1),
            cpu_batch=1, gpu_batch=8),
    NdLayer("c3d_maxpool2x2x2", "C3D", "max_pool3d", (128, 16, 56, 56), (), dict(kernel_size=2, stride=2),
            cpu_batch=2, gpu_batch=16),
    NdLayer("unet3d_upconv2x2x2", "3-D U-Net", "conv_transpose3d", (256, 8, 16, 16), (256, 256, 2, 2, 2),
            dict(stride=2), cpu_batch=1, gpu_batch=8),
    NdLayer("resnet50_global_avgpool", "ResNet-50", "adaptive_avg_pool2d", (2048, 7, 7), (), dict(output_size=1),
            cpu_batch=32, gpu_batch=256),
)


def _inputs(layer, n, dtype, rng):
    x = rng.standard_normal((n,) + layer.input_shape).astype(dtype)
    w = (rng.standard_normal(layer.weight_shape) * 0.05).astype(dtype) if layer.weight_shape else None
    return x, w


def _gpuconv_fns(layer, xp):
    f = getattr(gpuconv, layer.op)
    kw = dict(layer.kwargs)
    if layer.op.startswith("adaptive"):
        size = kw.pop("output_size")
        fwd = lambda x, w: f(x, size)  # noqa: E731
        bwd = lambda x, w, y, g: getattr(gpuconv, layer.op + "_backward")(g, x.shape)  # noqa: E731
    elif layer.op.startswith("max_pool"):
        fwd = lambda x, w: f(x, return_indices=True, **kw)  # noqa: E731
        bwd = lambda x, w, y, g: getattr(gpuconv, layer.op + "_backward")(g, y[1], x.shape)  # noqa: E731
    else:
        fwd = lambda x, w: f(x, w, **kw)  # noqa: E731
        bwd = lambda x, w, y, g: getattr(gpuconv, layer.op + "_backward")(g, x, w, **kw)  # noqa: E731
    return fwd, bwd


def _torch_fns(layer, torch):
    F = torch.nn.functional
    f = getattr(F, layer.op)
    kw = dict(layer.kwargs)

    def fwd(x, w):
        return f(x, kw["output_size"]) if layer.op.startswith("adaptive") else (
            f(x, **kw) if w is None else f(x, w, **kw))

    def fwd_bwd(x, w, g):
        x.grad = None
        if w is not None:
            w.grad = None
        y = fwd(x, w)
        y.backward(g)

    return fwd, fwd_bwd


def _first(y):
    return y[0] if isinstance(y, tuple) else y


def run_layer(layer, args, torch, xp, device):
    n = 1 if args.quick else (layer.gpu_batch if device == "cuda" else layer.cpu_batch)
    dtype = numpy.dtype(args.dtype)
    rng = numpy.random.default_rng(0)
    x, w = _inputs(layer, n, dtype, rng)
    tdev = torch.device(device)
    tx = torch.tensor(x, device=tdev, requires_grad=True)
    tw = None if w is None else torch.tensor(w, device=tdev, requires_grad=True)
    gx_arr, gw_arr = xp.asarray(x), (None if w is None else xp.asarray(w))
    g_fwd, g_bwd = _gpuconv_fns(layer, xp)
    t_fwd, t_fwd_bwd = _torch_fns(layer, torch)

    # Check first: the answer, then the time.
    y = g_fwd(gx_arr, gw_arr)
    ty = t_fwd(tx, tw)
    if isinstance(ty, tuple):
        ty = ty[0]
    got = numpy.asarray(_first(y).get() if device == "cuda" else _first(y), numpy.float64)
    want = ty.detach().double().cpu().numpy()
    scale = float(numpy.max(numpy.abs(want))) or 1.0
    err = float(numpy.max(numpy.abs(got - want))) / scale
    g = rng.standard_normal(want.shape).astype(dtype)
    tg = torch.tensor(g, device=tdev)
    gg = xp.asarray(g)

    def sync():
        if device == "cuda":
            xp.cuda.get_current_stream().synchronize()
            torch.cuda.synchronize()

    def gc_fwd(_):
        g_fwd(gx_arr, gw_arr)
        sync()

    def gc_fwd_bwd(_):
        y_ = g_fwd(gx_arr, gw_arr)
        g_bwd(gx_arr, gw_arr, y_, gg)
        sync()

    def th_fwd(_):
        with torch.no_grad():
            t_fwd(tx, tw)
        sync()

    def th_fwd_bwd(_):
        t = t_fwd_bwd(tx, tw, tg)
        sync()
        return t

    row = dict(layer=layer.name, network=layer.network, op=layer.op, N=n, input=list((n,) + layer.input_shape),
               weight=list(layer.weight_shape), kwargs=layer.kwargs, max_rel_err=err)
    budget = 0.3 if args.quick else args.budget
    for label, a, b in (("forward", gc_fwd, th_fwd), ("forward+backward", gc_fwd_bwd, th_fwd_bwd)):
        ta, tb = time_cpu_pair(a, [None], b, [None], budget_s=budget, min_reps=3, max_reps=30)
        row[label] = dict(gpuconv_ms=statistics.median(ta), torch_ms=statistics.median(tb),
                          ratio=statistics.median(tb) / statistics.median(ta), ratio_min=min(tb) / min(ta))
    if layer.name == "r3d18_conv3x3x3" and device == "cpu":
        tracemalloc.start()
        t0 = time.perf_counter()
        out = g_fwd(gx_arr, gw_arr)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        io = x.nbytes + _first(out).nbytes
        row["memory"] = dict(peak_mib=peak / 2**20, in_out_mib=io / 2**20, workspace_mib=(peak - _first(out).nbytes) / 2**20,
                             seconds=time.perf_counter() - t0)
    return row


def write(out: Path, meta, rows):
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    lines = [f"# 1-d / 3-d / adaptive layers: gpuconv ({meta['path']}) vs PyTorch {meta['torch']}", "",
             f"{meta['device']}; {meta['dtype']}; {meta['threads']} threads; {meta['date']}; commit {meta['commit']}.",
             "Ratio = PyTorch time / gpuconv time (above 1: gpuconv is faster); median of interleaved calls, "
             "and the ratio of the fastest calls.", "",
             "| layer | op | input (N, C, ...) | max rel. err | fwd ms (gpuconv / torch) | fwd ratio (min) | "
             "fwd+bwd ms (gpuconv / torch) | fwd+bwd ratio (min) |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        f, fb = r["forward"], r["forward+backward"]
        lines.append(f"| {r['layer']} | {r['op']} {r['kwargs']} | {tuple(r['input'])} | {r['max_rel_err']:.1e} | "
                     f"{f['gpuconv_ms']:.1f} / {f['torch_ms']:.1f} | {f['ratio']:.2f}x ({f['ratio_min']:.2f}x) | "
                     f"{fb['gpuconv_ms']:.1f} / {fb['torch_ms']:.1f} | {fb['ratio']:.2f}x ({fb['ratio_min']:.2f}x) |")
    geo = lambda key: statistics.geometric_mean([r[key]["ratio"] for r in rows])  # noqa: E731
    lines += ["", f"Geometric mean of the ratios: forward {geo('forward'):.2f}x, forward+backward "
              f"{geo('forward+backward'):.2f}x ({len(rows)} layers)."]
    for r in rows:
        if "memory" in r:
            m = r["memory"]
            lines += ["", f"Peak memory of {r['layer']} forward (tracemalloc): {m['peak_mib']:.0f} MiB, of which "
                      f"{m['workspace_mib']:.0f} MiB workspace beside {m['in_out_mib']:.0f} MiB of input and output."]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64", "float16"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per side")
    ap.add_argument("--layers", nargs="*")
    ap.add_argument("--out", help="output folder (default: bench/results/<device>-nd-<date>)")
    args = ap.parse_args(argv)
    import torch

    if args.device == "cuda":
        import cupy as xp

        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    else:
        xp = numpy
    layers = [l for l in LAYERS if not args.layers or l.name in args.layers]
    rows = [run_layer(l, args, torch, xp, args.device) for l in layers]
    import subprocess

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = dict(path="NumPy path" if args.device == "cpu" else "CUDA path", torch=torch.__version__,
                device=platform.processor() or platform.machine() if args.device == "cpu"
                else torch.cuda.get_device_name(), dtype=args.dtype, threads=torch.get_num_threads(),
                date=time.strftime("%Y-%m-%d"), commit=commit, quick=args.quick)
    out = Path(args.out or f"bench/results/{args.device}-nd-{meta['date']}")
    write(out, meta, rows)


if __name__ == "__main__":
    main()
