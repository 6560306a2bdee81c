"""Argument normalisation, output-size formulas and every validation of gpuconv.

This module owns each of those facts once; both backends trust what it hands them and never re-validate.
It knows nothing about how an op is computed.

The geometry objects use CUTLASS's vocabulary:

    input  (N, C, H, W)      activations of a forward convolution
    weight (K, C/groups, R, S)
    output (N, K, P, Q)
    P = (H + pad_top + pad_bottom - dil_h*(R-1) - 1) // stride_h + 1      (Q alike)

A transposed convolution is described by the geometry of the convolution whose dgrad it is: its input plays
the role of (N, K, P, Q) and its output the role of (N, C, H, W).
"""

from __future__ import annotations

import functools
import numbers
import os
from dataclasses import dataclass

import ml_dtypes
import numpy

BFLOAT16 = numpy.dtype(ml_dtypes.bfloat16)  # CuPy >= 14 uses this same type for its bfloat16
FLOAT_DTYPES = (numpy.dtype(numpy.float16), BFLOAT16, numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


# --------------------------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class ConvGeometry:
    """One 2-D convolution problem; every size a backend needs, already checked."""

    N: int
    C: int
    H: int
    W: int
    K: int
    R: int
    S: int
    P: int
    Q: int
    stride_h: int = 1
    stride_w: int = 1
    pad_top: int = 0
    pad_bottom: int = 0
    pad_left: int = 0
    pad_right: int = 0
    dil_h: int = 1
    dil_w: int = 1
    groups: int = 1

    @property
    def c_per_group(self) -> int:
        return self.C // self.groups

    @property
    def k_per_group(self) -> int:
        return self.K // self.groups

    @property
    def input_shape(self) -> tuple:
        return (self.N, self.C, self.H, self.W)

    @property
    def weight_shape(self) -> tuple:
        return (self.K, self.C // self.groups, self.R, self.S)

    @property
    def output_shape(self) -> tuple:
        return (self.N, self.K, self.P, self.Q)

    @property
    def empty(self) -> bool:
        """True when some array of the problem has no elements (nothing for a kernel to do)."""
        return 0 in (self.N, self.H, self.W, self.P, self.Q)

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two: 2*N*K*P*Q*(C/groups)*R*S, the same for fprop, dgrad and wgrad."""
        return 2 * self.N * self.K * self.P * self.Q * self.c_per_group * self.R * self.S

    def with_batch(self, n: int) -> "ConvGeometry":
        """The same problem for a slice of n images (backends chunk the batch to cap their workspace)."""
        return _replace(self, N=n)

    def dgrad_as_fprop(self) -> "ConvGeometry":
        """For stride 1 and groups 1: the forward convolution that computes this one's input gradient.
        gx[n, c, h, w] = sum over k, r, s of gy[n, k, h + pad_top - r*dil_h, w + pad_left - s*dil_w] w[k, c, r, s]
        is conv2d(gy, w') with w'[c, k, r, s] = w[k, c, R-1-r, S-1-s] (the filter flipped, in and out
        channels swapped), the same dilation, and pads dil*(R-1) - pad on each side (negative where this
        convolution pads more than its filter spans). Input (N, K, P, Q), output (N, C, H, W)."""
        if (self.stride_h, self.stride_w, self.groups) != (1, 1, 1):
            raise ValueError(f"dgrad_as_fprop needs stride 1 and groups 1, not {self}")
        span_h, span_w = self.dil_h * (self.R - 1), self.dil_w * (self.S - 1)
        return ConvGeometry(N=self.N, C=self.K, H=self.P, W=self.Q, K=self.C, R=self.R, S=self.S, P=self.H,
                            Q=self.W, pad_top=span_h - self.pad_top, pad_bottom=span_h - self.pad_bottom,
                            pad_left=span_w - self.pad_left, pad_right=span_w - self.pad_right,
                            dil_h=self.dil_h, dil_w=self.dil_w)


@dataclass(frozen=True)
class PoolGeometry:
    """One 2-D pooling problem: input (N, C, H, W) -> output (N, C, P, Q)."""

    N: int
    C: int
    H: int
    W: int
    P: int
    Q: int
    kernel_h: int
    kernel_w: int
    stride_h: int
    stride_w: int
    pad_h: int
    pad_w: int
    dil_h: int = 1
    dil_w: int = 1
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    @property
    def input_shape(self) -> tuple:
        return (self.N, self.C, self.H, self.W)

    @property
    def output_shape(self) -> tuple:
        return (self.N, self.C, self.P, self.Q)

    def with_batch(self, n: int) -> "PoolGeometry":
        return _replace(self, N=n)


def _replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


# ------------------------------------------------------------------------------------------ arrays


def _shape_str(shape) -> str:
    return str(tuple(int(s) for s in shape))


def _array_kind(a):
    """'numpy', 'cupy' or None for anything that is not an array we accept. NumPy subclasses count as
    'numpy' here; :func:`_reject_subclass` then refuses the ones whose meaning an op would drop."""
    if isinstance(a, numpy.ndarray):
        return "numpy"
    mod = type(a).__module__ or ""
    if mod.startswith("cupy") and type(a).__name__ == "ndarray":
        return "cupy"
    return None


def _reject_subclass(op: str, name: str, a) -> None:
    """Masked arrays and matrices are refused: an op would silently drop the mask (masked elements would
    count with whatever values they hold), and numpy.matrix is 2-D only with operators of its own. Other
    subclasses (numpy.memmap, say) are computed on as plain ndarrays; results are plain ndarrays."""
    if isinstance(a, numpy.ma.MaskedArray):
        raise TypeError(
            f"{op}: {name} is a numpy.ma.MaskedArray; masks are not supported (pass numpy.ma.filled({name}, "
            f"fill_value) or {name}.data to say what the masked elements hold)"
        )
    if isinstance(a, numpy.matrix):
        raise TypeError(f"{op}: {name} is a numpy.matrix (2-D only); pass a numpy.ndarray (numpy.asarray({name}))")


def native_dtype(dtype) -> numpy.dtype:
    """dtype in native byte order ('>f4' -> float32 on a little-endian machine): arrays read from files in
    the other byte order are accepted, and the NumPy backend converts them once."""
    return dtype if dtype.isnative else dtype.newbyteorder("=")


def check_arrays(op: str, named: dict, optional=("bias",)) -> str:
    """Checks that every array is a NumPy or CuPy float array, all of one kind, one dtype and (for CuPy) one
    device; names in ``optional`` may be None. Returns the kind: 'numpy' or 'cupy'."""
    kind = None
    dtype = None
    device = None
    first = None
    for name, a in named.items():
        if a is None:
            if name in optional:
                continue
            raise TypeError(f"{op}: {name} must be a numpy.ndarray or cupy.ndarray, but got None")
        k = _array_kind(a)
        if k is None:
            raise TypeError(
                f"{op}: {name} must be a numpy.ndarray or cupy.ndarray, but got {type(a).__module__}."
                f"{type(a).__qualname__}"
            )
        if k == "numpy" and type(a) is not numpy.ndarray:
            _reject_subclass(op, name, a)
        if kind is None:
            kind, first = k, name
        elif k != kind:
            raise TypeError(
                f"{op}: {first} is a {kind}.ndarray but {name} is a {k}.ndarray; pass arrays of one kind "
                f"(all NumPy or all CuPy)"
            )
        adt = a.dtype if a.dtype.isnative else native_dtype(a.dtype)
        if adt not in FLOAT_DTYPES:
            raise TypeError(
                f"{op}: {name} must have dtype float16, bfloat16, float32 or float64, but got {a.dtype}"
            )
        if dtype is None:
            dtype = adt
        elif adt != dtype:
            raise TypeError(
                f"{op}: all arrays must have one dtype, but {first} is {dtype} and {name} is {adt}"
            )
        if k == "cupy":
            dev = a.device.id
            if device is None:
                device = dev
            elif dev != device:
                raise ValueError(
                    f"{op}: all arrays must be on one device, but {first} is on cuda:{device} and {name} "
                    f"is on cuda:{dev}"
                )
    return kind


def check_index_array(op: str, name: str, a, kind: str) -> None:
    k = _array_kind(a)
    if k is None:
        raise TypeError(
            f"{op}: {name} must be a numpy.ndarray or cupy.ndarray, but got {type(a).__module__}."
            f"{type(a).__qualname__}"
        )
    if k != kind:
        raise TypeError(f"{op}: {name} is a {k}.ndarray but grad_output is a {kind}.ndarray")
    if k == "numpy" and type(a) is not numpy.ndarray:
        _reject_subclass(op, name, a)
    # int64 only, as PyTorch: a narrower or unsigned dtype would need its own range rules (int8 -1 must not
    # pass as 255), and max pooling returns int64 anyway. Any byte order ('>i8' from a file) is accepted.
    if a.dtype.kind != "i" or a.dtype.itemsize != 8:
        raise TypeError(
            f"{op}: {name} must have dtype int64 (as max pooling returns them), but got {a.dtype}"
        )


# ------------------------------------------------------------------------------------- memoisation

# A call's check reads only the arrays' kinds, shapes, dtypes and devices and the scalar arguments, so its
# result (immutable) can be reused for the next call with the same ones: a training loop repeats a few
# dozen. Checking costs about 9 us of Python per conv2d call, building the key about 1 us; at batch 1 on the
# GPU the whole call costs about 56 us (bench/results/gpu-h100-2026-11-23-r4/host_overhead.md).
_MEMO_LIMIT = 4096  # entries per check; the memo starts over when full
_PLAIN_TYPES = frozenset({int, str, bool, type(None)})  # floats stay out: NaN is not equal to itself
_TYPE_KINDS: dict = {}  # type -> 'numpy' / 'cupy' / None, the _array_kind of its instances


def _call_key(args: tuple, kwargs: dict):
    """A hashable key for everything a check reads from its arguments, or None when an argument is of a
    kind the key does not cover (lists, NumPy scalars, floats, anything else): that call is checked anew.
    Scalars enter with their type, so that stride=True cannot reuse the check of stride=1."""
    key = []
    for v in args + tuple(kwargs.values()) + tuple(kwargs):
        t = type(v)
        if t in _PLAIN_TYPES:
            key.append((t, v))
            continue
        if t is tuple:
            if not all(type(e) is int for e in v):
                return None
            key.append((t, v))
            continue
        kind = _TYPE_KINDS.get(t)
        if kind is None:
            kind = _TYPE_KINDS.setdefault(t, _array_kind(v))
        if kind == "numpy":
            key.append((t, v.shape, v.dtype))
        elif kind == "cupy":
            try:
                key.append((t, v.shape, v.dtype, v.device.id))
            except Exception:  # not a usable array after all: the check itself says what is wrong
                return None
        else:
            return None
    return tuple(key)


def _memoized(check):
    """``check`` with its results kept per ``_call_key`` (raising calls keep nothing)."""
    memo: dict = {}

    @functools.wraps(check)
    def cached(*args, **kwargs):
        key = _call_key(args, kwargs)
        if key is None:
            return check(*args, **kwargs)
        found = memo.get(key)
        if found is None:
            found = check(*args, **kwargs)
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            memo[key] = found
        return found

    cached.memo = memo
    return cached


# ----------------------------------------------------------------------------------------- scalars

_COUNT_WORDS = {1: "an int or a tuple of one int", 2: "an int or a pair of ints", 3: "an int or a triple of ints"}

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# The most bytes one array may hold: NumPy and CuPy index with signed 64-bit byte offsets.
MAX_ARRAY_BYTES = 2**63 - 1


def _out_of_range(op: str, name: str, v) -> ValueError:
    # v may be far past 2**64: say how large instead of printing hundreds of digits
    shown = v if abs(v) < 10**30 else f"{'-' if v < 0 else ''}2**{abs(v).bit_length() - 1}-ish"
    return ValueError(
        f"{op}: {name}={shown} is out of range; it must fit in 32 bits ([{INT32_MIN}, {INT32_MAX}]), the "
        f"range the kernels index sizes with"
    )


def _int(op: str, name: str, v, n: int = 2) -> int:
    if type(v) is int:  # the common case, without the slow ABC check below
        if not INT32_MIN <= v <= INT32_MAX:
            raise _out_of_range(op, name, v)
        return v
    if isinstance(v, (bool, numpy.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{op}: {name} must be {_COUNT_WORDS[n]}, but got {v!r}")
    v = int(v)
    if not INT32_MIN <= v <= INT32_MAX:  # sizes the kernels index with 32-bit parameters
        raise _out_of_range(op, name, v)
    return v


def check_size(op: str, what: str, shape: tuple, itemsize: int) -> None:
    """A ValueError when an array of ``shape`` (which the call implies: an output, an input_shape) would have
    a dimension past 32 bits (the kernels' size parameters) or more than MAX_ARRAY_BYTES bytes, instead of
    an OverflowError, NumPy's "array is too big" or an attempt to allocate it."""
    for v in shape:
        if v > INT32_MAX:
            raise ValueError(
                f"{op}: {what} of shape {_shape_str(shape)} has a dimension past 32 bits ({v} > {INT32_MAX}), "
                f"the largest size the kernels index with"
            )
    total = itemsize
    for v in shape:
        total *= v
    if total > MAX_ARRAY_BYTES:
        raise ValueError(
            f"{op}: {what} of shape {_shape_str(shape)} would need {total} bytes, more than any array can hold "
            f"(2**63 - 1)"
        )


def ntuple(op: str, name: str, v, n: int) -> tuple:
    """An int, or a sequence of n ints (or of one, repeated), -> a tuple of n ints."""
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            v = tuple(v) * n
        if len(v) != n:
            raise ValueError(f"{op}: {name} must be {_COUNT_WORDS[n]}, but got {tuple(v)!r}")
        return tuple(_int(op, name, e, n) for e in v)
    if isinstance(v, numpy.ndarray) and v.ndim == 1:
        return ntuple(op, name, tuple(v.tolist()), n)
    return (_int(op, name, v, n),) * n


def pair(op: str, name: str, v) -> tuple:
    """An int or a sequence of two ints -> (int, int)."""
    return ntuple(op, name, v, 2)


def _positive(op: str, name: str, v, n: int = 2) -> tuple:
    p = ntuple(op, name, v, n)
    if min(p) <= 0:
        raise ValueError(f"{op}: {name} must be positive, but got {name}={p}")
    return p


def _non_negative(op: str, name: str, v, n: int = 2) -> tuple:
    p = ntuple(op, name, v, n)
    if min(p) < 0:
        raise ValueError(f"{op}: {name} must be non-negative, but got {name}={p}")
    return p


def _groups(op: str, groups) -> int:
    if isinstance(groups, (bool, numpy.bool_)) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"{op}: groups must be an int, but got {groups!r}")
    if groups <= 0:
        raise ValueError(f"{op}: groups must be positive, but got groups={groups}")
    if groups > INT32_MAX:
        raise _out_of_range(op, "groups", int(groups))
    return int(groups)


def _bool(op: str, name: str, v) -> bool:
    if not isinstance(v, (bool, numpy.bool_)):
        raise TypeError(f"{op}: {name} must be a bool, but got {v!r}")
    return bool(v)


def check_output_mask(op: str, mask) -> tuple:
    try:
        m = tuple(mask)
    except TypeError:
        m = None
    if m is None or len(m) != 3 or not all(isinstance(b, (bool, numpy.bool_)) for b in m):
        raise TypeError(f"{op}: output_mask must be three bools (grad_input, grad_weight, grad_bias), got {mask!r}")
    return tuple(bool(b) for b in m)


# ------------------------------------------------------------------------------------------- shapes

# What the spatial dimensions are called, by count: in messages and in the weight layout.
_DIM_NAMES = {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}
_KERNEL_NAMES = {1: "kW", 2: "kH, kW", 3: "kT, kH, kW"}
_SIDE_NAMES = {1: (("left", "right"),), 2: (("top", "bottom"), ("left", "right")),
               3: (("front", "back"), ("top", "bottom"), ("left", "right"))}


def batched(op: str, name: str, shape, what: str = "input", nd: int = 2) -> tuple:
    """(N, C, *spatial) of an unbatched (nd + 1 dims) or batched (nd + 2 dims) shape, and whether it was
    unbatched."""
    if len(shape) == nd + 2:
        return tuple(int(s) for s in shape), False
    if len(shape) == nd + 1:
        return (1,) + tuple(int(s) for s in shape), True
    raise ValueError(
        f"{op}: expected {nd + 1}-D (unbatched) or {nd + 2}-D (batched) {name}, but got {name} of shape "
        f"{_shape_str(shape)}"
    )


def _check_spatial(op: str, name: str, shape: tuple, unbatched: bool) -> None:
    shown = shape[1:] if unbatched else shape
    if any(s == 0 for s in shape[1:]):
        dims = ", ".join(("channel",) + _DIM_NAMES[len(shape) - 2][:-1]) + " and " + _DIM_NAMES[len(shape) - 2][-1]
        raise ValueError(
            f"{op}: expected {name} with non-zero {dims}, but got {name} of shape {_shape_str(shown)}"
        )


def _x(sizes) -> str:
    """Sizes as '4 x 5 x 6' for messages."""
    return " x ".join(str(s) for s in sizes)


# ------------------------------------------------------------------------------------- convolution


def _conv_out(size: int, lo: int, hi: int, k: int, d: int, s: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


@dataclass(frozen=True)
class ConvSpec:
    """One convolution problem in any number of spatial dimensions (1, 2 or 3), every size checked.
    Spatial tuples run outermost first ((D, H, W) for 3-d). ``size`` is what the kernels index (after any
    explicit padding for padding_mode); pads may be negative at the high end (transposed convolution with
    output_padding), where they only fix the output size."""

    N: int
    C: int
    K: int
    groups: int
    size: tuple
    kernel: tuple
    out: tuple
    stride: tuple
    dilation: tuple
    pad_lo: tuple
    pad_hi: tuple

    @property
    def nd(self) -> int:
        return len(self.size)

    @property
    def input_shape(self) -> tuple:
        return (self.N, self.C) + self.size

    @property
    def weight_shape(self) -> tuple:
        return (self.K, self.C // self.groups) + self.kernel

    @property
    def output_shape(self) -> tuple:
        return (self.N, self.K) + self.out

    @property
    def empty(self) -> bool:
        return 0 in (self.N,) + self.size + self.out

    def plane(self, N: int | None = None, C: int | None = None) -> ConvGeometry:
        """The 2-d problem of the last two spatial dimensions (a 1-d problem is one of height 1), for N
        images (default: this problem's) with C input channels (default: this problem's)."""
        lead = 2 - min(self.nd, 2)  # 1-d: a unit height in front
        one = (1,) * lead
        zero = (0,) * lead
        size, kernel, out = one + self.size[-2:], one + self.kernel[-2:], one + self.out[-2:]
        stride, dil = one + self.stride[-2:], one + self.dilation[-2:]
        lo, hi = zero + self.pad_lo[-2:], zero + self.pad_hi[-2:]
        return ConvGeometry(N=self.N if N is None else N, C=self.C if C is None else C, H=size[0], W=size[1],
                            K=self.K, R=kernel[0], S=kernel[1], P=out[0], Q=out[1], stride_h=stride[0],
                            stride_w=stride[1], pad_top=lo[0], pad_bottom=hi[0], pad_left=lo[1],
                            pad_right=hi[1], dil_h=dil[0], dil_w=dil[1], groups=self.groups)


@dataclass(frozen=True)
class ConvCall:
    """A checked convolution / convolution-backward call (any nd)."""

    kind: str  # 'numpy' or 'cupy'
    unbatched: bool
    spec: ConvSpec  # the convolution the kernels run (after any explicit padding)
    padding_mode: str
    mode_pads: tuple  # (lo, hi) per spatial dim, flat, applied by an explicit pad when padding_mode != 'zeros'
    size: tuple  # the caller's spatial input sizes, before any explicit pad
    # The 2-d geometry of a 1-d or 2-d call (3-d calls compose 2-d problems from ``spec``): built once with the
    # memoised check, so that every call hands the backend the same object (its choices are remembered by it).
    geometry: ConvGeometry

    @property
    def padded(self) -> bool:
        return self.padding_mode != "zeros" and any(self.mode_pads)


Conv2dCall = ConvCall  # the 2-d case


def _conv_padding(op, padding, kernel, dil, stride) -> tuple:
    """(lo, hi) per spatial dimension for a convolution's padding argument."""
    nd = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"{op}: padding='same' is not supported for strided convolutions, but got stride={stride}"
                )
            totals = [d * (k - 1) for d, k in zip(dil, kernel)]
            return tuple((t // 2, t - t // 2) for t in totals)
        if padding == "full":
            return tuple((d * (k - 1),) * 2 for d, k in zip(dil, kernel))
        raise ValueError(
            f"{op}: padding must be {_COUNT_WORDS[nd]}, 'valid', 'same' or 'full', but got {padding!r}"
        )
    return tuple((p, p) for p in _non_negative(op, "padding", padding, nd))


def _weight_sizes(op, weight, groups, layout: str, nd: int = 2) -> tuple:
    """(dim0, dim1, *kernel) of an (nd + 2)-D weight with non-zero sizes whose first dimension splits into
    groups."""
    if weight.ndim != nd + 2:
        raise ValueError(
            f"{op}: expected {nd + 2}-D weight {layout}, but got weight of shape {_shape_str(weight.shape)}"
        )
    sizes = tuple(int(s) for s in weight.shape)
    if 0 in sizes:
        raise ValueError(f"{op}: expected weight with non-zero sizes, but got weight of shape {_shape_str(sizes)}")
    if sizes[0] % groups != 0:
        raise ValueError(
            f"{op}: given groups={groups}, expected weight to be divisible by {groups} at dimension 0, but got "
            f"weight of shape {_shape_str(sizes)}"
        )
    return sizes


def _check_grad_output(op, grad_output, expected_batched, unbatched, what):
    expected = expected_batched[1:] if unbatched else expected_batched
    if tuple(grad_output.shape) != tuple(expected):
        raise ValueError(
            f"{op}: expected grad_output of shape {_shape_str(expected)} ({what}), but got "
            f"{_shape_str(grad_output.shape)}"
        )


@_memoized
def conv_call(op, nd, input, weight, bias, stride, padding, dilation, groups, padding_mode,
              grad_output=None, backward=False) -> ConvCall:
    """Checks a conv{nd}d / conv{nd}d_backward call."""
    kind = check_arrays(op, {"input": input, "weight": weight, "bias": bias, "grad_output": grad_output},
                        optional=("bias",) if backward else ("bias", "grad_output"))
    stride = _positive(op, "stride", stride, nd)
    dil = _positive(op, "dilation", dilation, nd)
    groups = _groups(op, groups)
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"{op}: padding_mode must be one of {', '.join(repr(m) for m in PADDING_MODES)}, but got "
            f"{padding_mode!r}"
        )
    shape, unbatched = batched(op, "input", input.shape, nd=nd)
    N, C, size = shape[0], shape[1], shape[2:]
    K, Cg, *kernel = _weight_sizes(op, weight, groups, f"(out_channels, in_channels/groups, {_KERNEL_NAMES[nd]})",
                                   nd)
    kernel = tuple(kernel)
    _check_spatial(op, "input", shape, unbatched)
    if Cg * groups != C:
        raise ValueError(
            f"{op}: given groups={groups}, weight of shape {_shape_str(weight.shape)}, expected input "
            f"{_shape_str(input.shape)} to have {Cg * groups} channels, but got {C} channels instead"
        )
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != K):
        raise ValueError(
            f"{op}: expected bias of shape ({K},) (one per output channel), but got bias of shape "
            f"{_shape_str(bias.shape)}"
        )
    pads = _conv_padding(op, padding, kernel, dil, stride)
    spans = tuple(d * (k - 1) + 1 for d, k in zip(dil, kernel))
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(size, pads))
    if any(p < e for p, e in zip(padded, spans)):
        raise ValueError(
            f"{op}: padded input size per channel ({_x(padded)}) is smaller than the dilated kernel size "
            f"({_x(spans)}); kernel size can't be greater than the padded input size"
        )
    out = tuple(_conv_out(s, lo, hi, k, d, st) for s, (lo, hi), k, d, st in zip(size, pads, kernel, dil, stride))
    check_size(op, "the padded input", (N, C) + padded, input.dtype.itemsize)  # its rows: 32-bit kernel offsets
    check_size(op, "output", (N, K) + out, input.dtype.itemsize)
    flat_pads = tuple(p for lohi in pads for p in lohi)
    mode_pads = (0,) * (2 * nd)
    if padding_mode != "zeros" and any(flat_pads):
        _check_mode_pads(op, padding_mode, pads, size)
        mode_pads, pads, kernel_size = flat_pads, ((0, 0),) * nd, padded
    else:
        kernel_size = size
    spec = ConvSpec(N=N, C=C, K=K, groups=groups, size=kernel_size, kernel=kernel, out=out, stride=stride,
                    dilation=dil, pad_lo=tuple(p[0] for p in pads), pad_hi=tuple(p[1] for p in pads))
    if backward:
        _check_grad_output(op, grad_output, spec.output_shape, unbatched,
                           f"the conv{nd}d output for input {_shape_str(input.shape)} and weight "
                           f"{_shape_str(weight.shape)}")
    return ConvCall(kind, unbatched, spec, padding_mode, mode_pads, size, spec.plane())


def conv2d_call(op, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                grad_output=None, backward=False) -> ConvCall:
    return conv_call(op, 2, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                     grad_output=grad_output, backward=backward)


def _check_mode_pads(op, mode, pads, size):
    too_big = (lambda p, s: p >= s) if mode == "reflect" else (lambda p, s: p > s)
    if mode not in ("reflect", "circular"):
        return
    if any(too_big(max(lo, hi), s) for (lo, hi), s in zip(pads, size)):
        nd = len(size)
        sides = ", ".join(f"{a}={lo}, {b}={hi}" for (a, b), (lo, hi) in zip(_SIDE_NAMES[nd], pads))
        dims = " and ".join(f"{name} {s}" for name, s in zip(_DIM_NAMES[nd], size))
        need = "smaller than" if mode == "reflect" else "at most"
        raise ValueError(
            f"{op}: padding_mode={mode!r} needs padding {need} the input size, but got padding ({sides}) for "
            f"input {dims}"
        )


@dataclass(frozen=True)
class ConvTransposeCall:
    kind: str
    unbatched: bool
    spec: ConvSpec  # the convolution whose dgrad this transposed convolution is
    geometry: ConvGeometry  # spec.plane(), built once


ConvTranspose2dCall = ConvTransposeCall


@_memoized
def conv_transpose_call(op, nd, input, weight, bias, stride, padding, output_padding, groups, dilation,
                        grad_output=None, backward=False) -> ConvTransposeCall:
    kind = check_arrays(op, {"input": input, "weight": weight, "bias": bias, "grad_output": grad_output},
                        optional=("bias",) if backward else ("bias", "grad_output"))
    stride = _positive(op, "stride", stride, nd)
    dil = _positive(op, "dilation", dilation, nd)
    groups = _groups(op, groups)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be {_COUNT_WORDS[nd]}, but got {padding!r}")
    pad = _non_negative(op, "padding", padding, nd)
    opad = _non_negative(op, "output_padding", output_padding, nd)
    if any(o >= s and o >= d for o, s, d in zip(opad, stride, dil)):
        raise ValueError(
            f"{op}: output_padding must be smaller than either stride or dilation, but got "
            f"output_padding={opad}, stride={stride}, dilation={dil}"
        )
    shape, unbatched = batched(op, "input", input.shape, nd=nd)
    N, Cin, size_in = shape[0], shape[1], shape[2:]
    Kw, Cg, *kernel = _weight_sizes(op, weight, groups, f"(in_channels, out_channels/groups, {_KERNEL_NAMES[nd]})",
                                    nd)
    kernel = tuple(kernel)
    _check_spatial(op, "input", shape, unbatched)
    if Kw != Cin:
        raise ValueError(
            f"{op}: given transposed=1, weight of shape {_shape_str(weight.shape)}, expected input "
            f"{_shape_str(input.shape)} to have {Kw} channels, but got {Cin} channels instead"
        )
    Cout = Cg * groups
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != Cout):
        raise ValueError(
            f"{op}: expected bias of shape ({Cout},) (one per output channel), but got bias of shape "
            f"{_shape_str(bias.shape)}"
        )
    size_out = tuple((i - 1) * s - 2 * p + d * (k - 1) + o + 1
                     for i, s, p, d, k, o in zip(size_in, stride, pad, dil, kernel, opad))
    if min(size_out) <= 0:
        raise ValueError(
            f"{op}: given input of shape {_shape_str(input.shape)}, the output size ({_x(size_out)}) is too "
            f"small: padding={pad} is too large for stride={stride}, dilation={dil} and kernel ({_x(kernel)})"
        )
    check_size(op, "output", (N, Cout) + size_out, input.dtype.itemsize)
    # the convolution whose dgrad this is reads (size + 2 * padding) rows: the kernels' offsets must fit too
    check_size(op, "the padded output", (N, Cout) + tuple(o + 2 * q for o, q in zip(size_out, pad)),
               input.dtype.itemsize)
    # pad_hi = padding - output_padding makes the conv's output size equal the input's exactly; it is
    # negative when output_padding > padding, which is fine: kernels index with pad_lo only, and pad_hi only
    # fixes the output size (positions past the last tap's reach get a zero gradient).
    spec = ConvSpec(N=N, C=Cout, K=Cin, groups=groups, size=size_out, kernel=kernel, out=size_in, stride=stride,
                    dilation=dil, pad_lo=pad, pad_hi=tuple(p - o for p, o in zip(pad, opad)))
    if backward:
        _check_grad_output(op, grad_output, spec.input_shape, unbatched,
                           f"the conv_transpose{nd}d output for input {_shape_str(input.shape)} and weight "
                           f"{_shape_str(weight.shape)}")
    return ConvTransposeCall(kind, unbatched, spec, spec.plane())


def conv_transpose2d_call(op, input, weight, bias, stride, padding, output_padding, groups, dilation,
                          grad_output=None, backward=False) -> ConvTransposeCall:
    return conv_transpose_call(op, 2, input, weight, bias, stride, padding, output_padding, groups, dilation,
                               grad_output=grad_output, backward=backward)


# ------------------------------------------------------------------------------------------ pooling


def _pool_out(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling_output_shape: the last window must start inside the input or its left padding."""
    span = size + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)
    out = span // s + 1  # floor division: span may be negative
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


@dataclass(frozen=True)
class PoolSpec:
    """One pooling problem in any number of spatial dimensions: input (N, C, *size) -> (N, C, *out)."""

    N: int
    C: int
    size: tuple
    out: tuple
    kernel: tuple
    stride: tuple
    pad: tuple
    dilation: tuple
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = None

    @property
    def nd(self) -> int:
        return len(self.size)

    @property
    def input_shape(self) -> tuple:
        return (self.N, self.C) + self.size

    @property
    def output_shape(self) -> tuple:
        return (self.N, self.C) + self.out

    def plane(self, N: int | None = None, C: int | None = None, divisor_override=False) -> PoolGeometry:
        """The 2-d pooling of the last two spatial dimensions (1-d: height 1), for N images of C channels
        (defaults: this problem's); divisor_override replaces this problem's when given."""
        lead = 2 - min(self.nd, 2)
        one, zero = (1,) * lead, (0,) * lead
        size, out, k = one + self.size[-2:], one + self.out[-2:], one + self.kernel[-2:]
        s, p, d = one + self.stride[-2:], zero + self.pad[-2:], one + self.dilation[-2:]
        return PoolGeometry(N=self.N if N is None else N, C=self.C if C is None else C, H=size[0], W=size[1],
                            P=out[0], Q=out[1], kernel_h=k[0], kernel_w=k[1], stride_h=s[0], stride_w=s[1],
                            pad_h=p[0], pad_w=p[1], dil_h=d[0], dil_w=d[1], ceil_mode=self.ceil_mode,
                            count_include_pad=self.count_include_pad,
                            divisor_override=self.divisor_override if divisor_override is False
                            else divisor_override)


@dataclass(frozen=True)
class PoolCall:
    kind: str
    unbatched: bool
    spec: PoolSpec
    geometry: PoolGeometry  # spec.plane(), built once


@_memoized
def pool_call(op, nd, input, kernel_size, stride, padding, dilation, ceil_mode, *, max_pool: bool,
              count_include_pad=True, divisor_override=None, grad_output=None, input_shape=None,
              backward=False) -> PoolCall:
    """Checks a pooling call. For the backward of average pooling, pass backward=True, grad_output and
    input_shape instead of input (input=None)."""
    arrays = {"grad_output": grad_output} if backward else {"input": input}
    kind = check_arrays(op, arrays)
    k = _positive(op, "kernel_size", kernel_size, nd)
    empty_stride = stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0)
    s = k if empty_stride else _positive(op, "stride", stride, nd)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be {_COUNT_WORDS[nd]}, but got {padding!r}")
    p = _non_negative(op, "padding", padding, nd)
    d = _positive(op, "dilation", dilation, nd)
    ceil_mode = _bool(op, "ceil_mode", ceil_mode)
    count_include_pad = _bool(op, "count_include_pad", count_include_pad)
    if divisor_override is not None:
        if isinstance(divisor_override, (bool, numpy.bool_)) or not isinstance(divisor_override, numbers.Integral):
            raise TypeError(f"{op}: divisor_override must be an int or None, but got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must be non-zero, but got 0")
        divisor_override = _int(op, "divisor_override", divisor_override)
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ValueError(
            f"{op}: padding should be at most half of the kernel size, but got padding={p} and kernel_size={k}"
        )
    shape = _input_shape(op, input_shape, nd) if backward else input.shape
    if backward:
        check_size(op, "input_shape", shape, grad_output.dtype.itemsize)
    full, unbatched = batched(op, "input_shape" if backward else "input", shape, nd=nd)
    _check_spatial(op, "input", full, unbatched)
    size = full[2:]
    out = tuple(_pool_out(*a, ceil_mode) for a in zip(size, k, s, p, d))
    if min(out) <= 0:
        raise ValueError(
            f"{op}: given input of shape {_shape_str(shape)}, the output size ({_x(out)}) is too small for "
            f"kernel_size={k}, stride={s}, padding={p}" + (f", dilation={d}" if max_pool else "")
        )
    check_size(op, "output", full[:2] + out, (grad_output if backward else input).dtype.itemsize)
    spec = PoolSpec(N=full[0], C=full[1], size=size, out=out, kernel=k, stride=s, pad=p, dilation=d,
                    ceil_mode=ceil_mode, count_include_pad=count_include_pad, divisor_override=divisor_override)
    if backward:
        _check_grad_output(op, grad_output, spec.output_shape, unbatched,
                           f"the pooled output of input shape {_shape_str(shape)}")
    return PoolCall(kind, unbatched, spec, spec.plane())


def pool2d_call(op, input, kernel_size, stride, padding, dilation, ceil_mode, *, max_pool: bool,
                count_include_pad=True, divisor_override=None, grad_output=None, input_shape=None,
                backward=False) -> PoolCall:
    return pool_call(op, 2, input, kernel_size, stride, padding, dilation, ceil_mode, max_pool=max_pool,
                     count_include_pad=count_include_pad, divisor_override=divisor_override,
                     grad_output=grad_output, input_shape=input_shape, backward=backward)


def _input_shape(op, input_shape, nd: int = 2):
    want = f"a sequence of {nd + 1} or {nd + 2} ints"
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{op}: input_shape must be {want}, but got {input_shape!r}") from None
    for v in shape:
        if isinstance(v, (bool, numpy.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{op}: input_shape must be {want}, but got {input_shape!r}")
        if v < 0:
            raise ValueError(f"{op}: input_shape must not hold negative sizes, but got {shape}")
    shape = tuple(int(v) for v in shape)
    check_size(op, "input_shape", shape, 1)
    return shape


@dataclass(frozen=True)
class MaxPoolBackwardCall:
    kind: str
    unbatched: bool
    input_shape: tuple  # (N, C, *spatial)


def max_pool_backward_call(op, nd, grad_output, indices, input_shape) -> MaxPoolBackwardCall:
    kind = check_arrays(op, {"grad_output": grad_output})
    check_index_array(op, "indices", indices, kind)
    shape = _input_shape(op, input_shape, nd)
    full, unbatched = batched(op, "input_shape", shape, nd=nd)
    _check_spatial(op, "input_shape", full, unbatched)
    if tuple(indices.shape) != tuple(grad_output.shape):
        raise ValueError(
            f"{op}: indices and grad_output must have one shape, but got indices {_shape_str(indices.shape)} and "
            f"grad_output {_shape_str(grad_output.shape)}"
        )
    if grad_output.ndim != len(shape) or tuple(grad_output.shape[:-nd]) != tuple(shape[:-nd]):
        raise ValueError(
            f"{op}: grad_output of shape {_shape_str(grad_output.shape)} does not match input_shape "
            f"{_shape_str(shape)}: expected the same rank and the same leading (batch, channel) sizes"
        )
    plane = 1
    for s in full[2:]:
        plane *= s
    check_size(op, "input_shape", shape, grad_output.dtype.itemsize)
    # The range check reads every index on the host. On CuPy arrays that would synchronise the stream (and
    # break CUDA-graph capture), so there it runs only on request (GPUCONV_CHECK_INDICES=1); the CUDA
    # kernels drop the gradient of an index outside the plane instead of reading or writing out of bounds.
    # One reduction: viewed as uint64 (same byte order), a negative int64 is above every valid index, so the
    # largest is below the plane size exactly when all lie in [0, plane); the two-sided range only for the message.
    if indices.size and (kind == "numpy" or os.environ.get("GPUCONV_CHECK_INDICES", "") == "1"):
        if int(indices.view(indices.dtype.str.replace("i", "u")).max()) >= plane:
            lo, hi = int(indices.min()), int(indices.max())
            raise ValueError(
                f"{op}: indices must lie in [0, {plane}) (flat positions in an input plane of {_x(full[2:])}), "
                f"but found values in [{lo}, {hi}]"
            )
    return MaxPoolBackwardCall(kind, unbatched, full)


def max_pool2d_backward_call(op, grad_output, indices, input_shape) -> MaxPoolBackwardCall:
    return max_pool_backward_call(op, 2, grad_output, indices, input_shape)


# --------------------------------------------------------------------------------- adaptive pooling


@dataclass(frozen=True)
class AdaptiveCall:
    kind: str
    unbatched: bool
    input_shape: tuple  # (N, C, *size)
    out: tuple  # output spatial sizes

    @property
    def output_shape(self) -> tuple:
        return self.input_shape[:2] + self.out


def _output_size(op, nd, output_size, size) -> tuple:
    """output_size: an int, or a sequence of nd ints or None (None keeps the input's size)."""
    if output_size is None:  # None only as an entry of a sequence, as PyTorch (which fails on a bare None)
        raise TypeError(f"{op}: output_size must be an int or a tuple of {nd} ints or None, but got None")
    if isinstance(output_size, (list, tuple)):
        if len(output_size) != nd:
            raise ValueError(f"{op}: output_size must be an int or a tuple of {nd} ints or None, but got "
                             f"{tuple(output_size)!r}")
        values = output_size
    else:
        values = (output_size,) * nd
    out = []
    for v, s in zip(values, size):
        if v is None:
            out.append(s)
            continue
        if isinstance(v, (bool, numpy.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{op}: output_size must be an int or a tuple of {nd} ints or None, but got "
                            f"{output_size!r}")
        if not 0 <= v < 2**31:
            raise ValueError(f"{op}: output_size must hold non-negative sizes below 2**31, but got {output_size!r}")
        out.append(int(v))
    return tuple(out)


@_memoized
def adaptive_pool_call(op, nd, input, output_size) -> AdaptiveCall:
    kind = check_arrays(op, {"input": input})
    full, unbatched = batched(op, "input", input.shape, nd=nd)
    _check_spatial(op, "input", full, unbatched)
    out = _output_size(op, nd, output_size, full[2:])
    return AdaptiveCall(kind, unbatched, full, out)


@_memoized
def adaptive_pool_backward_call(op, nd, grad_output, input_shape) -> AdaptiveCall:
    kind = check_arrays(op, {"grad_output": grad_output})
    shape = _input_shape(op, input_shape, nd)
    full, unbatched = batched(op, "input_shape", shape, nd=nd)
    _check_spatial(op, "input_shape", full, unbatched)
    if grad_output.ndim != len(shape) or tuple(grad_output.shape[:-nd]) != tuple(shape[:-nd]):
        raise ValueError(
            f"{op}: grad_output of shape {_shape_str(grad_output.shape)} does not match input_shape "
            f"{_shape_str(shape)}: expected the same rank and the same leading (batch, channel) sizes"
        )
    return AdaptiveCall(kind, unbatched, full, tuple(int(s) for s in grad_output.shape[-nd:]))


# The 2-d entry points share their n-d check's memo (tests read it).
conv2d_call.memo = conv_call.memo
conv_transpose2d_call.memo = conv_transpose_call.memo
pool2d_call.memo = pool_call.memo
