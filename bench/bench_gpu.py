"""gpuconv's CUDA path against PyTorch (cuDNN) on the same GPU, in the same run, over the layer suite.

    python bench/bench_gpu.py --out DIR [--quick] [--layers NAME ...] [--dtypes float32 float16]
                              [--algos auto autotune direct im2col implicit_gemm depthwise] [--suites batch batch1]
                              [--time-limit S] [--note TEXT]
    python bench/bench_gpu.py --merge RUN1/results.json RUN2/results.json --out DIR

For every layer (at its GPU batch, then at batch 1), dtype and pass, PyTorch's result and a float64
reference are computed first; then gpuconv runs once per algorithm (GPUCONV_CONV_ALGO forced to direct,
im2col, or implicit_gemm and depthwise where they apply; 'autotune', measured once per problem; and 'auto', gpuconv's own choice), is checked against the
reference, and is timed with CUDA events. PyTorch runs with cudnn.benchmark=True and TF32 off.
Data moves between the two frameworks through DLPack, without copies.

Writes into --out: results.json, results.md, ratio.png (gpuconv's own choice of algorithm) and
ratio_algos_<dtype>.png (each forced algorithm). See README.md for the columns.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import environment  # noqa: E402
import layers  # noqa: E402
import progress  # noqa: E402
import report  # noqa: E402

# H100 SXM peaks, the yardstick of the % peak columns: dense FP32 on CUDA cores, dense FP16 on tensor cores
# (float32 accumulation), HBM3 bandwidth.
PEAK_FLOPS = {"float32": 67e12, "float16": 990e12, "bfloat16": 990e12, "float64": 34e12}
DTYPE_ORDER = ["float32", "float16", "bfloat16", "float64"]
PEAK_BYTES_PER_S = 3.35e12

ALGOS = ("auto", "autotune", "direct", "im2col", "implicit_gemm", "depthwise")
MAX_SETS = 8  # input sets rotated at most, per layer and dtype


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output folder (default: bench/results/gpu-<date>)")
    ap.add_argument("--quick", action="store_true", help="a few layers, float32, few repeats: a smoke run")
    ap.add_argument("--layers", nargs="*", help="layer names (default: all; see bench/layers.py)")
    ap.add_argument("--dtypes", nargs="*", choices=("float32", "float16", "bfloat16", "float64"),
                    help="default: float32 float16 (float32 alone with --quick); bfloat16 runs gpuconv's "
                         "float32 kernels between casts, against cuDNN's bfloat16")
    ap.add_argument("--algos", nargs="*", choices=ALGOS, default=list(ALGOS))
    ap.add_argument("--suites", nargs="*", choices=("batch", "batch1"), default=["batch", "batch1"],
                    help="the layers at their GPU batch size, at batch 1, or both (default)")
    ap.add_argument("--budget", type=float, help="seconds of timed calls per measurement (default 0.2)")
    ap.add_argument("--time-limit", type=float, default=0,
                    help="stop starting new layers after this many seconds and write what was measured")
    ap.add_argument("--note", default="", help="conditions of the run, recorded in the results")
    ap.add_argument("--device-time", type=float, default=0, metavar="MS",
                    help="queue a GPU spin of MS milliseconds before each timed call, so that host dispatch is "
                         "hidden and the events measure device time only (default 0: the GPU timeline as a "
                         "training loop sees it, host stalls included; see timing.CudaTimer)")
    ap.add_argument("--merge", nargs="*", metavar="RESULTS_JSON",
                    help="no measuring: join the rows of these results.json files (runs split to fit a time "
                         "slot) and write the tables and plots into --out")
    return ap.parse_args(argv)


def merge(paths, out):
    """One report from several runs: rows concatenated, meta of the first with every command kept."""
    import json

    docs = [json.load(open(p)) for p in paths]
    meta = dict(docs[0]["meta"])
    meta["command"] = " ; ".join(d["meta"].get("command", "?") for d in docs)
    meta["merged_from"] = [os.path.relpath(p, out) for p in paths]
    meta["dtypes"] = sorted({r["dtype"] for d in docs for r in d["rows"]}, key=DTYPE_ORDER.index)
    meta["algos"] = list(ALGOS)
    meta["benchmark_seconds"] = sum(d["meta"].get("benchmark_seconds") or 0 for d in docs)
    stopped = [d["meta"]["stopped_early"] for d in docs if d["meta"].get("stopped_early")]
    meta.pop("stopped_early", None)
    if stopped:
        meta["stopped_early"] = "; ".join(stopped)
    os.makedirs(out, exist_ok=True)
    write(out, meta, [r for d in docs for r in d["rows"]])
    print(f"wrote {out}")


def main(argv=None):
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out or sys.exit("--merge needs --out"))
    import cupy
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu.py needs a CUDA GPU visible to PyTorch and CuPy")
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32: no TF32 anywhere
    torch.backends.cudnn.allow_tf32 = False
    dtypes = args.dtypes or (["float32"] if args.quick else ["float32", "float16"])
    meta = environment.gpu()
    meta.update({"note": args.note, "dtypes": dtypes, "algos": args.algos, "timer": "CUDA events per call",
                 "peaks": {"flops": PEAK_FLOPS, "bytes_per_s": PEAK_BYTES_PER_S, "of": "H100 SXM"}})
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "gpu-" + datetime.date.today().isoformat())
    os.makedirs(out, exist_ok=True)

    import timing

    import hbm

    meta["hbm_copy_bytes_per_s"] = hbm.copy_bytes_per_s(cupy)
    timer = timing.CudaTimer(meta["l2_bytes"], delay_ms=args.device_time)
    meta["timer"] += f", device time only (a {args.device_time} ms GPU spin before each call)" if args.device_time else ""
    budget = args.budget or (0.05 if args.quick else 0.2)
    reps = (3, 10) if args.quick else (10, 100)
    suite = [(name, layer) for name, layer in layers.gpu_suite(args.layers, args.quick, batch1=not args.quick)
             if name in args.suites]

    # One stream for both frameworks: CuPy works on PyTorch's current stream, so events, kernels and the
    # DLPack hand-offs are ordered without extra synchronisation.
    with shared_stream(cupy, torch):
        rows = run(suite, dtypes, args.algos, meta, timer, budget, reps, args.time_limit, out)
    environment.finish(meta)
    write(out, meta, rows)
    print(report.summary_markdown(report.summarise(rows)))
    print(f"wrote {out}")


def shared_stream(cupy, torch):
    """A CuPy stream object for PyTorch's current stream (the legacy default stream is CuPy's null one)."""
    ptr = torch.cuda.current_stream().cuda_stream
    return cupy.cuda.Stream.null if ptr == 0 else cupy.cuda.ExternalStream(ptr)


def run(suite, dtypes, algos, meta, timer, budget, reps, time_limit, out, device="cuda") -> list:
    """Measures every (layer, dtype, pass, algorithm); writes results.json after each layer."""
    import torch

    import interop
    import passes
    import runner

    l2 = meta["l2_bytes"]
    rows = []
    t0 = time.perf_counter()
    total = sum(len(layer.passes) for _, layer in suite) * len(dtypes)
    with progress.bar(total, "gpu") as bar:
        for suite_name, layer in suite:
            if time_limit and time.perf_counter() - t0 > time_limit:
                meta["stopped_early"] = f"time limit {time_limit:g} s reached before {suite_name}/{layer.name}"
                bar.write(meta["stopped_early"])
                break
            for dtype_name in dtypes:
                dtype = getattr(torch, dtype_name)
                itemsize = torch.empty((), dtype=dtype).element_size()
                probe = passes.make_inputs(layer, dtype, device, 0)
                set_total = sum(t.numel() * t.element_size() for t in probe.values())
                # Enough sets that one round over them overflows L2 twice over; beyond MAX_SETS, the timer
                # flushes L2 instead (see timing.CudaTimer).
                n_sets = 1 if set_total >= 2 * l2 else min(MAX_SETS, math.ceil(2 * l2 / set_total))
                sets_t = [probe] + [passes.make_inputs(layer, dtype, device, seed) for seed in range(1, n_sets)]
                sets_gc = [interop.to_gpuconv(s) for s in sets_t]
                base = None
                for p in layer.passes:
                    bar.set_postfix_str(f"{suite_name} {layer.name} {dtype_name} {p}")
                    case = passes.build(layer, p, itemsize)
                    flush = n_sets * passes.set_bytes(layer, p, sets_t[0]) < 2 * l2

                    def time_fn(fn, sets, flush=flush):
                        return timer.time(fn, sets, flush=flush, warmup=3, budget_s=budget, min_reps=reps[0],
                                          max_reps=reps[1])

                    try:
                        base = runner.TorchBaseline(case, sets_t, time_fn)
                    except Exception as e:
                        rows.append(dict(runner.base_row(case, suite_name, dtype_name), algo="auto", ok=False,
                                         error=f"torch baseline failed: {type(e).__name__}: {e}"))
                        bar.update(1)
                        continue
                    unit, scale, peak = (("TFLOP/s", 1e12, PEAK_FLOPS[dtype_name]) if case.unit == "flop"
                                         else ("GB/s", 1e9, PEAK_BYTES_PER_S))
                    for algo in algos_for(layer, p, dtype_name, algos):
                        row = runner.measure(case, suite_name, dtype, dtype_name, algo, base, sets_gc,
                                             time_fn=time_fn, rate_scale=scale, unit=unit, peak=peak)
                        row["l2_flush"] = flush
                        if unit == "GB/s" and row.get("gpuconv_rate") and meta.get("hbm_copy_bytes_per_s"):
                            row["gpuconv_pct_hbm_copy"] = 100 * row["gpuconv_rate"] * 1e9 / meta["hbm_copy_bytes_per_s"]
                        if algo == "auto" and layer.is_conv:
                            row["algo_chosen"] = auto_choice(layer, p, dtype_name)
                        elif algo == "autotune":
                            row["algo_chosen"] = autotune_choice(layer, p)
                        rows.append(row)
                        if not row.get("ok"):
                            bar.write(f"  {suite_name} {layer.name} {dtype_name} {p} {algo}: "
                                      f"{row.get('error') or 'check failed'} (err {row.get('err_gpuconv')}, "
                                      f"torch {row.get('err_torch')})")
                    bar.update(1)
                del sets_t, sets_gc, probe, base
                _free_memory(device)
            report.write_json(os.path.join(out, "results.json"), meta, rows, report.summarise(rows),
                              {"partial": True})  # a run stopped from outside still leaves its rows
    meta["benchmark_seconds"] = round(time.perf_counter() - t0, 1)
    return rows


def _free_memory(device):
    """Hands cached blocks back between layers, so the big layers' sets do not crowd out the next ones."""
    gc.collect()
    if device == "cuda":
        import cupy
        import torch

        torch.cuda.empty_cache()
        cupy.get_default_memory_pool().free_all_blocks()


