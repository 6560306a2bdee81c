"""bench/gpu_checks/one_run.py dry-runs on the CPU stand-ins: its steps, verdicts, the dropping of a failing
variant from the timing run and its outputs are proven before a GPU sees it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_checks" / "one_run.py"


def test_the_one_run_check_dry_runs_and_drops_a_failing_variant(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "out"), "--dry-run", "--fail", "pool_wide"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["logs.tgz", "pytest.txt", "sanitizers.txt", "summary.md", "timing.md", "versions.txt",
                     "workload.txt"]  # within the device tool's 8 files
    summary = (tmp_path / "out" / "summary.md").read_text()
    from gpuconv._cuda.experimental import FEATURES

    for feature in FEATURES:  # checked, or said to be unchecked (a feature without a launcher)
        row = r"(\d+ \(\d+\) \||- \| .*NOT CHECKED: no launcher)"
        assert re.search(rf"^\| {feature} \| {row}", summary, re.MULTILINE), feature
    assert re.search(r"^\| bf16_native \| - \|", summary, re.MULTILINE)
    assert re.search(r"^\| pool_wide .*\| FAIL: ", summary, re.MULTILINE)
    timed = re.search(r"GPUCONV_UNVERIFIED=(\S+): timing.md", summary).group(1).split(",")
    assert "pool_wide" not in timed and "depthwise_v2" in timed  # the failing variant is not timed
    assert "| new / old |" in (tmp_path / "out" / "timing.md").read_text()


def test_the_estimate_at_the_top_fits_the_eight_minutes():
    text = SCRIPT.read_text()
    estimate = int(re.search(r"In all about [\d + ]+= (\d+) s", text).group(1))
    deadline = int(re.search(r"^DEADLINE_S = (\d+)", text, re.MULTILINE).group(1))
    assert estimate <= deadline <= 480
