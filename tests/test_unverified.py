"""GPUCONV_UNVERIFIED: which unverified kernels the CUDA path may use (gpuconv/_cuda/_unverified.py).

The module needs no CuPy; it is imported by path so the test runs without one.
"""

import pytest

from host_modules import load_by_path

_unverified = load_by_path("gpuconv_unverified_under_test", "gpuconv/_cuda/_unverified.py")


@pytest.mark.parametrize("value", ["", "0"])
def test_unset_or_zero_turns_nothing_on(monkeypatch, value):
    monkeypatch.setenv(_unverified.ENV, value)
    assert _unverified.enabled_set() == frozenset()
    assert not any(_unverified.enabled(f) for f in _unverified.FEATURES)


@pytest.mark.parametrize("value", ["1", "all"])
def test_all_turns_every_feature_on(monkeypatch, value):
    monkeypatch.setenv(_unverified.ENV, value)
    assert _unverified.enabled_set() == frozenset(_unverified.FEATURES)


def test_named_features_only(monkeypatch):
    first, second, *rest = sorted(_unverified.FEATURES)
    monkeypatch.setenv(_unverified.ENV, f" {first}, {second} ,")
    assert _unverified.enabled(first) and _unverified.enabled(second)
    assert not any(_unverified.enabled(f) for f in rest)


def test_unknown_name_raises_naming_it(monkeypatch):
    monkeypatch.setenv(_unverified.ENV, "pool_wide,pool_wdie")
    with pytest.raises(ValueError, match="pool_wdie"):
        _unverified.enabled("pool_wide")
    with pytest.raises(KeyError, match="nope"):
        _unverified.enabled("nope")
