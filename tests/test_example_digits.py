"""The digits examples learn on a short schedule (accuracy far above the 10% of chance), are seeded, and
the layers and PyTorch versions of one model agree."""

import importlib
from pathlib import Path

import pytest

pytest.importorskip("sklearn", reason="the digits examples need scikit-learn (extra: examples)")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SHORT = ["--device", "cpu", "--epochs", "2", "--quiet"]


@pytest.fixture
def examples(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return lambda name: importlib.import_module(name)


def test_layers_example_learns_and_is_deterministic(examples):
    train = examples("train_digits")
    accuracy = train.main(SHORT)
    assert accuracy > 0.6
    assert train.main(SHORT) == accuracy


def test_torch_example_learns_like_the_layers_example(examples):
    pytest.importorskip("torch")
    accuracy = examples("train_digits_torch").main(SHORT)
    assert accuracy > 0.6
    # same initial weights, same batches, same update rule: only float32 rounding differs
    assert accuracy == pytest.approx(examples("train_digits").main(SHORT), abs=0.02)
