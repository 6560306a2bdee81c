"""The one-run GPU check (issue 13): every experimental variant, and every verified kernel changed since its
last GPU run, checked and timed in one device command, with a verdict per variant under the promotion rule.

Expected duration on an H100, from the committed step times (bench/results/gpu-h100-2026-11-2*/checks/,
bench/gpu_checks/README.md): versions 15-17 s; the workload, every check twice, 35-72 s; then, side by side,
compute-sanitizer memcheck (8-38 s) and racecheck (53-97 s) on the workload's --small set, and pytest's GPU
tables with every experimental variant on (-n 8: the whole suite took 175 s at -n 6, these tables are most
of it, about 150 s); then the timings, off / on / off with the passing variants, auto algorithm, batch suite,
float32 and float16 against cuDNN (bench_gpu.py took 70-110 s per dtype with all five algorithms: about
25 s per dtype with one, 3 x 2 x 25 = 150 s). In all about 17 + 72 + 150 + 150 = 390 s (6.5 minutes); the
nonfinite_weights checks (issue 14) add 119 small workload checks (20 in --small, under the sanitizers) and
about 370 small GPU-table rows, an estimated 15-25 s. The deadline below (DEADLINE_S, 470 s) stops starting
steps so that the command ends within 8 minutes.

    python bench/gpu_checks/one_run.py OUTDIR              # on the GPU machine (PYTHONPATH=.)
    python bench/gpu_checks/one_run.py OUTDIR --dry-run    # on a CPU: the plumbing, with stand-ins
    python bench/gpu_checks/one_run.py OUTDIR --dry-run --fail pool_wide   # ... one variant made to fail

The steps, and what a variant needs to pass (DESIGN.md, "Verified and experimental"):
    workload    every check of the variant (bench/gpu_checks/workload.py, FEATURE_CHECKS below) against the
                NumPy path, NaN-poisoned outputs, each call twice with the same bits; at least one check ran
    pytest      no failing GPU-table test the variant touches (PYTEST_FEATURE_TESTS: the tables compare with
                the NumPy path and with PyTorch's CUDA ops)
    sanitizers  no memcheck / racecheck report naming one of the variant's kernels (names from the registry)
    timing      only variants that passed the above are switched on: its rows (bench/notes/predictions.json)
                faster than the off runs beyond their spread: geometric mean new/old < 1 - largest spread
A variant that passes everything is PROMOTE (move its files out of experimental/, drop its feature= in
gpuconv/_cuda/_registry.py); one that fails a check is FAIL (fix or delete); correct but not faster is SLOWER
(delete, or keep opt-in with the numbers in bench/notes/history.md). A repair (REPAIRS: a feature that fixes a
wrong answer) is PROMOTE when correct and no more than its budget slower, else COSTLY. The verified kernels changed since their
last GPU run (CHANGED_VERIFIED) get the correctness steps only: OK or REGRESSION.

Outputs (7 files, the device tool returns 8): summary.md (the verdicts, the side-by-side timing table, step
times), versions.txt, workload.txt, pytest.txt, sanitizers.txt, timing.md, logs.tgz (every raw log and the
runs' results.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

DEADLINE_S = 470
# workload check-name patterns of each experimental feature (the check names say which variant they run)
FEATURE_CHECKS = {
    "igemm_nhwc": r"implicit_gemm nhwc ",
    "nhwc_wgrad": r"implicit_gemm nhwc_wgrad ",
    "nhwc_dgrad": r"implicit_gemm nhwc_dgrad ",
    "pool_wide": r"pool2d\+backward wide ",
    "depthwise_v2": r"depthwise_v2 ",
    "gemm_1x1": r"gemm_1x1 ",
    "bias_grad": r"grad_bias bias_grad ",
    "nonfinite_weights": r"nonfinite_weights ",
}
# Features that fix a wrong answer rather than speed one up (issue 14's repair of the dgrads that multiply padding
# zeros by the weight): promoted when correct and their rows' geometric mean new/old stays within 1 + this
# budget (or the old runs' spread, if larger); costlier is COSTLY (make it cheaper, or keep it opt-in).
REPAIRS = {"nonfinite_weights": 0.05}
# Features with kernels but no launcher yet, so nothing on a GPU can run them through gpuconv: bf16_native
# (bfloat16 runs through float32 until its kernels are wired into the launchers; the host tests cover them).
# Wiring them comes before a GPU check can judge them.
NOT_LAUNCHED = {"bf16_native"}
# verified kernels changed since their last GPU run (issue 13), by workload check-name pattern
CHANGED_VERIFIED = {
    "depthwise v1 (wgrad NaN fix)": r"algo=depthwise",
    "im2col float16 2-D GEMMs": r"algo=im2col.*\[float16\]",
    "max_pool2d backward (no host index check)": r"max_pool2d\+backward (?!wide)",
    "the registry's launches (every default kernel)": r"algo=|implicit_gemm (f16-mma|simt|tf32|reference)",
}
# pytest node ids a feature touches: a failing one counts against it
PYTEST_FEATURE_TESTS = {
    "igemm_nhwc": r"cupy-implicit_gemm.*float16|test_gpu_igemm_nhwc\.py",
    "nhwc_wgrad": r"cupy-implicit_gemm.*float16|test_gpu_igemm_nhwc_wgrad\.py",
    "nhwc_dgrad": r"cupy-implicit_gemm.*float16|test_gpu_igemm_nhwc_wgrad\.py",
    "pool_wide": r"pool2d.*cupy",
    "depthwise_v2": r"cupy-depthwise|depthwise.*cupy",
    "gemm_1x1": r"cupy-im2col|test_gpu_gemm_1x1\.py",
    "bias_grad": r"(conv2d|conv_transpose2d)_backward.*cupy|test_gpu_bias_grad\.py",
    "nonfinite_weights": r"test_reliability_nonfinite\.py|cupy-(implicit_gemm|depthwise)",
}
PYTEST_FILES = ("tests/test_conv2d.py", "tests/test_conv_transpose2d.py", "tests/test_max_pool2d.py",
                "tests/test_avg_pool2d.py", "tests/test_gpu_bias_grad.py", "tests/test_gpu_gemm_1x1.py",
                "tests/test_gpu_igemm_nhwc.py", "tests/test_gpu_igemm_nhwc_wgrad.py", "tests/test_reliability_nonfinite.py")
# grad_bias runs in every conv backward: rows no other experimental variant touches (the stem's C = 3 takes no
# channels-last kernel; the NHWC variants are float16 only). A row two switched-on variants touch counts for both.
BIAS_GRAD_ROWS = (("resnet50_conv1", "float32"), ("resnet50_conv1", "float16"), ("resnet50_l1_3x3", "float32"))
RUNS = ("old", "new", "old2")


class Run:
    def __init__(self, out: Path, dry: bool):
        self.out, self.dry = out, dry
        self.logs = out / "_logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.steps: list = []  # (name, seconds, status)

    def left(self) -> float:
        return DEADLINE_S - (time.monotonic() - self.t0)

    def sh(self, name: str, argv: list, timeout: float, env: dict | None = None, background=False):
        """Runs argv with its output in _logs/<name>.log; returns (returncode, text) or the Popen."""
        log = open(self.logs / f"{name}.log", "w")
        full_env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "PYTHONUNBUFFERED": "1", **(env or {})}
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=full_env)
        if background:
            return proc, log, time.monotonic(), timeout, name
        return self.wait((proc, log, time.monotonic(), timeout, name))

    def wait(self, job):
        proc, log, start, timeout, name = job
        try:
            rc = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = 124
        log.close()
        seconds = time.monotonic() - start
        self.steps.append((name, seconds, rc))
        return rc, (self.logs / f"{name}.log").read_text(errors="replace")


# ------------------------------------------------------------------------------------------- verdicts


def workload_results(text: str) -> dict:
    """check name -> PASS / FAIL / SKIP, from the workload's lines."""
    found = {}
    for line in text.splitlines():
        m = re.match(r"(PASS|FAIL|SKIP)\s+(.*?\])", line)
        if m:
            found[m.group(2)] = m.group(1)
    return found


