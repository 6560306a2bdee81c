"""NVRTC compile time of gpuconv's kernels on the CPU, per source file and per dtype: what a cold start costs
before any kernel runs, and what compiling one dtype at a time would save.

    python bench/nvrtc_coldstart.py [--arch sm_90] [--out bench/results/cpu-nvrtc-coldstart]

For each file of ``gpuconv._cuda._kernel_table.KERNELS`` it compiles, as the loader does (headers inlined,
the table's options plus CuPy's ``-ftz=true``), (a) the whole file with every name expression, which is what
the first use of any kernel of the file cost before the loader compiled per dtype, and (b) the file once
per dtype group with only that group's names, as the loader now compiles them (``_loader.dtype_group``: a
name's first template argument, ``__half``, ``float``, ``double``; names without one form the group
'other').
``-arch=sm_XX`` produces a cubin (NVRTC runs ptxas), as CuPy does for a device it knows. One thread, wall
and process CPU time; needs libnvrtc (found as tests/test_nvrtc_compile.py finds it), no GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

import test_nvrtc_compile as nv  # noqa: E402  (the ctypes NVRTC binding and its discovery)

DTYPE_OF = {"__half": "float16", "__nv_bfloat16": "bfloat16", "float": "float32", "double": "float64"}


def dtype_of(name: str) -> str:
    return DTYPE_OF.get(nv.loader.dtype_group(name), "other")


def compile_seconds(source_file: str, names, arch: str) -> tuple:
    """(wall seconds, CPU seconds) of one NVRTC compile of ``source_file`` with ``names``."""
    program = nv._Program(nv.NVRTC, nv.loader.source(source_file), source_file)
    try:
        for name in names:
            program.add_name(name)
        options = tuple(nv.kernel_table.COMPILE_OPTIONS) + nv.CUPY_ADDED_OPTIONS + (
            f"-arch={arch}", f"-I{nv.INCLUDE_DIR}")
        wall, cpu = time.perf_counter(), time.process_time()
        status, log = program.compile(options)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if status != 0:
            raise RuntimeError(f"{source_file}: {log}")
        return wall, cpu
    finally:
        program.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cpu-nvrtc-coldstart"))
    ap.add_argument("--files", nargs="*", help="only these kernel files")
    args = ap.parse_args(argv)
    if nv.NVRTC is None:
        print(f"no NVRTC: {nv.INCLUDE_DIR}", file=sys.stderr)
        return 2
    version = (nv.ctypes.c_int(), nv.ctypes.c_int())
    nv.NVRTC.nvrtcVersion(nv.ctypes.byref(version[0]), nv.ctypes.byref(version[1]))
    rows = []
    for source_file in args.files or sorted(nv.kernel_table.KERNELS):
        names = nv.kernel_table.KERNELS[source_file]
        wall, cpu = compile_seconds(source_file, names, args.arch)
        rows.append({"file": source_file, "dtype": "all", "kernels": len(names), "wall_s": wall, "cpu_s": cpu})
        print(f"{source_file:32s} all      {len(names):3d} {wall:7.2f} s", flush=True)
        groups: dict = {}
        for name in names:
            groups.setdefault(dtype_of(name), []).append(name)
        if len(groups) > 1:
            for dtype, group in sorted(groups.items()):
                wall, cpu = compile_seconds(source_file, group, args.arch)
                rows.append({"file": source_file, "dtype": dtype, "kernels": len(group), "wall_s": wall,
                             "cpu_s": cpu})
                print(f"{source_file:32s} {dtype:8s} {len(group):3d} {wall:7.2f} s", flush=True)
    meta = {"arch": args.arch, "nvrtc": f"{version[0].value}.{version[1].value}", "cpu": platform.processor()
            or platform.machine(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (out / "table.md").write_text(_table(meta, rows))
    return 0


def _table(meta, rows) -> str:
    lines = [f"NVRTC {meta['nvrtc']}, -arch={meta['arch']} (cubin), one thread on {meta['cpu']}, {meta['date']}.",
             "", "| file | dtype | kernels | wall s | CPU s |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['dtype']} | {r['kernels']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} |")
    whole = [r for r in rows if r["dtype"] == "all"]
    lines += ["", f"All files, whole: {sum(r['wall_s'] for r in whole):.1f} s wall, "
                  f"{sum(r['cpu_s'] for r in whole):.1f} s CPU."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
