"""gpuconv._cuda._autotune's choice and cache, without a GPU: CuPy's device id and the event timing are
stood in for, and each candidate 'runs' by recording its name (test_gpu_autotune.py checks the results
on a real device)."""

from __future__ import annotations

import pytest

from gpuconv._cuda import _autotune, _runtime
from support.device import FakeDevice


@pytest.fixture
def tune():
    """_autotune with an empty cache (and emptied again after the test)."""
    _autotune.clear()
    yield _autotune
    _autotune.clear()


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


class Tuner:
    """choose() on a stand-in device whose timer charges COST[name] ms for the candidate last run."""

    def __init__(self, candidates, cost):
        self.candidates, self.runs = candidates, Runs(cost)

    def choose(self, g, dtype, pass_name, switches=()):
        with _runtime.use(FakeDevice(timer=self.runs.elapsed_ms)):
            return _autotune.choose(g, dtype, pass_name, switches, self.candidates, self.runs)


def test_picks_the_fastest_and_caches_it(tune):
    t = Tuner(("direct", "im2col", "implicit_gemm"), {"direct": 9.0, "im2col": 2.0, "implicit_gemm": 1.0})
    assert t.choose("geometry", "float32", "fprop") == "implicit_gemm"
    assert t.runs.names.count("implicit_gemm") == 1 + tune.TIMED_RUNS  # one untimed, then timed
    t.runs.names.clear()
    assert t.choose("geometry", "float32", "fprop") == "implicit_gemm"
    assert t.runs.names == []  # cached: nothing runs again
    assert list(tune.cached().values()) == ["implicit_gemm"]
    tune.clear()
    assert tune.cached() == {}


def test_a_slow_candidate_is_dropped_after_one_timed_run(tune):
    t = Tuner(("im2col", "direct"), {"direct": 50.0, "im2col": 1.0})
    assert t.choose("g", "float16", "wgrad") == "im2col"
    assert t.runs.names.count("direct") == 2  # one untimed, one timed: over twice the best, not repeated


def test_each_problem_and_switch_is_tuned_on_its_own(tune):
    t = Tuner(("direct", "im2col"), {"direct": 1.0, "im2col": 2.0})
    t.choose("g", "float32", "fprop")
    t.choose("g", "float32", "dgrad")
    t.choose("other g", "float32", "fprop")
    t.choose("g", "float32", "fprop", switches=(True,))  # TF32 on changes the implicit-GEMM kernel: anew
    assert len(tune.cached()) == 4


def test_a_single_candidate_is_not_timed(tune):
    t = Tuner(("direct",), {"direct": 1.0})
    assert t.choose("g", "float64", "dgrad") == "direct"
    assert t.runs.names == []
