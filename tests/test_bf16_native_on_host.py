"""The experimental native bfloat16 kernels (bf16_native, kernels/experimental/bf16_*.cu) on the CPU.

Each family's bfloat16 instantiations are built with g++ against the shim of tests/host_cuda (whose
__nv_bfloat16 rounds to nearest even, as cuda_bf16.h's) and driven through the real float16 launchers: every
float16 kernel launch is replaced by the bfloat16 instantiation of the same kernel, with the same grid, block
and scalars (the element size is the same, so the launcher's vector and tile choices hold), on bfloat16
copies of the float16 arrays, which are copied back afterwards. The operands are multiples of 1/16 in
[-4, 4], exact in both 16-bit types; every bfloat16 result is exact in float16, so the copies lose nothing.

Oracles: the float64 reference of tests/reference.py, within one bfloat16 rounding of the result (2^-8
relative, round to nearest even) plus float32 accumulation; and every result is a bfloat16 value (the float16
kernel's sums would not be). The implicit GEMMs' bfloat16 variants run in the mma.sync emulation
(tests/test_implicit_gemm_on_host.py, kind "mma_bf16"), the pooling ones in tests/test_cuda_pool_host.py's
harness (test_bf16_pool_on_host below). Nothing here ran on a GPU.
"""

from __future__ import annotations

import ml_dtypes
import numpy
import pytest

import reference
import test_bias_grad_on_host as bias_host
import test_cuda_pool_host as pool_host
import test_depthwise_on_host as dw_host
import test_kernels_on_host as conv_host
from gpuconv._cuda import _kernel_table as kernel_table
from gpuconv._cuda import _loader as loader
from gpuconv._cuda import _runtime
from support import host_kernels
from support.host_modules import HostRuntime, cuda_modules_on_host

BF16 = numpy.dtype(ml_dtypes.bfloat16)
CONV_FAMILIES = ("im2col.cu", "conv_direct.cu", "pad.cu")
LAUNCHED = set()  # every bfloat16 instantiation launched by this module's tests


def _names(family: str) -> tuple:
    return kernel_table.KERNELS[kernel_table.bf16_source(family)]


class Bf16Twin:
    """Stands in for the float16 kernel ``name``: runs its bfloat16 twin (``make(bf16 name)``) on bfloat16
    copies of the float16 array arguments, then copies them back into the float16 arrays."""

    def __init__(self, make, name: str):
        assert "__half" in name, f"{name}: the bfloat16 tests drive float16 launches only"
        self.bf16_name = name.replace("__half", "__nv_bfloat16")
        self.kernel = make(self.bf16_name)

    def __call__(self, grid, block, args, **launch_options):
        copies = [a.astype(BF16) if isinstance(a, numpy.ndarray) and a.dtype == numpy.float16 else a for a in args]
        self.kernel(grid, block, copies, **launch_options)
        for a, c in zip(args, copies):
            if c is not a:
                a[...] = c.astype(numpy.float32).astype(numpy.float16)
        LAUNCHED.add(self.bf16_name)


def operand(rng, shape):
    """Multiples of 1/16 in [-4, 4] (never all zero): exact in float16 and bfloat16."""
    return (rng.integers(-64, 65, size=shape) / 16).astype(numpy.float16)


def check(actual, expected, magnitude, terms, what):
    """Within one bfloat16 rounding of the float64 result plus float32 accumulation, and a bfloat16 value."""
    actual = numpy.asarray(actual)
    assert actual.dtype == numpy.float16 and not numpy.isnan(actual).any(), f"{what}: unwritten (NaN) elements"
    as32 = actual.astype(numpy.float32)
    assert numpy.array_equal(as32.astype(BF16).astype(numpy.float32), as32), f"{what}: not bfloat16 values"
    accumulation = 4e-7 * max(1, terms) ** 0.5 * (magnitude + 1e-30)
    bound = 2.0 ** -8 * (numpy.abs(expected) + accumulation) + accumulation
    err = numpy.abs(actual.astype(numpy.float64) - expected)
    assert (err <= bound).all(), f"{what}: max error {err.max():.3g}, bound there {bound.flat[err.argmax()]:.3g}"


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    """Outputs come from _alloc.empty filled with NaN: an unwritten element fails."""
    monkeypatch.setenv("GPUCONV_POISON", "1")


