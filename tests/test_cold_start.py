"""Cold start: gpuconv compiles nothing at import, compiles one source file for one dtype at the first call
that needs a kernel of it, and ``precompile()`` compiles every file of the kernel table, each dtype once.

The import check runs in a fresh process (the loader's module cache must be empty after it). The rest runs
the CUDA path on the CPU through the runtime seam: a recording runtime (``tests/support/fake_cupy.py``) with
the real loader in front, counting RawModule constructions (one per compiled file and dtype: CuPy compiles a
RawModule with name expressions at its first ``get_function``) and kernel lookups.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest

from gpuconv._cuda import _loader, _runtime
from gpuconv._cuda._kernel_table import KERNELS
from gpuconv._cuda._loader import dtype_group
from support import fake_cupy

HERE = Path(__file__).resolve().parent

# Import every module of the package in a fresh process and report what the loader compiled: nothing.
IMPORT_SCRIPT = r"""
import importlib, json, pkgutil, sys
sys.path[:0] = [__ROOT__]
import gpuconv, gpuconv._cuda, gpuconv._precompile
for m in pkgutil.iter_modules(gpuconv._cuda.__path__):
    importlib.import_module("gpuconv._cuda." + m.name)
for m in pkgutil.iter_modules(gpuconv._cuda.experimental.__path__):
    importlib.import_module("gpuconv._cuda.experimental." + m.name)
from gpuconv._cuda import _loader
print(json.dumps({"modules": len(_loader._modules), "functions": len(_loader._functions)}))
"""


class CompilingRuntime(fake_cupy.RecordingRuntime):
    """The recording runtime with the real loader in front: kernels come from ``_loader.get_function``, which
    builds one (recording) RawModule per source file and dtype group, as it would with CuPy's."""

    def __init__(self):
        super().__init__()
        self.compiled, self.looked_up = [], []
        runtime = self

        class RecordingRawModule(fake_cupy.RawModule):
            def __init__(self, code="", options=(), name_expressions=(), **kw):
                super().__init__(code, options, name_expressions, **kw)
                runtime.compiled.append(tuple(name_expressions))

            def get_function(self, name):
                runtime.looked_up.append(name)
                return super().get_function(name)

        self._raw_module = RecordingRawModule

    def get_function(self, source_file, name):
        return _loader.get_function(source_file, name, device_id=0, raw_module=self._raw_module)

    def groups(self):
        """(file:dtype group) of every module compiled so far, sorted; each must be a whole group."""
        out = []
        for names in self.compiled:
            (f,) = [f for f, listed in KERNELS.items() if names[0] in listed and set(names) <= set(listed)]
            groups = {dtype_group(n) for n in names}
            assert len(groups) == 1 and set(names) == {n for n in KERNELS[f] if dtype_group(n) in groups}, names
            out.append(f + ":" + groups.pop())
        return sorted(out)


@pytest.fixture(scope="module")
def record():
    import gpuconv
    from gpuconv._precompile import precompile

    run = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT.replace("__ROOT__", repr(str(HERE.parent)))],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    out = {"after_import": json.loads(run.stdout.strip().splitlines()[-1])["modules"]}
    runtime = CompilingRuntime()
    _loader.clear_cache()
    try:
        with _runtime.use(runtime):
            x = fake_cupy.asarray(numpy.ones((1, 16, 8, 8), numpy.float32))
            w = fake_cupy.asarray(numpy.ones((16, 16, 3, 3), numpy.float32))
            gpuconv.conv2d(x, w, padding=1)
            out["after_conv2d"] = runtime.groups()
            out["names_after_conv2d"] = sorted(set(runtime.looked_up))
            gpuconv.conv2d(x, w, padding=1)
            gpuconv.conv2d(x.astype(numpy.float16), w.astype(numpy.float16), padding=1)
            out["after_more_conv2d"] = runtime.groups()
            gpuconv.max_pool2d(x, 2)
            out["after_max_pool2d"] = runtime.groups()
            results = precompile()
            out["precompile"] = [[f, e] for f, _, e in results]
            out["after_precompile"] = runtime.groups()
            out["modules"] = len(runtime.compiled)
            out["names"] = sorted(set(runtime.looked_up))
    finally:
        _loader.clear_cache()
    out["groups"] = sorted({f + ":" + dtype_group(n) for f, names in KERNELS.items() for n in names})
    return out


def test_import_compiles_nothing(record):
    assert record["after_import"] == 0


def test_first_use_compiles_one_file_for_one_dtype(record):
    """A small float32 conv2d runs the direct kernel: conv_direct.cu's float instantiations are the only
    ones compiled; calling again compiles nothing, float16 adds that file's __half group; max pooling then
    adds pool.cu's float group alone."""
    assert record["after_conv2d"] == ["conv_direct.cu:float"]
    assert record["names_after_conv2d"] == ["conv2d_fprop_direct<float>"]
    assert record["after_more_conv2d"] == ["conv_direct.cu:__half", "conv_direct.cu:float"]
    assert record["after_max_pool2d"] == ["conv_direct.cu:__half", "conv_direct.cu:float", "pool.cu:float"]


def test_precompile_compiles_every_file_and_dtype_once(record):
    assert record["precompile"] == [[f, None] for f in sorted(KERNELS)]
    assert record["after_precompile"] == record["groups"]
    assert record["modules"] == len(record["groups"])  # groups compiled before were not compiled again
    assert record["names"] == sorted({n for names in KERNELS.values() for n in names})


def test_precompile_command_needs_a_gpu():
    """Here (no GPU) the command says so and exits 2; on a GPU it compiles (bench/gpu_checks)."""
    pytest.importorskip("cupy")
    from helpers import cupy_with_gpu

    if cupy_with_gpu() is not None:
        pytest.skip("a GPU is present")
    run = subprocess.run([sys.executable, "-m", "gpuconv", "--precompile"], capture_output=True, text=True,
                         cwd=str(HERE.parent), timeout=120)
    assert run.returncode == 2 and "needs CuPy and a CUDA GPU" in run.stderr


def test_unknown_file_is_refused():
    pytest.importorskip("cupy")
    from gpuconv._precompile import precompile

    with pytest.raises(ValueError, match="unknown kernel files"):
        precompile(files=["nope.cu"])
