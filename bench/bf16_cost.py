"""What bfloat16 costs gpuconv's NumPy path against float32 on the same layers, in one process: the two
calls of each pass alternate (so load on a shared machine hits both alike) and the fastest of each is kept.

    python bench/bf16_cost.py [--layers NAME ...] [--reps 15] [--out DIR]

bfloat16 runs the float32 code between conversions (gpuconv/_backend.py, Float32Proxy); the table also
gives the conversions alone (every bfloat16 input to float32 and the result back), measured the same way.
Writes DIR/bf16_cost.md and .json when --out is given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ml_dtypes  # noqa: E402
import numpy  # noqa: E402
import torch  # noqa: E402  (only to make the inputs, as the other benchmarks do)

import interop  # noqa: E402
import layers  # noqa: E402
import passes  # noqa: E402

BF16 = numpy.dtype(ml_dtypes.bfloat16)
DEFAULT = ("resnet50_l1_3x3", "mobilenetv2_dw_s1", "dcgan_g_convt4x4s2", "resnet50_maxpool", "densenet121_avgpool")


def _convert_round_trip(s, result):
    """The proxy's conversions alone: the bfloat16 inputs to float32, the float32 result back."""
    for a in s.values():
        if a.dtype == BF16:
            a.astype(numpy.float32)
    for r in result if isinstance(result, tuple) else (result,):
        if r.dtype == numpy.float32:
            r.astype(BF16)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", nargs="*", default=list(DEFAULT))
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    rows = []
    for layer in layers.select(args.layers):
        layer = layer.at_batch(layer.cpu_batch)
        sets = {dt: interop.to_gpuconv(passes.make_inputs(layer, getattr(torch, dt), "cpu", 1))
                for dt in ("float32", "bfloat16")}
        for p in layer.passes:
            case = passes.build(layer, p, 4)
            f32 = case.gpuconv(sets["float32"])
            calls = {"float32": lambda: case.gpuconv(sets["float32"]),
                     "bfloat16": lambda: case.gpuconv(sets["bfloat16"]),
                     "conversions": lambda: _convert_round_trip(sets["bfloat16"], f32)}
            times = {k: [] for k in calls}
            for _ in range(args.reps):
                for k, fn in calls.items():
                    t = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t)
            row = {"layer": layer.name, "pass": p, **{f"{k}_ms": min(v) * 1e3 for k, v in times.items()}}
            row["ratio"] = row["bfloat16_ms"] / row["float32_ms"]
            rows.append(row)
            print(f"{layer.name:22s} {p:6s} f32 {row['float32_ms']:8.2f} ms  bf16 {row['bfloat16_ms']:8.2f} ms  "
                  f"({row['ratio']:.2f}x)  conversions {row['conversions_ms']:6.2f} ms", flush=True)
    ratios = [r["ratio"] for r in rows]
    geo = float(numpy.exp(numpy.mean(numpy.log(ratios))))
    print(f"geometric mean bfloat16 / float32: {geo:.2f}x")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        load = os.getloadavg()[0]
        with open(os.path.join(args.out, "bf16_cost.json"), "w") as f:
            json.dump({"rows": rows, "geomean_ratio": geo, "reps": args.reps, "loadavg_end": load}, f, indent=1)
        md = ["| layer | pass | float32 ms | bfloat16 ms | bfloat16 / float32 | conversions alone ms |",
              "|---|---|---:|---:|---:|---:|"]
        md += [f"| {r['layer']} | {r['pass']} | {r['float32_ms']:.2f} | {r['bfloat16_ms']:.2f} | {r['ratio']:.2f}x | "
               f"{r['conversions_ms']:.2f} |" for r in rows]
        md += ["", f"Geometric mean bfloat16 / float32: {geo:.2f}x (fastest of {args.reps} alternating calls each; "
                   f"1-minute load average at the end {load:.1f})."]
        with open(os.path.join(args.out, "bf16_cost.md"), "w") as f:
            f.write("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
