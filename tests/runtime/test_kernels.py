"""runtime/kernels.py helpers outside the simulation: the first-compile notice."""
import os
import subprocess
import sys

import numpy as np

from snncc.runtime import kernels as K


def test_compile_pending_with_an_empty_numba_cache(tmp_path):
    """A fresh NUMBA_CACHE_DIR holds no compiled run_steps: the next simulation would compile it."""
    code = "from snncc.runtime import kernels as K; print(K.compile_pending())"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


def test_compile_pending_false_once_compiled():
    import snncc
    from digits import MODEL, CALIB, PRE
    net = snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=0, calib_limit=20, progress=False)
    net.run(np.load(CALIB)["x"][:2], timesteps=2, progress=False)     # compiles, or loads from the cache
    assert K.run_steps.signatures and K.compile_pending() is False


def test_compile_pending_never_raises(monkeypatch):
    monkeypatch.setattr(K, "run_steps", object())       # no numba dispatcher at all: unknown -> no notice
    assert K.compile_pending() is False
