"""bfloat16 on the CUDA path, checked on the CPU with the recording runtime (``tests/support/fake_cupy.py``).

The CUDA path runs bfloat16 as CuPy casts around the verified float32 kernels (``gpuconv._backend``'s
Float32Proxy). So every call of the dispatch table (``tests/cuda_dispatch_trace.py``) in bfloat16 must launch
exactly what the same call launches in float32 (kernel names, grids, every argument: float32 arrays of the
same shapes), plus casts on the device (``astype`` between bfloat16 and float32) and nothing else; and no
array may travel through the host (the runtime logs any transfer). The float32 record is the oracle, so
this needs no committed file of its own.
"""

from __future__ import annotations

import json
import os

import ml_dtypes
import numpy

import cuda_dispatch_trace as table
import gpuconv
from gpuconv._cuda import _config, _runtime
from support import fake_cupy

ENVIRONMENTS = ("auto", "direct", "im2col", "implicit_gemm", "depthwise", "poison")


def _is_cast(entry) -> bool:
    """A CuPy astype between bfloat16 and float32 (what the proxy adds), as fake_cupy records it."""
    if entry[0] != "method" or entry[1] != "astype":
        return False
    source = entry[2][2]
    target = str(entry[3][0][1]) if entry[3] else ""
    return {source, target} == {"bfloat16", "float32"}


def _record(call):
    fake_cupy.LAUNCHES.clear()
    call()
    return json.loads(json.dumps(fake_cupy.LAUNCHES, default=str))


def test_bf16_launches_the_float32_kernels_plus_device_casts(monkeypatch):
    traces = {}
    with _runtime.use(fake_cupy.RecordingRuntime()):
        for env in ENVIRONMENTS:
            monkeypatch.delenv("GPUCONV_CONV_ALGO", raising=False)
            monkeypatch.delenv("GPUCONV_POISON", raising=False)
            if env == "poison":
                monkeypatch.setenv("GPUCONV_POISON", "1")
            elif env != "auto":
                monkeypatch.setenv("GPUCONV_CONV_ALGO", env)
            _config.refresh()
            for dtype in (numpy.dtype(numpy.float32), numpy.dtype(ml_dtypes.bfloat16)):
                monkeypatch.setattr(table, "DTYPES", (dtype,))
                for case, call in table._calls(gpuconv, fake_cupy, numpy):
                    op = case.split("/")[0]
                    if "3d" in op or "adaptive" in op:
                        continue  # the 3-d and adaptive compositions convert once themselves (test_capture_safe)
                    name = case.replace(f"/{dtype}", "")
                    traces.setdefault(f"{env}/{name}", {})[str(dtype)] = _record(call)
    _config.refresh()
    assert len(traces) > 50
    for case, t in traces.items():
        f32, bf16 = t["float32"], t["bfloat16"]
        assert any(e[0] == "launch" for e in f32), f"{case}: nothing launched in float32"
        casts = [e for e in bf16 if _is_cast(e)]
        assert casts, f"{case}: bfloat16 ran without converting"
        assert [e for e in bf16 if not _is_cast(e)] == f32, f"{case}: bfloat16 launches differ from float32's"
        assert not any(e[0] == "launch" and "bfloat16" in json.dumps(e) for e in bf16), (
            f"{case}: a kernel got a bfloat16 argument")
        assert not any(e[0] == "transfer" for e in bf16), f"{case}: a bfloat16 array went through the host"
