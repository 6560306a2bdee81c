"""The benchmark suite: real layers, each named after the network it comes from.

A layer is described once, with the arguments a user would pass to gpuconv (and to torch.nn.functional),
and two batch sizes: one that keeps a GPU busy (`gpu_batch`) and one that keeps each pass of the NumPy path
well under a second or two on a 2-core machine (`cpu_batch`). Every GPU layer is also run at batch 1.

Sizes follow the papers / torchvision models at their usual input sizes (224x224 ImageNet crops, 513x513
for DeepLabv3 with output stride 16, 64x64 DCGAN images, the original 572x572 U-Net).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from gpuconv import _params  # noqa: E402  (after the path fix: the scripts run from a source checkout)

CONV_PASSES = ("fprop", "dgrad", "wgrad")
POOL_PASSES = ("fwd", "bwd")


@dataclass(frozen=True)
class Layer:
    name: str  # unique id, used on the command line
    network: str  # the network it comes from
    title: str  # short description for tables and plots
    kind: str  # 'conv' | 'tconv' (transposed) | 'maxpool' | 'avgpool'
    C: int  # input channels (for tconv: the transposed conv's input channels)
    H: int
    W: int
    K: int = 0  # output channels (convolutions only)
    kernel: tuple = (3, 3)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)
    dilation: tuple = (1, 1)
    groups: int = 1
    output_padding: tuple = (0, 0)
    bias: bool = False
    gpu_batch: int = 32
    cpu_batch: int = 1
    N: int = 1  # the batch of this instance (see at_batch)

    @property
    def passes(self) -> tuple:
        return POOL_PASSES if self.kind in ("maxpool", "avgpool") else CONV_PASSES

    @property
    def is_conv(self) -> bool:
        return self.kind in ("conv", "tconv")

    def at_batch(self, n: int) -> "Layer":
        return replace(self, N=n)

    # shapes ------------------------------------------------------------------------------------------

    @property
    def input_shape(self) -> tuple:
        return (self.N, self.C, self.H, self.W)

    @property
    def weight_shape(self) -> tuple:
        R, S = self.kernel
        if self.kind == "conv":
            return (self.K, self.C // self.groups, R, S)
        if self.kind == "tconv":
            return (self.C, self.K // self.groups, R, S)
        return ()

    def geometry(self):
        """The checked geometry from gpuconv's own _params (one place owns the output-size math):
        ConvGeometry for convolutions (for tconv, the convolution whose dgrad it is), else PoolGeometry."""
        x = _shape_only(self.input_shape)
        if self.kind == "conv":
            return _params.conv2d_call("bench", x, _shape_only(self.weight_shape), None, self.stride, self.padding,
                                       self.dilation, self.groups, "zeros").geometry
        if self.kind == "tconv":
            return _params.conv_transpose2d_call("bench", x, _shape_only(self.weight_shape), None, self.stride,
                                                 self.padding, self.output_padding, self.groups,
                                                 self.dilation).geometry
        return _params.pool2d_call("bench", x, self.kernel, self.stride, self.padding, 1, False,
                                   max_pool=self.kind == "maxpool").geometry

    @property
    def output_shape(self) -> tuple:
        g = self.geometry()
        if self.kind == "tconv":
            return g.input_shape  # a transposed conv outputs the (N, C, H, W) of its conv
        return g.output_shape

    def shape_str(self) -> str:
        """e.g. '64x56x56 -> 64x56x56, 3x3/1 p1' (per image; batch is shown separately)."""
        _, c, h, w = self.input_shape
        _, k, p, q = self.output_shape
        s = f"{c}x{h}x{w} -> {k}x{p}x{q}, {self.kernel[0]}x{self.kernel[1]}/{self.stride[0]}"
        if self.padding != (0, 0):
            s += f" p{self.padding[0]}"
        if self.dilation != (1, 1):
            s += f" d{self.dilation[0]}"
        if self.groups != 1:
            s += f" g{self.groups}"
        return s

    def kernel_pass(self, pass_name: str) -> str:
        """The backend function a pass runs. A transposed conv's forward is its conv's dgrad and its input
        gradient is the conv's fprop (gpuconv._functional composes them so)."""
        if self.kind == "tconv":
            return {"fprop": "dgrad", "dgrad": "fprop", "wgrad": "wgrad"}[pass_name]
        return pass_name


def _shape_only(shape):
    """A zero-byte float32 array of the given shape: enough for _params, which reads shapes and dtypes."""
    return numpy.broadcast_to(numpy.zeros((), numpy.float32), shape)


