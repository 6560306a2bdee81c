"""What the two digits examples share: the data split, the network, the batch order and a progress bar.

The data are scikit-learn's bundled 8x8 digits (1797 images, no download), scaled to [0, 1].
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy

try:
    import gpuconv  # noqa: F401
except ImportError:  # run from a source checkout without installing: use the package next door
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuconv import layers as L  # noqa: E402

DEFAULTS = dict(epochs=15, batch_size=32, lr=0.05, momentum=0.9, seed=0)


def load_digits_split(seed: int, test_fraction: float = 0.25):
    """(x_train, y_train, x_test, y_test): float32 images (N, 1, 8, 8) in [0, 1] and int64 labels, split by
    a seeded shuffle."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(numpy.float32)[:, None]
    y = digits.target.astype(numpy.int64)
    order = numpy.random.default_rng(seed).permutation(len(y))
    n_test = round(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def build_model(xp, seed: int) -> L.Sequential:
    """conv 3x3 (32) - ReLU - max-pool 2 - conv 3x3 (64) - ReLU - avg-pool 2 - linear (10), for 8x8 inputs."""
    rng = numpy.random.default_rng(seed)
    model = L.Sequential(
        L.Conv2d(1, 32, 3, padding=1, xp=xp, rng=rng), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(32, 64, 3, padding=1, xp=xp, rng=rng), L.ReLU(), L.AvgPool2d(2),
        L.Flatten(), L.Linear(64 * 2 * 2, 10, xp=xp, rng=rng),
    )
    model.layers[0].need_input_grad = False  # nothing upstream of the first layer to train
    return model


def learning_rate(base_lr: float, epoch: int, epochs: int) -> float:
    """Cosine decay from base_lr towards 0 over the run (torch's CosineAnnealingLR, stepped per epoch)."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def batch_order(n: int, batch_size: int, rng):
    """The index arrays of one epoch's mini-batches, in a fresh shuffled order."""
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


class _PlainBar:
    """The part of tqdm's interface the examples use, printing one line per step."""

    def __init__(self, iterable, desc, disable):
        self.iterable, self.desc, self.disable = list(iterable), desc, disable
        self.done = 0

    def __iter__(self):
        for self.done, item in enumerate(self.iterable, 1):
            yield item

    def set_postfix_str(self, text):
        if not self.disable:
            print(f"{self.desc} {self.done}/{len(self.iterable)}: {text}", flush=True)


def progress(iterable, desc: str, disable: bool = False):
    """tqdm's bar when tqdm is installed, plain lines otherwise."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(iterable, desc, disable)
    return tqdm(iterable, desc=desc, disable=disable)


def add_common_arguments(parser):
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="cuda needs CuPy and a GPU; auto picks it when present (default: auto)")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    parser.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver or no device
        return False
