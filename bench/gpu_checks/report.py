"""Summaries for run_checks.sh: a compute-sanitizer log, and a pytest JUnit XML file.

    python bench/gpu_checks/report.py sanitizer LOG     one verdict line plus the distinct reports
    python bench/gpu_checks/report.py junit XML         counts per backend (numpy, cupy-direct, ...)

Sanitizer verdict. Each report block of the log (a line '========= <message>' and its indented
'=========     ...' lines) is attributed to gpuconv when a kernel of ours is named in it (OWN_KERNEL
below), else to 'other' (cuBLAS, CUB's sort, CuPy's own kernels, CUDA API errors). The verdict is
    CLEAN        the sanitizer's summary says 0 errors and the workload printed RESULT: PASS;
    OWN-CLEAN    no report names a gpuconv kernel, the workload passed, but there are other reports (read them);
    DIRTY        a report names a gpuconv kernel;
    NO-RESULT    the workload did not finish (no RESULT line: crash, timeout) or failed its own checks.
Exit status 0 for CLEAN and OWN-CLEAN, 1 otherwise.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict

OWN_KERNEL = re.compile(r"conv2d_\w+|im2col|col2im|pad2d\w*|max_pool2d_\w+|avg_pool2d_\w+")
PREFIX = "========= "
SUMMARY = re.compile(r"(ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY): (.*)")


def sanitizer(path: str) -> int:
    text = open(path, errors="replace").read()
    lines = text.splitlines()
    blocks, current = [], None
    summaries = []
    for line in lines:
        if not line.startswith("========="):
            continue
        body = line[len("========="):]
        m = SUMMARY.search(body)
        if m:
            summaries.append(f"{m.group(1)}: {m.group(2)}")
            current = None
            continue
        if body.startswith(" ") and not body.startswith("  "):  # a new report's head line
            head = body.strip()
            if head.startswith("COMPUTE-SANITIZER") or not head:
                current = None
                continue
            current = [head]
            blocks.append(current)
        elif current is not None:
            current.append(body.strip())

    kinds = Counter()
    own = defaultdict(list)
    other = defaultdict(list)
    for block in blocks:
        where = next((ln for ln in block[1:] if ln.startswith("at ")), block[0])
        names = OWN_KERNEL.findall(block[0] + " " + " ".join(ln for ln in block[1:] if ln.startswith(("at ", "and "))))
        key = (re.sub(r"0x[0-9a-f]+", "0x..", block[0]), where[:160])
        (own if names else other)[key].append(block)
        kinds["gpuconv" if names else "other"] += 1

    result_line = next((ln for ln in reversed(lines) if ln.startswith("RESULT: ")), None)
    workload_ok = result_line == "RESULT: PASS"
    errors_zero = any(re.match(r"ERROR SUMMARY: 0 errors", s) for s in summaries) and not blocks
    if result_line is None or not workload_ok:
        verdict = "NO-RESULT" if result_line is None else "WORKLOAD-FAIL"
    elif own:
        verdict = "DIRTY"
    elif errors_zero:
        verdict = "CLEAN"
    else:
        verdict = "OWN-CLEAN"
    if own and verdict in ("NO-RESULT", "WORKLOAD-FAIL"):
        verdict += "+DIRTY"
    print(f"{verdict}: {kinds['gpuconv']} reports in gpuconv kernels, {kinds['other']} elsewhere; "
          f"{'; '.join(summaries) or 'no sanitizer summary line'}; workload {result_line or 'did not finish'}")
    for title, groups in (("gpuconv", own), ("other", other)):
        for (head, where), members in list(groups.items())[:20]:
            print(f"  [{title}] x{len(members)}: {head} | {where}")
    return 0 if verdict in ("CLEAN", "OWN-CLEAN") else 1


def _backend_of(name: str) -> str:
    m = re.search(r"\[(.*)\]$", name)
    if not m:
        return "(no parameters)"
    params = m.group(1)
    for b in ("cupy-direct", "cupy-im2col", "cupy-implicit_gemm", "cupy-depthwise", "numpy", "cupy"):
        if re.search(rf"(^|-){re.escape(b)}($|-)", params):
            return b
    return "(other parameters)"


def junit(path: str) -> int:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = defaultdict(Counter)
    failed = []
    skip_reasons = Counter()
    for suite in suites:
        for case in suite.iter("testcase"):
            backend = _backend_of(case.get("name", ""))
            if case.find("failure") is not None or case.find("error") is not None:
                outcome = "failed"
                failed.append(f"{case.get('classname')}::{case.get('name')}")
            elif case.find("skipped") is not None:
                outcome = "skipped"
                msg = case.find("skipped").get("message", "")
                skip_reasons[f"{backend}: {msg[:100]}"] += 1
            else:
                outcome = "passed"
            counts[backend][outcome] += 1
    total = Counter()
    for backend in sorted(counts):
        c = counts[backend]
        total.update(c)
        print(f"{backend:<22} {c['passed']:>6} passed {c['failed']:>5} failed {c['skipped']:>6} skipped")
    print(f"{'total':<22} {total['passed']:>6} passed {total['failed']:>5} failed {total['skipped']:>6} skipped")
    gpu_passed = sum(c["passed"] for b, c in counts.items() if b.startswith("cupy"))
    if gpu_passed == 0:
        print("WARNING: no CuPy-parametrised test passed: the GPU runs did not happen (see skip reasons)")
    if skip_reasons:
        print("skip reasons (most common):")
        for reason, n in skip_reasons.most_common(15):
            print(f"  {n:>6}  {reason}")
    for f in failed[:50]:
        print(f"FAILED {f}")
    return 0 if not failed and gpu_passed > 0 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("sanitizer", "junit"):
        sys.exit(__doc__)
    sys.exit({"sanitizer": sanitizer, "junit": junit}[sys.argv[1]](sys.argv[2]))
