"""The CIFAR-10 ResNets of He et al. (2016) as implemented by Yerlan Idelbayev.

Model definition follows akamaster/pytorch_resnet_cifar10 ``resnet.py``
(BSD-2-Clause, see ``<shared>/models/LICENSE.akamaster``): 3x3 convs without
bias, BatchNorm, ReLU, three stages of 16/32/64 channels, stride 2 at the start
of stages 2 and 3 with the **option-A** shortcut (``x[:, :, ::2, ::2]`` then
zero-padding ``planes // 4`` channels on each side), global 8x8 average pool,
linear 64->10.

    from cifar_resnet import load_shared_resnet
    model = load_shared_resnet(20)          # eval mode, weights from <shared>/models

The shared directory is the ``shared`` argument, else ``$SNNCC_SHARED``, else
``../shared`` relative to the repository root.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.init as init

__all__ = ["ResNet", "BasicBlock", "LambdaLayer", "resnet20", "resnet32", "resnet56", "build",
           "DEPTHS", "CHECKPOINTS", "MEAN", "STD", "INPUT_SCALE", "shared_dir", "checkpoint_path",
           "load_shared_resnet", "load_test", "preprocess"]

REPO_ROOT = Path(__file__).resolve().parents[2]

#: checkpoint file name per depth, in ``<shared>/models``
CHECKPOINTS = {20: "resnet20-12fca82f.th", 32: "resnet32-d509ac18.th", 56: "resnet56-4bfd9763.th"}
DEPTHS = tuple(CHECKPOINTS)

#: preprocessing used in training (outside the graph): x * INPUT_SCALE, then (x - MEAN) / STD per channel
INPUT_SCALE = 1.0 / 255.0
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _weights_init(m):
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        init.kaiming_normal_(m.weight)


class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1, option="A"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)

        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            if option == "A":
                # For CIFAR10 the ResNet paper uses option A.
                self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2],
                                                            (0, 0, 0, 0, planes // 4, planes // 4),
                                                            "constant", 0))
            elif option == "B":
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(block, 16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 64, num_blocks[2], stride=2)
        self.linear = nn.Linear(64, num_classes)
        self.apply(_weights_init)

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for s in strides:
            layers.append(block(self.in_planes, planes, s))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        # akamaster uses F.avg_pool2d(out, out.size()[3]); the spatial size is fixed (8x8 for
        # 32x32 inputs), so the same global pool is written with a constant kernel: the legacy
        # exporter then emits one AveragePool(8x8) without a traced-size warning.
        out = F.avg_pool2d(out, 8)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def resnet20():
    return ResNet(BasicBlock, [3, 3, 3])


def resnet32():
    return ResNet(BasicBlock, [5, 5, 5])


def resnet56():
    return ResNet(BasicBlock, [9, 9, 9])


def build(depth: int) -> ResNet:
    """An untrained ResNet-``depth`` (depth = 6n + 2; 20, 32, 56 have shared checkpoints)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 (e.g. 20, 32, 56), got {depth}")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, [n, n, n])


def shared_dir(shared: str | os.PathLike | None = None) -> Path:
    if shared:
        return Path(shared)
    env = os.environ.get("SNNCC_SHARED")
    if env:
        return Path(env)
    return REPO_ROOT.parent / "shared"


def checkpoint_path(depth: int, shared: str | os.PathLike | None = None) -> Path:
    if depth not in CHECKPOINTS:
        raise ValueError(f"no shared checkpoint for depth {depth}; choose one of {DEPTHS}")
    return shared_dir(shared) / "models" / CHECKPOINTS[depth]


def load_shared_resnet(depth: int, shared: str | os.PathLike | None = None) -> ResNet:
    """ResNet-``depth`` with the shared pretrained weights, in eval mode.

    The checkpoints were saved from a ``DataParallel`` wrapper, so their
    ``state_dict`` keys start with ``module.``; that prefix is stripped.
    """
    path = checkpoint_path(depth, shared)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (set --shared or $SNNCC_SHARED)")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    model = build(depth)
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_test(shared: str | os.PathLike | None = None, limit: int | None = None):
    """``(x uint8 (N,3,32,32), y int64 (N,))`` from ``<shared>/data/cifar10_test.npz``.

    The file is sorted by class; ``limit`` takes an evenly spaced subset
    (``limit // 10`` images of every class for a multiple of 10).
    """
    path = shared_dir(shared) / "data" / "cifar10_test.npz"
    if not path.is_file():
        raise FileNotFoundError(f"test data {path} not found (set --shared or $SNNCC_SHARED)")
    with np.load(path, allow_pickle=False) as d:
        x, y = d["x"], d["y"].astype(np.int64)
    if limit is not None and limit < len(x):
        idx = np.linspace(0, len(x) - 1, limit).round().astype(np.int64)
        x, y = x[idx], y[idx]
    return x, y


def preprocess(x_u8: np.ndarray) -> np.ndarray:
    """uint8 NCHW -> float32 network input: x/255, then per-channel (x - MEAN)/STD."""
    x = x_u8.astype(np.float32) * np.float32(INPUT_SCALE)
    return ((x - MEAN[None, :, None, None]) / STD[None, :, None, None]).astype(np.float32)
