"""Cold start: gpuconv compiles nothing at import, compiles one source file for one dtype at the first call
that needs a kernel of it, and ``precompile()`` compiles every file of the kernel table, each dtype once.

Runs the CUDA path on the CPU with the stand-in CuPy (``tests/fake_cupy.py``), in a process of its own,
counting ``cupy.RawModule`` constructions (one per compiled file and dtype: CuPy compiles a RawModule with
name expressions at its first ``get_function``) and those lookups.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

SCRIPT = r"""
import json, sys
sys.path[:0] = [__TESTS__, __ROOT__]
import fake_cupy
fake_cupy.install()
compiled, looked_up = [], []
class Recording(fake_cupy.RawModule):
    def __init__(self, code="", options=(), name_expressions=(), **kw):
        super().__init__(code, options, name_expressions, **kw)
        compiled.append("|".join(name_expressions))
    def get_function(self, name):
        looked_up.append(name)
        return super().get_function(name)
fake_cupy.RawModule = Recording
out = {}
import importlib, pkgutil
import gpuconv, gpuconv._cuda
for m in pkgutil.iter_modules(gpuconv._cuda.__path__):
    importlib.import_module("gpuconv._cuda." + m.name)
import gpuconv._precompile
out["after_import"] = len(compiled)
import numpy, cupy
from gpuconv._cuda._kernel_table import KERNELS
from gpuconv._cuda._loader import dtype_group
def files():
    # (file, dtype group) of every module compiled so far
    out = []
    for joined in compiled:
        names = joined.split("|")
        (f,) = [f for f, listed in KERNELS.items() if names[0] in listed and set(names) <= set(listed)]
        groups = {dtype_group(n) for n in names}
        assert len(groups) == 1 and set(names) == {n for n in KERNELS[f] if dtype_group(n) in groups}, names
        out.append(f + ":" + groups.pop())
    return sorted(out)
x = cupy.asarray(numpy.ones((1, 16, 8, 8), numpy.float32)); w = cupy.asarray(numpy.ones((16, 16, 3, 3), numpy.float32))
gpuconv.conv2d(x, w, padding=1)
out["after_conv2d"] = files()
out["names_after_conv2d"] = sorted(set(looked_up))
gpuconv.conv2d(x, w, padding=1)
gpuconv.conv2d(x.astype(numpy.float16), w.astype(numpy.float16), padding=1)
out["after_more_conv2d"] = files()
gpuconv.max_pool2d(x, 2)
out["after_max_pool2d"] = files()
results = gpuconv._precompile.precompile()
out["precompile"] = [[f, e] for f, _, e in results]
out["after_precompile"] = files()
out["modules"] = len(compiled)
out["groups"] = sorted({f + ":" + dtype_group(n) for f, names in KERNELS.items() for n in names})
out["names"] = sorted(set(looked_up))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def record():
    code = SCRIPT.replace("__TESTS__", repr(str(HERE))).replace("__ROOT__", repr(str(HERE.parent)))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


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
    sys.path.insert(0, str(HERE.parent))
    from gpuconv._cuda._kernel_table import KERNELS

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
