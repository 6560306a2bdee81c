"""Checks of the benchmark scripts' own logic (no timing, no GPU): python -m pytest bench/test_bench.py -q"""

import math
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import layers  # noqa: E402
import profile_ncu  # noqa: E402
import report  # noqa: E402


def test_every_layer_has_a_valid_geometry_and_unique_name():
    assert len(layers.BY_NAME) == len(layers.LAYERS)
    for layer in layers.LAYERS:
        g = layer.at_batch(2).geometry()
        assert g.N == 2
        assert all(d > 0 for d in layer.at_batch(2).output_shape)


def test_transposed_conv_output_and_kernel_passes():
    dcgan = layers.BY_NAME["dcgan_g_convt4x4s2"].at_batch(1)
    assert dcgan.output_shape == (1, 64, 32, 32)
    assert [dcgan.kernel_pass(p) for p in ("fprop", "dgrad", "wgrad")] == ["dgrad", "fprop", "wgrad"]


def _row(layer, p, torch_ms, gpuconv_ms, ok=True, suite="cpu"):
    return {"suite": suite, "layer": layer, "kind": "conv", "dtype": "float32", "algo": "numpy", "pass": p,
            "torch_ms": torch_ms, "gpuconv_ms": gpuconv_ms, "ratio": torch_ms / gpuconv_ms, "ok": ok,
            "torch_min_ms": torch_ms, "gpuconv_min_ms": gpuconv_ms, "ratio_min": torch_ms / gpuconv_ms}


def test_summary_geomeans_and_whole_layer_ratio():
    rows = [_row("a", "fprop", 2, 1), _row("a", "dgrad", 1, 1), _row("a", "wgrad", 1, 2),
            _row("b", "fprop", 1, 2), _row("b", "dgrad", 1, 1), _row("b", "wgrad", 1, 1, ok=False)]
    s = {x["group"]: x for x in report.summarise(rows)}
    assert s["fprop"]["geomean_ratio"] == pytest.approx(1.0)  # sqrt(2 * 0.5)
    assert s["forward+backward"]["n"] == 1  # layer b has a failed pass: left out
    assert s["forward+backward"]["geomean_ratio"] == pytest.approx(4 / 4)
    assert s["wgrad"]["n"] == 1 and s["fprop"]["failed"] == 1


def test_geomean_ignores_missing_values():
    assert report.geomean([2, 8, None]) == pytest.approx(4)
    assert report.geomean([]) is None and math.isclose(report.geomean([3]), 3)


NCU_CSV = '''==PROF== Connected to process 11
"ID","Process ID","Process Name","Host Name","Kernel Name","gpu__time_duration.sum","dram__bytes_read.sum","dram__bytes_write.sum","sm__sass_thread_inst_executed_op_ffma_pred_on.sum","sm__warps_active.avg.pct_of_peak_sustained_active","launch__registers_per_thread"
"","","","","","nsecond","byte","byte","inst","%","register/thread"
"0","11","python3","h","k<float>","1,000","2,000,000","1,000,000","500,000,000","50","40"
"1","11","python3","h","k<float>","3,000","2,000,000","3,000,000","500,000,000","70","40"
'''


def test_ncu_csv_summary():
    (k,) = profile_ncu.summarise(profile_ncu.parse_raw_csv(NCU_CSV))
    assert k["launches"] == 2 and k["us"] == pytest.approx(4.0)
    assert k["dram_GBps"] == pytest.approx(8e6 / 4e-6 / 1e9)
    assert k["GFLOPs"] == pytest.approx(2e9 / 4e-6 / 1e9)
    assert k["achieved_occupancy_pct"] == pytest.approx((50 * 1 + 70 * 3) / 4)  # weighted by duration
    assert k["registers"] == 40