# ------------------------------------------------------------------------ direct, im2col / col2im, pad


@pytest.fixture(scope="module")
def conv_lib(tmp_path_factory):
    units = []
    for family in CONV_FAMILIES:
        kernels = sorted({n.split("<")[0] for n in _names(family)})
        text = loader.source(kernel_table.bf16_source(family)) + '\n#include "launch.h"\n' + "".join(
            conv_host._wrapper(k, "__nv_bfloat16") for k in kernels)
        units.append((f"bf16_{family[:-3]}", kernel_table.bf16_source(family), text))
    return host_kernels.build_library(tmp_path_factory.mktemp("bf16_conv"), units, "libbf16conv.so")


@pytest.fixture
def conv(conv_lib):
    """gpuconv/_cuda's direct, im2col and pad launchers on the host runtime, their float16 launches running
    the bfloat16 twins."""
    with cuda_modules_on_host(("_loader", "_launch", "_alloc", "_algo", "_conv_direct", "_conv_im2col", "pad"),
                              lambda name: Bf16Twin(lambda n: conv_host.HostKernel(conv_lib, n), name)) as modules:
        yield modules


@pytest.mark.parametrize("g", conv_host.GEOMETRIES, ids=conv_host.GEOMETRY_IDS)
def test_direct_kernels(conv, g):
    rng = numpy.random.default_rng(11)
    x, w, gy = operand(rng, g.input_shape), operand(rng, g.weight_shape), operand(rng, g.output_shape)
    bias_k, bias_c = operand(rng, g.K), operand(rng, g.C)
    (y, y_mag), (gx, gx_mag), (gw, gw_mag) = conv_host._expected(g, x, w, gy, bias_k, bias_c)
    on = conv_host.on_device
    check(conv._conv_direct.conv2d_fprop(g, on(x), on(w), on(bias_k)), y, y_mag, g.c_per_group * g.R * g.S, "fprop")
    check(conv._conv_direct.conv2d_dgrad(g, on(gy), on(w), on(bias_c)), gx, gx_mag, g.k_per_group * g.R * g.S,
          "dgrad")
    check(conv._conv_direct.conv2d_wgrad(g, on(x), on(gy)), gw, gw_mag, g.N * g.P * g.Q, "wgrad")


def im2col_index(g):
    """(C*R*S, N*P*Q): the flat index into x of each column element (row (c*R + r)*S + s, column
    (n*P + p)*Q + q), or -1 where it lies in the padding."""
    c, r, s = (a.reshape(-1, 1) for a in numpy.meshgrid(numpy.arange(g.C), numpy.arange(g.R), numpy.arange(g.S),
                                                         indexing="ij"))
    n, p, q = (a.reshape(1, -1) for a in numpy.meshgrid(numpy.arange(g.N), numpy.arange(g.P), numpy.arange(g.Q),
                                                         indexing="ij"))
    h = p * g.stride_h - g.pad_top + r * g.dil_h
    w = q * g.stride_w - g.pad_left + s * g.dil_w
    inside = (h >= 0) & (h < g.H) & (w >= 0) & (w < g.W)
    return numpy.where(inside, ((n * g.C + c) * g.H + h) * g.W + w, -1)


