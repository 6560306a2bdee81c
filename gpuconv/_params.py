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

import numpy

FLOAT_DTYPES = (numpy.dtype(numpy.float16), numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))
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
                f"{op}: {name} must have dtype float16, float32 or float64, but got {a.dtype}"
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
    # pass as 255), and max_pool2d returns int64 anyway. Any byte order ('>i8' from a file) is accepted.
    if a.dtype.kind != "i" or a.dtype.itemsize != 8:
        raise TypeError(
            f"{op}: {name} must have dtype int64 (as max_pool2d returns them), but got {a.dtype}"
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


def _int(op: str, name: str, v) -> int:
    if type(v) is int:  # the common case, without the slow ABC check below
        if not INT32_MIN <= v <= INT32_MAX:
            raise _out_of_range(op, name, v)
        return v
    if isinstance(v, (bool, numpy.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, but got {v!r}")
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


def pair(op: str, name: str, v) -> tuple:
    """An int or a sequence of two ints -> (int, int)."""
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError(f"{op}: {name} must be an int or a pair of ints, but got {tuple(v)!r}")
        return (_int(op, name, v[0]), _int(op, name, v[1]))
    if isinstance(v, numpy.ndarray) and v.ndim == 1:
        return pair(op, name, tuple(v.tolist()))
    i = _int(op, name, v)
    return (i, i)


def _positive(op: str, name: str, v) -> tuple:
    p = pair(op, name, v)
    if p[0] <= 0 or p[1] <= 0:
        raise ValueError(f"{op}: {name} must be positive, but got {name}={p}")
    return p


def _non_negative(op: str, name: str, v) -> tuple:
    p = pair(op, name, v)
    if p[0] < 0 or p[1] < 0:
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


def batched(op: str, name: str, shape, what: str = "input") -> tuple:
    """(N, C, H, W) of a 3-D or 4-D shape, and whether it was unbatched."""
    if len(shape) == 4:
        return tuple(int(s) for s in shape), False
    if len(shape) == 3:
        return (1,) + tuple(int(s) for s in shape), True
    raise ValueError(
        f"{op}: expected 3-D (unbatched) or 4-D (batched) {name}, but got {name} of shape {_shape_str(shape)}"
    )


def _check_spatial(op: str, name: str, shape4: tuple, unbatched: bool) -> None:
    shown = shape4[1:] if unbatched else shape4
    if any(s == 0 for s in shape4[1:]):
        raise ValueError(
            f"{op}: expected {name} with non-zero channel, height and width, but got {name} of shape "
            f"{_shape_str(shown)}"
        )


def _conv_out(size: int, lo: int, hi: int, k: int, d: int, s: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def _conv_padding(op, padding, R, S, dil, stride):
    """(top, bottom, left, right) for conv2d's padding argument."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"{op}: padding='same' is not supported for strided convolutions, but got stride={stride}"
                )
            th, tw = dil[0] * (R - 1), dil[1] * (S - 1)
            return (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        if padding == "full":
            return (dil[0] * (R - 1),) * 2 + (dil[1] * (S - 1),) * 2
        raise ValueError(
            f"{op}: padding must be an int, a pair of ints, 'valid', 'same' or 'full', but got {padding!r}"
        )
    ph, pw = _non_negative(op, "padding", padding)
    return (ph, ph, pw, pw)


@dataclass(frozen=True)
class Conv2dCall:
    """A checked conv2d / conv2d_backward call."""

    kind: str  # 'numpy' or 'cupy'
    unbatched: bool
    geometry: ConvGeometry  # the convolution the kernels run (after any explicit padding)
    padding_mode: str
    mode_pads: tuple  # (top, bottom, left, right) applied by an explicit pad when padding_mode != 'zeros'
    H: int  # the caller's input height and width, before any explicit pad
    W: int


def _weight_sizes(op, weight, groups, layout: str) -> tuple:
    """(dim0, dim1, R, S) of a 4-D weight with non-zero sizes whose first dimension splits into groups."""
    if weight.ndim != 4:
        raise ValueError(
            f"{op}: expected 4-D weight {layout}, but got weight of shape {_shape_str(weight.shape)}"
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


@_memoized
def conv2d_call(op, input, weight, bias, stride, padding, dilation, groups, padding_mode,
                grad_output=None, backward=False) -> Conv2dCall:
    kind = check_arrays(op, {"input": input, "weight": weight, "bias": bias, "grad_output": grad_output},
                        optional=("bias",) if backward else ("bias", "grad_output"))
    stride = _positive(op, "stride", stride)
    dil = _positive(op, "dilation", dilation)
    groups = _groups(op, groups)
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"{op}: padding_mode must be one of {', '.join(repr(m) for m in PADDING_MODES)}, but got "
            f"{padding_mode!r}"
        )
    (N, C, H, W), unbatched = batched(op, "input", input.shape)
    K, Cg, R, S = _weight_sizes(op, weight, groups, "(out_channels, in_channels/groups, kH, kW)")
    _check_spatial(op, "input", (N, C, H, W), unbatched)
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
    pads = _conv_padding(op, padding, R, S, dil, stride)
    eff_r, eff_s = dil[0] * (R - 1) + 1, dil[1] * (S - 1) + 1
    Hp, Wp = H + pads[0] + pads[1], W + pads[2] + pads[3]
    if Hp < eff_r or Wp < eff_s:
        raise ValueError(
            f"{op}: padded input size per channel ({Hp} x {Wp}) is smaller than the dilated kernel size "
            f"({eff_r} x {eff_s}); kernel size can't be greater than the padded input size"
        )
    P, Q = _conv_out(H, pads[0], pads[1], R, dil[0], stride[0]), _conv_out(W, pads[2], pads[3], S, dil[1], stride[1])
    check_size(op, "the padded input", (N, C, Hp, Wp), input.dtype.itemsize)  # its rows: 32-bit kernel offsets
    check_size(op, "output", (N, K, P, Q), input.dtype.itemsize)
    mode_pads = (0, 0, 0, 0)
    if padding_mode != "zeros" and any(pads):
        _check_mode_pads(op, padding_mode, pads, H, W)
        mode_pads, pads, Hk, Wk = pads, (0, 0, 0, 0), Hp, Wp
    else:
        Hk, Wk = H, W
    g = ConvGeometry(N=N, C=C, H=Hk, W=Wk, K=K, R=R, S=S, P=P, Q=Q, stride_h=stride[0], stride_w=stride[1],
                     pad_top=pads[0], pad_bottom=pads[1], pad_left=pads[2], pad_right=pads[3],
                     dil_h=dil[0], dil_w=dil[1], groups=groups)
    if backward:
        expected = g.output_shape[1:] if unbatched else g.output_shape
        if tuple(grad_output.shape) != expected:
            raise ValueError(
                f"{op}: expected grad_output of shape {_shape_str(expected)} (the conv2d output for input "
                f"{_shape_str(input.shape)} and weight {_shape_str(weight.shape)}), but got "
                f"{_shape_str(grad_output.shape)}"
            )
    return Conv2dCall(kind, unbatched, g, padding_mode, mode_pads, H, W)


def _check_mode_pads(op, mode, pads, H, W):
    top, bottom, left, right = pads
    if mode == "reflect" and (max(top, bottom) >= H or max(left, right) >= W):
        raise ValueError(
            f"{op}: padding_mode='reflect' needs padding smaller than the input size, but got padding "
            f"(top={top}, bottom={bottom}, left={left}, right={right}) for input height {H} and width {W}"
        )
    if mode == "circular" and (max(top, bottom) > H or max(left, right) > W):
        raise ValueError(
            f"{op}: padding_mode='circular' needs padding at most the input size, but got padding "
            f"(top={top}, bottom={bottom}, left={left}, right={right}) for input height {H} and width {W}"
        )


@dataclass(frozen=True)
class ConvTranspose2dCall:
    kind: str
    unbatched: bool
    geometry: ConvGeometry  # the convolution whose dgrad this transposed convolution is


@_memoized
def conv_transpose2d_call(op, input, weight, bias, stride, padding, output_padding, groups, dilation,
                          grad_output=None, backward=False) -> ConvTranspose2dCall:
    kind = check_arrays(op, {"input": input, "weight": weight, "bias": bias, "grad_output": grad_output},
                        optional=("bias",) if backward else ("bias", "grad_output"))
    stride = _positive(op, "stride", stride)
    dil = _positive(op, "dilation", dilation)
    groups = _groups(op, groups)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair of ints, but got {padding!r}")
    pad = _non_negative(op, "padding", padding)
    opad = _non_negative(op, "output_padding", output_padding)
    for i in range(2):
        if opad[i] >= stride[i] and opad[i] >= dil[i]:
            raise ValueError(
                f"{op}: output_padding must be smaller than either stride or dilation, but got "
                f"output_padding={opad}, stride={stride}, dilation={dil}"
            )
    (N, Cin, Hin, Win), unbatched = batched(op, "input", input.shape)
    Kw, Cg, R, S = _weight_sizes(op, weight, groups, "(in_channels, out_channels/groups, kH, kW)")
    _check_spatial(op, "input", (N, Cin, Hin, Win), unbatched)
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
    Hout = (Hin - 1) * stride[0] - 2 * pad[0] + dil[0] * (R - 1) + opad[0] + 1
    Wout = (Win - 1) * stride[1] - 2 * pad[1] + dil[1] * (S - 1) + opad[1] + 1
    if Hout <= 0 or Wout <= 0:
        raise ValueError(
            f"{op}: given input of shape {_shape_str(input.shape)}, the output size ({Hout} x {Wout}) is too "
            f"small: padding={pad} is too large for stride={stride}, dilation={dil} and kernel ({R} x {S})"
        )
    check_size(op, "output", (N, Cout, Hout, Wout), input.dtype.itemsize)
    # the convolution whose dgrad this is reads (Hout + 2 * padding) rows: the kernels' offsets must fit too
    check_size(op, "the padded output", (N, Cout, Hout + 2 * pad[0], Wout + 2 * pad[1]), input.dtype.itemsize)
    # pad_bottom/pad_right = padding - output_padding makes P == Hin exactly; it is negative when
    # output_padding > padding, which is fine: kernels index with pad_top/pad_left only, and the bottom/right
    # values only fix P and Q (rows past the last tap's reach get a zero gradient).
    g = ConvGeometry(N=N, C=Cout, H=Hout, W=Wout, K=Cin, R=R, S=S, P=Hin, Q=Win,
                     stride_h=stride[0], stride_w=stride[1],
                     pad_top=pad[0], pad_bottom=pad[0] - opad[0], pad_left=pad[1], pad_right=pad[1] - opad[1],
                     dil_h=dil[0], dil_w=dil[1], groups=groups)
    if backward:
        expected = (Cout, Hout, Wout) if unbatched else (N, Cout, Hout, Wout)
        if tuple(grad_output.shape) != expected:
            raise ValueError(
                f"{op}: expected grad_output of shape {_shape_str(expected)} (the conv_transpose2d output for "
                f"input {_shape_str(input.shape)} and weight {_shape_str(weight.shape)}), but got "
                f"{_shape_str(grad_output.shape)}"
            )
    return ConvTranspose2dCall(kind, unbatched, g)


# ------------------------------------------------------------------------------------------ pooling


def _pool_out(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling_output_shape: the last window must start inside the input or its left padding."""
    span = size + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)
    out = span // s + 1  # floor division: span may be negative
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


@dataclass(frozen=True)
class PoolCall:
    kind: str
    unbatched: bool
    geometry: PoolGeometry


@_memoized
def pool2d_call(op, input, kernel_size, stride, padding, dilation, ceil_mode, *, max_pool: bool,
                count_include_pad=True, divisor_override=None, grad_output=None, input_shape=None,
                backward=False) -> PoolCall:
    """Checks a pooling call. For the backward of avg_pool2d, pass backward=True, grad_output and input_shape
    instead of input (input=None)."""
    arrays = {"grad_output": grad_output} if backward else {"input": input}
    kind = check_arrays(op, arrays)
    k = _positive(op, "kernel_size", kernel_size)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else _positive(op, "stride", stride)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a pair of ints, but got {padding!r}")
    p = _non_negative(op, "padding", padding)
    d = _positive(op, "dilation", dilation)
    ceil_mode = _bool(op, "ceil_mode", ceil_mode)
    count_include_pad = _bool(op, "count_include_pad", count_include_pad)
    if divisor_override is not None:
        if isinstance(divisor_override, (bool, numpy.bool_)) or not isinstance(divisor_override, numbers.Integral):
            raise TypeError(f"{op}: divisor_override must be an int or None, but got {divisor_override!r}")
        if divisor_override == 0:
            raise ValueError(f"{op}: divisor_override must be non-zero, but got 0")
        divisor_override = _int(op, "divisor_override", divisor_override)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(
            f"{op}: padding should be at most half of the kernel size, but got padding={p} and kernel_size={k}"
        )
    shape = _input_shape(op, input_shape) if backward else input.shape
    if backward:
        check_size(op, "input_shape", shape, grad_output.dtype.itemsize)
    (N, C, H, W), unbatched = batched(op, "input_shape" if backward else "input", shape)
    _check_spatial(op, "input", (N, C, H, W), unbatched)
    P = _pool_out(H, k[0], s[0], p[0], d[0], ceil_mode)
    Q = _pool_out(W, k[1], s[1], p[1], d[1], ceil_mode)
    if P <= 0 or Q <= 0:
        raise ValueError(
            f"{op}: given input of shape {_shape_str(shape)}, the output size ({P} x {Q}) is too small for "
            f"kernel_size={k}, stride={s}, padding={p}" + (f", dilation={d}" if max_pool else "")
        )
    check_size(op, "output", (N, C, P, Q), (grad_output if backward else input).dtype.itemsize)
    g = PoolGeometry(N=N, C=C, H=H, W=W, P=P, Q=Q, kernel_h=k[0], kernel_w=k[1], stride_h=s[0], stride_w=s[1],
                     pad_h=p[0], pad_w=p[1], dil_h=d[0], dil_w=d[1], ceil_mode=ceil_mode,
                     count_include_pad=count_include_pad, divisor_override=divisor_override)
    if backward:
        expected = (C, P, Q) if unbatched else (N, C, P, Q)
        if tuple(grad_output.shape) != expected:
            raise ValueError(
                f"{op}: expected grad_output of shape {_shape_str(expected)} (the pooled output of input shape "
                f"{_shape_str(shape)}), but got {_shape_str(grad_output.shape)}"
            )
    return PoolCall(kind, unbatched, g)


def _input_shape(op, input_shape):
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(f"{op}: input_shape must be a sequence of 3 or 4 ints, but got {input_shape!r}") from None
    for v in shape:
        if isinstance(v, (bool, numpy.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{op}: input_shape must be a sequence of 3 or 4 ints, but got {input_shape!r}")
        if v < 0:
            raise ValueError(f"{op}: input_shape must not hold negative sizes, but got {shape}")
    shape = tuple(int(v) for v in shape)
    check_size(op, "input_shape", shape, 1)
    return shape


@dataclass(frozen=True)
class MaxPoolBackwardCall:
    kind: str
    unbatched: bool
    input_shape: tuple  # (N, C, H, W)


def max_pool2d_backward_call(op, grad_output, indices, input_shape) -> MaxPoolBackwardCall:
    kind = check_arrays(op, {"grad_output": grad_output})
    check_index_array(op, "indices", indices, kind)
    shape = _input_shape(op, input_shape)
    (N, C, H, W), unbatched = batched(op, "input_shape", shape)
    _check_spatial(op, "input_shape", (N, C, H, W), unbatched)
    if tuple(indices.shape) != tuple(grad_output.shape):
        raise ValueError(
            f"{op}: indices and grad_output must have one shape, but got indices {_shape_str(indices.shape)} and "
            f"grad_output {_shape_str(grad_output.shape)}"
        )
    if grad_output.ndim != len(shape) or tuple(grad_output.shape[:-2]) != tuple(shape[:-2]):
        raise ValueError(
            f"{op}: grad_output of shape {_shape_str(grad_output.shape)} does not match input_shape "
            f"{_shape_str(shape)}: expected the same rank and the same leading (batch, channel) sizes"
        )
    check_size(op, "input_shape", shape, grad_output.dtype.itemsize)
    # The range check reads every index on the host. On CuPy arrays that would synchronise the stream (and
    # break CUDA-graph capture), so there it runs only on request (GPUCONV_CHECK_INDICES=1); the CUDA
    # kernels drop the gradient of an index outside [0, H*W) instead of reading or writing out of bounds.
    # One reduction: viewed as uint64 (same byte order), a negative int64 is above every valid index, so the
    # largest is below H*W exactly when all lie in [0, H*W); the two-sided range only for the message.
    if indices.size and (kind == "numpy" or os.environ.get("GPUCONV_CHECK_INDICES", "") == "1"):
        if int(indices.view(indices.dtype.str.replace("i", "u")).max()) >= H * W:
            lo, hi = int(indices.min()), int(indices.max())
            raise ValueError(
                f"{op}: indices must lie in [0, {H * W}) (flat positions in an input plane of {H} x {W}), but "
                f"found values in [{lo}, {hi}]"
            )
    return MaxPoolBackwardCall(kind, unbatched, (N, C, H, W))
