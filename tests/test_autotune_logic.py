"""gpuconv._cuda._autotune's choice and cache, without a GPU: CuPy's device id and the event timing are
stood in for, and each candidate 'runs' by recording its name (test_gpu_autotune.py checks the results
on a real device)."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from host_modules import ROOT, load_by_path

PACKAGE = "gpuconv_autotune_on_host"


@pytest.fixture
def tune(monkeypatch):
    """(_autotune, _algo) loaded under a stand-in package, with a fake cupy that knows device 0 only, and a
    fake clock: each candidate costs COST[name] ms."""
    algo = load_by_path(f"{PACKAGE}._algo", "gpuconv/_cuda/_algo.py")
    package = types.ModuleType(PACKAGE)
    package.__path__ = []
    package._algo = algo
    monkeypatch.setitem(sys.modules, PACKAGE, package)
    monkeypatch.setitem(sys.modules, f"{PACKAGE}._algo", algo)
    device = types.SimpleNamespace(id=0)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda: device)))
    spec = importlib.util.spec_from_file_location(f"{PACKAGE}._autotune", ROOT / "gpuconv/_cuda/_autotune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, algo


class Runs:
    """run_with(name) for _autotune.choose, and the matching fake timer: it records each run's name and
    returns the cost of the candidate last run."""

    def __init__(self, cost):
        self.cost, self.names = cost, []

    def __call__(self, name):
        self.names.append(name)

    def elapsed_ms(self, run):
        run()
        return self.cost[self.names[-1]]


def _setup(tune, monkeypatch, candidates, cost):
    module, algo = tune
    monkeypatch.setattr(algo, "candidates", lambda g, dtype, p: candidates)
    runs = Runs(cost)
    monkeypatch.setattr(module, "_elapsed_ms", runs.elapsed_ms)
    return module, runs


def test_picks_the_fastest_and_caches_it(tune, monkeypatch):
    module, runs = _setup(tune, monkeypatch, ("direct", "im2col", "implicit_gemm"),
                          {"direct": 9.0, "im2col": 2.0, "implicit_gemm": 1.0})
    assert module.choose("geometry", "float32", "fprop", runs) == "implicit_gemm"
    assert runs.names.count("implicit_gemm") == 1 + module.TIMED_RUNS  # one untimed, then timed
    runs.names.clear()
    assert module.choose("geometry", "float32", "fprop", runs) == "implicit_gemm"
    assert runs.names == []  # cached: nothing runs again
    assert list(module.cached().values()) == ["implicit_gemm"]
    module.clear()
    assert module.cached() == {}


def test_a_slow_candidate_is_dropped_after_one_timed_run(tune, monkeypatch):
    module, runs = _setup(tune, monkeypatch, ("im2col", "direct"), {"direct": 50.0, "im2col": 1.0})
    assert module.choose("g", "float16", "wgrad", runs) == "im2col"
    assert runs.names.count("direct") == 2  # one untimed, one timed: over twice the best, not repeated


def test_each_problem_and_switch_is_tuned_on_its_own(tune, monkeypatch):
    module, runs = _setup(tune, monkeypatch, ("direct", "im2col"), {"direct": 1.0, "im2col": 2.0})
    module.choose("g", "float32", "fprop", runs)
    module.choose("g", "float32", "dgrad", runs)
    module.choose("other g", "float32", "fprop", runs)
    monkeypatch.setenv("GPUCONV_ALLOW_TF32", "1")  # changes the implicit-GEMM kernel: measured anew
    module.choose("g", "float32", "fprop", runs)
    assert len(module.cached()) == 4


def test_a_single_candidate_is_not_timed(tune, monkeypatch):
    module, runs = _setup(tune, monkeypatch, ("direct",), {"direct": 1.0})
    assert module.choose("g", "float64", "dgrad", runs) == "direct"
    assert runs.names == []
