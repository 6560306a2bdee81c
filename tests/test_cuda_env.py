"""gpuconv._cuda._env.get: the CUDA path's fast read of its environment switches follows every change."""

from __future__ import annotations

import os

import pytest

from gpuconv._cuda import _env

NAME = "GPUCONV_TEST_ENV_SWITCH"


@pytest.mark.parametrize("fast", [True, False])
def test_get_follows_setenv_assignment_and_deletion(monkeypatch, fast):
    monkeypatch.setattr(_env, "_FAST", fast and _env._FAST)
    monkeypatch.delenv(NAME, raising=False)
    assert _env.get(NAME) == ""
    monkeypatch.setenv(NAME, "im2col")
    assert _env.get(NAME) == "im2col"
    os.environ[NAME] = "direct"
    assert _env.get(NAME) == "direct"
    os.environ[NAME] = "h\u00e9"  # non-ASCII survives the encoded round trip
    assert _env.get(NAME) == "h\u00e9"
    del os.environ[NAME]
    assert _env.get(NAME) == ""
    os.environ.update({NAME: "1"})
    assert _env.get(NAME) == "1"
    os.environ.pop(NAME)
    assert _env.get(NAME) == ""


def test_the_fast_path_is_taken_on_this_interpreter():
    """CPython keeps os.environ's dict; if it ever stops, get still works (test above) but slowly."""
    assert _env._FAST
