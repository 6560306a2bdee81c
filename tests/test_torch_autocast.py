"""gpuconv.torch under torch.autocast behaves as torch.nn.functional does: the same output dtypes for every
input dtype, the same values (to bfloat16 / float16 rounding), gradients in each leaf's own dtype, and a short
training loop that follows torch's. The cast table of gpuconv.torch (``_AUTOCAST_POLICY``, which also serves
the ops not wrapped yet) is checked against what torch's own ops do on every device present."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import gpuconv.torch as gF  # noqa: E402
from gpuconv.torch import _AUTOCAST_POLICY  # noqa: E402
from test_torch_bridge import DEVICES  # noqa: E402


AUTOCAST_DTYPES = [torch.bfloat16, torch.float16]
INPUT_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def _rand(shape, device, dtype=torch.float32, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype).requires_grad_(
        requires_grad)


# Each op of gpuconv.torch as (ours, torch's), taking (x, w, b) for convolutions and (x,) for pooling.
OPS = {
    "conv2d": (lambda x, w, b: gF.conv2d(x, w, b, padding=1, groups=2),
               lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2)),
    "conv_transpose2d": (lambda x, w, b: gF.conv_transpose2d(x, w, b, stride=2, groups=2),
                         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, groups=2)),
    "max_pool2d": (lambda x: gF.max_pool2d(x, 3, 2, 1), lambda x: F.max_pool2d(x, 3, 2, 1)),
    "avg_pool2d": (lambda x: gF.avg_pool2d(x, 2, ceil_mode=True), lambda x: F.avg_pool2d(x, 2, ceil_mode=True)),
}
for _d in (1, 3):
    OPS.update({
        f"conv{_d}d": (lambda x, w, b, d=_d: getattr(gF, f"conv{d}d")(x, w, b, padding=1, groups=2),
                       lambda x, w, b, d=_d: getattr(F, f"conv{d}d")(x, w, b, padding=1, groups=2)),
        f"conv_transpose{_d}d": (lambda x, w, b, d=_d: getattr(gF, f"conv_transpose{d}d")(x, w, b, stride=2, groups=2),
                                 lambda x, w, b, d=_d: getattr(F, f"conv_transpose{d}d")(x, w, b, stride=2, groups=2)),
        f"max_pool{_d}d": (lambda x, d=_d: getattr(gF, f"max_pool{d}d")(x, 3, 2, 1),
                           lambda x, d=_d: getattr(F, f"max_pool{d}d")(x, 3, 2, 1)),
        f"avg_pool{_d}d": (lambda x, d=_d: getattr(gF, f"avg_pool{d}d")(x, 2, ceil_mode=True),
                           lambda x, d=_d: getattr(F, f"avg_pool{d}d")(x, 2, ceil_mode=True)),
    })
for _d in (1, 2, 3):
    OPS.update({
        f"adaptive_avg_pool{_d}d": (lambda x, d=_d: getattr(gF, f"adaptive_avg_pool{d}d")(x, 3),
                                    lambda x, d=_d: getattr(F, f"adaptive_avg_pool{d}d")(x, 3)),
        f"adaptive_max_pool{_d}d": (lambda x, d=_d: getattr(gF, f"adaptive_max_pool{d}d")(x, 4),
                                    lambda x, d=_d: getattr(F, f"adaptive_max_pool{d}d")(x, 4)),
    })


def _nd(op):
    return int(op.rstrip("d")[-1])


def _operands(op, device, dtype):
    nd = _nd(op)
    x = _rand((2, 4) + (7, 6, 5)[:nd], device, dtype, 1)
    if op.startswith("conv"):
        return x, _rand((4, 2) + (3,) * nd, device, dtype, 2), _rand((4,), device, dtype, 3)
    return (x,)


def _tolerance(dtype):
    # one rounding of a float32-accumulated sum of at most 2*3*3 + 1 terms of size ~1, on each side
    return {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 3e-2, torch.float16: 4e-3}[dtype]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("autocast_dtype", AUTOCAST_DTYPES, ids=str)
@pytest.mark.parametrize("input_dtype", INPUT_DTYPES, ids=str)
@pytest.mark.parametrize("op", list(OPS))
def test_output_dtype_and_values_as_torch(op, input_dtype, autocast_dtype, device):
    ours, theirs = OPS[op]
    operands = _operands(op, device, input_dtype)
    with torch.autocast(device, dtype=autocast_dtype):
        try:
            expected = theirs(*operands)
        except RuntimeError as exc:  # float64 stays float64 while the others are cast: torch refuses the mix
            assert input_dtype == torch.float64 and op.startswith("conv"), exc
            with pytest.raises(TypeError, match="one dtype"):
                ours(*operands)
            return
        got = ours(*operands)
    assert got.dtype == expected.dtype, f"{op}: {got.dtype}, torch gives {expected.dtype}"
    tol = _tolerance(got.dtype)
    torch.testing.assert_close(got.float(), expected.float(), rtol=tol, atol=tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("autocast_dtype", AUTOCAST_DTYPES, ids=str)
def test_mixed_leaf_dtypes_are_cast_like_torch(device, autocast_dtype):
    """A bfloat16 input with float32 weights (a half-converted model): autocast casts all to its dtype."""
    x = _rand((1, 2, 6, 6), device, torch.bfloat16, 4)
    w, b = _rand((3, 2, 3, 3), device, torch.float32, 5), _rand((3,), device, torch.float16, 6)
    with torch.autocast(device, dtype=autocast_dtype):
        got, expected = gF.conv2d(x, w, b), F.conv2d(x, w, b)
    assert got.dtype == expected.dtype == autocast_dtype
    got.float().sum().backward()
    assert (x.grad.dtype, w.grad.dtype, b.grad.dtype) == (torch.bfloat16, torch.float32, torch.float16)


def test_autocast_state_is_read_at_each_call():
    """Off, on, and switched off again inside an enabled region (as torch's own ops see it)."""
    x, w = _rand((1, 2, 6, 6), "cpu", seed=7), _rand((3, 2, 3, 3), "cpu", seed=8)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
        assert gF.conv2d(x, w).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gF.conv2d(x, w).dtype == torch.bfloat16
        with torch.autocast("cpu", enabled=False):
            assert gF.conv2d(x, w).dtype == F.conv2d(x, w).dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.float16):
            assert gF.conv2d(x, w).dtype == F.conv2d(x, w).dtype == torch.float16


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("autocast_dtype", AUTOCAST_DTYPES, ids=str)
@pytest.mark.parametrize("op", list(OPS))
def test_gradients_reach_each_leaf_in_its_dtype(op, autocast_dtype, device):
    """float32 leaves under autocast: the op runs in the autocast dtype (convolutions), its gradients flow
    back through the cast to float32, with torch's values."""
    ours, theirs = OPS[op]
    results = []
    for fn in (ours, theirs):
        leaves = _operands(op, device, torch.float32)
        with torch.autocast(device, dtype=autocast_dtype):
            y = fn(*leaves)
        g = _rand(y.shape, device, y.dtype, 9, requires_grad=False)
        grads = torch.autograd.grad(y, leaves, g)
        assert all(gr.dtype == torch.float32 for gr in grads)
        results.append((y, grads))
    (y1, g1), (y2, g2) = results
    assert y1.dtype == y2.dtype
    tol = _tolerance(y1.dtype)
    torch.testing.assert_close(y1.float(), y2.float(), rtol=tol, atol=tol)
    for a, b in zip(g1, g2):
        # the gradient is a sum over up to N*P*Q terms of products of rounded values: a few roundings more
        torch.testing.assert_close(a, b, rtol=3 * tol, atol=3 * tol * max(1.0, b.abs().max().item()))


