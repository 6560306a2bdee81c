"""Per-kernel profile of one layer's pass under Nsight Compute, summarised as Markdown.

    python bench/profile_ncu.py --layer resnet50_l1_3x3 --pass fprop --out DIR
                                [--dtype float32] [--algo auto|autotune|direct|im2col|implicit_gemm|depthwise] [--batch N]
                                [--impl gpuconv|torch] [--launches 1] [--ncu PATH] [--dry-run]

Runs itself as a worker under `ncu --clock-control none --profile-from-start off`: the worker warms the
pass up (compiles, autotunes) outside the profiled range, then runs it --launches times between
cudaProfilerStart/Stop, so only those kernels are profiled. The report is exported (.ncu-rep), read back as
CSV, and summarised per kernel: duration, achieved DRAM bandwidth, FLOP rate from the SASS instruction
counters, tensor-pipe instructions, achieved and theoretical occupancy, registers per thread, shared memory,
and local-memory traffic (register spills). --impl torch profiles PyTorch/cuDNN's kernels for comparison.

Writes into --out: ncu_<layer>_<pass>_<dtype>_<algo>.{ncu-rep,csv,md}.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import os
import shutil
import subprocess
import sys
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PEAK_BYTES_PER_S = 3.35e12  # H100 SXM HBM3

# Metrics asked of ncu. ncu refuses a whole run for one name it does not know on this GPU; such names are
# dropped and the run repeated (see run_ncu).
METRICS = (
    "gpu__time_duration.sum",
    "dram__bytes_read.sum",
    "dram__bytes_write.sum",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",
    # CUDA-core floating point: a thread-level count of each instruction (an FMA is two FLOPs).
    "sm__sass_thread_inst_executed_op_ffma_pred_on.sum",
    "sm__sass_thread_inst_executed_op_fadd_pred_on.sum",
    "sm__sass_thread_inst_executed_op_fmul_pred_on.sum",
    "sm__sass_thread_inst_executed_op_hfma_pred_on.sum",
    "sm__sass_thread_inst_executed_op_hadd_pred_on.sum",
    "sm__sass_thread_inst_executed_op_hmul_pred_on.sum",
    "sm__sass_thread_inst_executed_op_dfma_pred_on.sum",
    "sm__sass_thread_inst_executed_op_dadd_pred_on.sum",
    "sm__sass_thread_inst_executed_op_dmul_pred_on.sum",
    # Tensor cores: warp-level MMA instructions (their FLOPs depend on the MMA shape, so they are counted,
    # not converted).
    "sm__inst_executed_pipe_tensor_op_hmma.sum",
    "sm__inst_executed_pipe_tensor_op_gmma.sum",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "sm__maximum_warps_per_active_cycle_pct",
    "launch__registers_per_thread",
    "launch__shared_mem_per_block_static",
    "launch__shared_mem_per_block_dynamic",
    "launch__grid_size",
    "launch__block_size",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum",
)

FLOP_WEIGHTS = {  # metric -> FLOPs per counted thread instruction
    "sm__sass_thread_inst_executed_op_ffma_pred_on.sum": 2,
    "sm__sass_thread_inst_executed_op_fadd_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_fmul_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_hfma_pred_on.sum": 2,
    "sm__sass_thread_inst_executed_op_hadd_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_hmul_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_dfma_pred_on.sum": 2,
    "sm__sass_thread_inst_executed_op_dadd_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_dmul_pred_on.sum": 1,
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layer", required=True, help="a layer name of bench/layers.py")
    ap.add_argument("--pass", dest="pass_name", required=True, help="fprop, dgrad, wgrad (conv); fwd, bwd (pool)")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float16", "float64"))
    ap.add_argument("--algo", default="auto", choices=("auto", "autotune", "direct", "im2col", "implicit_gemm", "depthwise"))
    ap.add_argument("--batch", type=int, help="batch size (default: the layer's GPU batch)")
    ap.add_argument("--impl", default="gpuconv", choices=("gpuconv", "torch"))
    ap.add_argument("--launches", type=int, default=1, help="profiled calls of the pass")
    ap.add_argument("--out", default=".", help="output folder")
    ap.add_argument("--ncu", help="path of ncu (default: on PATH, else under /opt/nvidia/nsight-compute or "
                                  "/usr/local/cuda)")
    ap.add_argument("--dry-run", action="store_true", help="print the ncu command and stop")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    import layers

    layer = layers.BY_NAME.get(args.layer) or sys.exit(f"unknown layer {args.layer}; known: {', '.join(layers.BY_NAME)}")
    if args.pass_name not in layer.passes:
        sys.exit(f"{args.layer} has passes {layer.passes}, not {args.pass_name}")
    layer = layer.at_batch(args.batch or layer.gpu_batch)
    stem = f"ncu_{args.layer}_{args.pass_name}_{args.dtype}_{args.impl if args.impl == 'torch' else args.algo}"
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, stem)
    ncu = args.ncu or find_ncu()
    metrics = list(METRICS)
    worker_cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--layer", args.layer, "--pass",
                  args.pass_name, "--dtype", args.dtype, "--algo", args.algo, "--batch", str(layer.N), "--impl",
                  args.impl, "--launches", str(args.launches)]
    def ncu_cmd(metrics):
        return [ncu or "ncu", "--clock-control", "none", "--profile-from-start", "off", "--target-processes",
                "all", "--metrics", ",".join(metrics), "--export", base, "--force-overwrite"] + worker_cmd

    if args.dry_run:
        print(" ".join(ncu_cmd(metrics)))
        return
    if not ncu:
        sys.exit("ncu not found: pass --ncu PATH")
    env = dict(os.environ)
    if args.algo != "auto":
        env["GPUCONV_CONV_ALGO"] = args.algo
    else:
        env.pop("GPUCONV_CONV_ALGO", None)
    cmd = run_ncu(ncu_cmd, metrics, env, base)
    raw = subprocess.run([ncu, "--import", base + ".ncu-rep", "--csv", "--page", "raw", "--print-units", "base",
                          "--print-kernel-base", "function"], capture_output=True, text=True, check=True).stdout
    with open(base + ".csv", "w") as f:
        f.write(raw)
    kernels = summarise(parse_raw_csv(raw))
    md = markdown(kernels, layer, args, model_flops=layer.geometry().flops * args.launches if layer.is_conv else None,
                  command=" ".join(cmd))
    with open(base + ".md", "w") as f:
        f.write(md)
    print(md)


# ---------------------------------------------------------------------------------------------- worker


def worker(args):
    """Runs inside ncu: warm up unprofiled, then the profiled calls between cudaProfilerStart/Stop."""
    import cupy
    import torch

    import interop
    import layers
    import passes

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    layer = layers.BY_NAME[args.layer].at_batch(args.batch)
    dtype = getattr(torch, args.dtype)
    case = passes.build(layer, args.pass_name, torch.empty((), dtype=dtype).element_size())
    s_t = passes.make_inputs(layer, dtype, "cuda", 0)
    from bench_gpu import shared_stream

    with shared_stream(cupy, torch):
        if args.impl == "torch":
            fn, s = case.torch, s_t
        else:
            fn, s = case.gpuconv, interop.to_gpuconv(s_t)
        for _ in range(3):
            fn(s)
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        for _ in range(args.launches):
            fn(s)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


# ------------------------------------------------------------------------------------------------- ncu


def find_ncu():
    found = shutil.which("ncu")
    if found:
        return found
    for pattern in ("/opt/nvidia/nsight-compute/*/ncu", "/usr/local/cuda/bin/ncu", "/usr/local/cuda*/bin/ncu"):
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[-1]
    return None


def run_ncu(ncu_cmd, metrics, env, base, attempts=4):
    """Runs ncu; when it names metrics it cannot find, drops them and runs again. Returns the command that
    produced the report."""
    metrics = list(metrics)
    for _ in range(attempts):
        cmd = ncu_cmd(metrics)
        print(" ".join(cmd), flush=True)
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        text = run.stdout + run.stderr
        unknown = [m for m in metrics if m in text and ("find metric" in text or "not found" in text.lower()
                                                         or "invalid" in text.lower())]
        if run.returncode == 0 and os.path.exists(base + ".ncu-rep"):
            sys.stdout.write(run.stdout[-3000:])
            return cmd
        if not unknown:
            sys.stdout.write(run.stdout[-4000:])
            sys.stderr.write(run.stderr[-4000:])
            sys.exit(f"ncu failed (exit {run.returncode})")
        print(f"ncu does not know {', '.join(unknown)} here: dropped, running again", file=sys.stderr)
        metrics = [m for m in metrics if m not in unknown]
    sys.exit("ncu failed: too many unknown metrics")


def parse_raw_csv(text: str) -> list:
    """Rows of `ncu --import R --csv --page raw --print-units base`: one dict per kernel launch, metric values
    as floats where they parse. The line after the header holds units (its ID column is empty): skipped."""
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]  # drops ==PROF== and other chatter
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    out = []
    for row in reader:
        if not row.get("ID", "").strip():
            continue
        parsed = {}
        for k, v in row.items():
            parsed[k] = _number(v)
        out.append(parsed)
    return out


def _number(v):
    if v is None:
        return None
    t = v.strip().replace(",", "")
    try:
        return float(t)
    except ValueError:
        return v.strip()


def summarise(launches: list) -> list:
    """Per kernel name, in first-launch order: launches, durations, DRAM traffic, FLOPs and the launch
    attributes (registers, shared memory, grid and block: taken from the first launch)."""
    kernels = OrderedDict()
    for r in launches:
        name = str(r.get("Kernel Name", "?"))
        k = kernels.setdefault(name, {"name": name, "launches": 0, "ns": 0.0, "dram_bytes": 0.0, "flops": 0.0,
                                      "tensor_inst": 0.0, "local_bytes": 0.0, "occ_weighted": 0.0, "first": r})
        ns = _f(r, "gpu__time_duration.sum")
        k["launches"] += 1
        k["ns"] += ns
        k["dram_bytes"] += _f(r, "dram__bytes_read.sum") + _f(r, "dram__bytes_write.sum")
        k["flops"] += sum(w * _f(r, m) for m, w in FLOP_WEIGHTS.items())
        k["tensor_inst"] += _f(r, "sm__inst_executed_pipe_tensor_op_hmma.sum") + _f(
            r, "sm__inst_executed_pipe_tensor_op_gmma.sum")
        k["local_bytes"] += _f(r, "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum") + _f(
            r, "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum")
        k["occ_weighted"] += ns * _f(r, "sm__warps_active.avg.pct_of_peak_sustained_active")
    for k in kernels.values():
        first = k.pop("first")
        s = k["ns"] * 1e-9
        k.update({
            "us": k["ns"] / 1e3,
            "dram_GBps": k["dram_bytes"] / s / 1e9 if s else None,
            "dram_pct_peak": 100 * k["dram_bytes"] / s / PEAK_BYTES_PER_S if s else None,
            "GFLOPs": k["flops"] / s / 1e9 if s else None,
            "achieved_occupancy_pct": k.pop("occ_weighted") / k["ns"] if k["ns"] else None,
            "theoretical_occupancy_pct": first.get("sm__maximum_warps_per_active_cycle_pct"),
            "sm_throughput_pct": first.get("sm__throughput.avg.pct_of_peak_sustained_elapsed"),
            "memory_throughput_pct": first.get("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"),
            "registers": first.get("launch__registers_per_thread"),
            "smem_bytes": _f(first, "launch__shared_mem_per_block_static") + _f(
                first, "launch__shared_mem_per_block_dynamic"),
            "grid": first.get("launch__grid_size"),
            "block": first.get("launch__block_size"),
        })
    return list(kernels.values())


def _f(row, key) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) else 0.0


def _fmt(v, digits=1):
    if v is None or v == "":
        return "—"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def markdown(kernels, layer, args, model_flops=None, command="") -> str:
    total_ns = sum(k["ns"] for k in kernels)
    head = (f"# ncu profile: {layer.network} {layer.title} ({layer.name}), N={layer.N}, {args.pass_name}, "
            f"{args.dtype}, {args.impl}" + (f", algo={args.algo}" if args.impl == "gpuconv" else ""))
    lines = [head, "", f"`{command}`", "", f"{layer.shape_str()}; {args.launches} profiled call(s); "
             f"{len(kernels)} kernel(s), {total_ns / 1e3:,.1f} us of kernel time in all (ncu serialises "
             f"kernels and runs them with clock control off; compare durations with bench_gpu.py's).", ""]
    if model_flops and total_ns:
        rate = model_flops / (total_ns * 1e-9) / 1e12
        lines += [f"Model FLOPs 2*N*K*P*Q*(C/groups)*R*S = {model_flops / 1e9:,.2f} GFLOP over the kernel time: "
                  f"**{rate:,.2f} TFLOP/s**.", ""]
    lines += ["| kernel | launches | time us | DRAM GB/s | % of 3.35 TB/s | CUDA-core GFLOP/s | tensor MMA inst | "
              "occupancy % (achieved / theoretical) | SM % | mem % | regs/thread | smem B/block | local B (spills) "
              "| grid | block |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for k in kernels:
        name = k["name"] if len(k["name"]) <= 70 else k["name"][:67] + "..."
        lines.append(
            f"| `{name}` | {k['launches']} | {_fmt(k['us'])} | {_fmt(k['dram_GBps'])} | {_fmt(k['dram_pct_peak'])} | "
            f"{_fmt(k['GFLOPs'])} | {_fmt(k['tensor_inst'], 0)} | {_fmt(k['achieved_occupancy_pct'])} / "
            f"{_fmt(k['theoretical_occupancy_pct'])} | {_fmt(k['sm_throughput_pct'])} | "
            f"{_fmt(k['memory_throughput_pct'])} | {_fmt(k['registers'], 0)} | {_fmt(k['smem_bytes'], 0)} | "
            f"{_fmt(k['local_bytes'], 0)} | {_fmt(k['grid'], 0)} | {_fmt(k['block'], 0)} |")
    lines += ["", "CUDA-core GFLOP/s counts FFMA/HFMA/DFMA as 2 and adds/multiplies as 1 (thread-level SASS "
              "counters); tensor-core work appears only as MMA instruction counts. Local bytes are local-memory "
              "loads + stores, i.e. register spills (and local arrays). SM % and mem % are ncu's speed-of-light "
              "throughputs of the first launch.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