@pytest.mark.parametrize("g", conv_host.GEOMETRIES, ids=conv_host.GEOMETRY_IDS)
def test_im2col_copies_and_col2im_gathers(conv, g):
    """im2col copies x exactly (zeros in the padding); col2im sums, for each pixel, the column elements
    that hold it (plus the bias), rounded once."""
    rng = numpy.random.default_rng(12)
    x = operand(rng, g.input_shape)
    idx = im2col_index(g)
    cols = numpy.asarray(conv._conv_im2col._im2col(g, conv_host.on_device(x))).reshape(idx.shape)
    assert numpy.array_equal(cols, numpy.where(idx >= 0, x.ravel()[idx], 0).astype(numpy.float16))
    c, bias = operand(rng, idx.shape), operand(rng, g.C)
    back = conv._alloc.empty(g.input_shape, numpy.float16)
    conv._conv_im2col._col2im(g, c, bias, back)
    expected = numpy.zeros(x.size) + numpy.repeat(numpy.tile(bias.astype(numpy.float64), g.N), g.H * g.W)
    magnitude = numpy.abs(expected)
    hit = idx >= 0
    numpy.add.at(expected, idx[hit], c.astype(numpy.float64)[hit])
    numpy.add.at(magnitude, idx[hit], numpy.abs(c.astype(numpy.float64))[hit])
    check(back, expected.reshape(x.shape), magnitude.reshape(x.shape), g.R * g.S, "col2im")


@pytest.mark.parametrize("mode", ("reflect", "replicate", "circular"))
@pytest.mark.parametrize("shape, pads", conv_host.PAD_CASES)
def test_pad_kernels(conv, shape, pads, mode):
    H, W = shape[2:]
    sizes = (H, H, W, W)
    if (mode == "reflect" and any(p >= s for p, s in zip(pads, sizes))) or (
            mode == "circular" and any(p > s for p, s in zip(pads, sizes))):
        pytest.skip("padding beyond what this mode allows (_params rejects it)")
    rng = numpy.random.default_rng(13)
    x = operand(rng, shape)
    xp = numpy.asarray(conv.pad.pad2d(conv_host.on_device(x), pads, mode))
    assert numpy.array_equal(xp.astype(numpy.float64), reference.pad2d(x.astype(numpy.float64), pads, mode))
    gxp = operand(rng, xp.shape)
    gx = conv.pad.pad2d_backward(conv_host.on_device(gxp), pads, mode)
    check(gx, reference.pad2d_backward(gxp.astype(numpy.float64), pads, mode, H, W),
          reference.pad2d_backward(numpy.abs(gxp.astype(numpy.float64)), pads, mode, H, W), 16, "pad2d_backward")


# --------------------------------------------------------------------------------------- depthwise v1


@pytest.fixture(scope="module")
def dw_lib(tmp_path_factory):
    source = kernel_table.bf16_source(dw_host.SOURCE)
    unit = host_kernels.translation_unit(loader.source(source), kernel_table.KERNELS[source], dw_host.KERNELS)
    return host_kernels.build_library(tmp_path_factory.mktemp("bf16_dw"), [("bf16_conv_depthwise", source, unit)],
                                      "libbf16dw.so")


@pytest.fixture
def dw(dw_lib):
    with cuda_modules_on_host(("_loader", "_launch", "_alloc", "_conv_depthwise"),
                              lambda name: Bf16Twin(lambda n: dw_host.HostKernel(dw_lib, n), name)) as modules:
        yield modules


