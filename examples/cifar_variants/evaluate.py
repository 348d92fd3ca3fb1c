"""Re-measure the test accuracy of exported ONNX models with onnxruntime.

    python examples/cifar_variants/evaluate.py tests/fixtures/trained/*.onnx

Uses the full shared JPEG test split (``<shared>/data/cifar10_test.npz``), the same
preprocessing as training (x/255, ImageNet mean/std) outside the graph.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data  # noqa: E402
from train import ort_accuracy, ort_session  # noqa: E402
from snncc.argtypes import positive_int  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("onnx", nargs="+")
    p.add_argument("--shared", default=None)
    p.add_argument("--threads", type=positive_int, default=1)
    args = p.parse_args(argv)
    for f in args.onnx:
        if not Path(f).is_file():
            p.error(f"{f} not found")
    try:
        xt, yt = data.load_test(args.shared)
    except FileNotFoundError as e:
        p.error(str(e))
    for f in args.onnx:
        acc = ort_accuracy(ort_session(Path(f), args.threads), xt, yt)
        print(f"{f}: {acc:.4f} ({len(xt)} test images)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
