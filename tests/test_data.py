import numpy as np
import pytest

from snncc import data
from snncc.errors import DataError


def test_load_npz_and_npy(tmp_path):
    x = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([1, 2]))
    gx, gy = data.load_arrays(str(tmp_path / "d.npz"))
    assert np.array_equal(gx, x) and gy.tolist() == [1, 2]
    np.save(tmp_path / "d.npy", x)
    gx, gy = data.load_arrays(str(tmp_path / "d.npy"))
    assert np.array_equal(gx, x) and gy is None


@pytest.mark.parametrize("bad", ["missing", "garbage", "nokey", "nan", "shape", "labels"])
def test_bad_data_is_one_line_error(tmp_path, bad):
    p = tmp_path / "d.npz"
    if bad == "garbage":
        p.write_bytes(b"not a numpy file at all")
    elif bad == "nokey":
        np.savez(p, images=np.zeros((2, 1, 4, 4)))
    elif bad == "nan":
        x = np.zeros((3, 1, 4, 4), np.float32)
        x[1, 0, 2, 2] = np.nan
        np.savez(p, x=x)
    elif bad == "shape":
        np.savez(p, x=np.zeros((4, 16)))
    elif bad == "labels":
        np.savez(p, x=np.zeros((4, 1, 4, 4)), y=np.zeros(3, dtype=np.int64))
    with pytest.raises(DataError) as e:
        data.load_arrays(str(p))
    msg = str(e.value)
    assert "\n" not in msg and "fix:" in msg
    if bad == "nan":
        assert "NaN" in msg and "1 of 3" in msg


def test_channels_last_transpose_and_log():
    msgs = []
    x = np.random.default_rng(0).random((2, 3, 5, 7)).astype(np.float32)  # NCHW
    out = data.to_channels_last(x, (5, 7, 3), "NCHW", log=msgs.append)
    assert out.shape == (2, 5, 7, 3) and np.array_equal(out, x.transpose(0, 2, 3, 1)) and not msgs
    out = data.to_channels_last(x, (5, 7, 3), "NHWC", log=msgs.append)
    assert out.shape == (2, 5, 7, 3) and len(msgs) == 1 and "transposed" in msgs[0]
    gray = np.zeros((4, 8, 8))
    assert data.to_channels_last(gray, (8, 8, 1)).shape == (4, 8, 8, 1)
    with pytest.raises(DataError, match="expects"):
        data.to_channels_last(np.zeros((2, 3, 6, 6)), (5, 5, 3))


def test_subset_is_seeded_and_random():
    x = np.arange(100)[:, None, None, None] * np.ones((1, 1, 2, 2))
    y = np.arange(100)
    a, ay = data.subset(x, y, 10)
    b, by = data.subset(x, y, 10)
    assert np.array_equal(ay, by) and len(set(ay.tolist())) == 10
    assert ay.tolist() != list(range(10))          # not simply the first images
    assert np.array_equal(a[:, 0, 0, 0], ay)


def test_subset_indices_are_what_subset_takes():
    x = np.arange(50)[:, None, None, None] * np.ones((1, 1, 2, 2))
    y = np.arange(50)
    idx = data.subset_indices(50, 7)
    assert np.array_equal(data.subset(x, y, 7)[1], idx) and np.all(np.diff(idx) > 0)
    assert np.array_equal(data.subset_indices(50, None), np.arange(50))
    assert np.array_equal(data.subset_indices(50, 80), np.arange(50))
    with pytest.raises(DataError, match="positive"):
        data.subset_indices(50, 0)


def test_fit_batch_keeps_a_batch_within_the_budget():
    from snncc import data
    assert data.fit_batch(64, 1 << 20) == 64                    # small images: the request
    assert data.fit_batch(64, 300 << 20) == (2 << 30) // (300 << 20) == 6
    assert data.fit_batch(64, 10 << 30) == 1                    # never below one image
    assert data.fit_batch(5, 1 << 20, budget=3 << 20) == 3
    assert data.fit_batch(5, 0) == 5