def algos_for(layer, pass_name, dtype_name, wanted) -> list:
    """The algorithms that apply: pooling has one; a convolution has 'auto', direct and im2col, and
    implicit_gemm and depthwise where their module's supports() says so for the kernel this pass runs."""
    if not layer.is_conv:
        return ["auto"]
    out = [a for a in wanted if a in ("auto", "autotune", "direct", "im2col")]
    for algo, module_name in (("implicit_gemm", "implicit_gemm"), ("depthwise", "_conv_depthwise")):
        if algo not in wanted:
            continue
        try:
            import importlib

            module = importlib.import_module(f"gpuconv._cuda.{module_name}")
            if module.supports(layer.geometry(), kernel_dtype(dtype_name), layer.kernel_pass(pass_name)):
                out.append(algo)
        except Exception as e:  # a broken module is reported, not fatal to the run
            print(f"{algo}: supports failed for {layer.name} {pass_name}: {e}", file=sys.stderr)
    return out


def kernel_dtype(dtype_name):
    """The dtype gpuconv's kernels run for a call of dtype_name: bfloat16 goes through the float32 kernels
    (gpuconv._backend.Float32Proxy), so the float32 rules decide which algorithms apply."""
    import numpy

    return numpy.dtype("float32" if dtype_name == "bfloat16" else dtype_name)


