"""Fixtures for the tests on the shared pretrained CIFAR-10 ResNets (``../shared``).

Everything here skips cleanly, with the reason, when its material is missing:

* the shared directory is ``$SNNCC_SHARED`` if set, else ``<repo>/../shared``
  (simulate its absence with ``SNNCC_SHARED=/nonexistent``);
* ``data/cifar10_calib.npz`` / ``data/cifar10_test.npz`` and the checkpoints
  ``models/resnet{20,32,56}-*.th`` are checked one by one;
* PyTorch (needed to export the checkpoints to ONNX) via ``pytest.importorskip``.

Exports are made once per session, lazily, into a temporary directory, with the
project's own recipe ``examples/pytorch/export_cifar_resnet.py``; conversions
are cached per (model, options) so several tests share one.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "pytorch"

#: training preprocessing of the shared checkpoints (outside the ONNX graph)
PREPROCESS = dict(input_scale=1 / 255, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CALIB_LIMIT = 256     # seeded calibration subset (snncc.data.subset, seed 0)
TEST_IMAGES = 200     # seeded test subset (snncc.data.subset, seed 0)


def shared_path() -> Path:
    env = os.environ.get("SNNCC_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    d = shared_path()
    if not d.is_dir():
        pytest.skip(f"shared data directory {d} not found (set $SNNCC_SHARED or provide <repo>/../shared)")
    return d


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        pytest.skip(f"{what} {path} not found in the shared directory")
    return path


@pytest.fixture(scope="session")
def calib_path(shared_dir) -> Path:
    """``<shared>/data/cifar10_calib.npz`` (training images: calibration only)."""
    return _need_file(shared_dir / "data" / "cifar10_calib.npz", "calibration data")


@pytest.fixture(scope="session")
def calib_subset(calib_path):
    """The exact calibration images ``convert(..., calib_limit=CALIB_LIMIT)`` uses (raw uint8 NCHW)."""
    from snncc.data import load_arrays, subset
    x, y = load_arrays(str(calib_path), "calibration data")
    return subset(x, y, CALIB_LIMIT)[0]


@pytest.fixture(scope="session")
def test_subset(shared_dir):
    """``(x uint8 NCHW, y int64)``: a seeded subset of TEST_IMAGES shared test images."""
    from snncc.data import load_arrays, subset
    path = _need_file(shared_dir / "data" / "cifar10_test.npz", "test data")
    x, y = load_arrays(str(path), "test data")
    return subset(x, y, TEST_IMAGES)


@pytest.fixture(scope="session")
def exporter(shared_dir):
    """The ``export_cifar_resnet`` example module (needs torch)."""
    pytest.importorskip("torch", reason="PyTorch is needed to export the shared checkpoints to ONNX")
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    import export_cifar_resnet
    return export_cifar_resnet


@pytest.fixture(scope="session")
def resnet_onnx(exporter, shared_dir, tmp_path_factory):
    """``resnet_onnx(depth, dynamo=False)`` -> path of the exported ONNX file (exported once per session)."""
    import cifar_resnet   # on sys.path via ``exporter``
    out_dir = tmp_path_factory.mktemp("shared_onnx")
    cache: dict = {}

    def get(depth: int, dynamo: bool = False) -> Path:
        key = (depth, dynamo)
        if key not in cache:
            _need_file(cifar_resnet.checkpoint_path(depth, shared_dir), f"ResNet-{depth} checkpoint")
            if dynamo:
                pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")
            model = cifar_resnet.load_shared_resnet(depth, shared_dir)
            name = f"resnet{depth}{'_dynamo' if dynamo else ''}.onnx"
            cache[key] = exporter.export(model, out_dir / name, dynamo=dynamo)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def ort_logits(exporter):
    """``ort_logits(onnx_path, x_uint8_nchw)`` -> onnxruntime logits with the training preprocessing."""
    sessions: dict = {}

    def run(path, x):
        if path not in sessions:
            sessions[path] = exporter.ort_session(path)
        return exporter.ort_logits(sessions[path], x)

    return run


@pytest.fixture(scope="session")
def convert_cached(calib_path):
    """``convert_cached(onnx_path, **options)`` -> SpikingNetwork, converted once per session.

    Always the shared calibration file with ``calib_limit=CALIB_LIMIT`` and the
    training preprocessing; callers must not modify the returned network.
    """
    import snncc
    cache: dict = {}

    def get(path, **opts):
        key = (str(path), tuple(sorted(opts.items())))
        if key not in cache:
            kw = dict(PREPROCESS, calib_limit=CALIB_LIMIT, progress=False)
            kw.update(opts)
            cache[key] = snncc.convert(str(path), str(calib_path), **kw)
        return cache[key]

    return get


def output_lambda(net) -> float:
    lam = net.graph.meta["lambda"][net.graph.output.name]
    assert np.ndim(lam) == 0, "the output population's lambda is a scalar"
    return float(lam)


@pytest.fixture(scope="session")
def out_lambda():
    """``out_lambda(net)``: the output population's scalar lambda (analog logits = ANN logits / lambda)."""
    return output_lambda
