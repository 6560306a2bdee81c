"""gpuconv's NumPy path against PyTorch's CPU kernels, over the CPU subset of the layer suite.

    python bench/bench_cpu.py [--quick] [--layers NAME ...] [--out DIR] [--note TEXT]

Both sides get the same thread count (numpy's BLAS threads; torch.set_num_threads). Every pass is checked
against a float64 PyTorch reference, then timed by wall clock (median of repeats after a warm-up), each
library in a worker process of its own (cpu_worker.py) where the other library's threads do not exist.
Also measures the peak extra memory of one large convolution (VGG-16 conv1_2 at batch 8) with tracemalloc.
Writes results.json, results.md and ratio.png into --out (see README.md for the columns).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import environment  # noqa: E402
import layers  # noqa: E402
import progress  # noqa: E402
import report  # noqa: E402

MIB = 2 ** 20


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a few layers, few repeats: a smoke run")
    ap.add_argument("--layers", nargs="*", help="layer names (default: all; see bench/layers.py)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64", "bfloat16"),
                    help="bfloat16: the NumPy path's float32 compute with conversions, against PyTorch's CPU "
                         "bfloat16 kernels (pair it with a float32 run on the same layers: compare_bf16.py)")
    ap.add_argument("--out", help="output folder (default: bench/results/cpu-<date>)")
    ap.add_argument("--threads", type=int, help="threads for both sides (default: numpy's BLAS threads)")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per side and measurement")
    ap.add_argument("--settle", type=float, default=0.2,
                    help="seconds of idle before each worker's turn, for spinning threads to go to sleep")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    ap.add_argument("--note", default="", help="conditions of the run, recorded in the results")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import torch

    import interop
    import passes
    import runner
    from cpu_worker import Worker

    threads = args.threads or environment.blas_threads(os.cpu_count() or 1)
    torch.set_num_threads(threads)  # the parent's own torch calls: the checks
    _limit_blas(threads)
    meta = environment.cpu()
    # gpuconv's pool gets the same thread count unless the caller chose one (GPUCONV_NUM_THREADS)
    gc_env = {} if os.environ.get("GPUCONV_NUM_THREADS") else {"GPUCONV_NUM_THREADS": str(threads)}
    meta.update({"threads": threads, "note": args.note, "dtype": args.dtype, "timer": TIMER,
                 "budget_s": args.budget, "settle_s": args.settle})
    dtype = getattr(torch, args.dtype)
    itemsize = torch.empty((), dtype=dtype).element_size()
    suite = layers.cpu_suite(args.layers, args.quick)
    min_reps, max_reps = (2, 3) if args.quick else (5, 40)

    workers = {}
    try:
        workers["gpuconv"] = Worker("gpuconv", threads, gc_env)
        workers["torch"] = Worker("torch", threads)
        meta["processes"] = {name: w.info for name, w in workers.items()}
        if meta["processes"]["gpuconv"]["torch_imported"] or meta["processes"]["torch"]["gpuconv_imported"]:
            raise SystemExit(f"a timing worker imported the other library: {meta['processes']}")
        rows = []
        t0 = time.perf_counter()
        n_timed = 0
        with progress.bar(sum(len(layer.passes) for _, layer in suite), "cpu") as bar:
            for suite_name, layer in suite:
                # Two input sets alternate so no call finds its inputs in cache from the previous call.
                sets_t = [passes.make_inputs(layer, dtype, "cpu", seed) for seed in (1, 2)]
                sets_gc = [interop.to_gpuconv(s) for s in sets_t]
                for w in workers.values():  # the same arrays, pickled to each worker
                    w.request(op="load", key=layer.name, sets=sets_gc)
                for p in layer.passes:
                    bar.set_postfix_str(f"{layer.name} {p}")
                    case = passes.build(layer, p, itemsize)
                    try:
                        base = runner.TorchBaseline(case, sets_t)
                    except Exception as e:  # PyTorch itself failing is a bug of this script: say so and go on
                        rows.append(dict(runner.base_row(case, suite_name, args.dtype), algo="numpy", ok=False,
                                         error=f"torch baseline failed: {type(e).__name__}: {e}"))
                        bar.update(1)
                        continue
                    # the two workers take turns, first one then the other, so load drift hits both
                    order = ("gpuconv", "torch") if n_timed % 2 == 0 else ("torch", "gpuconv")
                    n_timed += 1
                    timer = _worker_timer(workers, order, layer, p, base, dtype, args.settle,
                                          dict(warmup=1, budget_s=args.budget, min_reps=min_reps,
                                               max_reps=max_reps))
                    unit, scale = ("GFLOP/s", 1e9) if case.unit == "flop" else ("GB/s", 1e9)
                    row = runner.measure(case, suite_name, dtype, args.dtype, "numpy", base, sets_gc,
                                         pair_time_fn=timer, rate_scale=scale, unit=unit)
                    row["loadavg_1min"] = os.getloadavg()[0]  # how busy the shared machine was meanwhile
                    rows.append(row)
                    if not row.get("ok"):
                        bar.write(f"  {layer.name} {p}: {row.get('error') or 'check failed'} "
                                  f"(err {row.get('err_gpuconv')}, torch {row.get('err_torch')})")
                    bar.update(1)
        meta["benchmark_seconds"] = round(time.perf_counter() - t0, 1)
        memory = None if args.no_memory else measure_memory(torch, interop, workers["gpuconv"])
    finally:
        for w in workers.values():
            w.close()
    environment.finish(meta)
    summary = report.summarise(rows)
    summary_min = report.summarise(rows, "ratio_min")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   "cpu-" + datetime.date.today().isoformat())
    write(out, meta, rows, summary, summary_min, memory)
    print("ratio of medians:\n" + report.summary_markdown(summary))
    print("ratio of fastest calls:\n" + report.summary_markdown(summary_min))
    if memory:
        print(_memory_line(memory))
    print(f"wrote {out}")


TIMER = ("time.perf_counter, each library in a process of its own (bench/cpu_worker.py: 'gpuconv' imports "
         "gpuconv + numpy and never torch; 'torch' imports torch + numpy and never gpuconv), started by "
         "subprocess from a clean interpreter, same thread count, same input arrays; the two take turns per "
         "(layer, pass), never running at once, alternating which goes first; checks in the parent")


def layer_spec(layer, pass_name) -> dict:
    """What a worker needs to build the calls of one (layer, pass) without importing layers.py."""
    return {"kind": layer.kind, "pass": pass_name, "kernel": tuple(layer.kernel), "stride": tuple(layer.stride),
            "padding": tuple(layer.padding), "dilation": tuple(layer.dilation), "groups": layer.groups,
            "output_padding": tuple(layer.output_padding)}


def _worker_timer(workers, order, layer, pass_name, base, dtype, settle_s, timing_args):
    """A pair_time_fn for runner.measure that times each side in its own worker, one after the other, and
    checks the first result each worker computed against the same reference as the parent's check."""
    import checks
    import interop

    def pair_time_fn(_fn_gc, _sets_gc, _fn_torch, _sets_torch):
        times = {}
        for name in order:
            # Let the threads of whatever ran last (the parent's check, the other worker) go idle first:
            # OpenMP and OpenBLAS threads spin for a while after a call before they sleep.
            time.sleep(settle_s)
            r = workers[name].request(op="time", key=layer.name, spec=layer_spec(layer, pass_name),
                                      **timing_args)
            err = checks.result_error(interop.to_torch(r["first"]), base.ref, base.x)
            if not checks.verdict(err, base.err, dtype):
                raise RuntimeError(f"the {name} worker's result fails the check that the parent's passed "
                                   f"(err {err:.3g}, torch {base.err:.3g})")
            times[name] = r["times"]
        return times["gpuconv"], times["torch"]

    return pair_time_fn


