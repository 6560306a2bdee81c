"""The CUDA path's configuration snapshot (gpuconv/_cuda/_config.py): parsing of the GPUCONV_* variables,
GPUCONV_UNVERIFIED's feature names, refresh after a change, tunables overridden as configuration."""

from __future__ import annotations

import pytest

from gpuconv._cuda import _config
from gpuconv._cuda.experimental import FEATURES


def _config_of(**env):
    return _config.from_environment({k: v for k, v in env.items()})


@pytest.mark.parametrize("value", ["", "0"])
def test_unset_or_zero_turns_nothing_on(value):
    config = _config_of(GPUCONV_UNVERIFIED=value)
    assert config.unverified == frozenset()
    assert not any(config.allows(f) for f in FEATURES) and config.allows(None)


@pytest.mark.parametrize("value", ["1", "all"])
def test_all_turns_every_feature_on(value):
    assert _config_of(GPUCONV_UNVERIFIED=value).unverified == frozenset(FEATURES)


def test_named_features_only():
    first, second, *rest = sorted(FEATURES)
    config = _config_of(GPUCONV_UNVERIFIED=f" {first}, {second} ,")
    assert config.allows(first) and config.allows(second)
    assert not any(config.allows(f) for f in rest)


def test_unknown_names_raise_naming_them():
    with pytest.raises(ValueError, match="pool_wdie"):
        _config_of(GPUCONV_UNVERIFIED="pool_wide,pool_wdie")
    with pytest.raises(ValueError, match="GPUCONV_CONV_ALGO.*winograd"):
        _config_of(GPUCONV_CONV_ALGO="winograd")


def test_switches():
    config = _config_of(GPUCONV_CONV_ALGO=" Direct ", GPUCONV_ALLOW_TF32="1", GPUCONV_POISON="1",
                        GPUCONV_IGEMM_REFERENCE="0", GPUCONV_CHECK_INDICES="1")
    assert (config.conv_algo, config.allow_tf32, config.poison, config.igemm_reference, config.check_indices) == (
        "direct", True, True, False, True)
    assert _config_of() == _config.Config()


def test_the_snapshot_follows_monkeypatch_and_refresh(monkeypatch):
    monkeypatch.setenv("GPUCONV_CONV_ALGO", "im2col")  # the suite's monkeypatch refreshes (conftest.py)
    assert _config.current().conv_algo == "im2col"
    import os

    os.environ["GPUCONV_CONV_ALGO"] = "direct"  # a bare assignment: the snapshot keeps its value until refresh
    try:
        assert _config.current().conv_algo == "im2col"
        assert _config.refresh().conv_algo == "direct"
    finally:
        monkeypatch.delenv("GPUCONV_CONV_ALGO")
    assert _config.current().conv_algo == "auto"


def test_override_sets_tunables_for_its_body_only():
    before = _config.current()
    with _config.override(workspace_bytes=123, sm_count=7) as config:
        assert (config.workspace_bytes, config.sm_count) is not None
        assert (_config.current().workspace_bytes, _config.current().sm_count) == (123, 7)
    assert _config.current() == before


def test_every_feature_has_an_experimental_variant_and_experimental_kernels_live_apart():
    from gpuconv._cuda import _registry

    assert {v.feature for v in _registry.VARIANTS if not v.verified} == set(FEATURES)
    for v in _registry.VARIANTS:
        own = [s for s in v.kernels if s.startswith("experimental/")]
        if v.verified:
            assert not own, (v.name, own)  # a verified variant never launches an experimental kernel
    verified_sources = {s for v in _registry.VARIANTS if v.verified for s in v.kernels}
    assert not any(s.startswith("experimental/") for s in verified_sources)
    assert all(s.startswith("experimental/") or s in verified_sources for s in _registry.KERNELS)
