"""The explicit vector kernels (runtime/simd.py) compute the scalar code's float32 operations
bit for bit, and the IF update's vector path equals the scalar one."""
import numpy as np
import pytest
from numba import njit

from snncc.runtime import kernels as K
from snncc.runtime.simd import FIRE8_LUT, HAS_VECTOR_COMPRESS, LANES, if_fire8, if_fire16, vadd1, vadd2, vadd4

needs_compress = pytest.mark.skipif(not HAS_VECTOR_COMPRESS, reason="LLVM < 19: no vector compress (scalar IF path)")


@njit
def _vadd(dst, d, src, offs):
    if offs.shape[0] == 1:
        vadd1(dst, d, src, offs[0])
    elif offs.shape[0] == 2:
        vadd2(dst, d, src, offs[0], offs[1])
    else:
        vadd4(dst, d, src, offs[0], offs[1], offs[2], offs[3])


@njit
def _fire(V, cur, idx, i, k):
    return if_fire16(V, cur, idx, i, k)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_vadd_matches_numpy(n):
    rng = np.random.default_rng(n)
    src = rng.standard_normal(200).astype(np.float32)
    dst = rng.standard_normal(100).astype(np.float32)
    offs = rng.integers(0, 200 - LANES, size=n)
    d = 37                                          # unaligned on purpose
    want = dst.copy()
    rows = [src[o:o + LANES] for o in offs]
    if n == 1:
        s = rows[0]
    elif n == 2:
        s = rows[0] + rows[1]
    else:
        s = (rows[0] + rows[1]) + (rows[2] + rows[3])
    want[d:d + LANES] += s
    _vadd(dst, d, src, offs)
    assert np.array_equal(dst, want)                # the rest untouched, the block bit-identical


def test_vadd_rejects_non_contiguous():
    from numba.core.errors import TypingError
    dst = np.zeros(64, np.float32)
    with pytest.raises(TypingError):
        _vadd(dst[::2], 0, dst, np.zeros(1, np.int64))


@njit
def _fire8(V, cur, idx, i, k):
    return if_fire8(V, cur, idx, FIRE8_LUT, i, k)


def test_fire8_lut_lists_each_masks_lanes():
    for m in (0, 1, 0b10110010, 255):
        lanes = [b for b in range(8) if m >> b & 1]
        assert FIRE8_LUT[m, :len(lanes)].tolist() == lanes and not FIRE8_LUT[m, len(lanes):].any()


@pytest.mark.parametrize("lanes", [pytest.param(16, marks=needs_compress), 8])
def test_if_fire_matches_scalar_equations(lanes):
    """if_fire16 / if_fire8 on two blocks written one after the other: the scalar loop's V, the fired
    indices in increasing order from idx[k], nothing else touched."""
    fire = _fire if lanes == 16 else _fire8
    n = 3 * lanes
    rng = np.random.default_rng(lanes)
    V = rng.uniform(-0.5, 1.5, n).astype(np.float32)
    cur = rng.uniform(-0.2, 0.6, n).astype(np.float32)
    V[5] = np.float32(1.0) - cur[5]                  # lands exactly on the threshold: fires
    idx = np.full(n, -7, np.int32)
    want_v = V + cur
    fired = want_v >= np.float32(1.0)
    want_v = want_v - fired.astype(np.float32)
    rest = V[2 * lanes:].copy()
    k = fire(V, cur, idx, lanes, 3)                  # neurons lanes..2*lanes-1, written from idx[3]
    k0 = fire(V, cur, idx, 0, 3 + k)
    assert k == fired[lanes:2 * lanes].sum() and k0 == fired[:lanes].sum() and fired[5]
    assert np.array_equal(idx[3:3 + k], np.flatnonzero(fired[lanes:2 * lanes]) + lanes)
    assert np.array_equal(idx[3 + k:3 + k + k0], np.flatnonzero(fired[:lanes]))
    assert (idx[:3] == -7).all()
    assert np.array_equal(V[:2 * lanes], want_v[:2 * lanes]) and np.array_equal(V[2 * lanes:], rest)


@pytest.mark.parametrize("size", [1, 7, 8, 9, 15, 16, 17, 100, 1027])
def test_if_update_vector_paths_equal_scalar(size):
    rng = np.random.default_rng(size)
    paths = [K._if_update_scalar, K._if_update_lut] + ([K._if_update_vec] if HAS_VECTOR_COMPRESS else [])
    for rate in (0.0, 0.03, 0.5, 1.0):
        V0 = rng.uniform(0, 1, size).astype(np.float32)
        cur = (rng.uniform(0, 2 * rate, size)).astype(np.float32)
        out = []
        for f in paths:
            V = V0.copy()
            idx = np.zeros(size, np.int32)
            cn = np.zeros(size, np.int32)
            ks = []
            for _ in range(5):
                k = f(V, cur, np.zeros(size, np.uint8), idx, cn, True)
                ks.append((k, idx[:k].copy()))
            out.append((V, cn, ks))
        (Va, ca, ka) = out[0]
        for Vb, cb, kb in out[1:]:
            assert np.array_equal(Va, Vb) and np.array_equal(ca, cb)
            for (k1, i1), (k2, i2) in zip(ka, kb):
                assert k1 == k2 and np.array_equal(i1, i2)
        assert ca.sum() == sum(k for k, _ in ka)


def test_host_has_compress_follows_numba_target(monkeypatch):
    """The vector IF path only where numba generates AVX-512F code (and LLVM has the compress)."""
    from numba.core import config
    from snncc.runtime import simd
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+fma")
    assert simd.host_has_compress() is False
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx2,+avx512f")
    assert simd.host_has_compress() is HAS_VECTOR_COMPRESS
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.setattr(config, "CPU_NAME", "generic")
    assert simd.host_has_compress() is False
    assert K._if_update is (K._if_update_vec if K.VEC_COMPRESS else K._if_update_lut)
