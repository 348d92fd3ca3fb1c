"""benchmarks/paper_tables.py: cached runs are reused only for their own settings; texts quote the saved runs."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import paper_tables  # noqa: E402


def test_cached_run_only_for_the_same_images_T_and_calib_limit(tmp_path):
    p = tmp_path / "resnet20_paper.json"
    assert paper_tables._cached_run(str(p), 1000, 350, 2000) is None
    p.write_text(json.dumps({"images": 1000, "T": 350, "calib_limit": 2000, "accuracy_at": {"350": 0.8}}))
    assert paper_tables._cached_run(str(p), 1000, 350, 2000)["accuracy_at"]["350"] == 0.8
    assert paper_tables._cached_run(str(p), 300, 350, 2000) is None       # other test subset
    assert paper_tables._cached_run(str(p), 1000, 256, 2000) is None      # other T
    assert paper_tables._cached_run(str(p), 1000, 350, 500) is None       # other calibration set


def _heldout(path, depth, zetas_diffs):
    runs = [{"zeta": z, "loss": 1.5 - d, "loss_se": 0.6, "diff": d, "diff_se": 0.7} for z, d in zetas_diffs]
    with open(os.path.join(path, f"resnet{depth}_paper-nocomp_zeta_heldout_1024_T350.json"), "w") as f:
        json.dump({"images": 1024, "T": 350, "runs": runs}, f)


def test_zeta_heldout_text_quotes_the_saved_runs(tmp_path):
    assert paper_tables._zeta_heldout_text(str(tmp_path)) == ""
    _heldout(tmp_path, 20, [(1.0, 0.0), (1.0213, 2.64)])
    txt = paper_tables._zeta_heldout_text(str(tmp_path))
    assert "ResNet-20 (1024 images, T=350) zeta 1: loss 1.50 +- 0.60, zeta 1.0213: loss -1.14 +- 0.60 " \
           "(+2.64 +- 0.70 against zeta 1)" in txt
    assert "costs" not in txt and "carry over to images the search never saw" in txt
    _heldout(tmp_path, 56, [(1.0, 0.0), (1.005, -0.5), (1.0135, -2.5)])
    txt = paper_tables._zeta_heldout_text(str(tmp_path))
    assert "zeta 1.0135: loss 4.00 +- 0.60 (-2.50 +- 0.70 against zeta 1)" in txt
    assert "helps ResNet-20 on these images but costs ResNet-56 accuracy" in txt and "carry over to images" not in txt


def test_paired_text_uses_per_image_predictions_when_both_runs_have_them():
    a = {"timesteps": 8, "labels": [0, 1, 2, 3], "predictions": [0, 1, 0, 0], "image_indices": [0, 1, 2, 3]}
    b = dict(a, predictions=[0, 1, 2, 0])
    assert paper_tables._paired_text(a, b, "A", "B") == "at T=8, B minus A: +25.00 +- 25.00 points, paired on the same images"
    assert "standard errors" in paper_tables._paired_text({"timesteps": 8}, b, "A", "B")
