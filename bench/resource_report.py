"""Registers, shared memory and spills of every kernel instantiation gpuconv compiles, from ptxas.

Compiles each file of ``gpuconv/_cuda/_kernel_table.KERNELS`` with nvcc for one GPU architecture, with
exactly the listed instantiations (their addresses taken, which makes nvcc emit them), and tabulates
ptxas's ``--resource-usage`` report, demangled with c++filt. Needs nvcc (no GPU).

    python bench/resource_report.py [--arch sm_90] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from gpuconv._cuda import _kernel_table, _loader  # noqa: E402  (_kernel_table and _loader need no CuPy)

_ENTRY = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")


def _translation_unit(source_file: str) -> str:
    takes = "\n".join(f"void* gpuconv_instance_{i} = (void*)&{name};"
                      for i, name in enumerate(_kernel_table.KERNELS[source_file]))
    return _loader.source(source_file) + "\n// every instantiation the loader compiles\n" + takes + "\n"


def _demangle(names: list) -> dict:
    filt = shutil.which("c++filt")
    if filt is None:
        return {n: n for n in names}
    out = subprocess.run([filt], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return {n: re.sub(r"\(.*\)$", "", d.replace("void ", "", 1)) for n, d in zip(names, out.splitlines())}


def report(source_file: str, arch: str, nvcc: str) -> list:
    """[(kernel, registers, static smem bytes, stack, spill stores, spill loads)] of one file."""
    with tempfile.TemporaryDirectory() as tmp:
        cu = os.path.join(tmp, source_file)
        with open(cu, "w") as f:
            f.write(_translation_unit(source_file))
        done = subprocess.run([nvcc, f"-arch={arch}", "-cubin", "-std=c++17", "--resource-usage",
                               *_kernel_table.COMPILE_OPTIONS[1:], "-o", os.path.join(tmp, "k.cubin"), cu],
                              capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nvcc failed on {source_file}:\n{done.stderr}")
    rows, current = [], None
    for line in done.stderr.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = {"mangled": m.group(1)}
            rows.append(current)
            continue
        if current is None:
            continue
        if (m := _SPILL.search(line)):
            current.update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
        if (m := _USED.search(line)):
            current["regs"] = int(m.group(1))
            s = _SMEM.search(line)
            current["smem"] = int(s.group(1)) if s else 0
    names = _demangle([r["mangled"] for r in rows])
    return sorted((names[r["mangled"]], r.get("regs", 0), r.get("smem", 0), r.get("stack", 0), r.get("spill_st", 0),
                   r.get("spill_ld", 0)) for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--out", default=None, help="write the Markdown table here (default: print it)")
    args = ap.parse_args()
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    lines = [f"# Kernel resources, {args.arch} ({version})", "",
             f"`python bench/resource_report.py --arch {args.arch}`: ptxas `--resource-usage` of every instantiation "
             "in `gpuconv/_cuda/_kernel_table.py`. Static shared memory only (dynamic shared memory is set at "
             "launch). Spills are local-memory stores / loads in bytes.", "",
             "| file | kernel | registers | static smem B | stack B | spill st / ld B |", "|---|---|---:|---:|---:|---|"]
    spilled = 0
    for source_file in _kernel_table.KERNELS:
        for name, regs, smem, stack, st, ld in report(source_file, args.arch, nvcc):
            spilled += (st + ld) > 0
            lines.append(f"| {source_file} | `{name}` | {regs} | {smem} | {stack} | {st} / {ld} |")
    lines += ["", f"{spilled} instantiation(s) with spills."]
    text = "\n".join(lines) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
