"""The kernel loader without a GPU: header inlining, finding the sources (checkout and installed layout),
the kernel table, the algorithm choice, and importing gpuconv with no CuPy, GPU or driver."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_by_path(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


from gpuconv._cuda import _kernel_table as kernel_table  # noqa: E402 - needs no CuPy device
from gpuconv._cuda import _loader as loader  # noqa: E402


# ------------------------------------------------------------------------------------- header inlining


def _write(d: Path, files: dict) -> None:
    for name, text in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(textwrap.dedent(text))


def test_local_headers_are_inlined_recursively_once(tmp_path):
    _write(tmp_path, {
        "main.cu": """\
            #include "a.cuh"
            #include <cuda_fp16.h>
              #  include "sub/b.cuh"  // a comment
            int main_body;
            """,
        "a.cuh": """\
            #pragma once
            #include "sub/b.cuh"
            int from_a;
            """,
        "sub/b.cuh": """\
            #pragma once
            #include "c.cuh"
            int from_b;
            """,
        "sub/c.cuh": "int from_c;\n",
    })
    text = loader.inline_headers(tmp_path / "main.cu")
    assert '#include "' not in text
    assert "#include <cuda_fp16.h>" in text  # system headers are NVRTC's business
    assert "pragma once" not in text  # NVRTC warns about it in the main file
    for name in ("from_a", "from_b", "from_c", "main_body"):
        assert text.count(f"int {name};") == 1, name
    assert text.index("from_c") < text.index("from_b") < text.index("from_a") < text.index("main_body")
    assert '#line 1 "a.cuh"' in text and '#line 1 "c.cuh"' in text


def test_line_markers_resume_the_including_file(tmp_path):
    _write(tmp_path, {"main.cu": 'int one;\n#include "h.cuh"\nint three;\n', "h.cuh": "int header;\n"})
    lines = loader.inline_headers(tmp_path / "main.cu").splitlines()
    marker = next(i for i, line in enumerate(lines) if line.startswith('#line 3 "main.cu"'))
    assert lines[marker + 1] == "int three;"


def test_experimental_files_include_the_shared_headers_from_the_kernel_directory(tmp_path):
    """As nvcc resolves them (kernels/experimental/ reaches the shared headers as "../x.cuh")."""
    _write(tmp_path, {"main.cu": "int main_body;\n", "shared.cuh": "int shared;\n",
                      "experimental/new.cu": '#include "../shared.cuh"\nint new_body;\n'})
    text = loader.inline_headers(tmp_path / "experimental" / "new.cu")
    assert text.index("int shared;") < text.index("int new_body;")


def test_a_missing_header_is_named(tmp_path):
    _write(tmp_path, {"main.cu": '#include "nowhere.cuh"\n'})
    with pytest.raises(FileNotFoundError, match="nowhere.cuh"):
        loader.inline_headers(tmp_path / "main.cu")


# ------------------------------------------------------------------------------------ kernel discovery


def test_every_kernel_file_of_the_table_is_found_and_self_contained():
    assert loader.kernel_dir() == ROOT / "kernels"
    for source_file, names in kernel_table.KERNELS.items():
        text = loader.source(source_file)
        assert '#include "' not in text, source_file
        for name in names:
            assert name.split("<")[0] in text, (source_file, name)


def test_the_installed_layout_is_found(tmp_path):
    """In a wheel the sources sit in gpuconv/kernels/, beside gpuconv/_cuda/."""
    package = tmp_path / "site" / "gpuconv"
    (package / "_cuda").mkdir(parents=True)
    shutil.copy(ROOT / "gpuconv/_cuda/_loader.py", package / "_cuda" / "_loader.py")
    shutil.copytree(ROOT / "kernels", package / "kernels")
    installed = _load_by_path("gpuconv_loader_installed", package / "_cuda" / "_loader.py")
    assert installed.kernel_dir() == package / "kernels"
    assert installed.source("im2col.cu") == loader.source("im2col.cu")


def test_no_sources_is_a_clear_error(tmp_path):
    (tmp_path / "gpuconv" / "_cuda").mkdir(parents=True)
    shutil.copy(ROOT / "gpuconv/_cuda/_loader.py", tmp_path / "gpuconv" / "_cuda" / "_loader.py")
    lonely = _load_by_path("gpuconv_loader_lonely", tmp_path / "gpuconv" / "_cuda" / "_loader.py")
    with pytest.raises(FileNotFoundError, match="kernel sources"):
        lonely.kernel_dir()


def test_table_names_are_unique_template_instances():
    for source_file, names in kernel_table.KERNELS.items():
        assert len(set(names)) == len(names), source_file
        assert all(n.endswith(">") and "<" in n for n in names), source_file
    assert all(isinstance(o, str) for o in kernel_table.COMPILE_OPTIONS)


# --------------------------------------------------------------------------- importing without a GPU


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)


def test_import_gpuconv_without_cupy():
    done = _run("""\
        import sys

        class NoCupy:
            def find_spec(self, name, path=None, target=None):
                if name == "cupy" or name.startswith(("cupy.", "cupy_backends")):
                    raise ImportError("cupy is blocked for this test")

        sys.meta_path.insert(0, NoCupy())
        import numpy
        import gpuconv
        y = gpuconv.conv2d(numpy.ones((1, 2, 5, 5)), numpy.ones((3, 2, 3, 3)))
        assert y.shape == (1, 3, 3, 3) and float(y[0, 0, 0, 0]) == 18.0
        assert not any(m.startswith("cupy") for m in sys.modules), [m for m in sys.modules if "cupy" in m]
        print("ok")
        """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_import_cuda_backend_without_a_gpu():
    """CuPy installed but no device (or no driver): importing the backend touches no device."""
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("cupy is not installed")
    done = _run("""\
        import gpuconv._cuda as backend
        from gpuconv._cuda import _kernel_table, _loader  # the table registers the instantiations
        try:
            _loader.get_function("im2col.cu", "not_a_kernel<float>")
        except KeyError as e:
            assert "not_a_kernel" in str(e)
        else:
            raise AssertionError("unlisted kernel accepted")
        print("ok")
        """, CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


# --------------------------------------------------------------------------------- algorithm choice


@pytest.fixture
def algo():
    """The selection module, on a configuration that stands in for an sm_90 device (implicit GEMM's
    ``supports`` reads the compute capability): no GPU needed."""
    from gpuconv._cuda import _algo, _config

    with _config.override(compute_capability=90, sm_count=132):
        yield _algo


def _geometry(**kw):
    from gpuconv._params import ConvGeometry

    base = dict(N=8, C=64, H=32, W=32, K=64, R=3, S=3, P=32, Q=32, pad_top=1, pad_bottom=1, pad_left=1,
                pad_right=1)
    base.update(kw)
    return ConvGeometry(**base)


def test_auto_rule(algo, monkeypatch):
    import numpy

    monkeypatch.delenv(algo.ENV_VAR, raising=False)
    f16, f32, f64 = numpy.float16, numpy.float32, numpy.float64
    for p in ("fprop", "dgrad", "wgrad"):
        assert algo.choose(_geometry(), f32, p) == "implicit_gemm"  # 64 -> 64 3x3: a 37k-element weight
        assert algo.choose(_geometry(), f64, p) == "im2col"  # no float64 implicit GEMM
        big = _geometry(C=256, K=256)  # 590k-element weight: cuBLAS's large GEMMs win in float32
        assert algo.choose(big, f32, p) == "im2col"
        assert algo.choose(big, f16, p) == "implicit_gemm"  # tensor cores at any size
    stem = _geometry(C=3, K=64, R=7, S=7)  # dgrad's GEMM would have 3 columns
    assert [algo.choose(stem, f32, p) for p in ("fprop", "dgrad", "wgrad")] == ["implicit_gemm", "im2col",
                                                                                "implicit_gemm"]
    assert algo.choose(_geometry(C=64, K=64, groups=64), f32, "fprop") == "depthwise"
    assert algo.choose(_geometry(C=64, K=64, groups=32), f32, "fprop") == "direct"  # 2 channels per group
    assert algo.choose(_geometry(N=1, C=8, K=8, H=8, W=8, P=8, Q=8), f32, "dgrad") == "direct"  # small
    huge = _geometry(N=2, C=512, H=1024, W=1024, P=1024, Q=1024)  # one image's cols: 18 GiB
    assert algo.choose(huge, f64, "wgrad") == "direct"


def test_autotune_candidates(algo, monkeypatch):
    import numpy

    monkeypatch.setenv(algo.ENV_VAR, "autotune")
    assert algo.choose(_geometry(), numpy.float32, "fprop") == "autotune"
    assert algo.candidates(_geometry(), numpy.float32, "fprop") == ("direct", "im2col", "implicit_gemm")
    assert algo.candidates(_geometry(), numpy.float64, "fprop") == ("direct", "im2col")
    assert algo.candidates(_geometry(K=128, groups=64), numpy.float64, "dgrad") == ("direct", "im2col", "depthwise")
    big = _geometry(N=64, C=512, K=512, H=56, W=56, P=56, Q=56)  # 237 GFLOP: direct is not timed
    assert algo.candidates(big, numpy.float32, "wgrad") == ("im2col", "implicit_gemm")


def test_forced_algorithm_follows_the_configuration(algo, monkeypatch):
    import numpy

    g = _geometry()
    for forced in ("direct", "im2col", "implicit_gemm", "Direct ", ""):
        monkeypatch.setenv(algo.ENV_VAR, forced)
        expected = forced.strip().lower() or "im2col"
        if expected == "implicit_gemm":  # not for float64: falls back to the auto rule
            expected = "im2col"
        assert algo.choose(g, numpy.float64, "wgrad") == expected
    monkeypatch.setenv(algo.ENV_VAR, "depthwise")  # not a depthwise problem: the auto rule decides
    assert algo.choose(g, numpy.float64, "fprop") == "im2col"
    assert algo.choose(_geometry(groups=64), numpy.float64, "fprop") == "depthwise"
    with pytest.raises(ValueError, match="GPUCONV_CONV_ALGO"):
        monkeypatch.setenv(algo.ENV_VAR, "winograd")  # read when the configuration is refreshed


def test_batch_chunks_respect_the_workspace_cap():
    import numpy

    from gpuconv._cuda import _config, _conv_im2col

    g = _geometry(N=10)
    per_image = _conv_im2col.im2col_bytes_per_image(g, numpy.float32)
    assert per_image == 64 * 9 * 32 * 32 * 4
    for workspace, chunk in ((3 * per_image + 1, 3), (1, 1), (1 << 40, 10)):
        with _config.override(workspace_bytes=workspace):
            assert _conv_im2col.batch_chunk(g, numpy.float32) == chunk
