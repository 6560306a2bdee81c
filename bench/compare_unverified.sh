#!/usr/bin/env bash
# Times kernels that GPUCONV_UNVERIFIED turns on (gpuconv/_cuda/experimental/__init__.py) against the default ones,
# in one device call and one tree: off, on, off again (the repeat shows the run-to-run spread). Prints each
# run's geometric means, then every row side by side (bench/side_by_side.py).
#
#   bash bench/compare_unverified.sh FEATURES OUTDIR [bench_gpu.py arguments ...]
#   e.g. bash bench/compare_unverified.sh pool_wide "$OUT/cmp" --layers resnet50_maxpool densenet121_avgpool
set -u
features=$1 out=$2
shift 2
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}."
mkdir -p "$out"
for run in old new old2; do
    if [ "$run" = new ]; then value=$features; else value=; fi
    GPUCONV_UNVERIFIED=$value python3 bench/bench_gpu.py "$@" --note "GPUCONV_UNVERIFIED=$value" \
        --out "$out/$run" > "$out/$run.log" 2>&1
    echo "== $run (GPUCONV_UNVERIFIED=$value, exit $?)"
    sed -n '/^| suite/,/^$/p' "$out/$run/results.md" 2>/dev/null | head -n 20
done
python3 bench/side_by_side.py "$out" --predictions bench/notes/predictions.json | tee "$out/side_by_side.md"
