#!/usr/bin/env bash
# One device call that does the GPU checks and the benchmark together (about 9-10 minutes):
#   1. run_checks.sh (versions, self-check, workload, sanitizers, pytest with PYTEST_ARGS, default
#      "tests -n 12"), cut at CHECKS_DEADLINE seconds (default 270);
#   2. bench_gpu.py for float32 then float16 (BENCH_ARGS; each stops starting layers at BENCH_LIMIT s);
#   3. optionally, bench/compare_versions.sh against an older tree in OLD_TREE (CMP_ARGS: its bench args).
# Writes at most 7 files to OUTDIR (the device tool returns 8): run_checks.sh's 5, bench.tgz, cmp.tgz.
#
#   bash bench/gpu_checks/full_run.sh OUTDIR
set -u
out=$1
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}." PYTHONUNBUFFERED=1
PYTEST_ARGS=${PYTEST_ARGS:-tests -n 12} GPU_CHECKS_DEADLINE=${CHECKS_DEADLINE:-270} \
    PYTEST_TIMEOUT=${PYTEST_TIMEOUT:-250} bash bench/gpu_checks/run_checks.sh "$out"
work=$(mktemp -d)
mkdir -p "$work/bench"
for dtype in float32 float16; do
    # shellcheck disable=SC2086  # BENCH_ARGS is a word list on purpose
    python3 bench/bench_gpu.py --dtypes "$dtype" --time-limit "${BENCH_LIMIT:-150}" ${BENCH_ARGS:-} \
        --out "$work/bench/$dtype" > "$work/bench/$dtype.log" 2>&1 || echo "bench $dtype: exit $?"
    sed -n '/^| suite/,/^$/p' "$work/bench/$dtype/results.md" | head -n 14
    tar -czf "$out/bench.tgz" -C "$work" bench
done
if [ -n "${OLD_TREE:-}" ]; then
    mkdir -p "$work/cmp"
    # shellcheck disable=SC2086  # CMP_ARGS is a word list on purpose
    bash bench/compare_versions.sh "$OLD_TREE" "$work/cmp" ${CMP_ARGS:-} > "$work/cmp/summary.txt" 2>&1 || true
    cat "$work/cmp/summary.txt"
    tar -czf "$out/cmp.tgz" -C "$work" cmp
fi
ls "$out"