def checks_of(results: dict, pattern: str) -> tuple:
    """(ran, failed) counts of the checks whose names match pattern."""
    names = [n for n in results if re.search(pattern, n) and results[n] != "SKIP"]
    return len(names), sum(results[n] == "FAIL" for n in names)


def kernel_features() -> dict:
    """kernel base name -> the experimental features whose variants declare it (from the registry)."""
    from gpuconv._cuda import _registry

    owners: dict = {}
    for v in _registry.VARIANTS:
        for names in v.kernels.values():
            for n in names:
                owners.setdefault(n.split("<")[0], set()).add(v.feature)
    return owners


def sanitizer_blame(text: str, owners: dict) -> set:
    """Features named by a sanitizer report (None in the set: a verified kernel was named)."""
    blamed = set()
    for line in text.splitlines():
        if line.startswith("=========") and not re.search(r"SUMMARY", line):
            for name in re.findall(r"\b(\w+)<", line) + re.findall(r"\b(conv2d_\w+|\w+_pool2d_\w+)\b", line):
                blamed |= owners.get(name, set())
    return blamed


def timing_rows(predictions: dict, passing: list) -> dict:
    """feature -> [(layer, dtype)] it should speed up (predictions.json rows; bias_grad: any conv layer)."""
    rows = {f: [] for f in passing}
    for r in predictions["rows"]:
        if r["feature"] in rows and (r["layer"], r["dtype"]) not in rows[r["feature"]]:
            rows[r["feature"]].append((r["layer"], r["dtype"]))
    if "bias_grad" in rows:
        rows["bias_grad"] = list(BIAS_GRAD_ROWS)
    return rows


