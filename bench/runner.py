"""Measures one (layer, pass): checks gpuconv and PyTorch against a float64 reference, times both, and
returns the result rows (see report.py for the fields). Shared by the CPU and GPU scripts, which differ
only in the timer and the arrays they pass in."""

from __future__ import annotations

import os
import statistics
import traceback
from contextlib import contextmanager

import checks
import interop

ALGO_ENV = "GPUCONV_CONV_ALGO"


def refresh_cuda_config() -> None:
    """Makes the CUDA path re-read its GPUCONV_* variables (it keeps one snapshot: gpuconv/_cuda/_config.py)."""
    try:
        from gpuconv._cuda import _config
    except ImportError:  # an older gpuconv, which read them at every call
        return
    _config.refresh()


@contextmanager
def forced_algo(algo: str):
    """Sets GPUCONV_CONV_ALGO for a forced algorithm, clears it for 'auto' (gpuconv's own choice)."""
    old = os.environ.get(ALGO_ENV)
    if algo == "auto":
        os.environ.pop(ALGO_ENV, None)
    else:
        os.environ[ALGO_ENV] = algo
    refresh_cuda_config()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ALGO_ENV, None)
        else:
            os.environ[ALGO_ENV] = old
        refresh_cuda_config()


def base_row(case, suite: str, dtype_name: str) -> dict:
    layer = case.layer
    return {"suite": suite, "layer": layer.name, "network": layer.network, "title": layer.title,
            "shape": layer.shape_str(), "N": layer.N, "kind": layer.kind, "dtype": dtype_name,
            "pass": case.pass_name, "kernel_pass": layer.kernel_pass(case.pass_name) if layer.is_conv else None,
            "work": case.work}


class TorchBaseline:
    """PyTorch's side of one (layer, pass): the float64 reference, PyTorch's own error against it, and (when
    time_fn is given) its times, measured once and shared by every gpuconv algorithm."""

    def __init__(self, case, sets_t, time_fn=None):
        self.case = case
        self.sets = sets_t
        self.x = sets_t[0].get("x")
        self.ref = case.torch(checks.to_float64(sets_t[0]))
        self.err = checks.result_error(case.torch(sets_t[0]), self.ref, self.x)
        self.times = time_fn(case.torch, sets_t) if time_fn else None


def measure(case, suite, dtype, dtype_name, algo, baseline: TorchBaseline, sets_gc, *, time_fn=None,
            pair_time_fn=None, rate_scale, unit, peak=None) -> dict:
    """One row: gpuconv with `algo` against PyTorch. Give time_fn (gpuconv timed alone, against the
    baseline's times) or pair_time_fn (both timed now, interleaved: see timing.time_cpu_pair). rate_scale
    turns work/second into the unit (1e12 for TFLOP/s, 1e9 for GFLOP/s or GB/s); peak is the device's peak
    in work/second, or None."""
    row = base_row(case, suite, dtype_name)
    row.update({"algo": algo, "unit": unit, "err_torch": baseline.err, "sets": len(sets_gc)})
    try:
        with forced_algo(algo):
            out = interop.to_torch(case.gpuconv(sets_gc[0]))
            row["err_gpuconv"] = checks.result_error(out, baseline.ref, baseline.x)
            row["ok"] = checks.verdict(row["err_gpuconv"], baseline.err, dtype)
            del out
            if pair_time_fn:
                times, torch_times = pair_time_fn(case.gpuconv, sets_gc, case.torch, baseline.sets)
            else:
                times, torch_times = time_fn(case.gpuconv, sets_gc), baseline.times
    except Exception as e:  # a failing or unsupported op is a result, not the end of the run
        row.update({"ok": False, "error": f"{type(e).__name__}: {e}",
                    "traceback": traceback.format_exc(limit=6)})
        if baseline.times:
            _add_torch(row, case, statistics.median(baseline.times), rate_scale, peak)
        return row
    _add_torch(row, case, statistics.median(torch_times), rate_scale, peak)
    row["torch_min_ms"] = min(torch_times)
    ms = statistics.median(times)
    row.update({"gpuconv_ms": ms, "reps": len(times), "ratio": row["torch_ms"] / ms,
                "gpuconv_rate": case.work / (ms * 1e-3) / rate_scale,
                "gpuconv_min_ms": min(times), "gpuconv_max_ms": max(times),
                "ratio_min": row["torch_min_ms"] / min(times)})
    if peak:
        row["gpuconv_pct_peak"] = 100 * case.work / (ms * 1e-3) / peak
    return row


def _add_torch(row, case, torch_ms, rate_scale, peak):
    row.update({"torch_ms": torch_ms, "torch_rate": case.work / (torch_ms * 1e-3) / rate_scale})
    if peak:
        row["torch_pct_peak"] = 100 * case.work / (torch_ms * 1e-3) / peak