def autotune_choice(layer, pass_name):
    """The algorithm autotune settled on for this pass (the one its timed calls ran)."""
    try:
        from gpuconv._cuda import _autotune

        kernel_pass = layer.kernel_pass(pass_name)
        found = {k: v for k, v in _autotune.cached().items() if k[1] == layer.geometry() and k[3] == kernel_pass}
        return ", ".join(sorted(set(found.values()))) or "unknown"
    except Exception as e:
        return f"unknown ({type(e).__name__})"


def auto_choice(layer, pass_name, dtype_name):
    """The algorithm gpuconv's auto rule picks for this pass (recorded beside algo=auto rows)."""
    try:
        from gpuconv._cuda import _algo

        from gpuconv._cuda import _config

        auto = _config.from_environment({k: v for k, v in os.environ.items() if k != "GPUCONV_CONV_ALGO"})
        return _algo.choose(layer.geometry(), kernel_dtype(dtype_name), layer.kernel_pass(pass_name), auto)
    except Exception as e:
        return f"unknown ({type(e).__name__})"


# ---------------------------------------------------------------------------------------------- output


def write(out, meta, rows):
    summary = report.summarise(rows)
    report.write_json(os.path.join(out, "results.json"), meta, rows, summary)
    dtypes = meta["dtypes"]
    suites = [s for s in ("batch", "batch1") if any(r["suite"] == s for r in rows)]
    device = f"{meta['device']}, driver {meta['driver']}, CUDA {meta['cuda_runtime']}, cuDNN {meta['cudnn']}"
    report.plot(os.path.join(out, "ratio.png"), rows, [[(s, d, "auto") for d in dtypes] for s in suites],
                f"gpuconv (its own algorithm choice) vs PyTorch/cuDNN — {device} — {meta['date'][:10]}")
    for d in dtypes:
        forced = [a for a in meta["algos"] if a != "auto" and any(r["algo"] == a and r["dtype"] == d for r in rows)]
        report.plot(os.path.join(out, f"ratio_algos_{d}.png"), rows, [[(s, d, a) for a in forced] for s in suites],
                    f"gpuconv forced algorithms vs PyTorch/cuDNN, {d} — {device}")
    auto = [r for r in rows if r["algo"] == "auto"]
    forced_rows = [r for r in rows if r["algo"] != "auto"]
    md = [f"# GPU benchmark: gpuconv CUDA path vs PyTorch {meta['torch']} (cuDNN {meta['cudnn']})", "",
          f"{meta['device']}. Ratio = PyTorch time / gpuconv time (above 1: gpuconv is faster). Median of "
          f"CUDA-event times per call after warm-up; inputs rotated (or L2 flushed) so no call starts with "
          f"its inputs in L2; every result checked against a float64 reference first. cudnn.benchmark=True, "
          f"TF32 off. % peak against the H100 SXM: FP32 67 TFLOP/s, FP16 tensor 990 TFLOP/s, 3.35 TB/s.", ""]
    if meta.get("note"):
        md += [f"**Conditions:** {meta['note']}", ""]
    if meta.get("stopped_early"):
        md += [f"**Incomplete:** {meta['stopped_early']}", ""]
    md += ["## Geometric means (number of layers in brackets)", "", report.summary_markdown(summary), "",
           "![ratio](ratio.png)", "", "## gpuconv's own choice (algo=auto)", "",
           report.rows_markdown(auto, with_peak=True), ""]
    if forced_rows:
        md += ["## Forced algorithms (GPUCONV_CONV_ALGO)", ""]
        md += [f"![{d}](ratio_algos_{d}.png)" for d in dtypes] + [""]
        md += [report.rows_markdown(forced_rows, with_peak=True), ""]
    md += pooling_against_copy(meta, auto)
    md += ["## Device and versions", "",
           report.meta_markdown(meta, ("date", "date_end", "command", "git_commit", "git_dirty", "device",
                                       "compute_capability", "multiprocessors", "l2_bytes", "memory_bytes",
                                       "driver", "driver_api_version", "sm_clock_max_mhz", "cuda_runtime",
                                       "nvrtc", "cupy", "torch", "torch_cuda", "cudnn", "cudnn_benchmark",
                                       "tf32_matmul", "tf32_cudnn", "python", "numpy", "platform", "env",
                                       "hbm_copy_bytes_per_s", "benchmark_seconds", "stopped_early")), ""]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md))


def pooling_against_copy(meta, rows) -> list:
    """Markdown lines: each pooling row's bandwidth as a percent of the measured device copy (bench/hbm.py)."""
    pool = [r for r in rows if r.get("gpuconv_pct_hbm_copy") is not None]
    copy = meta.get("hbm_copy_bytes_per_s")
    if not pool or not copy:
        return []
    lines = [f"## Pooling against the measured copy bandwidth ({copy / 1e9:.0f} GB/s, bench/hbm.py)", "",
             "| suite | layer | dtype | pass | gpuconv ms | GB/s | % of copy |", "|---|---|---|---|---:|---:|---:|"]
    lines += [f"| {r['suite']} | {r['title']} | {r['dtype']} | {r['pass']} | {r['gpuconv_ms']:.4g} | "
              f"{r['gpuconv_rate']:.0f} | {r['gpuconv_pct_hbm_copy']:.0f}% |" for r in pool]
    return lines + [""]


if __name__ == "__main__":
    main()