@pytest.mark.parametrize("specialised", (True, False), ids=("3x3", "generic"))
@pytest.mark.parametrize("name", sorted(dw_host.GEOMETRIES))
def test_depthwise_kernels(dw, tunables, name, specialised):
    g = dw_host.GEOMETRIES[name]
    if not specialised:  # every filter, 3x3 included, on the generic <T, 0, 0> kernels
        tunables(depthwise_specialised=False)
    assert dw._conv_depthwise.supports(g, numpy.float16, "fprop")
    rng = numpy.random.default_rng(14)
    x, w, gy = operand(rng, g.input_shape), operand(rng, g.weight_shape), operand(rng, g.output_shape)
    bias_k, bias_c = operand(rng, g.K), operand(rng, g.C)
    args = dw_host._reference_args(g)
    f64 = lambda a: a.astype(numpy.float64)
    y = reference.conv2d(f64(x), f64(w), f64(bias_k), **args)
    y_mag = reference.conv2d(numpy.abs(f64(x)), numpy.abs(f64(w)), numpy.abs(f64(bias_k)), **args)
    gx, gw, _ = reference.conv2d_backward(f64(gy), f64(x), f64(w), **args)
    gx_mag, gw_mag, _ = reference.conv2d_backward(numpy.abs(f64(gy)), numpy.abs(f64(x)), numpy.abs(f64(w)), **args)
    bc = f64(bias_c)[None, :, None, None]
    m = g.K // g.C
    check(dw._conv_depthwise.conv2d_fprop(g, x, w, bias_k), y, y_mag, g.R * g.S, "fprop")
    check(dw._conv_depthwise.conv2d_dgrad(g, gy, w, bias_c), gx + bc, gx_mag + numpy.abs(bc), m * g.R * g.S, "dgrad")
    check(dw._conv_depthwise.conv2d_wgrad(g, x, gy), gw, gw_mag, g.N * g.P * g.Q, "wgrad")


# ------------------------------------------------------------------------------------------ bias grad


@pytest.fixture(scope="module")
def bg_lib(tmp_path_factory):
    source = kernel_table.bf16_source(bias_host.SOURCE)
    unit = host_kernels.translation_unit(loader.source(source), kernel_table.KERNELS[source], bias_host.KERNELS)
    return host_kernels.build_library(tmp_path_factory.mktemp("bf16_bg"), [("bf16_bias_grad", source, unit)],
                                      "libbf16bg.so")


@pytest.fixture
def bg(bg_lib):
    with cuda_modules_on_host(("_loader", "_launch", "_alloc", "_bias_grad"),
                              lambda name: Bf16Twin(lambda n: bias_host.HostKernel(bg_lib, n), name)) as modules:
        yield modules._bias_grad


# (shape, split_bytes): one launch, 16-byte units, elements (P*Q odd), and split sums with the ordered reduction
BIAS_CASES = [((2, 5, 4, 4), None), ((3, 4, 3, 5), None), ((4, 6, 8, 8), 64), ((2, 3, 7, 7), 40)]


@pytest.mark.parametrize("shape, split_bytes", BIAS_CASES)
def test_bias_grad_kernels(bg, tunables, shape, split_bytes):
    if split_bytes is not None:  # a tunable, shrunk to reach the split sums on small tensors
        tunables(bias_split_bytes=split_bytes)
    gy = operand(numpy.random.default_rng(15), shape)
    N, K, P, Q = shape
    before = set(LAUNCHED)
    gb = bg.bias_grad(gy)
    if split_bytes is not None:  # the split sums and their ordered reduction
        assert "conv2d_bias_grad_reduce<__nv_bfloat16>" in LAUNCHED, sorted(LAUNCHED - before)
    g64 = gy.astype(numpy.float64)
    check(gb, g64.sum(axis=(0, 2, 3)), numpy.abs(g64).sum(axis=(0, 2, 3)), N * P * Q, "grad_bias")


# ------------------------------------------------------------------------------------------- pooling