def _limit_blas(threads):
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")
    except ImportError:
        pass


# ---------------------------------------------------------------------------------------------- memory


def measure_memory(torch, interop, gpuconv_worker, layer_name="vgg16_conv1_2", batch=8) -> dict:
    """Peak memory that tracemalloc sees NumPy allocate during conv2d and during conv2d_backward, for one
    large layer, measured in the gpuconv worker. 'workspace' is the peak less the arrays the call returns;
    both are also given as a multiple of the input plus output size."""
    layer = layers.BY_NAME[layer_name].at_batch(batch)
    s = interop.to_gpuconv(_memory_inputs(torch, layer))
    a = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    result = {"layer": layer_name, "N": batch, "shape": layer.shape_str(), "input_MiB": s["x"].nbytes / MIB,
              "output_MiB": s["gy"].nbytes / MIB}
    try:
        result.update(gpuconv_worker.request(op="memory", set=s, conv_args=a)["memory"])
    except RuntimeError as e:
        result["error"] = str(e)
    return result


def _memory_inputs(torch, layer):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(layer.input_shape, generator=gen)
    w = torch.randn(layer.weight_shape, generator=gen) * 0.05
    return {"x": x, "w": w, "b": torch.randn((layer.K,), generator=gen),
            "gy": torch.randn(layer.output_shape, generator=gen)}


