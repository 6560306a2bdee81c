"""GPU workload for the device session: every kernel instantiation at least once, checked and repeated.

Each check builds small random inputs, runs one public gpuconv call (and its backward) on the NumPy path
(the reference) and twice on the CUDA path, then requires

    * the CUDA result to match the NumPy path (float64 1e-10, float32 1e-4, TF32 1e-2, float16 4e-3, as
      max |cuda - numpy| / max |numpy|; max-pool values and indices bitwise; a NaN where the reference has
      none fails, so with GPUCONV_POISON=1 (the default here) an element a kernel never writes fails);
    * the two CUDA runs to be bitwise identical (determinism, backward included).

What runs (per dtype float16 / float32 / float64 unless said):
    conv2d fprop + conv2d_backward (dgrad, wgrad, bias) and conv_transpose2d + backward, on several
        geometries (stride, dilation, groups, asymmetric 'same' padding, depthwise), under each forced
        GPUCONV_CONV_ALGO: direct, im2col, implicit_gemm (float16/float32 only, where ``supports``), depthwise
        (groups == C, where ``supports``);
    implicit_gemm kernel variants: SIMT (float32), TF32 tensor cores (GPUCONV_ALLOW_TF32=1), float16 tensor
        cores, the unpipelined reference (GPUCONV_IGEMM_REFERENCE=1); every (BM, BN) tile, reached by
        narrow / wide channel counts and by pretending the GPU has 1 SM (BM=128) or very many (BM=64);
        split-K wgrad with several splits (both conv2d_wgrad_reduce_splits instantiations);
    the opt-in channels-last float16 fprop (GPUCONV_UNVERIFIED=igemm_nhwc, implicit_gemm_nhwc.cu): every tile and the
        layout kernel, on geometries with C and K multiples of 8 (its backward runs the existing kernels);
    the opt-in channels-last float16 wgrad (GPUCONV_UNVERIFIED=nhwc_wgrad, implicit_gemm_nhwc_wgrad.cu): every
        tile and the split reduction, with one and several splits;
    the opt-in channels-last float16 strided dgrad (GPUCONV_UNVERIFIED=nhwc_dgrad, implicit_gemm_nhwc_dgrad.cu):
        every tile, through conv2d_backward and conv_transpose2d;
    the opt-in depthwise version 2 (GPUCONV_UNVERIFIED=depthwise_v2, conv_depthwise_v2*.cu): every (dtype, filter,
        stride, body) instantiation, forward + backward (also a channel multiplier and a transposed conv);
    the opt-in cuBLAS GEMMs (GPUCONV_UNVERIFIED=gemm_1x1, GPUCONV_CONV_ALGO=im2col; no kernel of its own): 1x1
        stride-1 convs on NCHW (groups 1 and 2, batched and unbatched, a transposed 1x1, wgrad in one and
        several workspace chunks) and a float16 im2col conv with 18 groups (one float16 strided-batched GEMM);
    the opt-in bias-gradient kernels (GPUCONV_UNVERIFIED=bias_grad, bias_grad.cu): conv2d_backward's grad_bias
        alone (output_mask (False, False, True)) over gradients that take each instantiation: one launch and
        split sums + reduction, 16-byte and element units, and (SPLIT_BYTES shrunk) hundreds of splits;
    padding_mode reflect / replicate / circular, forward + backward;
    max_pool2d (values, indices, ceil_mode, padding, dilation, a NaN) + max_pool2d_backward, also with the
        backward forced onto int64 sort keys and several plane chunks; avg_pool2d + backward with
        ceil_mode, padding, count_include_pad on/off, divisor_override.
    the opt-in wide pooling kernels (GPUCONV_UNVERIFIED=pool_wide, pool_wide.cu): max_pool2d + backward and
        avg_pool2d + backward for every (kernel_w, stride_w) they are built for, 16-byte and element paths.

At the end, a coverage line: the kernel instantiations of gpuconv._cuda._kernel_table.KERNELS that no
check launched (recorded by wrapping the loader's get_function). A missing one fails the run unless
--only narrows it.

Usage (from the repository root):
    PYTHONPATH=. python bench/gpu_checks/workload.py              # full set, on the GPU
    PYTHONPATH=. python bench/gpu_checks/workload.py --small      # minimal covering set: for compute-sanitizer
    PYTHONPATH=. python bench/gpu_checks/workload.py --numpy      # no GPU: NumPy against NumPy (checks this script)
Options for the sanitizers: --no-pool (cupy.cuda.set_allocator(None): every array is its own cudaMalloc,
so memcheck sees exact bounds and initcheck sees fresh memory), --no-poison (outputs stay uninitialised,
so initcheck reports any element a kernel reads before writing or never writes and is then copied).
Exit status: 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
import traceback
from pathlib import Path

import numpy

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import gpuconv  # noqa: E402
from cases import (  # noqa: E402 - the geometry tables are shared with the test suite (tests/cases.py)
    AVG_POOL, BIAS_GRAD_GEOMS, CONV_GEOMS, GEMM_1X1_GEOMS, IGEMM_GEOMS, MAX_POOL, NHWC_DGRAD_GEOMS,
    NHWC_DGRAD_TRANSPOSED, NHWC_GEOMS, NHWC_WGRAD_GEOMS, TRANSPOSED_GEOMS, WIDE_AVG_POOL, WIDE_MAX_POOL)

ALGOS = ("direct", "im2col", "implicit_gemm", "depthwise")
DTYPES = {"float16": numpy.float16, "float32": numpy.float32, "float64": numpy.float64}
TOL = {"float64": 1e-10, "float32": 1e-4, "tf32": 1e-2, "float16": 4e-3}
ENV_KEYS = ("GPUCONV_CONV_ALGO", "GPUCONV_ALLOW_TF32", "GPUCONV_IGEMM_REFERENCE", "GPUCONV_UNVERIFIED")


# ------------------------------------------------------------------------------------------- data


def rand(rng, shape, dtype):
    """Uniform in +-[0.25, 1]: no zeros, no degenerate arrays."""
    a = rng.uniform(0.25, 1.0, size=shape) * rng.choice((-1.0, 1.0), size=shape)
    return a.astype(dtype)


def tie_free(rng, shape, dtype):
    """Distinct values exact in float16 (multiples of 1/8 below 256 in magnitude): max pooling has one winner."""
    size = int(numpy.prod(shape))
    assert size < 4096
    return ((rng.permutation(size) - size // 2) * 0.125).reshape(shape).astype(dtype)


# ---------------------------------------------------------------------------------------- context


class Runner:
    """Runs checks on the NumPy path and on `xp` (cupy, or numpy in --numpy mode) and prints one line each."""

    def __init__(self, xp, verbose=False, only=None):
        self.xp, self.verbose, self.only = xp, verbose, only
        self.gpu = xp is not numpy
        self.failures, self.count, self.skipped = [], 0, 0
        self.launched = set()  # (source_file, name)
        self._current = None   # names launched by the current call

    # --- kernel recording
    def install_recorder(self):
        """Wraps the runtime in use (gpuconv._cuda._runtime, the seam every kernel lookup goes through) so
        that each kernel is recorded; returns the runtime's name."""
        from gpuconv._cuda import _kernel_table, _runtime  # noqa: F401 - the table registers the names

        inner = _runtime.current()
        runner = self

        class Recording:
            def __getattr__(self, name):
                return getattr(inner, name)

            @property
            def xp(self):
                return inner.xp

            def get_function(self, source_file, name):
                runner.launched.add((source_file, name))
                if runner._current is not None:
                    runner._current.add(name)
                return inner.get_function(source_file, name)

        _runtime.install(Recording())
        return [type(inner).__name__]

    def coverage(self):
        from gpuconv._cuda._kernel_table import KERNELS

        wanted = {(f, n) for f, names in KERNELS.items() for n in names}
        return wanted, sorted(wanted - self.launched), sorted(self.launched - wanted)

    # --- array movement
    def put(self, a):
        if a is None or not self.gpu:
            return None if a is None else a.copy()
        return self.xp.asarray(a)

    def get(self, a):
        if a is None:
            return None
        if not self.gpu or isinstance(a, (numpy.ndarray, numpy.generic)):
            return numpy.asarray(a)
        return self.xp.asnumpy(a)

    def sync(self):
        if self.gpu:
            self.xp.cuda.get_current_stream().synchronize()

    # --- one check
    def check(self, name, dtype_label, fn, inputs, *, env=None, patches=(), tol=None, exact=(), nan_ok=False,
              nonfinite_exact=False):
        """fn(*arrays) -> tuple of arrays (None allowed). inputs: NumPy arrays (None allowed).
        exact: indices of outputs compared bitwise with the reference instead of within tol.
        nonfinite_exact: every output has the reference's NaNs and infinities exactly (finite values within tol)."""
        full = f"{name} [{dtype_label}]"
        if self.only and not re.search(self.only, full):
            return
        self.count += 1
        tol = TOL[dtype_label] if tol is None else tol
        t0 = time.perf_counter()
        try:
            ref = _as_tuple(fn(*[None if a is None else a.copy() for a in inputs]))
            with _env(env or {}), contextlib.ExitStack() as stack:
                for p in patches:
                    stack.enter_context(p())
                self._current = set()
                runs = []
                for _ in range(2):
                    dev_in = [self.put(a) for a in inputs]
                    out = _as_tuple(fn(*dev_in))
                    self.sync()
                    runs.append(tuple(self.get(o) for o in out))
                    # inputs are never modified
                    for a, d in zip(inputs, dev_in):
                        if a is not None and not numpy.array_equal(a, self.get(d), equal_nan=True):
                            raise AssertionError("an input was modified")
                kernels = sorted(self._current)
                self._current = None
            errs, problems, deterministic = [], [], True
            for i, (r, g1, g2) in enumerate(zip(ref, runs[0], runs[1])):
                if r is None and g1 is None:
                    continue
                if g1 is None or r is None or g1.shape != r.shape or g1.dtype != r.dtype:
                    problems.append(f"out{i}: shape/dtype {None if g1 is None else (g1.shape, g1.dtype)} "
                                    f"!= {None if r is None else (r.shape, r.dtype)}")
                    continue
                if not numpy.array_equal(g1, g2, equal_nan=True):
                    deterministic = False
                    problems.append(f"out{i}: NOT DETERMINISTIC ({_count_diff(g1, g2)} elements differ)")
                if i in exact:
                    if not numpy.array_equal(g1, r, equal_nan=True):
                        problems.append(f"out{i}: differs from NumPy in {_count_diff(g1, r)} elements (exact)")
                    continue
                if nonfinite_exact:
                    problems += [f"out{i}: {p}" for p in _nonfinite_mismatch(g1, r)]
                err, bad_nan = _rel_err(g1, r)
                errs.append(err)
                if bad_nan and not nan_ok:
                    problems.append(f"out{i}: {bad_nan} NaN where NumPy has none (unwritten?)")
                if not err <= tol:
                    problems.append(f"out{i}: rel. error {err:.2e} > {tol:.0e}")
            ok = not problems
            worst = max(errs) if errs else 0.0
            dt = time.perf_counter() - t0
            print(f"{'PASS' if ok else 'FAIL'}  {full:<72} err {worst:.1e}  "
                  f"{'bitwise-repeatable' if deterministic else 'NOT-REPEATABLE'}  {len(kernels)} kernels  {dt:.2f}s",
                  flush=True)
            if self.verbose or not ok:
                for k in kernels:
                    print(f"        kernel {k}")
            for p in problems:
                print(f"        {p}")
            if not ok:
                self.failures.append(full)
        except Exception as e:  # a launch error, a sanitizer-killed kernel, a wrong shape: all count as FAIL
            self._current = None
            print(f"FAIL  {full:<72} {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(limit=4, file=sys.stdout)
            self.failures.append(full)

    def skip(self, name, why):
        if self.only and not re.search(self.only, name):
            return
        self.skipped += 1
        print(f"SKIP  {name:<72} {why}", flush=True)


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _count_diff(a, b):
    both_nan = numpy.isnan(a) & numpy.isnan(b) if a.dtype.kind == "f" else numpy.zeros(a.shape, bool)
    return int(((a != b) & ~both_nan).sum())


def _nonfinite_mismatch(got, ref):
    """Where got's NaNs or infinities differ from ref's, as problem lines (none: the same)."""
    g, r = got.astype(numpy.float64), ref.astype(numpy.float64)
    nans = int((numpy.isnan(g) != numpy.isnan(r)).sum())
    infs = int((numpy.isinf(r) & (g != r)).sum() + (numpy.isinf(g) & ~numpy.isinf(r)).sum())
    return ([f"{nans} NaN positions differ from NumPy's"] if nans else []) + (
        [f"{infs} infinities differ from NumPy's"] if infs else [])


def _rel_err(got, ref):
    """(max |got - ref| / max |ref| over finite reference entries, count of NaN in got where ref is not NaN)."""
    g, r = got.astype(numpy.float64), ref.astype(numpy.float64)
    bad_nan = int((numpy.isnan(g) & ~numpy.isnan(r)).sum())
    finite = numpy.isfinite(r)
    if not finite.any():
        return 0.0, bad_nan
    scale = max(float(numpy.abs(r[finite]).max()), 1e-300)
    diff = numpy.abs(g[finite] - r[finite])
    err = float(numpy.nanmax(diff)) / scale if diff.size else 0.0
    if numpy.isnan(diff).any():
        err = float("inf")
    return err, bad_nan


def _refresh():
    try:
        from gpuconv._cuda import _config
    except ImportError:  # pragma: no cover
        return
    _config.refresh()


@contextlib.contextmanager
def _env(values):
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    try:
        for k in ENV_KEYS:
            os.environ.pop(k, None)
        os.environ.update(values)
        _refresh()  # the CUDA path reads one configuration snapshot
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _refresh()


def _tunables(**values):
    """A context-manager factory overriding CUDA-path tunables (gpuconv._cuda._config.Config fields)."""
    def cm():
        from gpuconv._cuda import _config

        return _config.override(**values)
    return cm


def _sm_count(n):
    return _tunables(sm_count=n)


def _pool_int64_keys_and_chunks(pq=None):
    """max_pool2d_backward with int64 keys (32-bit index limit pretended -1) and small chunks of planes."""
    return _tunables(index_limit=-1, smem_limit=1, max_keys_per_chunk=2 * pq if pq else 2)


def _pool_sort_path():
    """max_pool2d_backward on the sort path with int32 keys (as for planes too large for shared memory),
    by pretending the device grants one byte of shared memory to the per-plane kernel."""
    return _tunables(smem_limit=1)


def _pool_int64_index():
    """The 64-bit index variants of the elementwise pooling kernels (32-bit index limit pretended -1)."""
    return _tunables(index_limit=-1)


def _workspace_bytes(n):
    return _tunables(workspace_bytes=n)


# ------------------------------------------------------------------------------------ conv checks




def general_algos(dname):
    """The forced algorithms that run a non-depthwise geometry in this dtype without falling back (no
    float64 implicit GEMM; depthwise only for groups == C)."""
    return tuple(a for a in ALGOS if a != "depthwise" and not (a == "implicit_gemm" and dname == "float64"))


def conv_fn(kwargs, padding_mode="zeros", transposed_layout=False):
    """conv2d forward and its full backward as one call returning (y, gx, gw, gb)."""
    def fn(x, w, b, gy):
        xin = x
        if transposed_layout:  # a non-contiguous view: the launchers must copy it
            xin = x.swapaxes(-1, -2).copy().swapaxes(-1, -2) if hasattr(x, "swapaxes") else x
        y = gpuconv.conv2d(xin, w, b, padding_mode=padding_mode, **kwargs)
        gx, gw, gb = gpuconv.conv2d_backward(gy, xin, w, padding_mode=padding_mode, **kwargs)
        return y, gx, gw, gb
    return fn


def conv_inputs(rng, dtype, N, C, H, W, K, R, S, kwargs):
    groups = kwargs.get("groups", 1)
    xs = (C, H, W) if N is None else (N, C, H, W)
    x = rand(rng, xs, dtype)
    w = rand(rng, (K, C // groups, R, S), dtype)
    b = rand(rng, (K,), dtype)
    y = gpuconv.conv2d(x, w, b, **kwargs)  # NumPy path: only for the output shape
    gy = rand(rng, y.shape, dtype)
    return [x, w, b, gy]


def transposed_fn(kwargs):
    def fn(x, w, b, gy):
        y = gpuconv.conv_transpose2d(x, w, b, **kwargs)
        gx, gw, gb = gpuconv.conv_transpose2d_backward(gy, x, w, **kwargs)
        return y, gx, gw, gb
    return fn


def transposed_inputs(rng, dtype, N, Cin, H, W, Cout_g, R, S, kwargs):
    x = rand(rng, (N, Cin, H, W), dtype)
    w = rand(rng, (Cin, Cout_g, R, S), dtype)
    b = rand(rng, (Cout_g * kwargs.get("groups", 1),), dtype)
    y = gpuconv.conv_transpose2d(x, w, b, **kwargs)
    return [x, w, b, rand(rng, y.shape, dtype)]


def igemm_supported(runner, N, C, H, W, K, R, S, kwargs, dtype, env, transposed=False, algo="implicit_gemm"):
    """Whether implicit_gemm (or depthwise) runs every pass here (else the forced algorithm silently falls
    back)."""
    if not runner.gpu:
        return numpy.dtype(dtype) != numpy.float64 if algo == "implicit_gemm" else kwargs.get("groups", 1) == C
    from gpuconv import _params
    from gpuconv._cuda import _algo

    x = numpy.empty((N or 1, C, H, W), dtype)
    if transposed:  # geometry built inside; let the run show the kernels
        return numpy.dtype(dtype) != numpy.float64 if algo == "implicit_gemm" else kwargs.get("groups", 1) == C
    groups = kwargs.get("groups", 1)
    w = numpy.empty((K, C // groups, R, S), dtype)
    g = _params.conv2d_call("conv2d", x, w, None, kwargs.get("stride", 1), kwargs.get("padding", 0),
                            kwargs.get("dilation", 1), groups, "zeros").geometry
    with _env(env):
        return all(_algo.first(algo, g, numpy.dtype(dtype), p) is not None for p in ("fprop", "dgrad", "wgrad"))


def conv_checks(runner, rng, dtypes, small):
    for label, N, C, H, W, K, R, S, kwargs, in_small in CONV_GEOMS:
        if small and not in_small:
            continue
        for dname in dtypes:
            dtype = DTYPES[dname]
            inputs = conv_inputs(rng, dtype, N, C, H, W, K, R, S, kwargs)
            for algo in ALGOS:
                name = f"conv2d+backward {label} algo={algo}"
                env = {"GPUCONV_CONV_ALGO": algo}
                if algo in ("implicit_gemm", "depthwise") and not igemm_supported(
                        runner, N, C, H, W, K, R, S, kwargs, dtype, env, algo=algo):
                    runner.skip(f"{name} [{dname}]", f"{algo} does not support it (falls back)")
                    continue
                runner.check(name, dname, conv_fn(kwargs), inputs, env=env)
    for label, N, Cin, H, W, Cout_g, R, S, kwargs, in_small in TRANSPOSED_GEOMS:
        if small and not in_small:
            continue
        for dname in dtypes:
            dtype = DTYPES[dname]
            inputs = transposed_inputs(rng, dtype, N, Cin, H, W, Cout_g, R, S, kwargs)
            for algo in ALGOS:
                if algo == "implicit_gemm" and dname == "float64":
                    runner.skip(f"conv_transpose2d+backward {label} algo={algo} [{dname}]", "no float64 kernels")
                    continue
                if algo == "depthwise" and kwargs.get("groups", 1) != Cin:
                    continue
                runner.check(f"conv_transpose2d+backward {label} algo={algo}", dname, transposed_fn(kwargs), inputs,
                             env={"GPUCONV_CONV_ALGO": algo})
    # im2col with the batch cut into chunks of one image (workspace cap pretended tiny)
    for dname in dtypes:
        label, N, C, H, W, K, R, S, kwargs, _ = CONV_GEOMS[0]
        inputs = conv_inputs(rng, DTYPES[dname], 3, C, H, W, K, R, S, kwargs)
        runner.check(f"conv2d+backward {label} N=3 algo=im2col chunked 1 image", dname, conv_fn(kwargs), inputs,
                     env={"GPUCONV_CONV_ALGO": "im2col"}, patches=(_workspace_bytes(1),))
    # a non-contiguous input (transposed in memory)
    if not small:
        for dname in dtypes:
            label, N, C, H, W, K, R, S, kwargs, _ = CONV_GEOMS[0]
            inputs = conv_inputs(rng, DTYPES[dname], N, C, H, W, K, R, S, kwargs)
            for algo in general_algos(dname):
                runner.check(f"conv2d+backward {label} non-contiguous x algo={algo}", dname,
                             conv_fn(kwargs, transposed_layout=True), inputs, env={"GPUCONV_CONV_ALGO": algo})


# implicit-GEMM variants: (label, dtype name, env, tolerance key)
IGEMM_VARIANTS = (
    ("simt", "float32", {}, "float32"),
    ("tf32", "float32", {"GPUCONV_ALLOW_TF32": "1"}, "tf32"),
    ("f16-mma", "float16", {}, "float16"),
)


def igemm_checks(runner, rng, dtypes, small):
    for vlabel, dname, venv, tol_key in IGEMM_VARIANTS:
        if dname not in dtypes:
            continue
        dtype = DTYPES[dname]
        for glabel, N, C, H, W, K, R, S, kwargs in IGEMM_GEOMS:
            inputs = conv_inputs(rng, dtype, N, C, H, W, K, R, S, kwargs)
            for sms, tile in ((1 << 20, "BM=64"), (1, "BM=128")):
                env = dict(venv, GPUCONV_CONV_ALGO="implicit_gemm")
                name = f"implicit_gemm {vlabel} {glabel} {tile} conv2d+backward"
                if not igemm_supported(runner, N, C, H, W, K, R, S, kwargs, dtype, env):
                    runner.skip(f"{name} [{dname}]", "not supported here")
                    continue
                runner.check(name, dname, conv_fn(kwargs), inputs, env=env, patches=(_sm_count(sms),),
                             tol=TOL[tol_key])
    if "float32" in dtypes:
        for glabel, N, C, H, W, K, R, S, kwargs in IGEMM_GEOMS[: 1 if small else 3]:
            inputs = conv_inputs(rng, numpy.float32, N, C, H, W, K, R, S, kwargs)
            runner.check(f"implicit_gemm reference (unpipelined SIMT) {glabel} conv2d+backward", "float32",
                         conv_fn(kwargs), inputs,
                         env={"GPUCONV_CONV_ALGO": "implicit_gemm", "GPUCONV_IGEMM_REFERENCE": "1"})


# The opt-in channels-last float16 fprop: (label, N, C, H, W, K, R, S, kwargs, small). K <= 64 gives BN=64,
# K > 64 BN=128; each runs with BM=64 and BM=128 (pretended SM counts, as above).
NHWC_ENV = {"GPUCONV_UNVERIFIED": "igemm_nhwc", "GPUCONV_CONV_ALGO": "implicit_gemm"}


def nhwc_supported(runner, module_name, N, C, H, W, K, R, S, kwargs, *pass_name):
    """Whether the NHWC module gpuconv._cuda.<module_name> runs this float16 conv2d here (else
    implicit_gemm's existing kernel would, silently); pass_name goes to its supports() when it takes one."""
    if not runner.gpu:
        return True
    import importlib

    from gpuconv import _params

    x = numpy.empty((N or 1, C, H, W), numpy.float16)
    w = numpy.empty((K, C, R, S), numpy.float16)
    g = _params.conv2d_call("conv2d", x, w, None, kwargs.get("stride", 1), kwargs.get("padding", 0),
                            kwargs.get("dilation", 1), 1, "zeros").geometry
    return importlib.import_module(f"gpuconv._cuda.experimental.{module_name}").supports(g, numpy.float16,
                                                                                        *pass_name)


def nhwc_checks(runner, rng, dtypes, small):
    if "float16" not in dtypes:
        return
    for glabel, N, C, H, W, K, R, S, kwargs, in_small in NHWC_GEOMS:
        if small and not in_small:
            continue
        inputs = conv_inputs(rng, numpy.float16, N, C, H, W, K, R, S, kwargs)
        for sms, tile in ((1 << 20, "BM=64"), (1, "BM=128")):
            name = f"implicit_gemm nhwc {glabel} {tile} conv2d+backward"
            if not nhwc_supported(runner, "igemm_nhwc", N, C, H, W, K, R, S, kwargs, "fprop"):
                runner.skip(f"{name} [float16]", "the NHWC kernel does not run here")
                continue
            runner.check(name, "float16", conv_fn(kwargs), inputs, env=NHWC_ENV, patches=(_sm_count(sms),))


# The opt-in channels-last float16 wgrad: (label, N, C, H, W, K, R, S, kwargs, small, SM count). K <= 64
# gives BM=64, else 128; R*S*C <= 64 gives BN=64, else 128; SM count 1 gives one split, 132 several.
NHWC_WGRAD_ENV = {"GPUCONV_UNVERIFIED": "nhwc_wgrad", "GPUCONV_CONV_ALGO": "implicit_gemm"}


def nhwc_wgrad_checks(runner, rng, dtypes, small):
    if "float16" not in dtypes:
        return
    for glabel, N, C, H, W, K, R, S, kwargs, in_small, sms in NHWC_WGRAD_GEOMS:
        if small and not in_small:
            continue
        name = f"implicit_gemm nhwc_wgrad {glabel} conv2d+backward"
        if not nhwc_supported(runner, "igemm_nhwc_wgrad", N, C, H, W, K, R, S, kwargs):
            runner.skip(f"{name} [float16]", "the NHWC wgrad kernel does not run here")
            continue
        inputs = conv_inputs(rng, numpy.float16, N, C, H, W, K, R, S, kwargs)
        runner.check(name, "float16", conv_fn(kwargs), inputs, env=NHWC_WGRAD_ENV, patches=(_sm_count(sms),))


# The opt-in depthwise version 2 (GPUCONV_UNVERIFIED=depthwise_v2, conv_depthwise_v2*.cu): each (dtype, filter,
# stride) with its three bodies, picked by the launcher from the row length and padding: rows of 16 with padding
# (R-1)/2 and rows of 12 with padding 0 (aligned vectors at two column offsets), rows of 13 (element by element).
# fprop and wgrad run v2 everywhere; dgrad too (multiplier 1) except the stride-2 one at padding 0 (other
# parity: version 1); the stride-2 dgrad reads vectors at rows of 16 (gy rows of 8), elements at rows of 13.
DW2_ENV = {"GPUCONV_UNVERIFIED": "depthwise_v2", "GPUCONV_CONV_ALGO": "depthwise"}


def depthwise_v2_checks(runner, rng, dtypes, small):
    for dname in dtypes:
        if dname not in ("float16", "float32"):
            continue
        for R in (3, 5):
            for stride in (1, 2):
                for W, pad in ((16, R // 2), (12, 0), (13, R // 2)):
                    C, kwargs = 3, dict(stride=stride, padding=pad, groups=3)
                    inputs = conv_inputs(rng, DTYPES[dname], 2, C, 10, W, C, R, R, kwargs)
                    runner.check(f"conv2d+backward depthwise_v2 {R}x{R} s{stride} pad{pad} W{W}", dname,
                                 conv_fn(kwargs), inputs, env=DW2_ENV)
    if not small:  # a channel multiplier (dgrad falls back to version 1) and a depthwise transposed conv
        for dname in ("float16", "float32"):
            if dname in dtypes:
                kwargs = dict(padding=1, groups=2)
                inputs = conv_inputs(rng, DTYPES[dname], 2, 2, 9, 16, 6, 3, 3, kwargs)
                runner.check("conv2d+backward depthwise_v2 3x3 m3", dname, conv_fn(kwargs), inputs, env=DW2_ENV)
                kwargs = dict(padding=1, groups=4)
                inputs = transposed_inputs(rng, DTYPES[dname], 2, 4, 9, 8, 1, 3, 3, kwargs)
                runner.check("conv_transpose2d+backward depthwise_v2 3x3 s1", dname, transposed_fn(kwargs), inputs,
                             env=DW2_ENV)


# The opt-in channels-last float16 dgrad of strided convolutions: conv2d geometries (label, N, C, H, W, K, R, S,
# kwargs, small, SM count) and conv_transpose2d ones (label, N, Cin, H, W, Cout, R, S, kwargs, small, SM
# count). C (Cout) <= 64 gives BN=64, else 128; SM count 1 gives BM=128, a huge one 64.
NHWC_DGRAD_ENV = {"GPUCONV_UNVERIFIED": "nhwc_dgrad", "GPUCONV_CONV_ALGO": "implicit_gemm"}


def nhwc_dgrad_checks(runner, rng, dtypes, small):
    if "float16" not in dtypes:
        return
    for glabel, N, C, H, W, K, R, S, kwargs, in_small, sms in NHWC_DGRAD_GEOMS:
        if small and not in_small:
            continue
        name = f"implicit_gemm nhwc_dgrad {glabel} conv2d+backward"
        if not nhwc_supported(runner, "igemm_nhwc_dgrad", N, C, H, W, K, R, S, kwargs):
            runner.skip(f"{name} [float16]", "the NHWC dgrad kernel does not run here")
            continue
        inputs = conv_inputs(rng, numpy.float16, N, C, H, W, K, R, S, kwargs)
        runner.check(name, "float16", conv_fn(kwargs), inputs, env=NHWC_DGRAD_ENV, patches=(_sm_count(sms),))
    for glabel, N, Cin, H, W, Cout, R, S, kwargs, in_small, sms in NHWC_DGRAD_TRANSPOSED:
        if small and not in_small:
            continue
        inputs = transposed_inputs(rng, numpy.float16, N, Cin, H, W, Cout, R, S, kwargs)
        runner.check(f"implicit_gemm nhwc_dgrad {glabel} conv_transpose2d+backward", "float16", transposed_fn(kwargs),
                     inputs, env=NHWC_DGRAD_ENV, patches=(_sm_count(sms),))


# The opt-in cuBLAS path (GPUCONV_UNVERIFIED=gemm_1x1, gpuconv/_cuda/_cublas.py, _conv_gemm1x1.py): 1x1 stride-1
# geometries (label, N, C, H, W, K, kwargs, small); N None = unbatched. groups 2 with N 1 batches over the groups,
# groups 2 with N 4 over the images. The last check makes wgrad's workspace hold two images (several chunks).
GEMM_1X1_ENV = {"GPUCONV_UNVERIFIED": "gemm_1x1", "GPUCONV_CONV_ALGO": "im2col"}


def gemm_1x1_checks(runner, rng, dtypes, small):
    for label, N, C, H, W, K, kwargs, in_small in GEMM_1X1_GEOMS:
        if small and not in_small:
            continue
        for dname in dtypes:
            inputs = conv_inputs(rng, DTYPES[dname], N, C, H, W, K, 1, 1, kwargs)
            runner.check(f"conv2d+backward gemm_1x1 {label}", dname, conv_fn(kwargs), inputs, env=GEMM_1X1_ENV)
    if small:
        return
    for dname in dtypes:
        kwargs = dict(groups=2)
        inputs = transposed_inputs(rng, DTYPES[dname], 2, 6, 5, 3, 4, 1, 1, kwargs)
        runner.check("conv_transpose2d+backward gemm_1x1 1x1 g2", dname, transposed_fn(kwargs), inputs,
                     env=GEMM_1X1_ENV)
        inputs = conv_inputs(rng, DTYPES[dname], 5, 12, 6, 7, 20, 1, 1, {})
        chunked = _workspace_bytes(2 * 20 * 12 * 8)
        runner.check("conv2d+backward gemm_1x1 wgrad in chunks", dname, conv_fn({}), inputs, env=GEMM_1X1_ENV,
                     patches=(chunked,))
    if "float16" in dtypes:  # more than MAX_LOOPED_GROUPS groups: one float16 strided-batched GEMM
        kwargs = dict(padding=1, groups=18)
        inputs = conv_inputs(rng, numpy.float16, 2, 36, 6, 7, 36, 3, 3, kwargs)
        runner.check("conv2d+backward gemm_1x1 im2col 3x3 g18", "float16", conv_fn(kwargs), inputs,
                     env=GEMM_1X1_ENV)


# The opt-in bias gradient (GPUCONV_UNVERIFIED=bias_grad, kernels/bias_grad.cu, gpuconv/_cuda/_bias_grad.py): grad_bias
# of a 1x1 conv2d (x (N, 1, P, Q), w (K, 1, 1, 1), gy (N, K, P, Q)). (label, N, K, P, Q, SPLIT_BYTES or None, small):
# P*Q a multiple of 8 takes 16-byte units in every dtype, P*Q odd element units; a channel above 128 KiB (every
# dtype at 80000 / 68403 elements) takes 2-5 splits and the reduction; SPLIT_BYTES = 16 makes one unit per split,
# and more splits than a reduction block has threads.
BIAS_GRAD_ENV = {"GPUCONV_UNVERIFIED": "bias_grad"}


def bias_grad_fn(x, w, gy):
    return gpuconv.conv2d_backward(gy, x, w, output_mask=(False, False, True))


def bias_grad_checks(runner, rng, dtypes, small):
    for label, N, K, P, Q, split_bytes, in_small in BIAS_GRAD_GEOMS:
        if small and not in_small:
            continue
        patches = () if split_bytes is None else (_tunables(bias_split_bytes=split_bytes),)
        for dname in dtypes:
            dtype = DTYPES[dname]
            inputs = [rand(rng, (N, 1, P, Q), dtype), rand(rng, (K, 1, 1, 1), dtype), rand(rng, (N, K, P, Q), dtype)]
            runner.check(f"conv2d_backward grad_bias bias_grad {label}", dname, bias_grad_fn, inputs,
                         env=BIAS_GRAD_ENV, patches=patches)


def pad_mode_checks(runner, rng, dtypes, small):
    for mode in ("reflect", "replicate", "circular"):
        for dname in dtypes:
            kwargs = dict(padding=(2, 1), stride=(1, 2))
            inputs = conv_inputs(rng, DTYPES[dname], 2, 3, 6, 7, 4, 3, 3, kwargs)
            for algo in ("direct",) if small else general_algos(dname):
                runner.check(f"conv2d+backward padding_mode={mode} pad(2,1) algo={algo}", dname,
                             conv_fn(kwargs, padding_mode=mode), inputs, env={"GPUCONV_CONV_ALGO": algo})


# Issue 14: a NaN or infinite weight. The implicit-GEMM and depthwise dgrads multiply padding zeros by the weight
# (NaN where PyTorch adds nothing), the direct forward skips padding taps (a value where PyTorch's zero padding
# times inf is NaN); the experimental repairs (feature nonfinite_weights) follow them. grad_input, the forward
# and a transposed conv's output must carry the NumPy path's NaNs and infinities exactly (PyTorch's:
# tests/test_reliability_nonfinite.py); the forwards of im2col / implicit GEMM / depthwise need no repair and
# are checked alike. (label, N, C, H, W, K, R, S, kwargs, algos, small): groups == C takes the depthwise
# kernels; float64 reaches the dgrad repair only through them.
NONFINITE_WEIGHTS_ENV = {"GPUCONV_UNVERIFIED": "nonfinite_weights"}
NONFINITE_WEIGHTS_GEOMS = (
    ("3x3 pad1 C16 K24", 2, 16, 9, 11, 24, 3, 3, dict(padding=1), ("implicit_gemm", "tf32"), True),
    ("3x3/2 pad1 C32 K16", 2, 32, 10, 12, 16, 3, 3, dict(stride=2, padding=1), ("implicit_gemm",), False),
    ("5x3 dil2 pad(3,1) C8 K40", 1, 8, 11, 10, 40, 5, 3, dict(padding=(3, 1), dilation=(2, 1)), ("implicit_gemm",),
     False),
    ("depthwise 3x3 pad1 C8", 2, 8, 9, 11, 8, 3, 3, dict(padding=1, groups=8), ("depthwise",), True),
    ("depthwise 3x3/2 pad1 C8 m2", 2, 8, 10, 12, 16, 3, 3, dict(stride=2, padding=1, groups=8), ("depthwise",), False),
)


def forward_fn(kwargs):
    def fn(x, w, b):
        return gpuconv.conv2d(x, w, b, **kwargs)
    return fn


def grad_input_fn(kwargs):
    def fn(x, w, gy):
        return gpuconv.conv2d_backward(gy, x, w, output_mask=(True, False, False), **kwargs)[0]
    return fn


def _algo_env(algo):
    if algo == "tf32":
        return {"GPUCONV_CONV_ALGO": "implicit_gemm", "GPUCONV_ALLOW_TF32": "1"}
    return {"GPUCONV_CONV_ALGO": algo}


def nonfinite_weights_checks(runner, rng, dtypes, small):
    for label, N, C, H, W, K, R, S, kwargs, algos, in_small in NONFINITE_WEIGHTS_GEOMS:
        if small and not in_small:
            continue
        for dname in dtypes:
            dtype = DTYPES[dname]
            for algo in algos:
                if (algo == "tf32" and dname != "float32") or (algo == "implicit_gemm" and dname == "float64"):
                    continue
                x, w, _, gy = conv_inputs(rng, dtype, N, C, H, W, K, R, S, kwargs)
                env = {**NONFINITE_WEIGHTS_ENV, **_algo_env(algo)}
                tol = TOL["tf32"] if algo == "tf32" else None
                runner.check(f"conv2d_backward grad_input nonfinite_weights {label} finite weights algo={algo}", dname,
                             grad_input_fn(kwargs), [x, w, gy], env=env, tol=tol)
                for bad in (numpy.nan,) if small else (numpy.nan, numpy.inf):  # --small: under the sanitizers
                    wb = w.copy()
                    wb[0, 0, R - 1, S - 1] = bad
                    wb[-1, -1, 0, 0] = -bad
                    runner.check(f"conv2d_backward grad_input nonfinite_weights {label} {bad} weight algo={algo}", dname,
                                 grad_input_fn(kwargs), [x, wb, gy], env=env, tol=tol, nan_ok=True,
                                 nonfinite_exact=True)
                    for fwd_algo in ("direct",) if small else ("direct", "im2col", algo):
                        b = rand(rng, (K,), dtype)
                        runner.check(f"conv2d nonfinite_weights {label} {bad} weight algo={fwd_algo}", dname,
                                     forward_fn(kwargs), [x, wb, b], env={**NONFINITE_WEIGHTS_ENV, **_algo_env(fwd_algo)},
                                     tol=TOL["tf32"] if fwd_algo == "tf32" else None, nan_ok=True, nonfinite_exact=True)
    for dname in dtypes:  # a transposed convolution's forward is a dgrad plus the bias
        if dname == "float64":
            continue
        dtype = DTYPES[dname]
        kwargs = dict(stride=2, padding=1)
        x, w, b = rand(rng, (2, 16, 5, 6), dtype), rand(rng, (16, 8, 4, 4), dtype), rand(rng, (8,), dtype)
        w[0, 0, 3, 3] = numpy.inf
        w[-1, -1, 0, 0] = numpy.nan
        runner.check("conv_transpose2d nonfinite_weights 4x4/2 pad1 inf and NaN weights algo=implicit_gemm", dname,
                     lambda x, w, b: gpuconv.conv_transpose2d(x, w, b, **kwargs), [x, w, b],
                     env={**NONFINITE_WEIGHTS_ENV, "GPUCONV_CONV_ALGO": "implicit_gemm"}, nan_ok=True,
                     nonfinite_exact=True)


# ------------------------------------------------------------------------------------ pool checks



# The opt-in wide pooling kernels: each (kernel_w, stride_w) of pool.WIDE_COLUMNS in the small set; W = 16 takes
# the 16-byte paths in every dtype, odd W the element ones. (label, N, C, H, W, kwargs, small)
POOL_WIDE_ENV = {"GPUCONV_UNVERIFIED": "pool_wide"}


def max_pool_fn(kwargs):
    def fn(x, gy):
        y, idx = gpuconv.max_pool2d(x, return_indices=True, **kwargs)
        gx = gpuconv.max_pool2d_backward(gy, idx, x.shape)
        return y, idx, gx
    return fn


def avg_pool_fn(kwargs):
    def fn(x, gy):
        y = gpuconv.avg_pool2d(x, **kwargs)
        gx = gpuconv.avg_pool2d_backward(gy, x.shape, **kwargs)
        return y, gx
    return fn


def pool_checks(runner, rng, dtypes, small):
    for label, N, C, H, W, kwargs, in_small in MAX_POOL:
        if small and not in_small:
            continue
        for dname in dtypes:
            dtype = DTYPES[dname]
            x = tie_free(rng, (N, C, H, W), dtype)
            y, _ = gpuconv.max_pool2d(x, return_indices=True, **kwargs)
            gy = rand(rng, y.shape, dtype)
            runner.check(f"max_pool2d+backward {label}", dname, max_pool_fn(kwargs), [x, gy], exact=(0, 1))
            if in_small:
                runner.check(f"max_pool2d+backward {label} int64 keys, 2-plane chunks", dname, max_pool_fn(kwargs),
                             [x, gy], exact=(0, 1), patches=(_pool_int64_keys_and_chunks(y.shape[2] * y.shape[3]),))
                runner.check(f"max_pool2d+backward {label} sort path, int32 keys", dname, max_pool_fn(kwargs),
                             [x, gy], exact=(0, 1), patches=(_pool_sort_path(),))
    for dname in dtypes:  # NaN propagates to the value and its index (PyTorch semantics)
        dtype = DTYPES[dname]
        label, N, C, H, W, kwargs, _ = MAX_POOL[0]
        x = tie_free(rng, (N, C, H, W), dtype)
        x[0, 1, 4, 3] = numpy.nan
        x[1, 2, 0, 0] = numpy.nan
        y, _ = gpuconv.max_pool2d(x, return_indices=True, **kwargs)
        gy = rand(rng, y.shape, dtype)
        runner.check(f"max_pool2d+backward {label} with NaN", dname, max_pool_fn(kwargs), [x, gy], exact=(0, 1),
                     nan_ok=True)
    for label, N, C, H, W, kwargs, in_small in AVG_POOL:
        if small and not in_small:
            continue
        for dname in dtypes:
            dtype = DTYPES[dname]
            x = rand(rng, (N, C, H, W), dtype)
            y = gpuconv.avg_pool2d(x, **kwargs)
            gy = rand(rng, y.shape, dtype)
            runner.check(f"avg_pool2d+backward {label}", dname, avg_pool_fn(kwargs), [x, gy])
            if in_small:
                runner.check(f"avg_pool2d+backward {label} 64-bit indices", dname, avg_pool_fn(kwargs), [x, gy],
                             patches=(_pool_int64_index(),))
    pool_wide_checks(runner, rng, dtypes, small)


def pool_wide_checks(runner, rng, dtypes, small):
    for label, N, C, H, W, kwargs, in_small in WIDE_MAX_POOL:
        if small and not in_small:
            continue
        for dname in dtypes:
            dtype = DTYPES[dname]
            x = tie_free(rng, (N, C, H, W), dtype)
            x[0, 1, 3, 0] = numpy.nan  # a NaN in the first column (the padding side of the first run)
            y, _ = gpuconv.max_pool2d(x, return_indices=True, **kwargs)
            gy = rand(rng, y.shape, dtype)
            runner.check(f"max_pool2d+backward {label}", dname, max_pool_fn(kwargs), [x, gy], exact=(0, 1),
                         nan_ok=True, env=POOL_WIDE_ENV)
    for label, N, C, H, W, kwargs, in_small in WIDE_AVG_POOL:
        if small and not in_small:
            continue
        for dname in dtypes:
            dtype = DTYPES[dname]
            x = rand(rng, (N, C, H, W), dtype)
            gy = rand(rng, gpuconv.avg_pool2d(x, **kwargs).shape, dtype)
            runner.check(f"avg_pool2d+backward {label}", dname, avg_pool_fn(kwargs), [x, gy], env=POOL_WIDE_ENV)


# ------------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="the minimal set that still launches every kernel")
    ap.add_argument("--numpy", "--dry-run", dest="numpy", action="store_true",
                    help="no GPU: run the NumPy path against itself (checks this script's logic)")
    ap.add_argument("--no-pool", action="store_true", help="disable CuPy's memory pools (for compute-sanitizer)")
    ap.add_argument("--no-poison", action="store_true", help="leave GPUCONV_POISON unset (for initcheck)")
    ap.add_argument("--dtypes", default="float16,float32,float64")
    ap.add_argument("--only", default=None, help="regex: run only checks whose name matches (coverage not enforced)")
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("-v", "--verbose", action="store_true", help="list the kernels each check launched")
    args = ap.parse_args(argv)

    dtypes = tuple(d.strip() for d in args.dtypes.split(",") if d.strip())
    for d in dtypes:
        if d not in DTYPES:
            ap.error(f"--dtypes: unknown {d!r}")
    if not args.no_poison:
        os.environ["GPUCONV_POISON"] = "1"
    else:
        os.environ.pop("GPUCONV_POISON", None)

    if args.numpy:
        xp = numpy
        print("mode: --numpy (NumPy path against itself; no kernel runs, coverage not checked)")
    else:
        import cupy

        if args.no_pool:
            cupy.cuda.set_allocator(None)
            cupy.cuda.set_pinned_memory_allocator(None)
        xp = cupy
        dev = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        print(f"mode: cuda on {name} (sm_{dev.compute_capability}, {dev.attributes['MultiProcessorCount']} SMs), "
              f"CuPy {cupy.__version__}, pool {'off' if args.no_pool else 'on'}, "
              f"poison {'off' if args.no_poison else 'on'}, {'small' if args.small else 'full'} set")

    runner = Runner(xp, verbose=args.verbose, only=args.only)
    if runner.gpu:
        patched = runner.install_recorder()
        print(f"recording kernel launches in: {', '.join(sorted(patched))}")
    rng = numpy.random.default_rng(args.seed)
    t0 = time.perf_counter()
    conv_checks(runner, rng, dtypes, args.small)
    igemm_checks(runner, rng, dtypes, args.small)
    nhwc_checks(runner, rng, dtypes, args.small)
    nhwc_wgrad_checks(runner, rng, dtypes, args.small)
    nhwc_dgrad_checks(runner, rng, dtypes, args.small)
    depthwise_v2_checks(runner, rng, dtypes, args.small)
    gemm_1x1_checks(runner, rng, dtypes, args.small)
    bias_grad_checks(runner, rng, dtypes, args.small)
    nonfinite_weights_checks(runner, rng, dtypes, args.small)
    pad_mode_checks(runner, rng, dtypes, args.small)
    pool_checks(runner, rng, dtypes, args.small)

    coverage_failed = False
    if runner.gpu:
        wanted, missing, unlisted = runner.coverage()
        full_run = args.only is None and set(dtypes) == set(DTYPES)
        print(f"coverage: {len(wanted) - len(missing)}/{len(wanted)} kernel instantiations launched"
              + ("" if full_run else " (not enforced: --only or --dtypes narrows the run)"))
        for f, n in missing:
            print(f"  not launched: {f}: {n}")
        for f, n in unlisted:
            print(f"  launched but not in the kernel table: {f}: {n}")
        coverage_failed = full_run and bool(missing)
    print(f"{runner.count} checks, {len(runner.failures)} failed, {runner.skipped} skipped, "
          f"{time.perf_counter() - t0:.1f}s")
    for f in runner.failures:
        print(f"  failed: {f}")
    ok = not runner.failures and not coverage_failed
    print("RESULT: PASS" if ok else "RESULT: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
