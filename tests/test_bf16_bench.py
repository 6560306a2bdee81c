"""The benchmark scripts' bfloat16 plumbing, without timing or a GPU: the tensor <-> array crossings the CPU
benchmark uses, the check tolerance, and bench_gpu's bfloat16 rows (options, which algorithms apply)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy
import pytest

torch = pytest.importorskip("torch")
BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import bench_gpu  # noqa: E402
import checks  # noqa: E402
import interop  # noqa: E402
import layers  # noqa: E402

from helpers import BFLOAT16  # noqa: E402


def test_bfloat16_tensors_cross_to_numpy_and_back_without_copies():
    t = torch.randn(2, 3, 5, 4).to(torch.bfloat16)
    (a,) = interop.to_gpuconv({"x": t}).values()
    assert a.dtype == BFLOAT16 and a.ctypes.data == t.data_ptr()
    back = interop.to_torch(a)
    assert back.dtype == torch.bfloat16 and torch.equal(back, t)
    assert interop.from_numpy(a).data_ptr() == t.data_ptr()


def test_check_tolerance_covers_bfloat16_rounding_but_not_a_wrong_answer():
    ref = torch.randn(64, dtype=torch.float64)
    rounded = ref.to(torch.bfloat16)
    assert checks.verdict(checks.relative_error(rounded, ref), 0.0, torch.bfloat16)
    assert not checks.verdict(checks.relative_error(rounded * 1.1, ref), 0.0, torch.bfloat16)


def test_bench_gpu_takes_bfloat16_and_applies_the_float32_algorithms():
    args = bench_gpu.parse_args(["--dtypes", "float32", "bfloat16"])
    assert args.dtypes == ["float32", "bfloat16"] and "bfloat16" in bench_gpu.PEAK_FLOPS
    assert bench_gpu.kernel_dtype("bfloat16") == numpy.dtype(numpy.float32)
    for layer in layers.LAYERS[:6]:
        for p in layer.at_batch(2).passes:
            assert (bench_gpu.algos_for(layer, p, "bfloat16", bench_gpu.ALGOS)
                    == bench_gpu.algos_for(layer, p, "float32", bench_gpu.ALGOS))
