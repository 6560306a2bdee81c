"""Capture-safe ops: no CUDA-path op reads the device from the host by default (no transfer, no
synchronisation), so a training step can be captured into a CUDA graph (CuPy's Stream.begin_capture,
torch.cuda.graph through gpuconv.torch).

Every public op runs on the recording runtime (tests/support/fake_cupy.py, through gpuconv._cuda._runtime),
which logs each host transfer (asnumpy, .get(), .item(), int()/float()/bool() of a device array) and each
stream or event synchronisation; the test fails on any. Autotune is left out: its first call of a problem
times the candidates with CUDA events (documented in gpuconv/_cuda/_autotune.py). The positive control:
GPUCONV_CHECK_INDICES=1 turns max_pool2d_backward's host range check back on, and the log shows it.
"""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from gpuconv._cuda import _runtime
from support import fake_cupy

ENVIRONMENTS = {
    "auto": {},
    "direct": {"GPUCONV_CONV_ALGO": "direct"},
    "im2col": {"GPUCONV_CONV_ALGO": "im2col"},
    "implicit_gemm": {"GPUCONV_CONV_ALGO": "implicit_gemm", "GPUCONV_POISON": "1"},
    "depthwise": {"GPUCONV_CONV_ALGO": "depthwise"},
    "tf32": {"GPUCONV_CONV_ALGO": "implicit_gemm", "GPUCONV_ALLOW_TF32": "1"},
    # every experimental variant but gemm_1x1, whose cuBLAS calls the recording runtime does not model
    "experimental": {"GPUCONV_UNVERIFIED": "igemm_nhwc,nhwc_wgrad,nhwc_dgrad,pool_wide,depthwise_v2,bias_grad,nonfinite_weights"},
}


def _calls(dtype):
    """(name, zero-argument call) for every public op, on recording-runtime arrays."""
    rng = numpy.random.default_rng(0)

    def arr(shape):
        return fake_cupy.asarray(rng.standard_normal(shape).astype(dtype))

    x, w, b = arr((2, 16, 12, 12)), arr((16, 16, 3, 3)), arr((16,))
    xd, wd = arr((2, 16, 12, 12)), arr((16, 1, 3, 3))
    gy = arr((2, 16, 12, 12))
    gy_s2 = arr((2, 16, 6, 6))
    wt = arr((16, 8, 4, 4))
    gy_t = arr((2, 8, 24, 24))
    gp, idx = arr((2, 16, 6, 6)), fake_cupy.asarray(numpy.zeros((2, 16, 6, 6), numpy.int64))
    return {
        "conv2d": lambda: gpuconv.conv2d(x, w, b, padding=1),
        "conv2d reflect": lambda: gpuconv.conv2d(x, w, b, padding=1, padding_mode="reflect"),
        "conv2d depthwise": lambda: gpuconv.conv2d(xd, wd, padding=1, groups=16),
        "conv2d_backward": lambda: gpuconv.conv2d_backward(gy, x, w, padding=1),
        "conv2d_backward strided": lambda: gpuconv.conv2d_backward(gy_s2, x, w, stride=2, padding=1),
        "conv2d_backward circular": lambda: gpuconv.conv2d_backward(gy, x, w, padding=1, padding_mode="circular"),
        "conv_transpose2d": lambda: gpuconv.conv_transpose2d(x, wt, stride=2, padding=1),
        "conv_transpose2d_backward": lambda: gpuconv.conv_transpose2d_backward(gy_t, x, wt, stride=2, padding=1),
        "max_pool2d": lambda: gpuconv.max_pool2d(x, 2, return_indices=True),
        "max_pool2d_backward": lambda: gpuconv.max_pool2d_backward(gp, idx, x.shape),
        "avg_pool2d": lambda: gpuconv.avg_pool2d(x, 2),
        "avg_pool2d_backward": lambda: gpuconv.avg_pool2d_backward(gp, x.shape, 2),
        **_calls_1d_3d(arr),
    }


