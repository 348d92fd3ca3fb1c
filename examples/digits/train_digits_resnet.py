"""Train the embedded default model: a small option-A ResNet on scikit-learn's digits.

    python examples/digits/train_digits_resnet.py [--out snncc/data] [--seed 0] [--epochs 40]

Writes (all deterministic for a given seed, CPU, torch.set_num_threads(1)):

* ``digits_resnet.onnx`` -- legacy ``torch.onnx.export`` (opset 17, eval mode,
  ``do_constant_folding=False`` so the BatchNormalization nodes are kept, dynamic
  batch dimension only).  Input ``input`` (N, 1, 8, 8) float32, output ``logits`` (N, 10).
* ``digits_calib.npz`` -- a stratified random subset of the training part.
* ``digits_test.npz`` -- the held-out test part (never trained on).

Both npz files hold ``x`` uint8 (N, 1, 8, 8) raw pixel values 0..16 as in
``sklearn.datasets.load_digits``, ``y`` int64 labels and the preprocessing
constants ``scale``, ``mean``, ``std`` (float32 arrays of shape (1,)).  The
preprocessing is NOT in the graph: the model expects ``(x * scale - mean) / std``,
which is ``snncc ... --input-scale SCALE --mean MEAN --std STD``.

Architecture (ReLU only, bias-free convs, BN after every conv):
stem conv3x3(1->16)-BN-ReLU at 8x8; block1 16->16 (identity shortcut, 8x8);
block2 16->32 stride 2 (option-A shortcut: ``x[:, :, ::2, ::2]`` then zero
padding of 8 channels on each side, as in akamaster's CIFAR ResNet LambdaLayer;
4x4); block3 32->32 (identity, 4x4); global average pool; linear 32->10.
Each block is conv-BN-ReLU-conv-BN, + shortcut, then ReLU.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from snncc.argtypes import positive_int

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "snncc" / "data"
SCALE = 1.0 / 16.0          # x/16 maps the raw 0..16 pixels to 0..1
TEST_FRACTION = 0.25
N_CALIB = 300


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    """akamaster BasicBlock with the option-A shortcut."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class DigitsResNet(nn.Module):
    def __init__(self, width=16, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 2 * width, 1)
        self.linear = nn.Linear(2 * width, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def load_split(seed: int):
    """Deterministic stratified train/test split and a calibration subset of train."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype(np.uint8).reshape(-1, 1, 8, 8)    # raw 0..16
    y = d.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=TEST_FRACTION, random_state=seed, stratify=y)
    _, x_ca, _, y_ca = train_test_split(x_tr, y_tr, test_size=N_CALIB, random_state=seed, stratify=y_tr)
    return x_tr, y_tr, x_ca, y_ca, x_te, y_te


def preprocessing_constants(x_tr: np.ndarray):
    """Single-channel mean/std of x/16 over the training part, rounded to 4 decimals."""
    z = x_tr.astype(np.float64) * SCALE
    return round(float(z.mean()), 4), round(float(z.std()), 4)


def shift_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by -1..1 pixel in each direction, zero fill (raw pixel 0 = background)."""
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (n,), generator=gen)
    dx = torch.randint(0, 3, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(3):
        for j in range(3):
            m = (dy == i) & (dx == j)
            if m.any():
                out[m] = padded[m, :, i:i + 8, j:j + 8]
    return out


def train(model, xn_tr, y_tr, epochs, seed, batch=64, lr=3e-3):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(xn_tr) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    x_t = torch.from_numpy(xn_tr)
    y_t = torch.from_numpy(y_tr)
    bg = float(x_t.min())   # normalised background value (raw pixel 0)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x_t), generator=gen)
        tot, correct, loss_sum = 0, 0, 0.0
        for k in range(0, len(perm), batch):
            idx = perm[k:k + batch]
            xb = shift_augment(x_t[idx] - bg, gen) + bg
            yb = y_t[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            tot += len(idx)
        if ep % 5 == 4 or ep == epochs - 1:
            print(f"epoch {ep + 1:3d}: loss {loss_sum / tot:.4f}  train acc {correct / tot:.4f}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output directory (default snncc/data)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=positive_int, default=40)
    p.add_argument("--no-readme", action="store_true", help="do not rewrite OUT/README.md")
    args = p.parse_args(argv)

    t0 = time.time()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)

    x_tr, y_tr, x_ca, y_ca, x_te, y_te = load_split(args.seed)
    mean, std = preprocessing_constants(x_tr)
    print(f"train {len(x_tr)}  calib {len(x_ca)} (subset of train)  test {len(x_te)}")
    print(f"preprocessing: x * {SCALE} (= x/16), then (x - {mean}) / {std}")

    def prep(x):
        return ((x.astype(np.float32) * np.float32(SCALE) - np.float32(mean)) / np.float32(std)).astype(np.float32)

    model = DigitsResNet()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"DigitsResNet: {n_params} parameters")
    train(model, prep(x_tr), y_tr, args.epochs, args.seed)

    model.eval()
    xt = torch.from_numpy(prep(x_te))
    with torch.no_grad():
        ref = model(xt).numpy()
    acc = float((ref.argmax(1) == y_te).mean())
    print(f"torch test accuracy: {acc:.4f} ({len(y_te)} images)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "digits_resnet.onnx"
    torch.onnx.export(model, (torch.zeros(1, 1, 8, 8),), str(onnx_path), dynamo=False, opset_version=17,
                      do_constant_folding=False, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})

    # verify the export with onnxruntime
    import onnx
    import onnxruntime as ort
    m = onnx.load(str(onnx_path))
    onnx.checker.check_model(m)
    ops = sorted({n.op_type for n in m.graph.node})
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": prep(x_te)})[0]
    diff = float(np.abs(got - ref).max())
    ort_acc = float((got.argmax(1) == y_te).mean())
    print(f"ONNX: {onnx_path} ({onnx_path.stat().st_size} bytes), ops {ops}")
    print(f"ORT vs torch: max |diff| {diff:.2e}; ORT test accuracy {ort_acc:.4f}")
    if diff > 1e-4 or (got.argmax(1) != ref.argmax(1)).any():
        print("error: ORT output differs from torch", file=sys.stderr)
        return 1
    if onnx_path.stat().st_size >= 200_000:
        print("error: ONNX file is not < 200 KB", file=sys.stderr)
        return 1

    consts = dict(scale=np.array([SCALE], np.float32), mean=np.array([mean], np.float32),
                  std=np.array([std], np.float32))
    np.savez_compressed(out / "digits_calib.npz", x=x_ca, y=y_ca, **consts)
    np.savez_compressed(out / "digits_test.npz", x=x_te, y=y_te, **consts)
    elapsed = time.time() - t0
    print(f"wrote {out}/digits_calib.npz ({len(x_ca)}), {out}/digits_test.npz ({len(x_te)}) in {elapsed:.0f} s")
    print(f"final test accuracy: {ort_acc:.4f}")
    if not args.no_readme:
        (out / "README.md").write_text(README.format(
            seed=args.seed, epochs=args.epochs, acc=100 * ort_acc, n_te=len(x_te), n_ca=len(x_ca),
            n_tr=len(x_tr), mean=mean, std=std, params=n_params, size=onnx_path.stat().st_size,
            ops=", ".join(ops), diff=diff, torch_version=torch.__version__, secs=elapsed,
            test_pct=int(TEST_FRACTION * 100)))
    return 0


README = """# snncc/data — the embedded default model

Generated by `examples/digits/train_digits_resnet.py`; do not edit by hand.
Re-create with (from the repository root, needs the `examples` extra: torch, scikit-learn):

```bash
python examples/digits/train_digits_resnet.py --seed {seed} --epochs {epochs}
```

(torch {torch_version}, CPU, 1 thread, deterministic algorithms: re-running gives a byte-identical
ONNX file; under a minute on one core.)

| file | contents |
| --- | --- |
| `digits_resnet.onnx` | small option-A ResNet, {params} parameters, {size} bytes; opset 17, legacy exporter, `do_constant_folding=False` (BatchNormalization kept), dynamic batch dim. Input `input` (N, 1, 8, 8) float32, output `logits` (N, 10). Ops: {ops} (the Shape/Gather/ConstantOfShape/Concat/Reshape/Slice/Transpose/Cast chain before each `Pad` is the legacy exporter's lowering of `F.pad` in the option-A shortcut; it depends only on constants and the static channel count) |
| `digits_calib.npz` | calibration: {n_ca} images, a stratified random subset (seed {seed}) of the {n_tr}-image training part |
| `digits_test.npz` | test: the {n_te} held-out images (stratified {test_pct}% split of sklearn's 1797 digits, `random_state={seed}`), never trained on |

Each npz holds `x` uint8 (N, 1, 8, 8) raw pixel values 0..16 (as `sklearn.datasets.load_digits`),
`y` int64 labels 0..9, and the preprocessing constants `scale`, `mean`, `std` (float32, shape (1,)).

**Test accuracy (onnxruntime, {n_te} held-out images): {acc:.2f}%** (ORT vs torch max |diff| {diff:.1e}).

## Preprocessing (not in the graph)

The model expects `(x * scale - mean) / std` on the raw 0..16 pixels, single channel:

* `scale` = 0.0625 (x/16)
* `mean` = {mean} (mean of x/16 over the training part, rounded to 4 decimals)
* `std` = {std} (std of x/16 over the training part, rounded to 4 decimals)

```bash
snncc snncc/data/digits_resnet.onnx -o digits.snn --calib snncc/data/digits_calib.npz \\
    --input-scale 0.0625 --mean {mean} --std {std}
snncc eval digits.snn --data snncc/data/digits_test.npz -T 64 --ann snncc/data/digits_resnet.onnx
```

## Architecture

stem conv3x3(1->16)-BN-ReLU (8x8); block1 16->16 identity shortcut (8x8); block2 16->32
stride 2 with the option-A shortcut `x[:, :, ::2, ::2]` + zero channel padding 8/8
(akamaster's LambdaLayer; exported as Slice + Pad) (4x4); block3 32->32 identity (4x4);
global average pool; linear 32->10. Blocks: conv-BN-ReLU-conv-BN, + shortcut, ReLU.
Bias-free convs, ReLU only.

Training: Adam (lr 3e-3, weight decay 1e-4, one-cycle schedule), batch 64, {epochs} epochs,
random +-1 pixel shifts, seed {seed}.
"""


if __name__ == "__main__":
    sys.exit(main())
