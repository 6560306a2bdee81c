#!/usr/bin/env bash
# Host time per call (bench/host_overhead.py) of two versions of gpuconv in one device call: OLD_TREE (e.g.
# `git archive <commit> | tar -x -C .prev`) and the working tree, taking turns twice (old, new, old, new), each
# with today's host_overhead.py so both are measured alike. Prints the per-op tables side by side.
#
#   bash bench/compare_host_overhead.sh OLD_TREE OUTDIR [host_overhead.py arguments ...]
set -u
old=$1 out=$2
shift 2
here=$(pwd)
mkdir -p "$out"
cp "$here/bench/host_overhead.py" "$old/bench/host_overhead.py"
for run in old1 new1 old2 new2; do
    tree=$old; case $run in new*) tree=$here ;; esac
    (cd "$tree" && python3 bench/host_overhead.py "$@" --out "$out/$run" > "$out/$run.log" 2>&1)
    echo "== $run ($tree, exit $?)"
done
for run in old1 new1 old2 new2; do
    echo "## $run"
    sed -n '/^| op /,/^$/p' "$out/$run/host_overhead.md" 2>/dev/null
done | tee "$out/side_by_side.md"
