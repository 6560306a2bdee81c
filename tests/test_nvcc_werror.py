"""Every kernel file under kernels/ (experimental ones included) compiles with ``nvcc -Werror all-warnings``.

nvcc's front end reports what NVRTC's compile of the inlined source does not: a constant declared in a .cu
file and never used outside an uninstantiated template is a warning for the file nvcc compiles as its main
file, and none once the loader has pasted it after its headers. So each file is compiled as itself, the way
a newcomer would (no -I or -D: its headers, kernels/tunables.cuh included, found beside it), with the
kernel table's options, to PTX: fast, and the front end sees every declaration. Skips when nvcc is not on PATH.

GPUCONV_NVCC_ARCHES (default sm_90) picks the architectures, e.g. ``sm_80,sm_90``. GPUCONV_NVCC_INSTANTIATE=1
also instantiates every name expression the table lists for the file and runs ptxas (-cubin): minutes, for a
full check before a release rather than for every run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from gpuconv._cuda import _kernel_table as kernel_table
from support.host_modules import ROOT

KERNEL_DIR = ROOT / "kernels"
FILES = sorted(p.relative_to(KERNEL_DIR).as_posix() for p in KERNEL_DIR.rglob("*.cu"))
ARCHES = tuple(a.strip() for a in os.environ.get("GPUCONV_NVCC_ARCHES", "sm_90").split(",") if a.strip())
INSTANTIATE = os.environ.get("GPUCONV_NVCC_INSTANTIATE", "") == "1"
NVCC = shutil.which("nvcc")


def _nvcc(source: Path, arch: str, out_dir: Path, instantiate: bool = False) -> tuple:
    """(return code, nvcc's messages) of one compile of ``source`` to PTX (or cubin, instantiated)."""
    if instantiate:
        names = kernel_table.KERNELS.get(source.relative_to(KERNEL_DIR).as_posix(), ())
        unit = out_dir / f"{source.stem}_{arch}_instances.cu"
        unit.write_text(f'#include "{source.as_posix()}"\n' + "".join(
            f"void* gpuconv_instance_{i} = (void*)&{name};\n" for i, name in enumerate(names)))
        source, mode, suffix = unit, "-cubin", "cubin"
    else:
        mode, suffix = "--ptx", "ptx"
    done = subprocess.run(
        [NVCC, f"-arch={arch}", *kernel_table.COMPILE_OPTIONS, "-Werror", "all-warnings", mode, str(source), "-o", str(out_dir / f"{source.stem}_{arch}.{suffix}")],
        capture_output=True, text=True, timeout=900)
    return done.returncode, (done.stdout + done.stderr).strip()


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every (file, arch) compiled once, two at a time."""
    if NVCC is None:
        pytest.skip("nvcc is not on PATH")
    out = tmp_path_factory.mktemp("nvcc")
    cases = [(f, a) for f in FILES for a in ARCHES]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = pool.map(lambda c: _nvcc(KERNEL_DIR / c[0], c[1], out, INSTANTIATE), cases)
        return dict(zip(cases, done))


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("source_file", FILES)
def test_kernel_file_compiles_without_warnings(results, source_file, arch):
    code, messages = results[(source_file, arch)]
    assert code == 0 and not messages, f"nvcc -Werror all-warnings {source_file} ({arch}):\n{messages}"


def test_an_unused_constant_is_reported(tmp_path):
    """The check itself works: the warning that kernels/implicit_gemm_nhwc_wgrad.cu once drew fails it."""
    if NVCC is None:
        pytest.skip("nvcc is not on PATH")
    bad = tmp_path / "unused.cu"
    bad.write_text("namespace k {\nconstexpr int BK = 32;\n}\n"
                   "template <typename T> __global__ void f(T* y) { y[0] = T(0); }\n")
    code, messages = _nvcc(bad, ARCHES[0], tmp_path)
    assert code != 0 and "never referenced" in messages, messages
