"""The digits examples learn on a short schedule (accuracy far above the 10% of chance), are seeded, and
the layers and PyTorch versions of one model agree."""

import importlib
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the digits examples need scikit-learn (extra: examples)")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHORT = ["--device", "cpu", "--epochs", "1", "--quiet"]  # one epoch: 43 batches, ~85% test accuracy


@pytest.fixture(scope="module")
def examples():
    sys.path.insert(0, str(EXAMPLES))
    try:
        yield importlib.import_module
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def layers_accuracy(examples):
    return examples("train_digits").main(SHORT)


def test_layers_example_learns_and_is_deterministic(examples, layers_accuracy):
    assert layers_accuracy > 0.6
    assert examples("train_digits").main(SHORT) == layers_accuracy


def test_torch_example_learns_like_the_layers_example(examples, layers_accuracy):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    try:
        accuracy = examples("train_digits_torch").main(SHORT)
    finally:
        torch.set_num_threads(threads)  # the example runs PyTorch on one CPU thread
    assert accuracy > 0.6
    # same initial weights, same batches, same update rule: only float32 rounding differs
    assert accuracy == pytest.approx(layers_accuracy, abs=0.02)