def timing_verdict(runs: dict, rows: list) -> tuple:
    """(geometric mean new/old, largest old spread, rows measured) over a feature's rows: every pass of each
    (layer, dtype), batch suite, algo auto."""
    ratios, spreads = [], []
    for key, new in runs.get("new", {}).items():
        suite, layer, dtype, _pass, algo = key
        if (suite, algo) != ("batch", "auto") or (layer, dtype) not in rows:
            continue
        old = [runs[r][key] for r in runs if r != "new" and key in runs[r]]
        if not old:
            continue
        mean = sum(old) / len(old)
        ratios.append(new / mean)
        spreads.append((max(old) - min(old)) / mean)
    if not ratios:
        return None, None, 0
    return math.exp(sum(map(math.log, ratios)) / len(ratios)), max(spreads), len(ratios)


# ---------------------------------------------------------------------------------------------- steps


def step_versions(run: Run) -> None:
    rc, text = run.sh("versions", [sys.executable, "bench/gpu_checks/versions.py"], 30)
    (run.out / "versions.txt").write_text(text)


def step_workload(run: Run, fail: set) -> dict:
    argv = [sys.executable, "bench/gpu_checks/workload.py"] + (["--numpy"] if run.dry else [])
    rc, text = run.sh("workload", argv, min(150, run.left()))
    results = workload_results(text)
    for feature in fail:  # --fail (dry run): the variant's checks count as failed
        for name in results:
            if re.search(FEATURE_CHECKS[feature], name):
                results[name] = "FAIL"
    (run.out / "workload.txt").write_text(text[-20000:])
    return results


