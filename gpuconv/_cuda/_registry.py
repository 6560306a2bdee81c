"""Every leaf variant of the CUDA path, declared once: its kernels, where it applies, how it runs, and
whether it has run on a GPU.

A ``Variant`` is one algorithm that computes some passes without further choice: its kernel sources and
instantiations (``kernels``: the kernel table, ``_kernel_table.KERNELS``, is their union), ``supports(problem,
dtype, pass_name)``, ``run[pass_name]``, and ``feature``: None for a variant verified on a GPU (DESIGN.md,
"Verified and experimental"), else the ``GPUCONV_UNVERIFIED`` name that turns the experimental variant on.
``switch`` names a ``Config`` flag the variant also needs (TF32, the reference kernel).

``FAMILIES`` lists the variants of each algorithm in the order ``_algo`` tries them: experimental ones first
(they run only where allowed), then the verified ones, the last of which is the family's general case. This
module decides nothing; ``_algo`` picks.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

from . import _bias_sum, _conv_depthwise, _conv_direct, _conv_im2col, _loader, implicit_gemm, pad, pool
from .experimental import bias_grad, depthwise_v2, gemm_1x1, igemm_nhwc, igemm_nhwc_dgrad, igemm_nhwc_wgrad
from .experimental import nonfinite_weights, pool_wide

CONV_PASSES = ("fprop", "dgrad", "wgrad")


class Variant(NamedTuple):
    name: str
    kernels: dict  # source file under kernels/ -> instantiation names
    supports: Callable  # (problem, dtype, pass_name) -> bool
    run: dict  # pass name -> callable
    feature: str | None = None  # None: verified on a GPU; else experimental, on through GPUCONV_UNVERIFIED
    switch: str | None = None  # a Config flag the variant needs
    # The passes whose NaNs / infinities differ from PyTorch's for a non-finite weight (issue 14): a dgrad that
    # adds 0 * w for padding (zero-filled tiles), an fprop that skips padding taps. The "nonfinite_repair"
    # family's variant for that pass follows them where the configuration allows it.
    nonfinite_repair: tuple = ()

    @property
    def verified(self) -> bool:
        return self.feature is None


def _always(problem, dtype, pass_name) -> bool:
    return True


def _conv_run(module) -> dict:
    return {"fprop": module.conv2d_fprop, "dgrad": module.conv2d_dgrad, "wgrad": module.conv2d_wgrad}


def _igemm(name: str, kind, switch=None) -> Variant:
    run = {p: functools.partial(getattr(implicit_gemm, f"conv2d_{p}"), kind) for p in CONV_PASSES}
    return Variant(name, implicit_gemm.kernels((kind,)), functools.partial(implicit_gemm.supports, kind), run,
                   switch=switch, nonfinite_repair=("dgrad",))


def _passes(names: tuple, supports) -> Callable:
    return lambda g, dtype, pass_name: pass_name in names and supports(g, dtype, pass_name)


DIRECT = Variant("direct", _conv_direct.KERNELS, _always, _conv_run(_conv_direct), nonfinite_repair=("fprop",))
IM2COL = Variant("im2col", _conv_im2col.KERNELS, _always, _conv_run(_conv_im2col))
GEMM_1X1 = Variant("gemm_1x1", {}, lambda g, dtype, pass_name: gemm_1x1.applies(g), _conv_run(gemm_1x1),
                   feature="gemm_1x1")
IM2COL_HALF_BATCHED = Variant(
    "im2col_half_batched", {}, lambda g, dtype, pass_name: gemm_1x1.half_batched_applies(g, dtype),
    {"fprop": gemm_1x1.half_batched_fprop, "dgrad": gemm_1x1.half_batched_dgrad, "wgrad": gemm_1x1.half_batched_wgrad},
    feature="gemm_1x1")
IGEMM_NHWC = Variant("igemm_nhwc", igemm_nhwc.kernels(), _passes(("fprop", "dgrad"), igemm_nhwc.supports),
                     {"fprop": igemm_nhwc.conv2d_fprop, "dgrad": igemm_nhwc.conv2d_dgrad}, feature="igemm_nhwc",
                     nonfinite_repair=("dgrad",))
IGEMM_NHWC_DGRAD = Variant("igemm_nhwc_dgrad", igemm_nhwc_dgrad.kernels(),
                           _passes(("dgrad",), igemm_nhwc_dgrad.supports), {"dgrad": igemm_nhwc_dgrad.conv2d_dgrad},
                           feature="nhwc_dgrad", nonfinite_repair=("dgrad",))
IGEMM_NHWC_WGRAD = Variant("igemm_nhwc_wgrad", igemm_nhwc_wgrad.kernels(),
                           _passes(("wgrad",), igemm_nhwc_wgrad.supports), {"wgrad": igemm_nhwc_wgrad.conv2d_wgrad},
                           feature="nhwc_wgrad")
IGEMM_TF32 = _igemm("implicit_gemm_tf32", implicit_gemm.MMA_TF32, switch="allow_tf32")
IGEMM_MMA = _igemm("implicit_gemm_mma", implicit_gemm.MMA_HALF)
IGEMM_REFERENCE = _igemm("implicit_gemm_reference", implicit_gemm.REFERENCE, switch="igemm_reference")
IGEMM_SIMT = _igemm("implicit_gemm_simt", implicit_gemm.SIMT)
DEPTHWISE_V2 = Variant("depthwise_v2", depthwise_v2.kernels(), depthwise_v2.supports, _conv_run(depthwise_v2),
                       feature="depthwise_v2", nonfinite_repair=("dgrad",))
DEPTHWISE = Variant("depthwise", {_conv_depthwise.SOURCE: _conv_depthwise.kernel_names()}, _conv_depthwise.supports,
                    _conv_run(_conv_depthwise), nonfinite_repair=("dgrad",))
# Follows a pass listed in a variant's nonfinite_repair (experimental/nonfinite_weights.py): the dgrad's NaN
# pixels of channels with a non-finite weight recomputed by the direct gather; the fprop's skipped 0 * w added.
NONFINITE_WEIGHTS = Variant("nonfinite_weights", {nonfinite_weights.SOURCE: nonfinite_weights.kernel_names()}, _always,
                            {"dgrad": nonfinite_weights.repair_dgrad, "fprop": nonfinite_weights.repair_fprop},
                            feature="nonfinite_weights")

BIAS_GRAD_KERNEL = Variant("bias_grad_kernel", {bias_grad.SOURCE: bias_grad.kernel_names()}, _always,
                           {"bias_grad": bias_grad.bias_grad}, feature="bias_grad")
BIAS_GRAD_SUM = Variant("bias_grad_sum", {}, _always, {"bias_grad": _bias_sum.bias_grad})

POOL_WIDE = Variant("pool_wide", pool_wide.kernels(), lambda g, dtype, pass_name: pool_wide.supports(g, dtype),
                    {"max_fprop": pool_wide.max_pool2d_fprop, "avg_fprop": pool_wide.avg_pool2d_fprop,
                     "avg_bprop": pool_wide.avg_pool2d_bprop}, feature="pool_wide")
POOL = Variant("pool", pool.kernels(), _always, {"max_fprop": pool.max_pool2d_fprop, "avg_fprop": pool.avg_pool2d_fprop,
                                                 "avg_bprop": pool.avg_pool2d_bprop})
POOL_BPROP_PLANE_WIDE = Variant("pool_bprop_plane_wide", {}, lambda p, dtype, pass_name: pool_wide.plane_supports(p, dtype),
                                {"max_bprop": pool_wide.max_bprop_plane}, feature="pool_wide")
POOL_BPROP_PLANE = Variant("pool_bprop_plane", {}, lambda p, dtype, pass_name: pool.plane_supports(p, dtype),
                           {"max_bprop": pool.max_bprop_plane})
POOL_BPROP_SORT = Variant("pool_bprop_sort", {}, _always, {"max_bprop": pool.max_bprop_sort})

PAD = Variant("pad", pad.KERNELS, _always, {"pad": pad.pad2d, "pad_backward": pad.pad2d_backward})

FAMILIES = {
    "direct": (DIRECT,),
    "im2col": (GEMM_1X1, IM2COL_HALF_BATCHED, IM2COL),
    "implicit_gemm": (IGEMM_NHWC, IGEMM_NHWC_DGRAD, IGEMM_NHWC_WGRAD, IGEMM_TF32, IGEMM_MMA, IGEMM_REFERENCE,
                      IGEMM_SIMT),
    "depthwise": (DEPTHWISE_V2, DEPTHWISE),
    "nonfinite_repair": (NONFINITE_WEIGHTS,),
    "bias_grad": (BIAS_GRAD_KERNEL, BIAS_GRAD_SUM),
    "pool": (POOL_WIDE, POOL),
    "max_pool_bprop": (POOL_BPROP_PLANE_WIDE, POOL_BPROP_PLANE, POOL_BPROP_SORT),
    "pad": (PAD,),
}
VARIANTS = tuple(v for family in FAMILIES.values() for v in family)


def kernel_table() -> dict:
    """{source file: instantiation names}, the union of every variant's declaration, each name once."""
    table: dict = {}
    for variant in VARIANTS:
        for source, names in variant.kernels.items():
            listed = table.setdefault(source, [])
            listed += [n for n in names if n not in listed]
    return {source: tuple(names) for source, names in table.items()}


