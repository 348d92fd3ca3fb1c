"""benchmarks/zeta_heldout.py: compensation factors re-scored on calibration images the conversion did not use."""
import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import zeta_heldout  # noqa: E402
from digits import MODEL, CALIB, PRE



def _convert(tmp_path, limit):
    import snncc
    net = snncc.convert(MODEL, CALIB, **PRE, calib_limit=limit, calibrate_bias=0, preset="paper", compensate="none",
                        progress=False)
    p = str(tmp_path / "d.snn")
    net.save(p)
    return net, p


def test_heldout_scores_match_a_direct_simulation(tmp_path, capsys):
    from snncc.data import load_arrays, subset_indices
    from snncc.passes import apply_zeta
    from snncc.runtime.network import Network
    net, p = _convert(tmp_path, 64)
    out = str(tmp_path / "z.json")
    assert zeta_heldout.main([p, "--data", CALIB, "--zetas", "1,1.2", "--images", "40", "-T", "32",
                              "--json", out, "-q"]) == 0
    res = json.load(open(out))
    idx = np.asarray(res["indices"])
    assert res["calib_limit"] == 64 and idx.size == 40 == res["images"]
    assert not set(idx.tolist()) & set(subset_indices(300, 64).tolist())     # held out
    x, y = load_arrays(CALIB)
    xs, ys = net.prepare(x[idx]), y[idx].astype(int)
    assert res["ann_ok"] == (net.analog(xs).argmax(1) == ys).astype(int).tolist()
    for r in res["runs"]:
        g = net.graph.copy()
        apply_zeta(g, r["zeta"])
        pred = Network(g).run(xs, 32, progress=False).predictions
        assert r["ok"] == (pred[:, -1] == ys).astype(int).tolist()
        assert r["ok_half"] == (pred[:, 15] == ys).astype(int).tolist()
        assert r["loss"] == pytest.approx(100 * (np.mean(res["ann_ok"]) - np.mean(r["ok"])))
    assert res["runs"][0]["diff"] == 0.0
    assert res["runs"][1]["diff"] == pytest.approx(100 * (res["runs"][1]["accuracy"] - res["runs"][0]["accuracy"]))
    assert "40 held-out calibration images" in capsys.readouterr().out
    # a compensated .snn scores the same: every factor is a total, and the loss is against zeta 1's analog view
    apply_zeta(net.graph, 1.2)
    net.save(p)
    out2 = str(tmp_path / "z2.json")
    assert zeta_heldout.main([p, "--data", CALIB, "--zetas", "1,1.2", "--images", "40", "-T", "32",
                              "--json", out2, "-q"]) == 0
    res2 = json.load(open(out2))
    assert res2["ann_ok"] == res["ann_ok"] and [r["ok"] for r in res2["runs"]] == [r["ok"] for r in res["runs"]]


def test_all_images_used_is_a_one_line_error(tmp_path, capsys):
    _, p = _convert(tmp_path, None)
    assert zeta_heldout.main([p, "--data", CALIB, "-T", "8", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the conversion used all 300 images") and "\n" not in err


def test_save_images_writes_the_heldout_images(tmp_path):
    from snncc.data import load_arrays
    _, p = _convert(tmp_path, 64)
    out = str(tmp_path / "h.npz")
    assert zeta_heldout.main([p, "--data", CALIB, "--images", "25", "--save-images", out]) == 0
    h = np.load(out)
    x, y = load_arrays(CALIB)
    assert h["x"].shape[0] == 25 and np.array_equal(h["x"], x[h["indices"]]) and np.array_equal(h["y"], y[h["indices"]])
    from snncc.data import subset_indices
    idx = np.asarray(h["indices"])
    used = subset_indices(300, 64)                  # the conversion's seeded --calib-limit 64 subset
    assert len(set(idx.tolist())) == 25 and idx.min() >= 0 and idx.max() < 300
    assert not set(idx.tolist()) & set(used.tolist())   # none of the images the conversion saw
