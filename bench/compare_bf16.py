"""One table from a bfloat16 and a float32 run of bench_cpu.py on the same layers: what bfloat16 costs the
NumPy path (its float32 arithmetic plus two conversions) and how it compares with PyTorch's CPU bfloat16.

    python bench/compare_bf16.py DIR      (DIR holds bfloat16/results.json and float32/results.json)

Writes DIR/README.md.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


# The fastest call of each side: on a shared machine load only ever adds time, so minima are the steadier
# estimate (bench_cpu.py records both; the medians are in each run's results.json).
KEY = {"gpuconv": "gpuconv_min_ms", "torch": "torch_min_ms"}


def geomean(values):
    values = [v for v in values if v and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else float("nan")


def main(folder) -> None:
    folder = Path(folder)
    runs = {d: json.loads((folder / d / "results.json").read_text()) for d in ("bfloat16", "float32")}
    f32 = {(r["layer"], r["pass"]): r for r in runs["float32"]["rows"]}
    meta = runs["bfloat16"]["meta"]
    lines = [
        "# The NumPy path in bfloat16 against float32 and against PyTorch's CPU bfloat16", "",
        f"Two runs of `bench/bench_cpu.py` (`--dtype bfloat16`, then `--dtype float32`) on the same layers, "
        f"{meta.get('threads')} threads, each library in a process of its own, fastest of "
        f"{min(r.get('reps') or 0 for r in runs['bfloat16']['rows'])}+ calls, on {meta.get('cpu_model')}, "
        f"PyTorch {meta.get('torch')}, NumPy {meta.get('numpy')}. {meta.get('note', '')}", "",
        "gpuconv's bfloat16 is its float32 code between two conversions (`gpuconv/_backend.py`, Float32Proxy); "
        "'bf16 / f32' is what that costs. 'torch bf16 / gpuconv bf16' above 1 means gpuconv is faster.", "",
        "| layer | pass | gpuconv f32 ms | gpuconv bf16 ms | bf16 / f32 | torch bf16 ms | torch f32 ms | "
        "torch bf16 / gpuconv bf16 | checked |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    cost, versus = [], []
    for r in runs["bfloat16"]["rows"]:
        base = f32.get((r["layer"], r["pass"]), {})
        g16, g32, t16, t32 = (d.get(KEY[k]) for d, k in ((r, "gpuconv"), (base, "gpuconv"), (r, "torch"),
                                                            (base, "torch")))
        c = g16 / g32 if g16 and g32 else None
        v = t16 / g16 if g16 and t16 else None
        cost.append(c)
        versus.append(v)
        fmt = lambda x, f="{:.1f}": "-" if x is None else f.format(x)  # noqa: E731
        lines.append(f"| {r['layer']} | {r['pass']} | {fmt(g32)} | {fmt(g16)} | {fmt(c, '{:.2f}x')} | {fmt(t16)} | "
                     f"{fmt(t32)} | {fmt(v, '{:.2f}x')} | {'ok' if r.get('ok') else 'FAILED'} |")
    lines += ["", f"Geometric means: bfloat16 / float32 time of the NumPy path {geomean(cost):.2f}x; "
                  f"PyTorch bfloat16 time / gpuconv bfloat16 time {geomean(versus):.2f}x.", "",
              f"Machine load (1-minute average) during the bfloat16 run: "
              f"{min(r.get('loadavg_1min', 0) for r in runs['bfloat16']['rows']):.0f}-"
              f"{max(r.get('loadavg_1min', 0) for r in runs['bfloat16']['rows']):.0f}.", ""]
    cost = folder / "bf16_cost.md"
    if cost.is_file():  # bench/bf16_cost.py: float32 and bfloat16 alternating in one process, steadier
        lines += ["## bfloat16 against float32 in one process (bench/bf16_cost.py)", "",
                  "The two runs above ran minutes apart on a loaded machine; here each pass's float32 and "
                  "bfloat16 calls alternate in one process, with the conversions alone timed beside them.", "",
                  cost.read_text()]
    (folder / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