# Native bfloat16 kernels (experimental): one file per family under kernels/experimental/ that includes the
# family's source and instantiates every float16 kernel of it with T = __nv_bfloat16 (float accumulation, one
# rounding on store; the implicit GEMMs on mma.sync m16n8k16 .bf16). Compiled by NVRTC in CI and run on the
# host stand-ins; no launcher chooses them yet (bfloat16 runs through float32: gpuconv._backend), so the
# variant supports nothing until a GPU run has checked and timed them.
BF16_FAMILIES = ("im2col.cu", "conv_direct.cu", "pad.cu", "conv_depthwise.cu", "pool.cu", "experimental/bias_grad.cu",
                 "implicit_gemm_fprop.cu", "implicit_gemm_dgrad.cu", "implicit_gemm_wgrad.cu")


def bf16_source(source_file: str) -> str:
    """The experimental file holding the bfloat16 instantiations of ``source_file``'s kernels."""
    return f"experimental/bf16_{source_file.rsplit('/', 1)[-1]}"


def _bf16_kernels(table: dict) -> dict:
    return {bf16_source(f): tuple(n.replace("__half", "__nv_bfloat16") for n in table[f] if "__half" in n)
            for f in BF16_FAMILIES}


BF16_NATIVE = Variant("bf16_native", _bf16_kernels(kernel_table()), lambda g, dtype, pass_name: False, {},
                      feature="bf16_native")
FAMILIES["bf16_native"] = (BF16_NATIVE,)
VARIANTS = VARIANTS + (BF16_NATIVE,)
KERNELS = kernel_table()
COMPILE_OPTIONS = _loader.COMPILE_OPTIONS
_loader.use_table(KERNELS)