# The layers. Channel counts and spatial sizes at the layer's input.
LAYERS = (
    Layer("resnet50_conv1", "ResNet-50", "7x7/2 stem", "conv", 3, 224, 224, K=64, kernel=(7, 7), stride=(2, 2),
          padding=(3, 3), gpu_batch=32, cpu_batch=2),
    Layer("resnet50_l1_3x3", "ResNet-50", "conv2_x 3x3", "conv", 64, 56, 56, K=64, padding=(1, 1),
          gpu_batch=32, cpu_batch=4),
    Layer("resnet50_l1_1x1_expand", "ResNet-50", "conv2_x 1x1 expand", "conv", 64, 56, 56, K=256, kernel=(1, 1),
          gpu_batch=32, cpu_batch=4),
    Layer("resnet50_l2_3x3s2", "ResNet-50", "conv3_1 3x3/2", "conv", 128, 56, 56, K=128, stride=(2, 2),
          padding=(1, 1), gpu_batch=32, cpu_batch=4),
    Layer("resnet50_l3_3x3", "ResNet-50", "conv4_x 3x3", "conv", 256, 14, 14, K=256, padding=(1, 1),
          gpu_batch=32, cpu_batch=4),
    Layer("vgg16_conv1_2", "VGG-16", "conv1_2 3x3", "conv", 64, 224, 224, K=64, padding=(1, 1), bias=True,
          gpu_batch=16, cpu_batch=1),
    Layer("vgg16_conv4_2", "VGG-16", "conv4_2 3x3", "conv", 512, 28, 28, K=512, padding=(1, 1), bias=True,
          gpu_batch=16, cpu_batch=1),
    Layer("mobilenetv2_dw_s1", "MobileNetV2", "depthwise 3x3/1", "conv", 144, 56, 56, K=144, padding=(1, 1),
          groups=144, gpu_batch=64, cpu_batch=8),
    Layer("mobilenetv2_dw_s2", "MobileNetV2", "depthwise 3x3/2", "conv", 144, 56, 56, K=144, stride=(2, 2),
          padding=(1, 1), groups=144, gpu_batch=64, cpu_batch=8),
    Layer("deeplabv3_l4_3x3_d2", "DeepLabv3", "layer4 3x3 dilation 2", "conv", 512, 33, 33, K=512,
          padding=(2, 2), dilation=(2, 2), gpu_batch=16, cpu_batch=1),
    Layer("dcgan_g_convt4x4s2", "DCGAN", "generator 4x4/2 transposed", "tconv", 128, 16, 16, K=64,
          kernel=(4, 4), stride=(2, 2), padding=(1, 1), gpu_batch=128, cpu_batch=8),
    Layer("unet_upconv2x2s2", "U-Net", "up-conv 2x2/2 transposed", "tconv", 1024, 28, 28, K=512, kernel=(2, 2),
          stride=(2, 2), bias=True, gpu_batch=16, cpu_batch=1),
    Layer("resnet50_maxpool", "ResNet-50", "max pool 3x3/2", "maxpool", 64, 112, 112, kernel=(3, 3),
          stride=(2, 2), padding=(1, 1), gpu_batch=32, cpu_batch=4),
    Layer("densenet121_avgpool", "DenseNet-121", "transition avg pool 2x2/2", "avgpool", 128, 56, 56,
          kernel=(2, 2), stride=(2, 2), gpu_batch=32, cpu_batch=4),
)

BY_NAME = {layer.name: layer for layer in LAYERS}

# --quick: one of each kind of work (dense 3x3, depthwise, transposed, pooling).
QUICK = ("resnet50_l1_3x3", "mobilenetv2_dw_s1", "dcgan_g_convt4x4s2", "resnet50_maxpool")


def select(names=None, quick=False) -> list:
    """Layers by name (all when names is empty); unknown names raise with the list of known ones."""
    if not names:
        names = QUICK if quick else [layer.name for layer in LAYERS]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown layer(s) {unknown}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def gpu_suite(names=None, quick=False, batch1=True) -> list:
    """(suite, layer) pairs for the GPU: every layer at its GPU batch, then (unless batch1=False) at 1."""
    chosen = select(names, quick)
    out = [("batch", layer.at_batch(layer.gpu_batch)) for layer in chosen]
    if batch1:
        out += [("batch1", layer.at_batch(1)) for layer in chosen]
    return out


def cpu_suite(names=None, quick=False) -> list:
    return [("cpu", layer.at_batch(layer.cpu_batch)) for layer in select(names, quick)]


if __name__ == "__main__":  # print the suite
    for layer in LAYERS:
        g = layer.at_batch(1).geometry()
        work = f"{g.flops / 1e6:9.1f} MFLOP/image" if layer.is_conv else ""
        print(f"{layer.name:24s} {layer.network:12s} {layer.at_batch(1).shape_str():42s} "
              f"gpu N={layer.gpu_batch:<4d} cpu N={layer.cpu_batch:<3d} {work}")