# --------------------------------------------------------------------- the cast table against torch's ops

def _probe(op, device, x_dtype, autocast_dtype):
    """torch's own output dtype for ``op`` on a ``x_dtype`` input under autocast."""
    nd = 3 if op.endswith("3d") else 2 if op.endswith("2d") else 1
    x = torch.ones((1, 2) + (4,) * nd, dtype=x_dtype, device=device)
    fn = getattr(F, op)
    if op.startswith("conv"):
        args = (torch.ones((2, 2) + (1,) * nd, dtype=x_dtype, device=device),)
    else:
        args = (2,)
    with torch.autocast(device, dtype=autocast_dtype):
        return fn(x, *args).dtype


ALL_OPS = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"] + [
    f"{kind}_pool{d}d" for kind in ("max", "avg", "adaptive_avg", "adaptive_max") for d in (1, 2, 3)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", ALL_OPS)
def test_policy_table_is_torchs(op, device):
    """For every op gpuconv has or will have: float32 and bfloat16 inputs under bfloat16 and float16
    autocast give the dtype the table's policy predicts, exactly as torch's own op."""
    policy = _AUTOCAST_POLICY[device].get(op)
    for autocast_dtype in AUTOCAST_DTYPES:
        for x_dtype in (torch.float32, torch.bfloat16, torch.float16):
            want = {"lower_precision_fp": autocast_dtype, "fp32": torch.float32, None: x_dtype}[policy]
            assert _probe(op, device, x_dtype, autocast_dtype) == want, (op, x_dtype, autocast_dtype, policy)


