"""Briefly train a small CIFAR-10 model, export it to ONNX and score it with onnxruntime.

    python examples/cifar_variants/train.py --arch plain20 --epochs 4 \
        --out tests/fixtures/trained/plain20.onnx

SGD (momentum 0.9, nesterov), one-cycle LR peaking at 0.1, weight decay 5e-4,
batch 128, random-crop (pad 4) + horizontal-flip augmentation, one CPU thread.
The ONNX graph (opset 17, BatchNorm kept, dynamic batch axis) takes the
*preprocessed* input ``input`` (N,3,32,32) = (x/255 - mean)/std and returns
``output`` logits (N,10). A JSON summary is written next to it (FILE.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
import models  # noqa: E402
from snncc.argtypes import positive_int  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True, choices=sorted(models.ARCHS))
    p.add_argument("--epochs", type=positive_int, required=True)
    p.add_argument("--out", required=True, help="output .onnx path (FILE.json written beside it)")
    p.add_argument("--shared", default=None, help="shared dir (default $SNNCC_SHARED or ../shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=positive_int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--limit-steps", type=int, default=0, help="debug: stop each epoch after N steps")
    return p.parse_args(argv)


def train(model, x_u8, y, args, log=print):
    rng = np.random.default_rng(args.seed)
    steps_per_epoch = len(x_u8) // args.batch  # drop the last partial batch
    if args.limit_steps:
        steps_per_epoch = min(steps_per_epoch, args.limit_steps)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=args.wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
        pct_start=0.25, anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0,
        three_phase=False)
    history = []
    for ep in range(args.epochs):
        model.train()
        perm = rng.permutation(len(x_u8))
        t0, seen, correct, loss_sum = time.time(), 0, 0, 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            xb = torch.from_numpy(data.normalize(data.augment(x_u8[idx], rng)))
            xb = xb.contiguous(memory_format=torch.channels_last)
            yb = torch.from_numpy(y[idx])
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lr = opt.param_groups[0]["lr"]     # the rate this step used (after the last step the
            sched.step()                       # schedule would extrapolate past its end)
            seen += len(idx)
            correct += int((out.argmax(1) == yb).sum())
            loss_sum += float(loss) * len(idx)
            if (i + 1) % 50 == 0 or i + 1 == steps_per_epoch:
                log(f"epoch {ep + 1}/{args.epochs} step {i + 1}/{steps_per_epoch} "
                    f"loss {loss_sum / seen:.3f} train-acc {correct / seen:.4f} "
                    f"lr {lr:.4f} {time.time() - t0:.0f}s")
        history.append({"epoch": ep + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
                        "seconds": time.time() - t0})
    return history


def export(model, path: Path):
    model.eval()
    model = model.to(memory_format=torch.contiguous_format)
    dummy = torch.zeros(2, 3, 32, 32)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=17,
                      do_constant_folding=False, input_names=["input"],
                      output_names=["output"],
                      dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
    import onnx
    m = onnx.load(str(path))
    if _inline_identity_initializers(m):
        onnx.save(m, str(path))
    onnx.checker.check_model(m)
    return model


def _inline_identity_initializers(m) -> int:
    """The TorchScript exporter de-duplicates equal parameters (e.g. untrained BN
    ones/zeros) into ``Identity(initializer)`` nodes; turn those back into plain
    initializers so the graph holds only compute nodes. Returns how many were inlined."""
    from onnx import numpy_helper
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    drop = [n for n in g.node if n.op_type == "Identity" and n.input[0] in inits]
    for n in drop:
        arr = numpy_helper.to_array(inits[n.input[0]])
        g.initializer.append(numpy_helper.from_array(arr.copy(), n.output[0]))
        g.node.remove(n)
    return len(drop)


def ort_session(path: Path, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def check_ort_vs_torch(model, sess, x_u8):
    x = data.normalize(x_u8)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = sess.run(["output"], {"input": x})[0]
    diff = float(np.abs(ref - got).max())
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    if diff > 1e-3 or agree < 1.0:
        raise RuntimeError(f"ORT/torch mismatch: max|diff|={diff:.3g}, argmax agreement {agree}")
    return diff


def ort_accuracy(sess, x_u8, y, batch=500):
    correct = 0
    for i in range(0, len(x_u8), batch):
        out = sess.run(["output"], {"input": data.normalize(x_u8[i:i + batch])})[0]
        correct += int((out.argmax(1) == y[i:i + batch]).sum())
    return correct / len(x_u8)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    out = Path(args.out)

    def log(msg):
        print(msg, flush=True)

    x_u8, y = data.load_train(args.shared)
    log(f"train split {x_u8.shape}, arch {args.arch}, epochs {args.epochs}, seed {args.seed}")
    model = models.build(args.arch).to(memory_format=torch.channels_last)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"params {n_params}")

    t0 = time.time()
    history = train(model, x_u8, y, args, log)
    train_s = time.time() - t0

    model = export(model, out)
    size = out.stat().st_size
    log(f"exported {out} ({size / 1e6:.3f} MB)")
    xt, yt = data.load_test(args.shared)
    sess = ort_session(out, args.threads)
    diff = check_ort_vs_torch(model, sess, xt[::40])  # 250 images spread over all classes
    log(f"ORT vs torch max|diff| {diff:.2e}")
    acc = ort_accuracy(sess, xt, yt)
    log(f"ONNX (onnxruntime) test accuracy: {acc:.4f} on {len(xt)} images")

    import onnxruntime
    summary = {
        "arch": args.arch, "epochs": args.epochs, "seed": args.seed,
        "test_accuracy": acc, "test_images": int(len(xt)),
        "final_train_accuracy": history[-1]["train_acc"] if history else None,
        "params": n_params, "onnx_bytes": size, "ort_vs_torch_max_abs_diff": diff,
        "train_seconds": round(train_s, 1), "threads": args.threads,
        "optimizer": {"type": "SGD", "momentum": 0.9, "nesterov": True, "lr_max": args.lr,
                      "schedule": "one-cycle (linear, 25% warm-up)", "weight_decay": args.wd,
                      "batch": args.batch},
        "augmentation": "random crop pad 4 + horizontal flip",
        "preprocessing": {"scale": "1/255", "mean": data.MEAN.tolist(), "std": data.STD.tolist()},
        "limit_steps": args.limit_steps or None,
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "history": history,
    }
    with open(out.with_suffix(".json"), "w") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
