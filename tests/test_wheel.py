"""The built wheel carries every kernel source the loader compiles, where the installed loader looks.

Builds from a copy of the package files in a temporary directory (no build/ or egg-info left in the
checkout), without build isolation or dependencies, so it takes a few seconds and no network.
"""

from __future__ import annotations

import importlib.util
import posixpath
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "gpuconv", "kernels")


def _kernel_table():
    from gpuconv._cuda import _kernel_table

    return _kernel_table


def _local_headers(text: str) -> set:
    import re

    return set(re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.MULTILINE))


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory):
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed (the wheel is built without isolation)")
    src = tmp_path_factory.mktemp("src")
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout}\n{done.stderr}"
    wheels = list(out.glob("gpuconv-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(out / "site")
        return set(z.namelist()), out / "site"


def test_wheel_contains_every_kernel_source_and_header(wheel_names):
    wheel_names, _ = wheel_names
    needed = set()
    for source_file in _kernel_table().KERNELS:
        needed.add(source_file)
        pending = [source_file]
        while pending:  # the local headers each source includes, recursively: beside it, else kernels/
            name = pending.pop()
            for header in _local_headers((ROOT / "kernels" / name).read_text()):
                header = posixpath.normpath(posixpath.join(posixpath.dirname(name), header))  # "../x.cuh" too
                if header not in needed:
                    needed.add(header)
                    pending.append(header)
    missing = sorted(n for n in needed if f"gpuconv/kernels/{n}" not in wheel_names)
    assert not missing, f"the wheel lacks gpuconv/kernels/{missing}"


def test_wheel_contains_the_cuda_backend(wheel_names):
    wheel_names, _ = wheel_names
    for module in ("gpuconv/__init__.py", "gpuconv/_cuda/__init__.py", "gpuconv/_cuda/_loader.py",
                   "gpuconv/_cuda/_kernel_table.py", "gpuconv/_cuda/conv.py", "gpuconv/_cuda/pad.py"):
        assert module in wheel_names, module


def test_installed_loader_finds_the_installed_kernels(wheel_names):
    _, site = wheel_names
    spec = importlib.util.spec_from_file_location("gpuconv_loader_wheel", site / "gpuconv/_cuda/_loader.py")
    installed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installed)
    assert installed.kernel_dir() == site / "gpuconv" / "kernels"
    for source_file in _kernel_table().KERNELS:
        assert '#include "' not in installed.source(source_file), source_file
