"""bfloat16 on the CUDA path, checked on the CPU with the stand-in CuPy (``tests/fake_cupy.py``).

The CUDA path runs bfloat16 as CuPy casts around the verified float32 kernels (``gpuconv._backend``'s
Float32Proxy). So every call of the dispatch table (``tests/cuda_dispatch_trace.py``) in bfloat16 must launch
exactly what the same call launches in float32 (kernel names, grids, every argument: float32 arrays of the
same shapes), plus casts on the device (``astype`` between bfloat16 and float32) and nothing else; and no
array may travel through the host (``cupy.asnumpy`` raises during the calls). The float32 record is the
oracle, so this needs no committed file of its own.

The trace runs in a process of its own (the fake must be installed before anything imports cupy):
``python tests/test_bf16_cuda_host.py`` prints it as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENVIRONMENTS = ("auto", "direct", "im2col", "implicit_gemm", "depthwise", "poison")


def _is_cast(entry) -> bool:
    """A CuPy astype between bfloat16 and float32 (what the proxy adds), as fake_cupy records it."""
    if entry[0] != "method" or entry[1] != "astype":
        return False
    source = entry[2][2]
    target = str(entry[3][0][1]) if entry[3] else ""
    return {source, target} == {"bfloat16", "float32"}


def test_bf16_launches_the_float32_kernels_plus_device_casts():
    run = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    traces = json.loads(run.stdout)
    assert len(traces) > 50
    for case, t in traces.items():
        f32, bf16 = t["float32"], t["bfloat16"]
        assert any(e[0] == "launch" for e in f32), f"{case}: nothing launched in float32"
        casts = [e for e in bf16 if _is_cast(e)]
        assert casts, f"{case}: bfloat16 ran without converting"
        assert [e for e in bf16 if not _is_cast(e)] == f32, f"{case}: bfloat16 launches differ from float32's"
        assert not any(e[0] == "launch" and "bfloat16" in json.dumps(e) for e in bf16), (
            f"{case}: a kernel got a bfloat16 argument")


def _trace() -> dict:
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    import fake_cupy

    fake_cupy.install()
    import ml_dtypes
    import numpy

    import cuda_dispatch_trace as table
    import gpuconv

    def no_host_transfer(*args, **kwargs):
        raise AssertionError("a CuPy array went through the host")

    cupy = sys.modules["cupy"]
    result = {}
    for env in ENVIRONMENTS:
        for k in ("GPUCONV_CONV_ALGO", "GPUCONV_POISON"):
            os.environ.pop(k, None)
        if env == "poison":
            os.environ["GPUCONV_POISON"] = "1"
        elif env != "auto":
            os.environ["GPUCONV_CONV_ALGO"] = env
        records = {}
        for dtype in (numpy.dtype(numpy.float32), numpy.dtype(ml_dtypes.bfloat16)):
            table.DTYPES = (dtype,)
            for case, call in table._calls(gpuconv, cupy, numpy):
                fake_cupy.LAUNCHES.clear()
                saved, fake_cupy.asnumpy = fake_cupy.asnumpy, no_host_transfer
                try:
                    call()
                finally:
                    fake_cupy.asnumpy = saved
                name = case.replace(f"/{dtype}", "")
                records.setdefault(f"{env}/{name}", {})[str(dtype)] = json.loads(
                    json.dumps(fake_cupy.LAUNCHES, default=str))
        result.update(records)
    return result


if __name__ == "__main__":
    sys.stdout.write(json.dumps(_trace()))