def _memory_line(m):
    parts = [f"peak memory, {m['layer']} N={m['N']} (input {m['input_MiB']:.0f} MiB, output "
             f"{m['output_MiB']:.0f} MiB):"]
    for name in ("conv2d", "conv2d_backward"):
        r = m.get(name, {})
        if "error" in r:
            parts.append(f"{name}: {r['error']}")
        elif r:
            parts.append(f"{name}: peak {r['peak_MiB']:.0f} MiB = {r['peak_x_io']:.2f}x (input+output), "
                         f"workspace {r['workspace_MiB']:.0f} MiB = {r['workspace_x_io']:.2f}x")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------- output


def write(out, meta, rows, summary, summary_min, memory):
    os.makedirs(out, exist_ok=True)
    report.write_json(os.path.join(out, "results.json"), meta, rows, summary,
                      {"summary_min": summary_min, "memory": memory})
    try:
        report.plot(os.path.join(out, "ratio.png"), rows, [("cpu", meta["dtype"], "numpy")],
                    plot_title(meta))
    except ImportError as e:  # matplotlib is the bench extra's; the tables do without it
        print(f"no plot: {e}")
    md = [f"# CPU benchmark: gpuconv NumPy path vs PyTorch {meta['torch']} CPU kernels", "",
          f"Ratio = PyTorch time / gpuconv time (above 1: gpuconv is faster). Median of repeats after a "
          f"warm-up; every pass checked against a float64 reference first. {meta['dtype']}, "
          f"{meta['threads']} threads on both sides, each library timed in a process of its own (no "
          f"other library's threads in it), the two taking turns.", ""]
    if meta.get("note"):
        md += [f"**Conditions:** {meta['note']}", ""]
    md += ["## Geometric means (number of layers in brackets)", "", "Ratio of median times:", "",
           report.summary_markdown(summary), "",
           "Ratio of the fastest calls (load on a shared machine only ever adds time, so this is the steadier "
           "estimate when the machine is busy):", "", report.summary_markdown(summary_min), ""]
    if memory:
        md += ["## Peak memory", "", _memory_md(memory), ""]
    md += ["## Per layer and pass", "", report.rows_markdown(rows, with_peak=False), "", "![ratio](ratio.png)",
           "", "## Machine and versions", "",
           report.meta_markdown(meta, ("date", "date_end", "command", "git_commit", "git_dirty", "cpu_model",
                                       "logical_cpus", "affinity_cpus", "threads", "torch_num_threads",
                                       "torch_cpu_capability", "torch_mkldnn", "python",
                                       "numpy", "torch", "platform", "env", "blas", "loadavg_start",
                                       "loadavg_end", "benchmark_seconds", "budget_s", "settle_s", "timer")), ""]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(md))


def plot_title(meta):
    threads = f"{meta['threads']} thread" + ("s" if meta["threads"] != 1 else "")
    return (f"gpuconv NumPy path vs PyTorch CPU ({meta['cpu_model']}, {threads}, {meta['dtype']}) — "
            f"{meta['date'][:10]}")


def _memory_md(m):
    lines = [f"{m['layer']} ({m['shape']}) at N={m['N']}, float32: input {m['input_MiB']:.1f} MiB, output "
             f"{m['output_MiB']:.1f} MiB. tracemalloc's peak during the call; workspace = peak less the "
             f"arrays returned.", "",
             "| call | peak MiB | peak / (in+out) | returned MiB | workspace MiB | workspace / (in+out) | s |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in ("conv2d", "conv2d_backward"):
        r = m.get(name)
        if not r:
            continue
        if "error" in r:
            lines.append(f"| {name} | {r['error']} | | | | | |")
            continue
        lines.append(f"| {name} | {r['peak_MiB']:.1f} | {r['peak_x_io']:.2f}x | {r['returned_MiB']:.1f} | "
                     f"{r['workspace_MiB']:.1f} | {r['workspace_x_io']:.2f}x | {r['seconds']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
