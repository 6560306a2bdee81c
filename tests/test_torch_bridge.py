"""gpuconv.torch: results and gradients equal torch.nn.functional's, gradcheck passes, tensors cross over
without surprises (strides, unbatched, None bias, needs_input_grad), and torch stays optional."""

import subprocess
import sys

import numpy
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv  # noqa: E402
import gpuconv.torch as gF  # noqa: E402


def _cuda_ready():
    if not torch.cuda.is_available():
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not _cuda_ready(), reason="needs CUDA + CuPy"))]


def _rand(shape, device, dtype=torch.float64, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    return t.requires_grad_(requires_grad)


def _untied(shape, device, seed=0):
    """Max-pool input without ties: a shuffled range, so the argmax is unique and finite differences work."""
    g = torch.Generator().manual_seed(seed)
    n = int(numpy.prod(shape))
    t = torch.randperm(n, generator=g).to(torch.float64).reshape(shape) / n
    return t.to(device).requires_grad_(True)


def _outputs_and_grads(fn, tensors, seed=1):
    """fn(*tensors) and the gradients of <fn(...), g> for a fixed random g, for every tensor that needs one."""
    out = fn(*tensors)
    g = _rand(out.shape, out.device, out.dtype, seed=seed, requires_grad=False)
    needs = [t for t in tensors if t is not None and t.requires_grad]
    grads = torch.autograd.grad(out, needs, g)
    return out.detach(), grads


def _assert_same_as_torch(ours, theirs, tensors, rtol=1e-10, atol=1e-12):
    y1, g1 = _outputs_and_grads(ours, tensors)
    y2, g2 = _outputs_and_grads(theirs, tensors)
    assert y1.shape == y2.shape and y1.dtype == y2.dtype and y1.device == y2.device
    torch.testing.assert_close(y1, y2, rtol=rtol, atol=atol)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


# ------------------------------------------------------------------------------- equality with torch

CONV_CASES = [
    # x shape, w shape, kwargs
    ((2, 3, 7, 6), (4, 3, 3, 3), dict()),
    ((2, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)),
    ((1, 3, 6, 7), (2, 3, 3, 4), dict(padding="same", dilation=2)),
    ((2, 2, 5, 5), (3, 2, 2, 2), dict(padding="valid", stride=2)),
    ((3, 6, 5, 5), (6, 1, 3, 3), dict(padding=1, groups=6)),  # depthwise
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("xs, ws, kw", CONV_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv2d_matches_torch(device, xs, ws, kw, with_bias):
    x, w = _rand(xs, device, seed=2), _rand(ws, device, seed=3)
    b = _rand((ws[0],), device, seed=4) if with_bias else None
    _assert_same_as_torch(lambda *t: gF.conv2d(*t, **kw), lambda *t: F.conv2d(*t, **kw), (x, w, b))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [(1, 2), "same"])
def test_conv2d_padding_mode_matches_nn_conv2d(device, mode, padding):
    conv = torch.nn.Conv2d(4, 6, (3, 4), padding=padding, groups=2, padding_mode=mode, dtype=torch.float64)
    conv = conv.to(device)
    x = _rand((2, 4, 6, 7), device, seed=5)
    w, b = conv.weight, conv.bias
    _assert_same_as_torch(lambda x_, w_, b_: gF.conv2d(x_, w_, b_, padding=padding, groups=2, padding_mode=mode),
                          lambda x_, w_, b_: conv._conv_forward(x_, w_, b_), (x, w, b))


TRANSPOSE_CASES = [
    ((2, 4, 5, 4), (4, 3, 3, 3), dict()),
    ((2, 4, 4, 5), (4, 2, 3, 2), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2)),
    ((1, 3, 4, 4), (3, 2, 2, 3), dict(stride=2, dilation=(2, 1), output_padding=1)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("xs, ws, kw", TRANSPOSE_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv_transpose2d_matches_torch(device, xs, ws, kw, with_bias):
    x, w = _rand(xs, device, seed=6), _rand(ws, device, seed=7)
    out_ch = ws[1] * kw.get("groups", 1)
    b = _rand((out_ch,), device, seed=8) if with_bias else None
    _assert_same_as_torch(lambda *t: gF.conv_transpose2d(*t, **kw), lambda *t: F.conv_transpose2d(*t, **kw),
                          (x, w, b))


POOL_CASES = [
    ((2, 3, 8, 7), dict(kernel_size=2)),
    ((2, 2, 9, 9), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 3, 7, 8), dict(kernel_size=(3, 2), stride=(2, 3), ceil_mode=True)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("xs, kw", POOL_CASES + [((2, 2, 9, 10), dict(kernel_size=2, dilation=(2, 3), padding=1))])
def test_max_pool2d_matches_torch(device, xs, kw):
    x = _untied(xs, device)
    _assert_same_as_torch(lambda t: gF.max_pool2d(t, **kw), lambda t: F.max_pool2d(t, **kw), (x,))
    _, ours = gF.max_pool2d(x, return_indices=True, **kw)
    _, theirs = F.max_pool2d(x, return_indices=True, **kw)
    assert ours.dtype == torch.int64 and torch.equal(ours, theirs)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("xs, kw", POOL_CASES + [
    ((2, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)),
    ((2, 2, 6, 6), dict(kernel_size=2, divisor_override=3)),
])
def test_avg_pool2d_matches_torch(device, xs, kw):
    x = _rand(xs, device, seed=9)
    _assert_same_as_torch(lambda t: gF.avg_pool2d(t, **kw), lambda t: F.avg_pool2d(t, **kw), (x,))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float16, 2e-2)])
def test_lower_precision_matches_torch(device, dtype, tol):
    x, w, b = _rand((2, 3, 6, 6), device, dtype, 10), _rand((4, 3, 3, 3), device, dtype, 11), _rand((4,), device, dtype, 12)
    y = gF.conv2d(x, w, b, padding=1)
    assert y.dtype == dtype
    # torch's CPU float16 convolution may be missing; compare in float64 instead
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=1).to(dtype)
    torch.testing.assert_close(y, ref, rtol=tol, atol=tol)
    torch.testing.assert_close(gF.avg_pool2d(x, 2), F.avg_pool2d(x.double(), 2).to(dtype), rtol=tol, atol=tol)


# --------------------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_all_ops(device):
    x, w, b = _rand((2, 4, 5, 5), device, seed=13), _rand((4, 2, 3, 2), device, seed=14), _rand((4,), device, seed=15)
    assert torch.autograd.gradcheck(
        lambda *t: gF.conv2d(*t, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2), (x, w, b))
    assert torch.autograd.gradcheck(lambda *t: gF.conv2d(*t, padding="same", padding_mode="reflect"),
                                    (x, _rand((3, 4, 3, 3), device, seed=16), None))
    assert torch.autograd.gradcheck(
        lambda *t: gF.conv_transpose2d(*t, stride=2, padding=1, output_padding=1, groups=2),
        (x, _rand((4, 3, 3, 3), device, seed=17), _rand((6,), device, seed=18)))
    xp = _untied((2, 3, 7, 6), device)
    assert torch.autograd.gradcheck(lambda t: gF.max_pool2d(t, 3, 2, 1, ceil_mode=True), (xp,))
    assert torch.autograd.gradcheck(lambda t: gF.avg_pool2d(t, 3, 2, 1, count_include_pad=False), (x,))


# ------------------------------------------------------------------------------ how tensors cross over


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_and_expanded_tensors(device):
    # a transposed input, a weight sliced with a step, and y.sum()'s expanded (stride 0) gradient
    x = _rand((2, 3, 6, 7), device, seed=19).detach().transpose(2, 3).requires_grad_(True)
    w = _rand((4, 3, 3, 6), device, seed=20).detach()[..., ::2].requires_grad_(True)
    assert not x.is_contiguous() and not w.is_contiguous()
    ours, theirs = gF.conv2d(x, w, padding=1), F.conv2d(x, w, padding=1)
    torch.testing.assert_close(ours, theirs)
    g_ours = torch.autograd.grad(ours.sum(), (x, w))
    g_theirs = torch.autograd.grad(theirs.sum(), (x, w))
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_unbatched_and_empty_batch(device):
    x, w, b = _rand((3, 6, 6), device, seed=21), _rand((4, 3, 3, 3), device, seed=22), _rand((4,), device, seed=23)
    _assert_same_as_torch(lambda *t: gF.conv2d(*t, padding=1), lambda *t: F.conv2d(*t, padding=1), (x, w, b))
    _assert_same_as_torch(lambda t: gF.max_pool2d(t, 2), lambda t: F.max_pool2d(t, 2), (_untied((3, 6, 6), device),))
    empty = _rand((0, 3, 6, 6), device, seed=24)
    assert gF.conv2d(empty, w, b).shape == F.conv2d(empty, w, b).shape == (0, 4, 4, 4)


def test_backward_computes_only_the_gradients_autograd_needs(monkeypatch):
    masks = []
    real = gpuconv.conv2d_backward

    def spy(*args, **kwargs):
        masks.append(kwargs["output_mask"])
        return real(*args, **kwargs)

    monkeypatch.setattr(gpuconv, "conv2d_backward", spy)
    x = _rand((1, 2, 5, 5), "cpu", seed=25, requires_grad=False)
    w, b = _rand((3, 2, 3, 3), "cpu", seed=26), _rand((3,), "cpu", seed=27, requires_grad=False)
    gF.conv2d(x, w, b).sum().backward()
    gF.conv2d(x.requires_grad_(True), w.detach(), None).sum().backward()
    assert masks == [(False, True, False), (True, False, False)]
    assert w.grad is not None and x.grad is not None


def test_bad_tensors_raise_clear_errors():
    w = torch.zeros(2, 1, 3, 3)
    with pytest.raises(TypeError, match="input must have dtype float16, bfloat16, float32 or float64"):
        gF.conv2d(torch.zeros(1, 1, 4, 4, dtype=torch.int32), w)
    with pytest.raises(TypeError, match="complex64"):
        gF.max_pool2d(torch.zeros(1, 1, 4, 4, dtype=torch.complex64), 2)
    with pytest.raises(ValueError, match="channels"):
        gF.conv2d(torch.zeros(1, 3, 4, 4), w)


def test_import_gpuconv_does_not_import_torch():
    code = "import sys, gpuconv, gpuconv.layers; assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


@pytest.mark.skipif(not _cuda_ready(), reason="needs CUDA + CuPy")
def test_cuda_runs_on_torchs_current_stream():
    # On a side stream, with no synchronisation, the result must still be ordered after x's producer and
    # before its consumer: a wrong stream shows up as stale or partly written data.
    x, w = _rand((8, 16, 64, 64), "cuda", torch.float32, 28, False), _rand((16, 16, 3, 3), "cuda", torch.float32, 29, False)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            x2 = x * 2.0  # produced on the side stream right before gpuconv reads it
            ours = gF.conv2d(x2, w, padding=1) + 1.0
    torch.cuda.current_stream().wait_stream(side)
    # cuDNN's float32 convolution runs in TF32 unless told not to (torch's default): exact float32 here
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        expected = F.conv2d(x * 2.0, w, padding=1) + 1.0
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------- bfloat16

BF16_CASES = [
    ("conv2d", lambda m, x, w, b: m.conv2d(x, w, b, padding=1, groups=2), ((2, 4, 7, 6), (6, 2, 3, 3), (6,))),
    ("conv2d_reflect", lambda m, x, w, b: (m.conv2d(x, w, b, padding=1, padding_mode="reflect") if m is gF else
                                           F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), w, b)),
     ((2, 3, 6, 6), (4, 3, 3, 3), (4,))),
    ("conv_transpose2d", lambda m, x, w, b: m.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
     ((2, 4, 5, 4), (4, 3, 3, 3), (3,))),
    ("max_pool2d", lambda m, x: m.max_pool2d(x, 3, 2, 1), ((2, 3, 9, 8),)),
    ("avg_pool2d", lambda m, x: m.avg_pool2d(x, 3, 2, 1, count_include_pad=False), ((2, 3, 9, 8),)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name, fn, shapes", BF16_CASES, ids=[c[0] for c in BF16_CASES])
def test_bfloat16_tensors_match_torch(device, name, fn, shapes):
    """bfloat16 tensors in, bfloat16 out, forward and every gradient as torch.nn.functional's in bfloat16
    (both round a float32-accumulated result once: they agree to a couple of bfloat16 units, relative to
    the same op on absolute values, computed in float64)."""
    if name == "max_pool2d":
        tensors = (_untied(shapes[0], device).detach().to(torch.bfloat16).requires_grad_(True),)
    else:
        tensors = tuple(_rand(s, device, torch.bfloat16, seed=30 + i) for i, s in enumerate(shapes))
    y1, g1 = _outputs_and_grads(lambda *t: fn(gF, *t), tensors)
    y2, g2 = _outputs_and_grads(lambda *t: fn(F, *t), tensors)
    assert y1.dtype == y2.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 for g in g1)
    # bounds: the same function on |inputs| and |grad_output| in float64
    absolute = tuple(t.detach().double().abs().requires_grad_(True) for t in tensors)
    y_abs = fn(F, *absolute)
    g = _rand(y1.shape, device, torch.bfloat16, seed=1, requires_grad=False).double().abs()
    g_abs = torch.autograd.grad(y_abs, absolute, g)
    unit = 2.0 ** -8
    for ours, theirs, bound in zip((y1, *g1), (y2, *g2), (y_abs.detach(), *g_abs)):
        err = (ours.double() - theirs.double()).abs()
        assert (err <= 4 * unit * bound + 1e-30).all(), f"{name}: max error {err.max()}, bound {bound.max()}"


def test_bfloat16_crosses_without_copies():
    import ml_dtypes

    from gpuconv.torch import _to_array, _to_tensor

    t = torch.randn(2, 3, 4, 5).to(torch.bfloat16).transpose(2, 3)
    a = _to_array(t)
    assert a.dtype == numpy.dtype(ml_dtypes.bfloat16) and a.shape == tuple(t.shape)
    assert a.ctypes.data == t.data_ptr() and a.strides == tuple(s * 2 for s in t.stride())
    numpy.testing.assert_array_equal(a.astype(numpy.float32), t.float().numpy())
    back = _to_tensor(a)
    assert back.dtype == torch.bfloat16 and back.data_ptr() == a.ctypes.data and torch.equal(back, t)