def start_sanitizers_and_pytest(run: Run) -> list:
    """memcheck then racecheck (one background chain) and pytest, side by side."""
    jobs = []
    if run.dry:
        chain = f"echo 'dry run: compute-sanitizer not run' && {sys.executable} bench/gpu_checks/workload.py --numpy --small"
    else:
        chain = " ; ".join(
            f"echo '### {tool}' && compute-sanitizer --tool {tool} --print-limit 50 {sys.executable} "
            f"bench/gpu_checks/workload.py --small --no-pool" for tool in ("memcheck", "racecheck"))
    jobs.append(run.sh("sanitizers", ["bash", "-c", chain], min(200, run.left()), background=True))
    pytest = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *PYTEST_FILES, "-k", "cupy or gpu"]
    pytest += ["--collect-only"] if run.dry else ["-n", "8"]
    jobs.append(run.sh("pytest", pytest, min(220, run.left()), env={"GPUCONV_UNVERIFIED": "all"}, background=True))
    return jobs


def step_timing(run: Run, passing: list, predictions: dict) -> dict:
    """off / on / off with the passing features; returns {run: {key: ms}}."""
    from side_by_side import load

    rows = timing_rows(predictions, passing)
    layers = sorted({layer for rs in rows.values() for layer, _ in rs})
    runs = {}
    if not layers:
        return runs
    per_run = max(20.0, min(60.0, (run.left() - 10) / 3))
    for name in RUNS:
        out = run.logs / name
        value = ",".join(passing) if name == "new" else ""
        if run.dry:  # stand-in results: 'before' of each prediction for the off runs, 'predicted' for on
            out.mkdir(exist_ok=True)
            wobble = {"old": 1.0, "old2": 1.01}.get(name, 1.0)
            stand_ins = predictions["rows"] + [dict(layer=layer, dtype=d, feature="bias_grad", before=1.0, predicted=0.95,
                                                    **{"pass": "bwd"}) for layer, d in BIAS_GRAD_ROWS]
            rows_json = [dict(suite="batch", layer=r["layer"], dtype=r["dtype"], **{"pass": r["pass"]}, algo="auto",
                              ok=True, gpuconv_ms=(r["predicted"] if name == "new" and r["feature"] in passing
                                                   else r["before"] * wobble))
                         for r in stand_ins if r["layer"] in layers]
            (out / "results.json").write_text(json.dumps({"rows": rows_json}))
            run.steps.append((f"bench {name} (dry)", 0.0, 0))
        else:
            run.sh(f"bench_{name}", [sys.executable, "bench/bench_gpu.py", "--layers", *layers, "--dtypes", "float32",
                                     "float16", "--algos", "auto", "--suites", "batch", "--time-limit",
                                     str(int(per_run)), "--note", f"GPUCONV_UNVERIFIED={value}", "--out", str(out)],
                   per_run + 30, env={"GPUCONV_UNVERIFIED": value})
        path = out / "results.json"
        if path.is_file():
            runs[name] = load(str(path))
    return runs


