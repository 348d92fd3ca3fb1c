"""snncc.ir.verify: every invariant of its docstring is enforced with a one-line IRError."""
import numpy as np
import pytest

from snncc.ir import EdgeKind, IRError, Synapse, verify
from test_snnfile import small_graph


def _bias(v):
    def f(g):
        g.node("n1").params["bias"] = v
    return f


def _cycle(g):
    g.add_edge("n2", "n1", EdgeKind.SYNAPSE, syn=Synapse("identity", {}, {"scale": np.ones(3)}))


def _data_edge_with_synapse(g):
    g.nx.edges["in", "n2"]["kind"] = EdgeKind.DATA


def _weight(v):
    def f(g):
        g.edge("n1", "n2")["syn"].params["weight"] = v
    return f


def _declare_4_channels(g):
    g.node("n2").shape = (4, 4, 4)
    g.node("n2").params["bias"] = np.zeros(4)


def _avgpool_all_padding(g):
    g.edge("in", "n2")["syn"] = Synapse("avgpool", {"kernel": (1, 1), "stride": (1, 1), "pads": (1, 1, 0, 0)},
                                        {"scale": np.ones(3)})


def _empty_population(g):
    g.edge("in", "n2")["syn"] = Synapse("subsample_pad", {"stride": (1, 1), "offset": (9, 0), "cpad": (0, 0)},
                                        {"scale": np.ones(3)})


BROKEN = {
    "cycle": (_cycle, "cycle"),
    "unknown op": (lambda g: setattr(g.node("n2"), "op", "softplus"), "unknown op 'softplus'"),
    "NaN bias": (_bias(np.array([0.0, np.nan, 0.0])), "non-finite"),
    "string bias": (_bias(np.array(["a", "b", "c"])), "dtype <U1, not numbers"),
    "bias of the wrong length": (_bias(np.zeros(5)), "bias has shape (5,), expected (3,)"),
    "NaN cap": (lambda g: g.node("n1").attrs.__setitem__("cap", float("nan")), "cap nan"),
    "NaN weight": (_weight(np.full((3, 3, 3, 3), np.nan)), "non-finite"),
    "weight of the wrong shape": (_weight(np.zeros((3, 3, 2, 3))), "n1->n2"),
    "wrong declared shape": (_declare_4_channels, "declares shape (4, 4, 4)"),
    "DATA edge with a synapse": (_data_edge_with_synapse, "DATA edge in->n2 carries a synapse"),
    "avgpool windows of padding only": (_avgpool_all_padding, "not smaller than its kernel"),
    "empty population": (_empty_population, "leaves no positions"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_verify_names_the_broken_invariant(case):
    g = small_graph()
    verify(g)
    breaker, words = BROKEN[case]
    breaker(g)
    with pytest.raises(IRError) as e:
        verify(g)
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