@pytest.fixture(scope="module")
def bf16_pool_kernels(tmp_path_factory):
    """{name: pool_host.HostKernel} of experimental/bf16_pool.cu's names and pool.cu's dtype-free key kernels,
    built as tests/test_cuda_pool_host.py builds pool.cu (g++ and the CUDA toolkit's own cuda_bf16.h)."""
    import ctypes
    import shutil
    import subprocess

    compiler, include = shutil.which("g++"), pool_host._cuda_include_dir()
    if compiler is None or include is None:
        pytest.skip("the host build of pool.cu needs g++ and a CUDA toolkit's headers")
    source = kernel_table.bf16_source("pool.cu")
    text = loader.source(source)
    signatures = pool_host.kernel_signatures(text)
    names = kernel_table.KERNELS[source] + tuple(n for n in kernel_table.KERNELS["pool.cu"] if "bprop_keys" in n)
    runners, instances = [], {}
    for expression in names:
        name, targs, params = pool_host._instantiation(expression, signatures)
        instances[expression] = params
        runners.append(pool_host.HARNESS_RUNNER.format(
            symbol=pool_host._symbol(expression), params=", ".join(f"{c} {n}" for c, n in params),
            kernel=f"{name}<{', '.join(targs)}>", names=", ".join(n for _, n in params),
            threaded="true" if name in pool_host.THREADED_KERNELS else "false"))
    work = tmp_path_factory.mktemp("bf16_pool")
    cpp = work / "bf16_pool_host.cpp"
    prelude = pool_host.HARNESS_PRELUDE.replace("#include <cuda_fp16.h>\n", "#include <cuda_fp16.h>\n#include <cuda_bf16.h>\n")
    cpp.write_text(prelude + text + "".join(runners))
    lib_path = work / "libbf16pool.so"
    done = subprocess.run([compiler, "-std=c++20", "-pthread", "-O1", "-w", "-shared", "-fPIC", f"-I{include}", "-o",
                           str(lib_path), str(cpp)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    lib = ctypes.CDLL(str(lib_path))
    return {e: pool_host.HostKernel(getattr(lib, f"run_{pool_host._symbol(e)}"), p,
                                    pool_host.THREADED_KERNELS.get(e.split("<")[0])) for e, p in instances.items()}


class _PoolRuntime(HostRuntime):
    """The host runtime with tests/test_cuda_pool_host.py's CuPy stand-in (arrays with a ``.device``); records
    the (source, kernel) of every launch in ``launched``."""

    xp = pool_host.HostCupy

    def __init__(self, make_kernel, launched: list):
        super().__init__(make_kernel)
        self.launched = launched

    def get_function(self, source_file, name):
        self.launched.append((source_file, name))
        return super().get_function(source_file, name)


@pytest.fixture
def bf16_pool(bf16_pool_kernels, monkeypatch):
    """gpuconv._cuda's pooling (entry, selection, launchers; GPUCONV_UNVERIFIED unset: the default kernels) on
    the host runtime, its float16 launches running the bfloat16 twins (the key kernels as they are); outputs
    NaN-poisoned (GPUCONV_POISON, the autouse fixture). ``launched`` as tests/test_cuda_pool_host.py's."""
    monkeypatch.delenv("GPUCONV_UNVERIFIED", raising=False)
    pooling = pool_host._Pooling()
    pooling.launched = []
    make = lambda name: Bf16Twin(bf16_pool_kernels.__getitem__, name) if "__half" in name else bf16_pool_kernels[name]
    with _runtime.use(_PoolRuntime(make, pooling.launched)):
        yield pooling


@pool_host.needs_torch
@pytest.mark.parametrize("index_type", ["int", "long long"])
@pytest.mark.parametrize("case", pool_host.POOL_CASES[:4])
def test_max_pool_kernels(bf16_pool, tunables, case, index_type):
    import torch

    shape, kernel, stride, padding, dilation, ceil_mode = case
    rng = numpy.random.default_rng(16)
    x = (rng.permutation(int(numpy.prod(shape))) / 4 - 8).reshape(shape).astype(numpy.float16)  # no ties, exact
    g = pool_host._geometry(shape, kernel, stride, padding, dilation, ceil_mode)
    if index_type == "long long":  # pretend nothing fits in 31 bits: the 64-bit kernels
        tunables(index_limit=-1)
    y, idx = bf16_pool.max_pool2d_fprop(g, pool_host._host(x))
    ty, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x.astype(numpy.float32)), kernel, stride, padding,
                                              dilation, ceil_mode, return_indices=True)
    numpy.testing.assert_array_equal(numpy.asarray(idx), tidx.numpy())
    numpy.testing.assert_array_equal(numpy.asarray(y).astype(numpy.float32), ty.numpy())
    gy = operand(rng, g.output_shape)
    paths = ["sort", "sort-chunked"] if index_type == "long long" else list(pool_host.BPROP_PATHS)
    for path in paths:
        gx = pool_host._bprop_on_path(bf16_pool, tunables, path, gy, numpy.asarray(idx), g.input_shape)
        expected, magnitude = numpy.zeros(x.size), numpy.zeros(x.size)
        planes = (numpy.arange(g.N * g.C)[:, None] * (g.H * g.W) + numpy.asarray(idx).reshape(g.N * g.C, -1)).ravel()
        numpy.add.at(expected, planes, gy.astype(numpy.float64).ravel())
        numpy.add.at(magnitude, planes, numpy.abs(gy.astype(numpy.float64)).ravel())
        check(gx, expected.reshape(x.shape), magnitude.reshape(x.shape), 16, f"max_pool2d_bprop ({path})")


