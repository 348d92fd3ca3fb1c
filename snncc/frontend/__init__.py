"""ONNX front end: ``import_onnx(model) -> Graph`` (op level, channels-last).

* :func:`load_model` -- read a path / bytes / ModelProto, resolve external data,
  check it, infer shapes (:class:`snncc.errors.ModelError` on any problem);
* :func:`import_onnx` -- fold constants, check every op, convert with one
  handler per ONNX op (:mod:`snncc.frontend.handlers`);
* :func:`scan_unsupported` -- every node that cannot be converted;
* :func:`supported_ops` -- the ONNX op types handled.

A trailing Softmax/LogSoftmax after the logits is dropped (the argmax is
unchanged); ``graph.meta['output_name']`` then names the logits tensor and
``meta['onnx_output_name']`` the model's own output.
"""
from snncc.frontend import handlers as _handlers  # noqa: F401 - registers the op handlers
from snncc.frontend.importer import import_onnx, scan_unsupported
from snncc.frontend.loader import load_model
from snncc.frontend.registry import supported_ops

__all__ = ["import_onnx", "load_model", "scan_unsupported", "supported_ops"]
