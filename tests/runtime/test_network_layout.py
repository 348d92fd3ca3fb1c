"""The runtime program's memory layout: what the kernels' 16-float vectors touch starts on 64-byte lines."""
import numpy as np
import pytest

from rt_nets import random_resnet
from snncc.runtime import Network
from snncc.runtime import kernels as K
from snncc.runtime.network import ALIGN, aligned


@pytest.mark.parametrize("shape,dtype,fill", [((7,), np.float32, 0.0), ((3, 37), np.float32, 0.5), ((2, 5), np.int64, 7)])
def test_aligned_arrays(shape, dtype, fill):
    for _ in range(5):                            # whatever numpy's allocator hands out
        a = aligned(shape, dtype, fill)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.ctypes.data % 64 == 0 and (a == fill).all()


def test_program_blocks_start_on_cache_lines():
    g, _ = random_resnet(3, hw=6, c0=1, c1=3, c2=5)          # odd sizes everywhere
    net = Network(g)
    pr = net._prog
    assert pr.wts.ctypes.data % 64 == 0 and pr.cbias.ctypes.data % 64 == 0
    assert pr.NV % ALIGN == 0 and pr.N0 % ALIGN == 0 and pr.cbias.size == pr.NV
    weighted = {K.E_CONV, K.E_CONV_W1, K.E_DENSE, K.E_IDENTITY}
    offs = [int(e[K.E_OFF0]) for e in pr.edges if int(e[K.E_KIND]) in weighted]
    assert offs and all(o % ALIGN == 0 for o in offs)
    neurons = [p for p in net.pops if p.op == "neuron"]
    assert any(p.size % ALIGN for p in neurons)               # padding was needed
    for p in neurons:
        assert p.v_off % ALIGN == 0
        assert np.array_equal(pr.cbias[p.v_off:p.v_off + p.size], np.tile(p.bias, p.size // p.channels))


def test_state_arrays_passed_to_the_kernel_are_aligned(monkeypatch):
    g, x = random_resnet(3, hw=6, c0=1, c1=3, c2=5)
    net = Network(g)
    seen = []
    real = K.run_steps

    def spy(*args):
        V, I0 = args[12], args[15]
        seen.append((V.ctypes.data % 64, V.shape[1] % ALIGN, I0.ctypes.data % 64, I0.shape[1] % ALIGN))
        return real(*args)

    monkeypatch.setattr(K, "run_steps", spy)
    net.run(x, 6, progress=False)
    assert seen and all(s == (0, 0, 0, 0) for s in seen)


def test_batches_shrink_to_the_memory_budget_with_identical_results(monkeypatch):
    """A batch's working memory is bounded (snncc.data.BATCH_BYTES): with a budget of three images the
    run takes batches of three -- and, images being independent, gives exactly the same result."""
    from snncc import data
    g, x = random_resnet(4, hw=6, c0=1, c1=3, c2=5)
    x = np.concatenate([x, x[::-1], x])
    net = Network(g)
    ref = net.run(x, 7, progress=False, record=("r1",))
    sizes = []
    real = net._run_batch

    def spy(xb, *a, **k):
        sizes.append(xb.shape[0])
        return real(xb, *a, **k)

    monkeypatch.setattr(net, "_run_batch", spy)
    monkeypatch.setattr(data, "BATCH_BYTES", 3 * net.image_bytes() + 1)
    res = net.run(x, 7, progress=False, record=("r1",))
    assert sizes == [3] * (len(x) // 3) + ([len(x) % 3] if len(x) % 3 else [])
    assert np.array_equal(res.predictions, ref.predictions) and np.array_equal(res.rates["r1"], ref.rates["r1"])
    assert np.array_equal(res.potentials, ref.potentials) and res.sops.keys() == ref.sops.keys()
    assert all(np.array_equal(res.sops[k], ref.sops[k]) for k in ref.sops)
    sizes.clear()
    names = [p.name for p in net.pops]
    _, tr = net.run_segment(x, 7, names[0], names[2], replay={}, keep=[names[2]])
    assert sizes and max(sizes) < 3          # the kept spike trains count too
    monkeypatch.setattr(data, "BATCH_BYTES", 2 << 30)
    _, tr_ref = net.run_segment(x, 7, names[0], names[2], replay={}, keep=[names[2]])
    assert np.array_equal(tr[names[2]], tr_ref[names[2]])
