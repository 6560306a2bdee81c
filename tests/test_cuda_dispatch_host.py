"""The CUDA path's launches, recorded on the CPU with a fake CuPy, against the committed record.

``tests/cuda_dispatch_trace.py`` runs a table of calls (every algorithm, dtype and environment switch) through
gpuconv's real CUDA-path code, with a stand-in for CuPy that records each kernel launch (name, grid, block,
every argument) and each cuBLAS product instead of running them. This test runs it in a fresh process and
compares with tests/data/cuda_dispatch_trace.json: a change to the launchers that should not change what the
GPU is asked to do (caching, fewer Python steps) must leave the record as it was.

A change that means to alter the launches (a new auto rule, a new default kernel) rewrites the file with
``python tests/cuda_dispatch_trace.py --write``; the diff of its kernel lists then shows what changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "cuda_dispatch_trace.py"
GOLDEN = HERE / "data" / "cuda_dispatch_trace.json"


def test_cuda_launches_match_the_committed_record():
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    fresh = json.loads(run.stdout)
    committed = json.loads(GOLDEN.read_text())
    assert sorted(fresh) == sorted(committed), (
        f"the call table changed: new {sorted(set(fresh) - set(committed))[:10]}, "
        f"gone {sorted(set(committed) - set(fresh))[:10]}; rewrite with python tests/cuda_dispatch_trace.py --write")
    changed = [k for k in committed if fresh[k] != committed[k]]
    details = "\n".join(f"{k}:\n  committed {committed[k]}\n  now       {fresh[k]}" for k in changed[:8])
    assert not changed, (
        f"{len(changed)} of {len(committed)} calls launch differently than recorded (same kernel names with a "
        f"different digest: a grid, block or argument changed). If that was meant, rewrite the record with "
        f"python tests/cuda_dispatch_trace.py --write.\n{details}")


def test_the_fake_records_launches():
    """The record is not empty where kernels must run: the oracle above could not pass on a silent fake."""
    committed = json.loads(GOLDEN.read_text())
    assert all(entry["kernels"] for entry in committed.values())
    assert committed["auto/conv2d/tiny/float32"]["kernels"] == ["conv2d_fprop_direct<float>"]
