"""passes/dump.py: the text --dump-ir writes, line for line."""
import numpy as np

from snncc.ir import EdgeKind, Graph, Node, Synapse
from snncc.passes.dump import dump_text


def _tiny():
    g = Graph()
    g.add_node(Node("in", "input", (2, 2, 1)))
    g.add_node(Node("a", "neuron", (2, 2, 1), params={"bias": np.array([0.25], np.float32)}, onnx_tensor="/relu"))
    g.add_node(Node("out", "output", (2,), params={"bias": np.array([0.5, -0.5], np.float32)}))
    g.add_edge("in", "a", EdgeKind.SHORTCUT, syn=Synapse("identity", {}, {"scale": np.array([1.0], np.float32)}))
    g.add_edge("a", "out", EdgeKind.SYNAPSE,
               syn=Synapse("dense", {}, {"weight": np.array([[1, 0], [0, 1], [2, 3], [-1, 4]], np.float32)}))
    g.meta = {"zeta": 1.02, "preprocess": {"scale": 0.5, "mean": None, "std": None}}
    return g


def test_dump_text_exact():
    assert dump_text(_tiny(), "tiny") == (
        "# tiny\n"
        "# 3 nodes, 2 edges, ops {'input': 1, 'neuron': 1, 'output': 1}\n"
        "# meta preprocess: {'scale': 0.5, 'mean': None, 'std': None}\n"       # meta keys sorted
        "# meta zeta: 1.02\n"
        "in: input shape=(2, 2, 1) attrs={}\n"
        "a: neuron shape=(2, 2, 1) attrs={} onnx=/relu\n"
        "    param bias (1,) float32 [0.25, 0.25]\n"
        "    <- in [shortcut port=0] syn=identity attrs={} scale=(1,) float32 [1, 1]\n"
        "out: output shape=(2,) attrs={}\n"
        "    param bias (2,) float32 [-0.5, 0.5]\n"
        "    <- a [synapse port=0] syn=dense attrs={} weight=(4, 2) float32 [-1, 4]\n")


def test_dump_text_shortens_long_values():
    g = _tiny()
    g.node("a").attrs["cap"] = [float(v) for v in range(1, 11)]        # more than 8 values: a summary
    g.node("a").params["empty"] = np.zeros((0,), np.float32)
    g.meta["lambda"] = {f"n{i}": 1.0 for i in range(7)}                # a dict of more than 6 entries
    g.meta["note"] = "x" * 300                                           # a repr over 200 characters
    lines = dump_text(g).splitlines()
    assert lines[0] == "# IR"
    assert "# meta lambda: {7 entries}" in lines
    assert "# meta note: '" + "x" * 196 + "..." in lines
    assert "a: neuron shape=(2, 2, 1) attrs={cap=[10 values, 1..10]} onnx=/relu" in lines
    assert "    param empty (0,) float32 (empty)" in lines
