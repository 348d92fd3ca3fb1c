"""The CIFAR-10 ResNet-20/32/56 of He et al. (2016) as a Keras 3 functional model.

Same network as ``examples/pytorch/cifar_resnet.py`` (akamaster's option-A
ResNets), written the way a Keras user would, channels-last:

* every 3x3 convolution is ``ZeroPadding2D(1)`` + ``Conv2D(..., padding="valid")``:
  with stride 2, Keras/TF ``padding="same"`` pads 0 rows on top and 1 at the
  bottom of a 32x32 map, PyTorch's ``padding=1`` pads 1 on each side, and the two
  networks would compute different things with the same weights;
* ``BatchNormalization(epsilon=1e-5)`` layers are kept (Keras' default epsilon is
  1e-3; PyTorch's is 1e-5);
* the option-A shortcut of a down-sampling block is a ``Lambda``:
  ``x[:, ::2, ::2, :]`` then zero channels ``planes // 4`` on each side;
* ``GlobalAveragePooling2D`` and ``Dense(10)`` (logits, no softmax).

    KERAS_BACKEND=torch python -c "import keras_cifar_resnet as k; m = k.build(20); m.summary()"

:func:`load_pytorch_checkpoint` copies the shared PyTorch checkpoints
(``<shared>/models/resnet{20,32,56}-*.th``) into the model: conv kernels
OIHW -> HWIO, BatchNorm (gamma, beta, running mean, running variance), linear
weight transposed.  Only ``load_pytorch_checkpoint`` needs torch (to read the
``.th`` file); the model itself is plain Keras.
"""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
from keras import layers  # noqa: E402

__all__ = ["build", "load_pytorch_checkpoint", "DEPTHS", "BN_EPS"]

DEPTHS = (20, 32, 56)
BN_EPS = 1e-5          # PyTorch's BatchNorm2d default (Keras' default is 1e-3)


def _conv_bn(x, filters: int, stride: int, name: str):
    """ZeroPadding2D(1) + 3x3 'valid' conv (no bias) + BatchNorm: PyTorch's conv3x3(padding=1)."""
    x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, 3, strides=stride, padding="valid", use_bias=False, name=f"{name}_conv")(x)
    return layers.BatchNormalization(epsilon=BN_EPS, name=f"{name}_bn")(x)


def _option_a(planes: int, name: str):
    """Option-A shortcut: stride-2 subsampling, then zero channels planes//4 on each side."""
    p = planes // 4

    def shortcut(t):
        return keras.ops.pad(t[:, ::2, ::2, :], [[0, 0], [0, 0], [0, 0], [p, p]])

    return layers.Lambda(shortcut, name=name)


def _block(x, in_planes: int, planes: int, stride: int, name: str):
    y = layers.ReLU(name=f"{name}_relu1")(_conv_bn(x, planes, stride, f"{name}_1"))
    y = _conv_bn(y, planes, 1, f"{name}_2")
    s = x if (stride == 1 and in_planes == planes) else _option_a(planes, f"{name}_shortcut")(x)
    return layers.ReLU(name=f"{name}_relu2")(layers.Add(name=f"{name}_add")([y, s]))


def build(depth: int = 20, input_shape=(32, 32, 3), num_classes: int = 10) -> keras.Model:
    """Untrained ResNet-``depth`` (depth = 6n + 2), channels-last input ``(N, 32, 32, 3)``."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 (e.g. 20, 32, 56), got {depth}")
    n = (depth - 2) // 6
    inp = keras.Input(input_shape, name="input")
    x = layers.ReLU(name="relu1")(_conv_bn(inp, 16, 1, "stem"))
    in_planes = 16
    for stage, planes in enumerate((16, 32, 64), 1):
        for i in range(n):
            stride = 2 if (stage > 1 and i == 0) else 1
            x = _block(x, in_planes, planes, stride, f"layer{stage}_{i}")
            in_planes = planes
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)
    out = layers.Dense(num_classes, name="linear")(x)
    return keras.Model(inp, out, name=f"resnet{depth}")


def _torch_state_dict(path) -> dict:
    import torch
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    return {(k[len("module."):] if k.startswith("module.") else k): v.detach().cpu().numpy()
            for k, v in sd.items()}


def load_pytorch_checkpoint(model: keras.Model, path) -> keras.Model:
    """Copy an akamaster PyTorch checkpoint (``.th``; keys ``module.conv1.weight`` ...) into ``model``.

    PyTorch name -> Keras layer: ``conv1``/``bn1`` -> ``stem_conv``/``stem_bn``;
    ``layer{s}.{i}.conv{j}``/``bn{j}`` -> ``layer{s}_{i}_{j}_conv``/``_bn``; ``linear`` -> ``linear``.
    Conv weights OIHW -> HWIO (``w.transpose(2, 3, 1, 0)``), Linear (out, in) -> Dense (in, out).
    Every Keras weight is set exactly once; unused or missing checkpoint keys raise.
    """
    sd = _torch_state_dict(path)
    used = set()

    def take(key):
        used.add(key)
        return sd[key]

    for lay in model.layers:
        nm = lay.name
        if isinstance(lay, (layers.Conv2D, layers.BatchNormalization)):
            if nm.startswith("stem_"):
                tkey = "conv1" if nm.endswith("_conv") else "bn1"
            else:                                   # layer{s}_{i}_{j}_conv / _bn
                stage, i, j, kind = nm.split("_")
                tkey = f"{stage}.{i}.{kind}{j}"
            if isinstance(lay, layers.Conv2D):
                lay.set_weights([take(f"{tkey}.weight").transpose(2, 3, 1, 0)])
            else:
                lay.set_weights([take(f"{tkey}.weight"), take(f"{tkey}.bias"),
                                 take(f"{tkey}.running_mean"), take(f"{tkey}.running_var")])
        elif isinstance(lay, layers.Dense):
            lay.set_weights([take("linear.weight").T, take("linear.bias")])
    left = sorted(k for k in sd if k not in used and not k.endswith("num_batches_tracked"))
    if left:
        raise ValueError(f"checkpoint keys not used by the Keras model: {left[:5]}... (wrong depth?)")
    return model


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="Build the Keras CIFAR ResNet and print its summary (a smoke test; "
                                             "convert_keras_resnet.py is the example).")
    ap.add_argument("--depth", type=int, choices=(20, 32, 56), default=20)
    m = build(ap.parse_args().depth)
    m.summary()
    print(m(np.zeros((1, 32, 32, 3), np.float32)).shape)
