#!/usr/bin/env bash
# Times two versions of gpuconv in one device call, with the same bench_gpu.py arguments: the working tree
# ("new") and an older tree ("old", e.g. `git archive <commit> | tar -x -C .prev`), old first, then new,
# then old again (the repeat shows the run-to-run spread). Prints each run's geometric-mean table, then every
# row side by side (bench/side_by_side.py).
#
#   bash bench/compare_versions.sh OLD_TREE OUTDIR [bench_gpu.py arguments ...]
set -u
old=$1 out=$2
shift 2
export PYTHONUNBUFFERED=1
mkdir -p "$out"
here=$(pwd)
for run in old new old2; do
    tree=$old; [ "$run" = new ] && tree=$here
    (cd "$tree" && python3 bench/bench_gpu.py "$@" --out "$out/$run" > "$out/$run.log" 2>&1)
    echo "== $run ($tree, exit $?)"
    sed -n '/^| suite/,/^$/p' "$out/$run/results.md" 2>/dev/null | head -n 20
done
python3 "$here/bench/side_by_side.py" "$out" | tee "$out/side_by_side.md"
