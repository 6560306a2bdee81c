"""The network of train_digits.py as a torch.nn.Module whose convolutions and pooling run on gpuconv
(through gpuconv.torch), trained with torch.optim.

    python examples/train_digits_torch.py            # on CUDA when PyTorch and CuPy find a GPU, else CPU
    python examples/train_digits_torch.py --device cpu

It starts from the same weights and sees the same batches as train_digits.py, so the two print nearly the
same test accuracy.
"""

from __future__ import annotations

import argparse
import time

import numpy
import torch
import torch.nn.functional as F

import digits_common as common
import gpuconv.torch as gF


class Conv2d(torch.nn.Conv2d):
    """torch.nn.Conv2d computed by gpuconv: the same parameters, any padding_mode."""

    def forward(self, x):
        return gF.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                         padding_mode=self.padding_mode)


class DigitsNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = Conv2d(1, 32, 3, padding=1)
        self.conv2 = Conv2d(32, 64, 3, padding=1)
        self.fc = torch.nn.Linear(64 * 2 * 2, 10)

    def forward(self, x):
        x = gF.max_pool2d(F.relu(self.conv1(x)), 2)
        x = gF.avg_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))

    def load_layers_weights(self, layers_model):
        """Copies the parameters of digits_common.build_model (NumPy), so both examples start alike."""
        with torch.no_grad():
            for mine, theirs in zip(self.parameters(), layers_model.params, strict=True):
                mine.copy_(torch.from_numpy(numpy.asarray(theirs)))


def evaluate(net, x, y):
    with torch.no_grad():
        return (net(x).argmax(dim=1) == y).float().mean().item()


def main(argv=None) -> float:
    parser = common.add_common_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    args = parser.parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() and common.gpu_available() else "cpu"
    torch.manual_seed(args.seed)
    if device == "cpu":
        # PyTorch itself only runs ReLU, the linear layer and the loss on tensors of a few thousand
        # elements: handing those to a second thread costs more than it saves (and far more on a busy CPU).
        torch.set_num_threads(1)

    x_train, y_train, x_test, y_test = (torch.from_numpy(a).to(device) for a in common.load_digits_split(args.seed))
    net = DigitsNet()
    net.load_layers_weights(common.build_model(numpy, args.seed))
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum)
    shuffle = numpy.random.default_rng(args.seed + 1)

    start = time.perf_counter()
    bar = common.progress(range(args.epochs), desc=f"train torch ({device})", disable=args.quiet)
    for epoch in bar:
        for group in optimizer.param_groups:
            group["lr"] = common.learning_rate(args.lr, epoch, args.epochs)
        net.train()
        losses = []
        for idx in common.batch_order(len(y_train), args.batch_size, shuffle):
            idx = torch.from_numpy(idx).to(device)
            loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        net.eval()
        bar.set_postfix_str(f"loss {torch.stack(losses).mean().item():.4f}, "
                            f"test accuracy {evaluate(net, x_test, y_test):.4f}")
    accuracy = evaluate(net, x_test, y_test)
    print(f"test accuracy: {accuracy:.4f} ({len(y_test)} images, {args.epochs} epochs, "
          f"{time.perf_counter() - start:.1f} s on {device}, PyTorch model)")
    return accuracy


if __name__ == "__main__":
    main()