class _FakeCupy:
    """Enough of CuPy for timing.CudaTimer: events that read the wall clock, a buffer that counts fills."""

    class cuda:  # noqa: N801 (mirrors cupy.cuda)
        class Event:
            def record(self):
                import time

                self.t = time.perf_counter()

            def synchronize(self):
                pass

        @staticmethod
        def get_elapsed_time(a, b):
            return (b.t - a.t) * 1e3

    uint8 = "uint8"

    class _Buffer:
        fills = 0

        def fill(self, v):
            type(self).fills += 1

    @classmethod
    def empty(cls, n, dtype):
        return cls._Buffer()


def test_cuda_timer_flushes_before_each_call_and_rotates_sets():
    import timing

    timer = timing.CudaTimer(1 << 20, cupy=_FakeCupy)
    seen = []
    times = timer.time(seen.append, ["a", "b", "c"], flush=True, warmup=2, budget_s=0.0, min_reps=4, max_reps=9)
    assert len(times) == 4 and all(t >= 0 for t in times)
    assert seen == ["a", "b", "c", "a", "b", "c", "a"]  # 2 warm-up, 1 estimate, then 4 timed from set 0
    assert _FakeCupy._Buffer.fills == 1 + 4  # the estimate and every timed call start with a cold L2


@pytest.mark.skipif(__import__("shutil").which("nvcc") is None and not os.path.exists("/usr/local/cuda/bin/nvcc"),
                    reason="needs nvcc")
def test_resource_report_lists_every_instantiation_of_a_file():
    import resource_report
    from gpuconv._cuda import _kernel_table

    rows = resource_report.report("im2col.cu", "sm_90", __import__("shutil").which("nvcc") or "/usr/local/cuda/bin/nvcc")
    assert sorted(r[0].replace(" ", "") for r in rows) == sorted(n.replace(" ", "") for n in
                                                                 _kernel_table.KERNELS["im2col.cu"])
    assert all(r[1] > 0 for r in rows)  # a register count was parsed for each


class _CopyCupy:
    """NumPy dressed as the part of CuPy bench/hbm.py uses; every event pair reads as 0.5 ms."""
    import numpy as _np

    float32 = _np.float32
    arange, empty_like, copyto = staticmethod(_np.arange), staticmethod(_np.empty_like), staticmethod(_np.copyto)

    class cuda:
        class Event:
            def record(self, stream=None):
                pass

            def synchronize(self):
                pass

        @staticmethod
        def get_current_stream():
            return None

        @staticmethod
        def get_elapsed_time(start, end):
            return 0.5

    class _Pool:
        def free_all_blocks(self):
            pass

    @classmethod
    def get_default_memory_pool(cls):
        return cls._Pool()


def test_hbm_copy_bandwidth_counts_read_and_write():
    import bench_gpu
    import hbm

    rate = hbm.copy_bytes_per_s(_CopyCupy, nbytes=4096, reps=3)
    assert rate == pytest.approx(2 * 4096 / 0.5e-3)
    row = {"suite": "batch", "title": "max pool", "dtype": "float32", "pass": "fwd", "gpuconv_ms": 0.1,
           "gpuconv_rate": 2100.0, "gpuconv_pct_hbm_copy": 70.0}
    lines = bench_gpu.pooling_against_copy({"hbm_copy_bytes_per_s": 3.0e12}, [row, {"gpuconv_rate": 1.0}])
    assert lines[0].startswith("## Pooling against the measured copy bandwidth (3000 GB/s")
    assert lines[-2].endswith("| 2100 | 70% |") and len(lines) == 6  # title, blank, header, rule, row, blank
    assert bench_gpu.pooling_against_copy({}, [row]) == []


# The H100 run the auto rule's float32 thresholds come from (gpuconv/_cuda/_algo.py).
RULE_RUN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gpu-h100-2026-11-22-r2", "bench",
                        "float32", "results.json")