@pool_host.needs_torch
@pytest.mark.parametrize("index_type", ["int", "long long"])
@pytest.mark.parametrize("case", pool_host.AVG_CASES[:4])
def test_avg_pool_kernels(bf16_pool, tunables, case, index_type):
    import torch

    from gpuconv import _params

    if index_type == "long long":  # pretend nothing fits in 31 bits: the 64-bit kernels
        tunables(index_limit=-1)
    shape, kernel, stride, padding, ceil_mode, cip, divisor = case
    rng = numpy.random.default_rng(17)
    x = operand(rng, shape)
    g = _params.pool2d_call("test", x, kernel, stride, padding, 1, ceil_mode, max_pool=False,
                            count_include_pad=cip, divisor_override=divisor).geometry
    tx = torch.from_numpy(x.astype(numpy.float64)).requires_grad_()
    ty = torch.nn.functional.avg_pool2d(tx, kernel, stride, padding, ceil_mode, cip, divisor)
    gy = operand(rng, g.output_shape)
    ty.backward(torch.from_numpy(gy.astype(numpy.float64)))
    mag_y = torch.nn.functional.avg_pool2d(tx.detach().abs(), kernel, stride, padding, ceil_mode, cip, divisor)
    tg = torch.from_numpy(numpy.abs(gy.astype(numpy.float64))).requires_grad_(False)
    ta = tx.detach().clone().requires_grad_()
    torch.nn.functional.avg_pool2d(ta, kernel, stride, padding, ceil_mode, cip, divisor).backward(tg)
    bf16_pool.launched.clear()
    check(bf16_pool.avg_pool2d_fprop(g, pool_host._host(x)), ty.detach().numpy(), mag_y.numpy(), 64, "avg_pool2d")
    check(bf16_pool.avg_pool2d_bprop(g, pool_host._host(gy)), tx.grad.numpy(), ta.grad.numpy(), 64,
          "avg_pool2d_bprop")
    launched = bf16_pool.launched  # the float16 kernels of the index type (their bfloat16 twins ran)
    assert len(launched) == 2 and all("__half" in n and n.endswith(f", {index_type}>") for _, n in launched), launched


# ------------------------------------------------------------------------------------------- coverage


def test_every_bf16_instantiation_of_these_families_ran():
    """Runs last: the tests above launched every bfloat16 name the table lists for their families."""
    families = CONV_FAMILIES + (dw_host.SOURCE, bias_host.SOURCE) + (("pool.cu",) if pool_host.torch else ())
    listed = {n for f in families for n in _names(f)}
    if not LAUNCHED:
        pytest.skip("the kernel tests above did not run (g++ missing?)")
    assert listed <= LAUNCHED, sorted(listed - LAUNCHED)
