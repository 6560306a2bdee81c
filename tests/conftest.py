"""The ``backend`` fixture: every table test runs once per array module present.

"numpy" always runs. "cupy-direct", "cupy-im2col", "cupy-implicit_gemm" and "cupy-depthwise" run when CuPy
imports and sees a GPU, with ``GPUCONV_CONV_ALGO`` forcing the convolution algorithm (pooling tests use ``pool_backend``: numpy
and one "cupy" run, as no convolution algorithm is involved), and ``GPUCONV_POISON=1`` making the CUDA
backend fill outputs with NaN before each launch (an element a kernel forgets to write then fails the
comparison). Without CuPy or a GPU those runs skip, never error.
"""

from __future__ import annotations

import os
import zlib

import numpy
import pytest
from hypothesis import HealthCheck, settings

from helpers import cupy_with_gpu

settings.register_profile(
    "gpuconv", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
# HYPOTHESIS_PROFILE=thorough for a longer hunt (not in CI)
settings.register_profile("thorough", parent=settings.get_profile("gpuconv"), max_examples=400)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "gpuconv"))

CONV_ALGOS = ("direct", "im2col", "implicit_gemm", "depthwise")
BACKENDS = ("numpy",) + tuple(f"cupy-{a}" for a in CONV_ALGOS)


class Backend:
    """One array module the tests run on, and how to move NumPy arrays to it and back."""

    def __init__(self, name, xp, algo=None):
        self.name, self.xp, self.algo = name, xp, algo

    @property
    def is_gpu(self) -> bool:
        return self.xp is not numpy

    def put(self, a):
        """A NumPy array (or None) as this backend's array."""
        return None if a is None else self.xp.asarray(a)

    def get(self, a):
        """This backend's array (or None) as a NumPy array."""
        if a is None or isinstance(a, numpy.ndarray):
            return a
        return self.xp.asnumpy(a)

    def skip_unsupported_conv(self, geometry, dtype, passes):
        """Skip when the forced algorithm runs only where one of its variants supports the pass
        (implicit_gemm, depthwise) and none handles one of the passes ('fprop', 'dgrad', 'wgrad') this test
        runs on this geometry: the call would silently fall back to the auto rule."""
        if self.algo not in ("implicit_gemm", "depthwise") or geometry.N == 0:
            return
        from gpuconv._cuda import _algo

        for pass_name in passes:
            if _algo.first(self.algo, geometry, numpy.dtype(dtype), pass_name) is None:
                pytest.skip(f"{self.algo} does not support {pass_name} here")

    def __repr__(self):
        return self.name


def _make_backend(name, monkeypatch):
    if name == "numpy":
        return Backend(name, numpy)
    cupy = cupy_with_gpu()
    if cupy is None:
        pytest.skip("needs CuPy and a GPU")
    algo = name.split("-", 1)[1] if "-" in name else None
    if algo is not None:
        monkeypatch.setenv("GPUCONV_CONV_ALGO", algo)
    monkeypatch.setenv("GPUCONV_POISON", "1")
    return Backend(name, cupy, algo)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """numpy, and CuPy once per forced convolution algorithm."""
    return _make_backend(request.param, monkeypatch)


@pytest.fixture(params=("numpy", "cupy"))
def pool_backend(request, monkeypatch):
    """numpy and CuPy, once each: for pooling, which no convolution algorithm touches."""
    return _make_backend(request.param, monkeypatch)


class _ConfigMonkeyPatch(pytest.MonkeyPatch):
    """pytest's monkeypatch, which also makes the CUDA path re-read its configuration (gpuconv._cuda._config
    keeps a snapshot of the GPUCONV_* variables) whenever a test sets or deletes one, and when it undoes."""

    @staticmethod
    def _refresh(name):
        if str(name).startswith("GPUCONV_"):
            from gpuconv._cuda import _config

            _config.refresh()

    def setenv(self, name, value, prepend=None):
        super().setenv(name, value, prepend)
        self._refresh(name)

    def delenv(self, name, raising=True):
        super().delenv(name, raising)
        self._refresh(name)

    def undo(self):
        super().undo()
        self._refresh("GPUCONV_")


@pytest.fixture(autouse=True)
def _fresh_cuda_config():
    """Each test starts from the environment's configuration (a test that set a variable without the
    monkeypatch above cannot leak its snapshot into the next)."""
    import sys

    if "gpuconv._cuda._config" in sys.modules:
        sys.modules["gpuconv._cuda._config"].set_tunables({})  # default tunables, and the environment re-read


@pytest.fixture
def monkeypatch():
    """As pytest's (see _ConfigMonkeyPatch)."""
    patch = _ConfigMonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture
def tunables():
    """set(**values): overrides CUDA-path tunables (gpuconv._cuda._config.Config fields) for this test."""
    from gpuconv._cuda import _config

    saved = _config.set_tunables({})
    _config.set_tunables(saved)
    current = dict(saved)

    def set_(**values):
        current.update(values)
        _config.set_tunables(current)

    yield set_
    _config.set_tunables(saved)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: fresh data per test, yet a failure reproduces."""
    return numpy.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
