"""benchmarks/bias_groups.py: bias-calibration group sizes re-scored on held-out calibration images."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import bias_groups  # noqa: E402
from digits import MODEL, CALIB, PRE as PRE_KW

PRE = dict(PRE_KW, calib_limit=128, progress=False)


def test_each_size_reproduces_the_conversion_on_heldout_images(tmp_path, capsys):
    """Size N scores exactly the network `snncc --calibrate-bias T --calibrate-bias-group N` makes; size 0 the
    uncalibrated one; losses and paired differences are those of the per-image lists."""
    import snncc
    from snncc.data import load_arrays, subset_indices
    net = snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=0)
    p = str(tmp_path / "nobc.snn")
    net.save(p)
    out = str(tmp_path / "g.json")
    assert bias_groups.main([p, "--data", CALIB, "--sizes", "2,0,1", "--calibrate-bias", "16", "--images", "48",
                             "-T", "32", "--json", out, "-q"]) == 0
    res = json.load(open(out))
    idx = np.asarray(res["indices"])
    assert idx.size == 48 and not set(idx.tolist()) & set(subset_indices(300, 128).tolist())   # held out
    x, y = load_arrays(CALIB)
    xs, ys = net.prepare(x[idx]), y[idx].astype(int)
    assert res["ann_ok"] == (net.analog(xs).argmax(1) == ys).astype(int).tolist()
    assert [r["layers_per_group"] for r in res["runs"]] == [2, 0, 1]
    for r in res["runs"]:
        n = r["layers_per_group"]
        ref = net if n == 0 else snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=16, calibrate_bias_group=n)
        if n:
            assert r["groups"] == ref.graph.meta["bias_calibration"]["groups"]
        pred = ref.run(xs, 32, progress=False).predictions
        assert sorted(r["ok_at"]) == ["16", "32"]
        for t in (16, 32):
            ok = (pred[:, t - 1] == ys).astype(int)
            assert r["ok_at"][str(t)] == ok.tolist()
            assert r["loss_at"][str(t)][0] == pytest.approx(100 * (np.mean(res["ann_ok"]) - ok.mean()))
    assert res["runs"][0]["diff_at"]["32"] == [0.0, 0.0]
    d = 100 * (np.mean(res["runs"][1]["ok_at"]["32"]) - np.mean(res["runs"][0]["ok_at"]["32"]))
    assert res["runs"][1]["diff_at"]["32"][0] == pytest.approx(d)
    assert "48 held-out calibration images" in capsys.readouterr().out


def test_a_calibrated_snn_is_refused_in_one_line(tmp_path, capsys):
    import snncc
    p = str(tmp_path / "bc.snn")
    snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=8).save(p)
    assert bias_groups.main([p, "--data", CALIB, "-T", "8", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "already bias-calibrated" in err and "--calibrate-bias 0" in err and "\n" not in err


def test_checkpoints():
    assert bias_groups.checkpoints(128) == [16, 32, 64, 128]
    assert bias_groups.checkpoints(100) == [16, 32, 64, 100]
    assert bias_groups.checkpoints(8) == [8]
