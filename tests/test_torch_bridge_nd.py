"""gpuconv.torch's 1-d, 3-d and adaptive ops: outputs and gradients equal torch.nn.functional's in float64,
gradcheck passes, indices are torch's, unbatched inputs work."""

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv.torch as gF  # noqa: E402
from test_torch_bridge import DEVICES, _assert_same_as_torch, _rand, _untied  # noqa: E402

CONVS = [
    ("conv1d", (2, 4, 9), (6, 2, 3), dict(stride=2, padding=1, dilation=2, groups=2)),
    ("conv1d", (4, 9), (6, 4, 3), dict(padding="same", padding_mode="circular")),
    ("conv3d", (2, 4, 5, 6, 5), (6, 2, 3, 2, 3), dict(stride=(2, 1, 1), padding=1, groups=2)),
    ("conv3d", (2, 2, 4, 5, 4), (3, 2, 3, 3, 3), dict(padding=1, padding_mode="reflect")),
    ("conv_transpose1d", (2, 4, 6), (4, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose3d", (2, 4, 3, 4, 3), (4, 2, 2, 3, 2), dict(stride=2, groups=2, dilation=(1, 2, 1))),
]


def _torch_conv(op, kw):
    mode = kw.get("padding_mode", "zeros")
    if mode == "zeros":
        return lambda x, w, b: getattr(F, op)(x, w, b, **kw)
    nd = int(op[-2])
    pad = kw["padding"]

    def padded(x, w, b):  # torch.nn.functional has no padding_mode: pad explicitly as nn.ConvNd does
        if pad == "same":
            total = [k - 1 for k in w.shape[2:]]
            pads = [p for t in reversed(total) for p in (t // 2, t - t // 2)]
        else:
            pads = [pad] * (2 * nd)
        unbatched = x.dim() == nd + 1
        xp = F.pad(x[None] if unbatched else x, pads, mode=mode)
        y = getattr(F, op)(xp, w, b, **{k: v for k, v in kw.items() if k not in ("padding", "padding_mode")})
        return y[0] if unbatched else y

    return padded


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, xs, ws, kw", CONVS, ids=[f"{c[0]}-{i}" for i, c in enumerate(CONVS)])
def test_convolutions_match_torch(op, xs, ws, kw, device):
    out_channels = ws[1] * kw.get("groups", 1) if "transpose" in op else ws[0]
    x, w, b = _rand(xs, device, seed=1), _rand(ws, device, seed=2), _rand((out_channels,), device, seed=3)
    _assert_same_as_torch(lambda x, w, b: getattr(gF, op)(x, w, b, **kw), _torch_conv(op, kw), (x, w, b))


@pytest.mark.parametrize("op, xs, ws, kw", CONVS[:1] + CONVS[2:3] + CONVS[5:], ids=["conv1d", "conv3d", "convT3d"])
def test_convolutions_gradcheck(op, xs, ws, kw):
    out_channels = ws[1] * kw.get("groups", 1) if "transpose" in op else ws[0]
    x, w, b = _rand(xs, "cpu", seed=1), _rand(ws, "cpu", seed=2), _rand((out_channels,), "cpu", seed=3)
    assert torch.autograd.gradcheck(lambda x, w, b: getattr(gF, op)(x, w, b, **kw), (x, w, b))


POOLS = [
    ("max_pool1d", (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    ("max_pool3d", (2, 3, 5, 6, 7), dict(kernel_size=(2, 3, 2), stride=2, padding=1)),
    ("max_pool3d", (3, 5, 6, 7), dict(kernel_size=3, stride=2, padding=1, dilation=(2, 1, 1), ceil_mode=True)),
    ("avg_pool1d", (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("avg_pool3d", (2, 3, 5, 6, 7), dict(kernel_size=3, stride=2, padding=1, divisor_override=5)),
    ("adaptive_avg_pool1d", (2, 3, 11), dict(output_size=4)),
    ("adaptive_avg_pool2d", (2, 3, 7, 9), dict(output_size=(3, None))),
    ("adaptive_avg_pool3d", (2, 3, 5, 7, 6), dict(output_size=(2, 4, 9))),
    ("adaptive_max_pool1d", (2, 3, 11), dict(output_size=4)),
    ("adaptive_max_pool2d", (3, 7, 9), dict(output_size=(3, 5))),
    ("adaptive_max_pool3d", (2, 3, 5, 7, 6), dict(output_size=1)),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op, xs, kw", POOLS, ids=[f"{p[0]}-{i}" for i, p in enumerate(POOLS)])
def test_pooling_matches_torch(op, xs, kw, device):
    x = _untied(xs, device, seed=4)
    _assert_same_as_torch(lambda x: getattr(gF, op)(x, **kw), lambda x: getattr(F, op)(x, **kw), (x,))
    if "max" in op:
        _, ours = getattr(gF, op)(x, **kw, return_indices=True)
        _, theirs = getattr(F, op)(x, **kw, return_indices=True)
        assert ours.dtype == torch.int64 and torch.equal(ours, theirs)


@pytest.mark.parametrize("op, xs, kw", [p for p in POOLS if p[0].endswith("3d")], ids=lambda v: str(v)[:24])
def test_pooling_gradcheck(op, xs, kw):
    x = _untied(xs, "cpu", seed=5)
    assert torch.autograd.gradcheck(lambda x: getattr(gF, op)(x, **kw), (x,))