def test_auto_rule_picks_a_measured_fastest_float32_algorithm(monkeypatch):
    """On every conv pass of the batch suite, the algorithm the auto rule picks was within 5% of the fastest
    forced algorithm in the committed H100 run (float32; the float16 rule waits for the NHWC kernels)."""
    import json

    import numpy

    pytest.importorskip("cupy")
    monkeypatch.delenv("GPUCONV_UNVERIFIED", raising=False)  # the rule the committed run measured
    from gpuconv._cuda import _algo

    rows = [r for r in json.load(open(RULE_RUN))["rows"] if r["suite"] == "batch" and r.get("ok")]
    forced = {}
    for r in rows:
        if r["algo"] in _algo.ALGORITHMS:
            forced.setdefault((r["layer"], r["pass"]), {})[r["algo"]] = r["gpuconv_ms"]
    by_name = {layer.name: layer for _, layer in layers.gpu_suite(None, False, batch1=False)}
    slower = []
    for (name, pass_name), times in sorted(forced.items()):
        layer = by_name[name]
        chosen = _algo.auto(layer.geometry(), numpy.float32, layer.kernel_pass(pass_name),
                                   _config_module().from_environment({}))
        if times[chosen] > 1.05 * min(times.values()):
            slower.append(f"{name} {pass_name}: {chosen} {times[chosen]:.3f} ms, best {min(times, key=times.get)} "
                          f"{min(times.values()):.3f} ms")
    assert len(forced) == 36 and not slower, slower


def test_side_by_side_compares_new_with_the_mean_of_the_old_runs():
    import side_by_side

    key = ("batch", "resnet50_maxpool", "float32", "fwd", "auto")
    other = ("batch", "resnet50_maxpool", "float32", "bwd", "auto")
    lines = side_by_side.table({"old": {key: 1.0, other: 2.0}, "new": {key: 0.5}, "old2": {key: 1.5, other: 2.0}})
    assert len(lines) == 3  # header, rule, and only the row every run measured
    assert lines[2].endswith("| 1 | 0.5 | 1.5 | 0.400 | 40.0% |")


def test_side_by_side_sets_new_against_its_prediction():
    import side_by_side

    auto = ("batch", "resnet50_maxpool", "float32", "fwd", "auto")
    forced = ("batch", "resnet50_maxpool", "float32", "fwd", "direct")
    predictions = side_by_side.load_predictions(os.path.join(os.path.dirname(__file__), "notes", "predictions.json"))
    assert predictions[("resnet50_maxpool", "float32", "fwd")] == 0.066
    lines = side_by_side.table({"old": {auto: 0.08, forced: 1.0}, "new": {auto: 0.033, forced: 1.0}}, predictions)
    assert lines[0].endswith("| predicted ms | new / predicted |") and lines[1].count("---:") == 6
    assert lines[2].endswith("| 0.066 | 0.50 |")  # measured half the prediction
    assert lines[3].endswith("| - | - |")  # a forced algorithm: the prediction is for the auto rule's pick
    for layer, dtype, pass_name in predictions:  # every prediction names a layer and pass of the suite
        assert dtype in ("float16", "float32") and pass_name in layers.BY_NAME[layer].passes, (layer, dtype, pass_name)


def _config_module():
    from gpuconv._cuda import _config

    return _config


def test_auto_rule_sends_1x1_layers_to_gemm_1x1_only_when_it_is_on():
    import numpy

    pytest.importorskip("cupy")
    from gpuconv._cuda import _algo

    by_name = {layer.name: layer for _, layer in layers.gpu_suite(None, False, batch1=False)}
    one_by_one, three_by_three = by_name["resnet50_l1_1x1_expand"].geometry(), by_name["resnet50_l1_3x3"].geometry()
    assert _algo.auto(one_by_one, numpy.float32, "fprop", _config_module().from_environment({})) == "implicit_gemm"
    from gpuconv._cuda import _config

    with_1x1 = _config.from_environment({"GPUCONV_UNVERIFIED": "gemm_1x1"})
    assert [_algo.auto(one_by_one, numpy.float32, p, with_1x1) for p in _algo.PASSES] == ["im2col"] * 3
    assert _algo.auto(three_by_three, numpy.float32, "fprop", with_1x1) == "implicit_gemm"
