"""Export a shared pretrained CIFAR-10 ResNet (akamaster, option A) to ONNX for snncc.

    python examples/pytorch/export_cifar_resnet.py --depth 20 --out out/resnet20.onnx
    python examples/pytorch/export_cifar_resnet.py --depth 56 --out out/resnet56_dynamo.onnx --dynamo

Two export paths, both eval mode, dynamic batch dimension (name
``batch``), fixed 3x32x32 spatial input, input ``input`` and output ``logits``:

* default: the legacy TorchScript exporter (``dynamo=False``, opset 17) with
  ``do_constant_folding=False``, so every BatchNormalization node is kept
  (snncc folds BN itself);
* ``--dynamo``: the ``torch.export``-based exporter (``dynamo=True``, opset 18,
  its native opset) writing the weights as external data (``FILE.onnx.data``
  next to ``FILE.onnx``; ``external_data=True``).  Keep the two files together.
  Its graph optimizer folds BatchNorm into the convs (fine for snncc too).

After exporting, the script checks onnxruntime against torch on a few shared test
images and prints the ANN accuracy on ``--n`` test images (``--n 0``: the full
10000-image JPEG test split) with the training preprocessing: x/255, then
per-channel (x - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225).

The shared directory is ``--shared``, else ``$SNNCC_SHARED``, else ``../shared``
relative to the repository root.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cifar_resnet  # noqa: E402
from snncc.argtypes import nonnegative_int, positive_int  # noqa: E402

OPSET = 17          # legacy exporter
DYNAMO_OPSET = 18   # the dynamo exporter builds opset 18; asking it for 17 fails to down-convert Pad
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export(model: torch.nn.Module, out: str | Path, dynamo: bool = False) -> Path:
    """Export ``model`` (eval mode, input (N, 3, 32, 32)) to ``out``; returns the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    example = (torch.zeros(2, 3, 32, 32),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # "legacy TorchScript-based exporter"
        warnings.filterwarnings("ignore", message="Constant folding")  # strided Slice not folded: fine
        if dynamo:
            data_file = out.with_name(out.name + ".data")
            if data_file.exists():   # the exporter appends to an existing external-data file
                data_file.unlink()
            batch = torch.export.Dim("batch", min=1, max=65536)
            onnx_program = torch.onnx.export(
                model, example, dynamo=True, opset_version=DYNAMO_OPSET,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes={"x": {0: batch}}, external_data=True, verbose=False)
            onnx_program.save(str(out), external_data=True)
        else:
            torch.onnx.export(
                model, example, str(out), dynamo=False, opset_version=OPSET,
                do_constant_folding=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    return out


def ort_session(path: str | Path, threads: int = 0):
    import onnxruntime as ort
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_logits(sess, x_u8: np.ndarray, batch: int = 500) -> np.ndarray:
    outs = [sess.run([OUTPUT_NAME], {INPUT_NAME: cifar_resnet.preprocess(x_u8[i:i + batch])})[0]
            for i in range(0, len(x_u8), batch)]
    return np.concatenate(outs)


def check_ort_vs_torch(model, sess, x_u8: np.ndarray, atol: float = 1e-3) -> float:
    """Max |ORT - torch| over the logits of ``x_u8``; raises if they disagree."""
    with torch.no_grad():
        ref = model(torch.from_numpy(cifar_resnet.preprocess(x_u8))).numpy()
    got = ort_logits(sess, x_u8)
    diff = float(np.abs(ref - got).max())
    if diff > atol or (ref.argmax(1) != got.argmax(1)).any():
        raise RuntimeError(f"onnxruntime and torch disagree (max |diff| {diff:.2e})")
    return diff


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, choices=cifar_resnet.DEPTHS, required=True)
    p.add_argument("--shared", default=None,
                   help="shared data/models directory (default $SNNCC_SHARED, else ../shared from the repo root)")
    p.add_argument("--out", required=True, help="output FILE.onnx")
    p.add_argument("--dynamo", action="store_true",
                   help="use the torch.export-based exporter; weights go to FILE.onnx.data")
    p.add_argument("--n", type=nonnegative_int, default=1000,
                   help="test images for the ANN accuracy (evenly spread over the classes; 0 = all 10000)")
    p.add_argument("--check", type=positive_int, default=16, help="test images for the ORT vs torch check")
    p.add_argument("--threads", type=nonnegative_int, default=0, help="torch/onnxruntime threads (0 = default)")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model = cifar_resnet.load_shared_resnet(args.depth, args.shared)
        x, y = cifar_resnet.load_test(args.shared)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    t0 = time.time()
    out = export(model, args.out, dynamo=args.dynamo)
    import onnx
    m = onnx.load(str(out), load_external_data=False)
    onnx.checker.check_model(str(out))   # by path: works with external data too
    ops = sorted({n.op_type for n in m.graph.node})
    n_bn = sum(n.op_type == "BatchNormalization" for n in m.graph.node)
    path_name = "dynamo" if args.dynamo else "legacy"
    print(f"exported ResNet-{args.depth} ({path_name}) to {out} in {time.time() - t0:.1f} s; "
          f"{len(m.graph.node)} nodes, {n_bn} BatchNormalization; ops: {', '.join(ops)}")

    sess = ort_session(out, args.threads)
    idx = np.linspace(0, len(x) - 1, args.check).round().astype(np.int64)
    diff = check_ort_vs_torch(model, sess, x[idx])
    print(f"ORT vs torch on {len(idx)} test images: max |diff| {diff:.2e}, same predictions")

    if args.n and args.n < len(x):
        x, y = cifar_resnet.load_test(args.shared, limit=args.n)
    t0 = time.time()
    acc = float((ort_logits(sess, x).argmax(1) == y).mean())
    print(f"ANN accuracy (onnxruntime, {len(x)} JPEG test images): {100 * acc:.2f}% "
          f"[{time.time() - t0:.0f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
