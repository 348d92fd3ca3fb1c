"""snncc: compile ONNX ResNets and CNNs into integrate-and-fire spiking networks."""
from snncc.errors import DataError, ModelError, SnnccError, SnnFileError, UnsupportedOpError
from snncc.ir import EdgeKind, Graph, Node, Synapse, verify
from snncc.api import SpikingNetwork, convert, load

__version__ = "0.1.0"

__all__ = ["convert", "load", "SpikingNetwork", "Graph", "Node", "Synapse", "EdgeKind", "verify", "SnnccError", "ModelError",
           "UnsupportedOpError", "DataError", "SnnFileError", "__version__"]
