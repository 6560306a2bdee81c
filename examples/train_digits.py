"""Train a small CNN on scikit-learn's 8x8 digits with gpuconv.layers: NumPy or CuPy arrays, no framework.

    python examples/train_digits.py                  # on the GPU when CuPy finds one, else NumPy
    python examples/train_digits.py --device cpu

Prints the final test accuracy (about 98% after the default 15 epochs).
"""

from __future__ import annotations

import argparse
import time

import numpy

import digits_common as common
from gpuconv import layers as L


def evaluate(model, x, y, batch_size=512):
    correct = 0
    for i in range(0, len(y), batch_size):
        logits = model.forward(x[i:i + batch_size])
        correct += int((logits.argmax(axis=1) == y[i:i + batch_size]).sum())
    return correct / len(y)


def main(argv=None) -> float:
    parser = common.add_common_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if common.gpu_available() else "cpu"
    xp = L.array_module(device)

    x_train, y_train, x_test, y_test = (xp.asarray(a) for a in common.load_digits_split(args.seed))
    model = common.build_model(xp, args.seed)
    loss_fn = L.SoftmaxCrossEntropy()
    optimizer = L.SGD(model, lr=args.lr, momentum=args.momentum)
    shuffle = numpy.random.default_rng(args.seed + 1)

    start = time.perf_counter()
    bar = common.progress(range(args.epochs), desc=f"train ({device})", disable=args.quiet)
    for epoch in bar:
        optimizer.lr = common.learning_rate(args.lr, epoch, args.epochs)
        losses = []
        for idx in common.batch_order(len(y_train), args.batch_size, shuffle):
            idx = xp.asarray(idx)
            loss = loss_fn.forward(model.forward(x_train[idx]), y_train[idx])
            model.backward(loss_fn.backward())
            optimizer.step()
            losses.append(loss)
        mean_loss = float(xp.stack(losses).mean())
        bar.set_postfix_str(f"loss {mean_loss:.4f}, test accuracy {evaluate(model, x_test, y_test):.4f}")
    accuracy = evaluate(model, x_test, y_test)
    print(f"test accuracy: {accuracy:.4f} ({len(y_test)} images, {args.epochs} epochs, "
          f"{time.perf_counter() - start:.1f} s on {device})")
    return accuracy


if __name__ == "__main__":
    main()
