"""Small CIFAR-10 architectures (ReLU-only, BatchNorm) for snncc framework coverage.

All models take the *preprocessed* input (N, 3, 32, 32) -- normalisation with the
ImageNet mean/std happens outside the graph -- and return 10 logits.

* ``plain20``          -- the "plain CNN" of Hu, Tang & Pan: ResNet-20 depth/widths
                          (19 conv3x3-BN-ReLU, 16/32/64, stride-2 convs at stage starts),
                          no shortcuts, global average pool, linear.
* ``plain_maxpool``    -- VGG-like, 2 conv3x3-BN-ReLU per stage (32/64/128), MaxPool2d(2)
                          directly after the ReLU between stages, global average pool,
                          Linear-ReLU-Linear head.
* ``resnet_projection``-- basic-block ResNet (32/64/128, 1 block per stage) with option-B
                          projection shortcuts (1x1 conv stride 2 + BN) on down-sampling
                          blocks and an ImageNet-style stem adapted to 32x32:
                          conv3x3-BN-ReLU + MaxPool 3x3 stride 2 pad 1.
* ``resnet_bottleneck``-- bottleneck ResNet (1x1-3x3-1x1, expansion 4, planes 16/32/64 ->
                          outputs 64/128/256, 2 blocks per stage, projection shortcuts --
                          stride 1 on the first block, stride 2 at stage starts -- stride on
                          the 3x3), same conv3x3(32)-BN-ReLU + MaxPool 3x3/2 stem.
"""
from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


class Plain20(nn.Module):
    """ResNet-20 without shortcuts: 1 + 3 stages x 6 conv3x3-BN-ReLU = 19 convs + linear."""

    def __init__(self, widths=(16, 32, 64), convs_per_stage=6, num_classes=10):
        super().__init__()
        layers = conv_bn_relu(3, widths[0])
        cin = widths[0]
        for s, w in enumerate(widths):
            for i in range(convs_per_stage):
                stride = 2 if (s > 0 and i == 0) else 1
                layers += conv_bn_relu(cin, w, stride)
                cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.linear(torch.flatten(self.pool(self.features(x)), 1))


class PlainMaxPool(nn.Module):
    """VGG-like: [conv-BN-ReLU x2, MaxPool2d(2)] x2, conv-BN-ReLU x2, GAP, FC-ReLU-FC."""

    def __init__(self, widths=(32, 64, 128), hidden=128, num_classes=10):
        super().__init__()
        layers, cin = [], 3
        for s, w in enumerate(widths):
            if s > 0:
                layers.append(nn.MaxPool2d(2))  # directly follows a ReLU
            layers += conv_bn_relu(cin, w) + conv_bn_relu(w, w)
            cin = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(cin, planes, stride)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + (x if self.shortcut is None else self.shortcut(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(planes, cout, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = _projection(cin, cout, stride)
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + (x if self.shortcut is None else self.shortcut(x)))


def _projection(cin, cout, stride):
    """Option-B shortcut: identity (None: no node in the graph) when shapes match,
    else 1x1 conv (stride) + BN."""
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    def __init__(self, block, planes=(16, 32, 64), blocks=(2, 2, 2), stem=16,
                 stem_maxpool=False, num_classes=10):
        super().__init__()
        stem_layers = conv_bn_relu(3, stem)
        if stem_maxpool:
            stem_layers.append(nn.MaxPool2d(3, 2, 1))  # directly follows a ReLU
        self.stem = nn.Sequential(*stem_layers)
        cin, stages = stem, []
        for s, (p, n) in enumerate(zip(planes, blocks)):
            for i in range(n):
                stride = 2 if (s > 0 and i == 0) else 1
                stages.append(block(cin, p, stride))
                cin = p * block.expansion
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.linear(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


def _init(m: nn.Module) -> nn.Module:
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    # zero-init the last BN of each residual branch (helps short training)
    for mod in m.modules():
        if isinstance(mod, BasicBlock):
            nn.init.zeros_(mod.bn2.weight)
        elif isinstance(mod, Bottleneck):
            nn.init.zeros_(mod.bn3.weight)
    return m


ARCHS = {
    "plain20": lambda: Plain20(),
    "plain_maxpool": lambda: PlainMaxPool(),
    "resnet_projection": lambda: ResNet(BasicBlock, planes=(32, 64, 128), blocks=(1, 1, 1),
                                        stem=32, stem_maxpool=True),
    "resnet_bottleneck": lambda: ResNet(Bottleneck, planes=(16, 32, 64), blocks=(2, 2, 2),
                                        stem=32, stem_maxpool=True),
}


def build(arch: str) -> nn.Module:
    if arch not in ARCHS:
        raise KeyError(f"unknown arch {arch!r}; choose from {sorted(ARCHS)}")
    return _init(ARCHS[arch]())
