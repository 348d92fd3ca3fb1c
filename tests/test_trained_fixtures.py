"""The committed trained CIFAR-10 fixtures (tests/fixtures/trained/*.onnx) through snncc.

* Always (no ``../shared`` needed): each model converts on random, image-like
  calibration data, and the normalised analog network reproduces onnxruntime
  (same argmax on 32 random inputs, logits equal up to the output lambda).
* With the shared CIFAR-10 data (``$SNNCC_SHARED``, else ``<repo>/../shared``;
  skipped with the reason otherwise): conversion on ``cifar10_calib.npz``
  (seeded 256-image subset, ``calibrate_bias=0``); on 200 seeded test images the
  ANN accuracy agrees with the accuracy recorded in the model's json, and the SNN
  at T=128 stays within a few points of the ANN (per-model floors below).

The models take preprocessed NCHW input (``x/255`` then per-channel
``(x - mean) / std``, see tests/fixtures/trained/README.md); snncc gets the same
preprocessing as ``input_scale``/``mean``/``std`` and raw uint8 images.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import snncc

TRAINED = Path(__file__).resolve().parent / "fixtures" / "trained"
REPO = Path(__file__).resolve().parents[1]
MODELS = ("plain20", "plain_maxpool", "resnet_projection", "resnet_bottleneck")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PREPROCESS = dict(input_scale=1 / 255, mean=MEAN, std=STD)
FAST = dict(calibrate_bias=0)      # these tests are not about the bias calibration of the default preset
CALIB_LIMIT = 256
TEST_IMAGES = 200
T = 128

#: points by which the ANN accuracy on the 200-image subset may differ from the json's 10k figure
#: (measured 200-image ANN: plain20 74.5, plain_maxpool 80.0, resnet_projection 79.5, resnet_bottleneck 80.5)
ANN_TOLERANCE = 5.0
#: points the SNN at T=128 may lose against the ANN on the same 200 images (the task's target: 5).
#: Measured (default preset, calibrate_bias=0, max-pool gate rule ``max``): plain20 2.5 (74.5 -> 72.0),
#: plain_maxpool -0.5 (80.0 -> 80.5), resnet_projection 1.0 (79.5 -> 78.5), resnet_bottleneck -0.5
#: (80.5 -> 81.0).  With the paper's ``leader`` gate the two ImageNet-stem models lost 4.0 and 6.0
#: (75.5, 74.5): the gate over-counts in the stem's overlapping 3x3 windows.
SNN_MARGIN = {"plain20": 5.0, "plain_maxpool": 5.0, "resnet_projection": 5.0, "resnet_bottleneck": 5.0}


def _meta(name: str) -> dict:
    with open(TRAINED / f"{name}.json") as f:
        return json.load(f)


def _preprocess(x_u8: np.ndarray) -> np.ndarray:
    x = x_u8.astype(np.float32) / np.float32(255)
    return ((x - np.float32(MEAN)[None, :, None, None]) / np.float32(STD)[None, :, None, None]).astype(np.float32)


_SESSIONS: dict = {}


def _ort_logits(name: str, x_u8: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    if name not in _SESSIONS:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        _SESSIONS[name] = ort.InferenceSession(str(TRAINED / f"{name}.onnx"), so,
                                               providers=["CPUExecutionProvider"])
    sess = _SESSIONS[name]
    return np.concatenate([sess.run(["output"], {"input": _preprocess(x_u8[i:i + 256])})[0]
                           for i in range(0, len(x_u8), 256)])


def _out_lambda(net) -> float:
    return float(net.graph.meta["lambda"][net.graph.output.name])


def _image_like(n: int, seed: int) -> np.ndarray:
    """Random uint8 (n, 3, 32, 32) images with some spatial structure (smooth blobs + noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, 3, 4, 4))
    img = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)
    img = img + rng.normal(0, 25, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _check_analog(net, name, x):
    ref = _ort_logits(name, x)
    a = net.analog(x)
    np.testing.assert_array_equal(a.argmax(1), ref.argmax(1))
    np.testing.assert_allclose(a * _out_lambda(net), ref, rtol=0, atol=1e-4 * float(np.abs(ref).max()))
    return ref


def _check_structure(net, name):
    g = net.graph
    assert net.n_classes == 10 and net.input_shape == (32, 32, 3)
    n_gates = len(g.by_op("maxgate"))
    if name == "plain20":
        assert n_gates == 0
    else:            # every MaxPool of these models becomes a max-pool gate
        assert n_gates >= 1, f"{name}: MaxPool not converted to a maxgate population"


def test_fixture_files_and_contract():
    for name in MODELS:
        meta = _meta(name)
        assert meta["arch"] == name
        assert (TRAINED / f"{name}.onnx").stat().st_size == meta["onnx_bytes"]
        pre = meta["preprocessing"]
        assert pre["scale"] == "1/255"
        np.testing.assert_allclose(pre["mean"], MEAN, rtol=1e-6)
        np.testing.assert_allclose(pre["std"], STD, rtol=1e-6)


# -- without ../shared --------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_converts_on_random_data_and_matches_onnxruntime(name):
    net = snncc.convert(str(TRAINED / f"{name}.onnx"), _image_like(64, seed=1), progress=False,
                        **PREPROCESS, **FAST)
    _check_structure(net, name)
    _check_analog(net, name, _image_like(32, seed=2))


# -- with ../shared -----------------------------------------------------------------------------
def _shared_dir() -> Path:
    env = os.environ.get("SNNCC_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="module")
def cifar():
    d = _shared_dir()
    calib, test = d / "data" / "cifar10_calib.npz", d / "data" / "cifar10_test.npz"
    for p in (calib, test):
        if not p.is_file():
            pytest.skip(f"shared CIFAR-10 data {p} not found (set $SNNCC_SHARED or provide <repo>/../shared)")
    from snncc.data import load_arrays, subset
    x, y = load_arrays(str(test), "test data")
    x, y = subset(x, y, TEST_IMAGES)
    return calib, x, y


@pytest.fixture(scope="module")
def cifar_net(cifar):
    """``cifar_net(name)`` -> the model converted on the shared calibration subset (once per module)."""
    calib = cifar[0]
    cache: dict = {}

    def get(name):
        if name not in cache:
            cache[name] = snncc.convert(str(TRAINED / f"{name}.onnx"), str(calib), calib_limit=CALIB_LIMIT,
                                        progress=False, **PREPROCESS, **FAST)
        return cache[name]

    return get


@pytest.mark.shared
@pytest.mark.parametrize("name", MODELS)
def test_cifar_accuracy(name, cifar, cifar_net):
    """On 200 seeded test images: analog == ORT, ANN accuracy as recorded, SNN (T=128) close to the ANN."""
    _, x, y = cifar
    net = cifar_net(name)
    _check_structure(net, name)
    ref = _check_analog(net, name, x)
    ann = 100 * float(np.mean(ref.argmax(1) == y))
    recorded = 100 * _meta(name)["test_accuracy"]
    res = net.run(x, T, labels=y, progress=False)
    snn = 100 * res.accuracy(T)
    curve = ", ".join(f"T={t}: {100 * res.accuracy_at[t]:.1f}%" for t in (16, 32, 64, 128))
    print(f"\n{name}: {len(x)} test images, ANN {ann:.1f}% (json, 10k images: {recorded:.2f}%), "
          f"SNN {snn:.1f}% ({curve}); simulation {res.wall_time:.1f} s")
    assert abs(ann - recorded) <= ANN_TOLERANCE, f"ANN {ann:.1f}% vs recorded {recorded:.2f}%"
    margin = SNN_MARGIN[name]
    assert snn >= ann - margin, f"{name}: SNN {snn:.1f}% more than {margin} points below the ANN {ann:.1f}%"
