"""benchmarks/bench_calibration.py: segments and whole-prefix calibrations timed side by side, same biases."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import bench_calibration  # noqa: E402
from digits import MODEL, CALIB, PRE as PRE_KW

PRE = dict(PRE_KW, calib_limit=128, progress=False)


def test_both_ways_give_the_conversions_biases(tmp_path, capsys):
    import numpy as np

    import snncc
    net = snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=0)
    p = str(tmp_path / "nobc.snn")
    net.save(p)
    out = str(tmp_path / "c.json")
    assert bench_calibration.main([p, "--data", CALIB, "--sizes", "1,2", "--calibrate-bias", "16", "--json", out]) == 0
    res = json.load(open(out))
    assert [r["layers_per_group"] for r in res["runs"]] == [1, 2]
    for r in res["runs"]:
        assert r["same_biases"] and r["segments_seconds"] > 0 and r["prefix_seconds"] > 0
        assert r["speedup"] == pytest.approx(r["prefix_seconds"] / r["segments_seconds"])
    assert "biases identical" in capsys.readouterr().out
    # and they are the biases the conversion itself makes
    ref = snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=16, calibrate_bias_group=2)
    _, b, _ = bench_calibration.calibrate(net, net.prepare(snncc.data.subset(np.load(CALIB)["x"], None, 128)[0]), 2, 16,
                                       True)
    for k, v in b.items():
        assert np.array_equal(v, ref.graph.node(k).params["bias"]), k


@pytest.mark.parametrize("args, words", [(["--sizes", "0"], "--sizes"), (["--sizes", "a"], "--sizes")])
def test_bad_arguments_one_line(tmp_path, capsys, args, words):
    with pytest.raises(SystemExit) as e:
        bench_calibration.main([str(tmp_path / "none.snn"), "--data", CALIB] + args)
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_refuses_a_calibrated_network(tmp_path, capsys):
    import snncc
    p = str(tmp_path / "bc.snn")
    snncc.convert(MODEL, CALIB, **PRE, calibrate_bias=8).save(p)
    with pytest.raises(SystemExit) as e:
        bench_calibration.main([p, "--data", CALIB])
    assert e.value.code == 2 and "bias-calibrated already" in capsys.readouterr().err
