"""benchmarks/merge_evals.py: parts of a data set and the merged evaluation."""
import json
import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import merge_evals  # noqa: E402


def test_split_covers_every_image_once(tmp_path):
    x = np.arange(7 * 2).reshape(7, 2)
    y = np.arange(7)
    np.savez(tmp_path / "d.npz", x=x, y=y, classes=np.array(["a", "b"]))
    merge_evals.split(str(tmp_path / "d.npz"), 3, str(tmp_path / "parts"))
    parts = [np.load(tmp_path / "parts" / f"part{i}.npz") for i in range(3)]
    assert np.array_equal(np.concatenate([p["y"] for p in parts]), y)
    assert np.array_equal(np.concatenate([p["x"] for p in parts]), x)
    assert all(list(p["classes"]) == ["a", "b"] for p in parts)


def _part(n, ann, snn, se, rate):
    return {"timesteps": 8, "images": n, "snn_accuracy": snn, "accuracy_at": {"4": snn - 0.1, "8": snn},
            "ann_agreement_at": {"4": 0.5, "8": 0.9}, "ann_accuracy": ann,
            "loss_standard_error_at": {"4": se, "8": se}, "sops_per_image": 100.0 * n, "spikes_per_image": 10.0,
            "mean_steps_run": 8.0, "energy_snn_uj": 1.0, "ann_macs_per_image": 5, "energy_ann_uj": 2.0,
            "early_exit": False, "threads": 2, "seconds_per_image": 0.5,
            "layers": {"a": {"op": "neuron", "neurons": 4, "firing_rate": rate}}}


def _write(tmp_path, parts):
    """Each part as p<i>.json; their paths."""
    paths = []
    for i, d in enumerate(parts):
        paths.append(str(tmp_path / f"p{i}.json"))
        with open(paths[-1], "w") as f:
            json.dump(d, f)
    return paths


def test_merge_weights_by_images(tmp_path):
    paths = []
    for i, d in enumerate([_part(100, 0.9, 0.8, 0.02, 0.1), _part(300, 0.7, 0.7, 0.01, 0.3)]):
        paths.append(str(tmp_path / f"p{i}.json"))
        with open(paths[-1], "w") as f:
            json.dump(d, f)
    merge_evals.merge(str(tmp_path / "m.json"), paths)
    m = json.load(open(tmp_path / "m.json"))
    assert m["images"] == 400
    assert m["snn_accuracy"] == pytest.approx((100 * 0.8 + 300 * 0.7) / 400)
    assert m["ann_accuracy"] == pytest.approx((100 * 0.9 + 300 * 0.7) / 400)
    assert m["accuracy_at"]["4"] == pytest.approx((100 * 0.7 + 300 * 0.6) / 400)
    assert m["loss_standard_error_at"]["8"] == pytest.approx(math.sqrt((100 * 0.02) ** 2 + (300 * 0.01) ** 2) / 400)
    assert m["sops_per_image"] == pytest.approx((100 * 100 * 100 + 300 * 100 * 300) / 400)
    assert m["layers"]["a"]["firing_rate"] == pytest.approx((100 * 0.1 + 300 * 0.3) / 400)
    assert m["layers"]["a"]["neurons"] == 4
    assert m["seconds_per_image"] is None
    assert m["merged_from"] == ["p0.json", "p1.json"]
    assert "late_gain" not in m                       # runs from before late_gain existed


def test_merge_late_gain(tmp_path):
    parts = [_part(100, 0.9, 0.8, 0.02, 0.1), _part(300, 0.7, 0.7, 0.01, 0.3)]
    parts[0]["late_gain"] = {"from_step": 4, "gain": 0.01, "standard_error": 0.02, "still_rising": False}
    parts[1]["late_gain"] = {"from_step": 4, "gain": 0.02, "standard_error": 0.005, "still_rising": True}
    paths = _write(tmp_path, parts)
    merge_evals.merge(str(tmp_path / "m.json"), paths)
    lg = json.load(open(tmp_path / "m.json"))["late_gain"]
    assert lg["from_step"] == 4 and lg["gain"] == pytest.approx((100 * 0.01 + 300 * 0.02) / 400)
    assert lg["standard_error"] == pytest.approx(math.sqrt((100 * 0.02) ** 2 + (300 * 0.005) ** 2) / 400)
    assert lg["still_rising"]                         # 0.0175 > 2 x 0.00625


def test_merge_refuses_different_T(tmp_path):
    a, b = _part(10, 0.9, 0.8, 0.02, 0.1), _part(10, 0.9, 0.8, 0.02, 0.1)
    b["timesteps"] = 16
    for name, d in (("a.json", a), ("b.json", b)):
        with open(tmp_path / name, "w") as f:
            json.dump(d, f)
    with pytest.raises(SystemExit, match="different T"):
        merge_evals.merge(str(tmp_path / "m.json"), [str(tmp_path / "a.json"), str(tmp_path / "b.json")])


def test_split_refuses_more_parts_than_images(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 2)), y=np.arange(3))
    with pytest.raises(ValueError, match="3 images, fewer than the 5 parts"):
        merge_evals.split(str(tmp_path / "d.npz"), 5, str(tmp_path / "parts"))
    assert not (tmp_path / "parts").exists()


def test_merge_per_image_lists(tmp_path):
    parts = [_part(3, 0.9, 0.8, 0.02, 0.1), _part(2, 0.7, 0.7, 0.01, 0.3)]
    parts[0].update(image_indices=[0, 1, 2], labels=[1, 2, 3], predictions=[1, 0, 3])
    parts[1].update(image_indices=[0, 1], labels=[4, 5], predictions=[4, 5])
    paths = _write(tmp_path, parts)
    merge_evals.merge(str(tmp_path / "m.json"), paths)
    m = json.load(open(tmp_path / "m.json"))
    assert m["labels"] == [1, 2, 3, 4, 5] and m["predictions"] == [1, 0, 3, 4, 5]
    assert m["image_indices"] == [0, 1, 2, 3, 4]            # whole consecutive parts: indices into the split file
    parts[1]["image_indices"] = [1, 0]                        # a --limit subset of a part: no file indices
    with open(paths[1], "w") as f:
        json.dump(parts[1], f)
    merge_evals.merge(str(tmp_path / "m.json"), paths)
    assert json.load(open(tmp_path / "m.json"))["image_indices"] is None
