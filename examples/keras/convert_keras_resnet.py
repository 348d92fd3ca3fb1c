"""Keras 3 CIFAR ResNet -> ONNX (NHWC) -> snncc, checked against the PyTorch export of the same weights.

    KERAS_BACKEND=torch python examples/keras/convert_keras_resnet.py --depth 20 --n 500 -T 64

1. builds the Keras functional ResNet (``keras_cifar_resnet.py``) and loads the shared
   pretrained PyTorch checkpoint into it (OIHW -> HWIO); checks Keras against PyTorch;
2. exports it with Keras' own ``model.export(path, format="onnx")`` (channels-last input
   ``(batch, 32, 32, 3)``), and the PyTorch model with ``examples/pytorch`` (NCHW);
3. runs both ONNX files in onnxruntime on ``--n`` test images: the predictions must be
   identical;
4. converts both with ``snncc.convert(..., preset=--preset)`` on the same calibration images
   (``cifar10_calib.npz``, given in NCHW: snncc transposes them for the NHWC model) and
   simulates both SNNs for ``-T`` steps on the same test images (raw uint8 NCHW: snncc
   transposes them too), printing ANN and SNN accuracy of both.

Everything goes to ``--out`` (default ``<repo>/out/keras``): the two ``.onnx``, the two
``.snn`` and ``results_resnet{depth}_{preset}.json``.  The shared directory is ``--shared``, else
``$SNNCC_SHARED``, else ``../shared`` relative to the repository root.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402

from snncc.argtypes import positive_int  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "examples" / "pytorch"))

SCALE = 1 / 255
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def export_keras_onnx(model, path: Path) -> Path:
    """Keras 3's own ONNX export (torch backend: torch.onnx under the hood; TF backend: tf2onnx)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(str(path), format="onnx", verbose=False)
    return path


def preprocess_nchw(x_u8: np.ndarray) -> np.ndarray:
    x = x_u8.astype(np.float32) * np.float32(SCALE)
    return ((x - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None])