# ---------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="no GPU: stand-ins for every step (the plumbing)")
    ap.add_argument("--fail", nargs="*", default=[], choices=sorted(FEATURE_CHECKS),
                    help="dry run: treat these variants' checks as failed (shows they leave the timing run)")
    args = ap.parse_args(argv)
    from gpuconv._cuda.experimental import FEATURES
    from side_by_side import table

    launched = set(FEATURES) - NOT_LAUNCHED
    assert set(FEATURE_CHECKS) == launched == set(PYTEST_FEATURE_TESTS), "a feature lacks its checks here"
    run = Run(args.out, args.dry_run)
    step_versions(run)
    results = step_workload(run, set(args.fail))
    jobs = start_sanitizers_and_pytest(run)
    (_, sanitizers), (_, pytest_text) = run.wait(jobs[0]), run.wait(jobs[1])
    (run.out / "sanitizers.txt").write_text(sanitizers[-20000:])
    (run.out / "pytest.txt").write_text(pytest_text[-20000:])
    failed_tests = re.findall(r"^FAILED (\S+)", pytest_text, re.MULTILINE)
    blamed = sanitizer_blame(sanitizers, kernel_features())

    verdicts, passing = {}, []
    for feature in sorted(launched):
        ran, failed = checks_of(results, FEATURE_CHECKS[feature])
        tests = [t for t in failed_tests if re.search(PYTEST_FEATURE_TESTS[feature], t)]
        problems = []
        if ran == 0:
            problems.append("no workload check ran")
        if failed:
            problems.append(f"{failed}/{ran} workload checks failed")
        if tests:
            problems.append(f"{len(tests)} pytest failures")
        if feature in blamed:
            problems.append("sanitizer reports")
        verdicts[feature] = [ran, failed, len(tests), feature not in blamed, problems]
        if not problems:
            passing.append(feature)
    predictions = json.loads((ROOT / "bench" / "notes" / "predictions.json").read_text())
    runs = step_timing(run, passing, predictions) if run.left() > 60 else {}
    rows = timing_rows(predictions, passing)

    lines = [f"# One-run GPU check ({'DRY RUN on the CPU stand-ins' if run.dry else 'GPU'}), "
             f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}Z", "",
             "| variant | workload checks (failed) | pytest failures | sanitizers | timed rows | new/old | "
             "old spread | verdict |", "|---|---:|---:|---|---:|---:|---:|---|"]
    for feature, (ran, failed, tests, clean, problems) in verdicts.items():
        ratio, spread, n = timing_verdict(runs, rows.get(feature, []))
        if problems:
            verdict = "FAIL: " + "; ".join(problems)
        elif ratio is None:
            verdict = "CORRECT, NOT TIMED"
        elif feature in REPAIRS:
            budget = max(REPAIRS[feature], spread)
            verdict = f"PROMOTE (a repair, within {budget:.0%})" if ratio <= 1 + budget else f"COSTLY (over {budget:.0%})"
        elif ratio < 1 - spread:
            verdict = "PROMOTE"
        else:
            verdict = "SLOWER (or within noise)"
        lines.append(f"| {feature} | {ran} ({failed}) | {tests} | {'clean' if clean else 'REPORTS'} | {n} | "
                     f"{'-' if ratio is None else f'{ratio:.3f}'} | {'-' if spread is None else f'{spread:.1%}'} | "
                     f"{verdict} |")
    for feature in sorted(NOT_LAUNCHED):
        lines.append(f"| {feature} | - | - | - | - | - | - | NOT CHECKED: no launcher runs its kernels yet |")
    lines += ["", "| verified kernel changed since its last GPU run | workload checks (failed) | verdict |",
              "|---|---:|---|"]
    for what, pattern in CHANGED_VERIFIED.items():
        ran, failed = checks_of(results, pattern)
        ok = ran and not failed and None not in blamed
        lines.append(f"| {what} | {ran} ({failed}) | {'OK' if ok else 'REGRESSION (or not run)'} |")
    side = table(runs, {(r["layer"], r["dtype"], r["pass"]): r["predicted"] for r in predictions["rows"]}) \
        if len(runs) == len(RUNS) else ["(no timing: nothing passed, or no time left)"]
    (run.out / "timing.md").write_text("\n".join(side) + "\n")
    lines += ["", f"Timing run with GPUCONV_UNVERIFIED={','.join(passing) or '(none)'}: timing.md", "",
              "| step | seconds | exit |", "|---|---:|---:|"]
    lines += [f"| {name} | {seconds:.0f} | {rc} |" for name, seconds, rc in run.steps]
    lines.append(f"| total | {time.monotonic() - run.t0:.0f} | |")
    (run.out / "summary.md").write_text("\n".join(lines) + "\n")
    with tarfile.open(run.out / "logs.tgz", "w:gz") as tar:
        tar.add(run.logs, arcname="logs")
    subprocess.run(["rm", "-rf", str(run.logs)], check=False)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
