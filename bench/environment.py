"""What a result file records about where and how it was measured: machine, versions, settings."""

from __future__ import annotations

import datetime
import io
import os
import platform
import subprocess
import sys
from contextlib import redirect_stdout

# Environment variables that change how BLAS and PyTorch use the CPU; recorded as found, never changed.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE", "OPENBLAS_VERBOSE", "NVPL_BLAS_DEBUG_CPU_TYPE", "GPUCONV_CONV_ALGO")


def common() -> dict:
    import numpy
    import torch

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "gpuconv", "kernels")),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def cpu() -> dict:
    import numpy  # noqa: F401  (imported so threadpoolctl sees numpy's BLAS)
    import torch

    info = common()
    info.update({
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_num_threads": torch.get_num_threads(),
        # the widest vector ISA PyTorch's CPU kernels use; compare with the BLAS's coretype in "blas"
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_mkldnn": torch.backends.mkldnn.is_available(),
        "env": {k: os.environ[k] for k in _THREAD_VARS if k in os.environ},
        "blas": blas_info(),
        "loadavg_start": _loadavg(),
    })
    return info


def blas_threads(default: int) -> int:
    """Threads of numpy's BLAS (threadpoolctl), else the default."""
    for pool in blas_info().get("threadpoolctl", []):
        if pool.get("user_api") == "blas":
            return int(pool["num_threads"])
    return default


def blas_info() -> dict:
    import numpy

    out = {}
    try:  # numpy's build: which BLAS it links, and that BLAS's own configuration string
        deps = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["numpy_blas"] = {k: deps.get(k) for k in ("name", "version", "openblas configuration")}
        out["numpy_simd"] = numpy.show_config(mode="dicts").get("SIMD Extensions")
    except (TypeError, KeyError):  # numpy older than 1.26 has no mode="dicts"
        pass
    try:
        from threadpoolctl import threadpool_info

        out["threadpoolctl"] = [{k: p.get(k) for k in ("user_api", "internal_api", "version", "num_threads",
                                                        "threading_layer", "architecture", "filepath")}
                                for p in threadpool_info()]
    except ImportError:
        buf = io.StringIO()
        with redirect_stdout(buf):
            numpy.show_config()
        out["numpy_show_config"] = buf.getvalue()
    return out


def gpu() -> dict:
    import cupy
    import torch

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    info = common()
    info.update({
        "device": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
        "compute_capability": f"{props['major']}.{props['minor']}",
        "multiprocessors": props["multiProcessorCount"],
        "l2_bytes": props["l2CacheSize"],
        "memory_bytes": props["totalGlobalMem"],
        "driver_api_version": _cuda_version(cupy.cuda.runtime.driverGetVersion()),
        "driver": _nvidia_smi("driver_version"),
        "sm_clock_max_mhz": _nvidia_smi("clocks.max.sm"),
        "cuda_runtime": _cuda_version(cupy.cuda.runtime.runtimeGetVersion()),
        "nvrtc": ".".join(map(str, cupy.cuda.nvrtc.getVersion())),
        "cupy": cupy.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": _cudnn_version(torch.backends.cudnn.version()),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "env": {k: os.environ[k] for k in _THREAD_VARS if k in os.environ},
    })
    return info


def _cuda_version(v: int) -> str:
    """CUDA's 1000*major + 10*minor as 'major.minor'."""
    return f"{v // 1000}.{v % 1000 // 10}"


def _cudnn_version(v):
    """cuDNN's integer version as 'major.minor.patch' (10000*major + 100*minor + patch from cuDNN 9 on)."""
    if v is None:
        return None
    if v >= 90000:
        return f"{v // 10000}.{v % 10000 // 100}.{v % 100}"
    return f"{v // 1000}.{v % 1000 // 100}.{v % 100}"


def _loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def finish(info: dict) -> None:
    """Adds what is known only at the end of a run."""
    info["loadavg_end"] = _loadavg()
    info["date_end"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git(*args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _nvidia_smi(field):
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        return out.splitlines()[0] if out else None
    except (OSError, subprocess.SubprocessError):
        return None
