"""Capture-safe ops: no CUDA-path op reads the device from the host by default (no transfer, no
synchronisation), and none copies host data to the device once its constants are cached, so a training step
can be captured into a CUDA graph (CuPy's Stream.begin_capture, torch.cuda.graph through gpuconv.torch): a
captured copy would replay from the host address it was captured with.

Every public op runs twice with the same shapes on the recording runtime (tests/support/fake_cupy.py,
through gpuconv._cuda._runtime), which logs each host transfer (asnumpy, .get(), .item(), int()/float()/
bool() of a device array), each stream or event synchronisation, and each host-to-device copy (a NumPy
array, list or number made into a device array, or passed where a device array goes: an operand, an index,
a kernel argument; scalar kernel arguments are not copies). Neither call may transfer or synchronise. The
first call may copy: the 3-d and adaptive compositions build their small index and divisor arrays once per
shape and device (gpuconv._volume.constant); the second call must copy nothing. Autotune is left out: its
first call of a problem times the candidates with CUDA events (documented in gpuconv/_cuda/_autotune.py).

Positive controls: GPUCONV_CHECK_INDICES=1 turns max_pool2d_backward's host range check back on, and the log
shows the transfer; a constant cache that forgets makes the second call copy again, and the log shows that.
"""

from __future__ import annotations

import numpy
import pytest

import gpuconv
from gpuconv import _volume
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
    idxa = fake_cupy.asarray(numpy.zeros((2, 4, 3, 4), numpy.int64))  # made here: inside the call it is a copy
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
        "adaptive_max_pool2d_backward": lambda: gpuconv.adaptive_max_pool2d_backward(ga, idxa, xa.shape),
    }


def _record(call) -> list:
    fake_cupy.LAUNCHES.clear()
    call()
    return list(fake_cupy.LAUNCHES)


def _host_reads(log) -> list:
    return [e for e in log if e[0] in ("transfer", "sync")]


def _uploads(log) -> list:
    return [e for e in log if e[0] == "h2d"]


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
        first, second = _record(call), _record(call)  # the first builds the op's cached constants
        assert second, f"{name}: nothing was recorded (the oracle would pass on a silent runtime)"
        reads = _host_reads(first + second)
        assert not reads, f"{name} ({env}, {dtype}) reads the device from the host: {reads}"
        copies = _uploads(second)
        assert not copies, f"{name} ({env}, {dtype}) copies host data to the device on every call: {copies}"


def test_the_opt_in_index_check_is_seen(recording, monkeypatch):
    """The log catches a host read: GPUCONV_CHECK_INDICES=1 brings max_pool2d_backward's check back."""
    monkeypatch.setenv("GPUCONV_CHECK_INDICES", "1")
    reads = _host_reads(_record(_calls("float32")["max_pool2d_backward"]))
    assert reads and reads[0][0] == "transfer", reads


class _Forgetful(dict):
    """A constant cache that keeps nothing: every call builds its constants anew, from the host."""

    def __setitem__(self, key, value):
        pass


@pytest.mark.parametrize("name", ["avg_pool3d", "conv3d reflect", "adaptive_avg_pool2d uneven",
                                  "adaptive_avg_pool2d_backward uneven", "adaptive_max_pool2d uneven"])
def test_a_copy_per_call_is_seen(recording, monkeypatch, name):
    """The log catches a host-to-device copy per call: without the constant cache the second call copies."""
    call = _calls("float32")[name]
    _record(call)
    assert not _uploads(_record(call)), "the control needs an op that copies nothing once cached"
    monkeypatch.setattr(_volume, "_CONSTANTS", _Forgetful())
    copies = _uploads(_record(call))
    assert copies and all(e[1] == "asarray" and e[2][0] == "host array" for e in copies), copies


def test_the_recorder_tells_copies_from_device_work_and_scalars(recording):
    """What the runtime logs as a host-to-device copy: host arrays, lists and numbers made into device arrays,
    host arrays as operands, indices or kernel arguments; never device arrays or scalar kernel arguments."""
    host = numpy.arange(6, dtype=numpy.float32).reshape(2, 3)
    dev = fake_cupy.asarray(host)
    kernel = fake_cupy.RawModule().get_function("k")
    copies = {
        "asarray": lambda: fake_cupy.asarray(host),
        "array of a list": lambda: fake_cupy.array([1.0, 2.0]),
        "asarray of a number": lambda: fake_cupy.asarray(numpy.float32(1)),
        "operand": lambda: dev + host,
        "gather": lambda: fake_cupy.take(dev, numpy.array([0, 1]), axis=1),
        "index": lambda: dev[numpy.array([1, 0])],
        "setitem": lambda: dev.__setitem__(slice(None), host),
        "copyto": lambda: fake_cupy.copyto(dev, host),
        "kernel argument": lambda: kernel((1,), (1,), (dev, host)),
    }
    for what, call in copies.items():
        assert _uploads(_record(call)), f"{what}: not logged as a host-to-device copy"
    log = _record(lambda: host * dev)  # NumPy defers to the device array's operator (as to CuPy's)
    assert [e[:2] for e in log] == [("h2d", "__rmul__"), ("elementwise", "__rmul__")], log
    device_work = {
        "asarray of a device array": lambda: fake_cupy.asarray(dev),
        "operand": lambda: dev + dev * numpy.float32(2) + 1.0,
        "selection with a scalar": lambda: fake_cupy.where(dev > 0, dev, numpy.float32(0)),
        "fill": lambda: fake_cupy.full((2, 3), -numpy.inf, dtype=numpy.float32),
        "copyto of a scalar": lambda: fake_cupy.copyto(dev, 0.0),
        "index": lambda: dev[fake_cupy.arange(2), 1:],
        "kernel arguments": lambda: kernel((1,), (1,), (dev, numpy.int32(3), numpy.float64(0.5), numpy.uint64(0))),
    }
    for what, call in device_work.items():
        log = _record(call)
        assert not _uploads(log), f"{what}: logged as a host-to-device copy: {log}"