# --------------------------------------------------------------------------------- a short training loop


class _Net(torch.nn.Module):
    """conv -> relu -> max pool -> conv (reflect) -> avg pool -> upsampling transposed conv -> linear, with
    either gpuconv.torch's ops or torch.nn.functional's."""

    def __init__(self, ops):
        super().__init__()
        self.ops = ops
        g = torch.Generator().manual_seed(11)
        p = lambda *s: torch.nn.Parameter(torch.randn(s, generator=g) * 0.3)  # noqa: E731
        self.w1, self.b1, self.w2, self.w3 = p(8, 3, 3, 3), p(8), p(8, 8, 3, 3), p(8, 4, 2, 2)
        self.fc = torch.nn.Linear(4 * 4 * 4, 5)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(self.fc.weight.shape, generator=g) * 0.1)
            self.fc.bias.zero_()

    def forward(self, x):
        o = self.ops
        y = torch.relu(o.conv2d(x, self.w1, self.b1, padding=1))
        y = o.max_pool2d(y, 2)
        if o is F:  # torch's functional conv2d has no padding_mode
            y = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="reflect"), self.w2)
        else:
            y = o.conv2d(y, self.w2, padding=1, padding_mode="reflect")
        y = o.avg_pool2d(torch.relu(y), 2)
        y = o.conv_transpose2d(y, self.w3, stride=2)
        return self.fc(y.flatten(1))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("autocast_dtype", AUTOCAST_DTYPES, ids=str)
def test_training_under_autocast_follows_torch(device, autocast_dtype):
    g = torch.Generator().manual_seed(12)
    x = torch.randn((6, 3, 8, 8), generator=g).to(device)
    labels = torch.randint(0, 5, (6,), generator=g).to(device)
    runs = []
    for ops in (gF, F):
        net = _Net(ops).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.03)
        losses = []
        for _ in range(5):
            opt.zero_grad()
            with torch.autocast(device, dtype=autocast_dtype):
                loss = F.cross_entropy(net(x), labels)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in net.parameters())
        runs.append((losses, [p.detach().clone() for p in net.parameters()]))
    (l1, p1), (l2, p2) = runs
    assert l1[-1] < l1[0], f"the loss did not fall: {l1}"
    tol = _tolerance(autocast_dtype)
    for a, b in zip(l1, l2):
        assert abs(a - b) <= 2 * tol * max(1.0, abs(b)), (l1, l2)
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b, rtol=2 * tol, atol=2 * tol)