def _calls_1d_3d(arr):
    """The 1-d ops (2-d on views), the 3-d ones (composed of 2-d ops and CuPy's own) and adaptive pooling."""
    x1, w1, gy1 = arr((2, 8, 20)), arr((8, 8, 3)), arr((2, 8, 20))
    x3, w3, gy3 = arr((2, 4, 6, 8, 8)), arr((8, 4, 3, 3, 3)), arr((2, 8, 6, 8, 8))
    wt3, gyt3 = arr((4, 4, 2, 2, 2)), arr((2, 4, 12, 16, 16))
    g3 = arr((2, 4, 3, 4, 4))
    idx3 = fake_cupy.asarray(numpy.zeros((2, 4, 3, 4, 4), numpy.int64))
    xa, ga = arr((2, 4, 7, 9)), arr((2, 4, 3, 4))
    return {
        "conv1d": lambda: gpuconv.conv1d(x1, w1, padding=1),
        "conv1d_backward": lambda: gpuconv.conv1d_backward(gy1, x1, w1, padding=1),
        "conv3d": lambda: gpuconv.conv3d(x3, w3, padding=1),
        "conv3d reflect": lambda: gpuconv.conv3d(x3, w3, padding=1, padding_mode="reflect"),
        "conv3d_backward": lambda: gpuconv.conv3d_backward(gy3, x3, w3, padding=1),
        "conv3d_backward circular": lambda: gpuconv.conv3d_backward(gy3, x3, w3, padding=1, padding_mode="circular"),
        "conv_transpose3d": lambda: gpuconv.conv_transpose3d(x3, wt3, stride=2),
        "conv_transpose3d_backward": lambda: gpuconv.conv_transpose3d_backward(gyt3, x3, wt3, stride=2),
        "max_pool1d": lambda: gpuconv.max_pool1d(x1, 3, 2, 1, return_indices=True),
        "max_pool3d": lambda: gpuconv.max_pool3d(x3, 2, return_indices=True),
        "max_pool3d_backward": lambda: gpuconv.max_pool3d_backward(g3, idx3, x3.shape),
        "avg_pool3d": lambda: gpuconv.avg_pool3d(x3, 3, 2, 1),
        "avg_pool3d_backward": lambda: gpuconv.avg_pool3d_backward(g3, x3.shape, 3, 2, 1),
        "adaptive_avg_pool2d global": lambda: gpuconv.adaptive_avg_pool2d(xa, 1),
        "adaptive_avg_pool2d uneven": lambda: gpuconv.adaptive_avg_pool2d(xa, (3, 4)),
        "adaptive_avg_pool2d_backward uneven": lambda: gpuconv.adaptive_avg_pool2d_backward(ga, xa.shape),
        "adaptive_max_pool2d uneven": lambda: gpuconv.adaptive_max_pool2d(xa, (3, 4), return_indices=True),
        "adaptive_max_pool3d global": lambda: gpuconv.adaptive_max_pool3d(x3, 1, return_indices=True),
        "adaptive_max_pool2d_backward": lambda: gpuconv.adaptive_max_pool2d_backward(
            ga, fake_cupy.asarray(numpy.zeros((2, 4, 3, 4), numpy.int64)), xa.shape),
    }


def _host_reads(call):
    fake_cupy.LAUNCHES.clear()
    call()
    return [e for e in fake_cupy.LAUNCHES if e[0] in ("transfer", "sync")], len(fake_cupy.LAUNCHES)


@pytest.fixture
def recording():
    with _runtime.use(fake_cupy.RecordingRuntime()):
        yield


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_no_op_transfers_or_synchronises(recording, monkeypatch, env, dtype):
    for k, v in ENVIRONMENTS[env].items():
        monkeypatch.setenv(k, v)
    for name, call in _calls(dtype).items():
        reads, entries = _host_reads(call)
        assert entries > 0, f"{name}: nothing was recorded (the oracle would pass on a silent runtime)"
        assert not reads, f"{name} ({env}, {dtype}) reads the device from the host: {reads}"


def test_the_opt_in_index_check_is_seen(recording, monkeypatch):
    """The log catches a host read: GPUCONV_CHECK_INDICES=1 brings max_pool2d_backward's check back."""
    monkeypatch.setenv("GPUCONV_CHECK_INDICES", "1")
    reads, _ = _host_reads(_calls("float32")["max_pool2d_backward"])
    assert reads and reads[0][0] == "transfer", reads