def ort_logits(path: Path, x_nchw_u8: np.ndarray, nhwc: bool, batch: int = 250) -> np.ndarray:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = []
    for i in range(0, len(x_nchw_u8), batch):
        xb = preprocess_nchw(x_nchw_u8[i:i + batch])
        if nhwc:
            xb = np.ascontiguousarray(xb.transpose(0, 2, 3, 1))
        out.append(sess.run(None, {name: xb})[0])
    return np.concatenate(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, choices=(20, 32, 56), default=20)
    ap.add_argument("--shared", default=None)
    ap.add_argument("--out", default=str(ROOT / "out" / "keras"))
    ap.add_argument("--n", type=positive_int, default=500, help="test images (evenly spread over the classes)")
    ap.add_argument("-T", "--timesteps", type=positive_int, default=64)
    ap.add_argument("--preset", default="best", choices=("best", "paper"))
    ap.add_argument("--calib-limit", type=positive_int, default=1000, help="calibration images (seeded subset)")
    ap.add_argument("--calibrate-bias", type=int, default=None,
                    help="bias-calibration steps (default: the preset's; 0 = off)")
    ap.add_argument("--threads", type=positive_int, default=1, help="numba/torch threads (keep it small on shared machines)")
    ap.add_argument("--skip-snn", action="store_true", help="stop after the ONNX comparison")
    a = ap.parse_args(argv)

    import torch
    torch.set_num_threads(a.threads)
    import cifar_resnet                               # examples/pytorch
    import keras_cifar_resnet as kres                 # examples/keras
    from export_cifar_resnet import export as export_torch

    out = Path(a.out)
    try:
        ckpt = cifar_resnet.checkpoint_path(a.depth, a.shared)
        x_test, y_test = cifar_resnet.load_test(a.shared, limit=a.n)
        calib = cifar_resnet.shared_dir(a.shared) / "data" / "cifar10_calib.npz"
        if not ckpt.is_file() or not calib.is_file():
            raise FileNotFoundError(f"{ckpt} or {calib} not found")
    except FileNotFoundError as e:
        msg = str(e)
        print(f"error: {msg}" + ("" if "SNNCC_SHARED" in msg else " (set --shared or $SNNCC_SHARED)"), file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)             # only once the inputs are there
    res = {"depth": a.depth, "images": int(len(y_test)), "T": a.timesteps, "preset": a.preset,
           "calib_limit": a.calib_limit, "calibrate_bias": a.calibrate_bias}

    # 1. Keras model with the PyTorch weights, checked against PyTorch itself
    tmodel = cifar_resnet.load_shared_resnet(a.depth, a.shared)
    kmodel = kres.load_pytorch_checkpoint(kres.build(a.depth), ckpt)
    xc = x_test[:32]
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(preprocess_nchw(xc))).numpy()
    got = np.asarray(kmodel(preprocess_nchw(xc).transpose(0, 2, 3, 1), training=False).detach().cpu())
    res["keras_vs_torch_max_abs_diff"] = float(np.abs(got - ref).max())
    print(f"Keras vs PyTorch (in memory, 32 images): max |logit diff| {res['keras_vs_torch_max_abs_diff']:.2e}, "
          f"same argmax: {bool((got.argmax(1) == ref.argmax(1)).all())}")

    # 2. the two ONNX exports
    t0 = time.time()
    k_onnx = export_keras_onnx(kmodel, out / f"resnet{a.depth}_keras.onnx")
    t_onnx = export_torch(tmodel, out / f"resnet{a.depth}_torch.onnx")
    import onnx
    km = onnx.load(str(k_onnx))
    kin = km.graph.input[0]
    kshape = [d.dim_param or d.dim_value for d in kin.type.tensor_type.shape.dim]
    print(f"exported in {time.time() - t0:.0f} s: {k_onnx.name} (input {kin.name!r} {kshape}, opset "
          f"{km.opset_import[0].version}, {len(km.graph.node)} nodes) and {t_onnx.name}")

    # 3. onnxruntime: Keras ONNX == PyTorch ONNX
    lk = ort_logits(k_onnx, x_test, nhwc=True)
    lt = ort_logits(t_onnx, x_test, nhwc=False)
    same = int((lk.argmax(1) == lt.argmax(1)).sum())
    res.update(ort_max_abs_diff=float(np.abs(lk - lt).max()), ort_same_predictions=same,
               ann_keras=float((lk.argmax(1) == y_test).mean()), ann_torch=float((lt.argmax(1) == y_test).mean()))
    print(f"onnxruntime, {len(y_test)} test images: max |logit diff| {res['ort_max_abs_diff']:.2e}, "
          f"identical predictions {same}/{len(y_test)}; ANN accuracy Keras {100 * res['ann_keras']:.2f}% "
          f"PyTorch {100 * res['ann_torch']:.2f}%")
    if same != len(y_test):
        print("error: the Keras and PyTorch exports disagree", file=sys.stderr)
        return 1
    if a.skip_snn:
        return 0

    # 4. snncc on both, same options and calibration images
    import snncc
    for tag, path in (("keras", k_onnx), ("torch", t_onnx)):
        t0 = time.time()
        net = snncc.convert(str(path), str(calib), preset=a.preset, input_scale=SCALE, mean=MEAN, std=STD,
                            calib_limit=a.calib_limit, calibrate_bias=a.calibrate_bias, progress=False,
                            log=lambda s, tag=tag: print(f"  [{tag}] {s}", flush=True))
        conv_s = time.time() - t0
        net.save(str(out / f"resnet{a.depth}_{tag}.snn"))
        t0 = time.time()
        r = net.run(x_test, timesteps=a.timesteps, labels=y_test, threads=a.threads, progress=False,
                    batch_size=100)
        res[f"snn_{tag}"] = r.accuracy(a.timesteps)
        res[f"snn_{tag}_predictions"] = r.predictions[:, -1].tolist()
        res[f"snn_{tag}_accuracy_at"] = {str(t): float(r.accuracy_at[t]) for t in (8, 16, 32, 64, a.timesteps)
                                         if t <= a.timesteps}
        print(f"{tag:5s}: input layout {net.graph.meta['input_layout']}, convert {conv_s:.0f} s, "
              f"simulate {time.time() - t0:.0f} s: SNN {100 * res[f'snn_{tag}']:.2f}% at T={a.timesteps} "
              f"(ANN {100 * res[f'ann_{tag}']:.2f}%)", flush=True)
    agree = int(np.sum(np.array(res["snn_keras_predictions"]) == np.array(res["snn_torch_predictions"])))
    res["snn_same_predictions"] = agree
    cb = "" if a.calibrate_bias is None else f", calibrate_bias={a.calibrate_bias}"
    print(f"\nResNet-{a.depth}, {len(y_test)} test images, preset {a.preset}{cb}, T={a.timesteps}:")
    print("| export | ANN (onnxruntime) | SNN |")
    print("|---|---|---|")
    for tag, label in (("keras", "Keras 3 model.export (NHWC)"), ("torch", "PyTorch torch.onnx (NCHW)")):
        print(f"| {label} | {100 * res[f'ann_{tag}']:.2f}% | {100 * res[f'snn_{tag}']:.2f}% |")
    print(f"SNN predictions identical on {agree}/{len(y_test)} images")
    suffix = "" if a.calibrate_bias is None else f"_cb{a.calibrate_bias}"
    with open(out / f"results_resnet{a.depth}_{a.preset}{suffix}.json", "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
