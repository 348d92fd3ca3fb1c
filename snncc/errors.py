"""User-facing errors: one line naming the problem and the fix.

The CLI prints ``error: <message> (fix: <hint>)`` and exits non-zero, with no
traceback; the Python API raises the same exceptions.
"""
from __future__ import annotations


class SnnccError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f" (fix: {self.hint})" if self.hint else "")


class ModelError(SnnccError):
    """The ONNX model cannot be read or converted faithfully."""


class UnsupportedOpError(ModelError):
    """One or more ops have no handler; ``ops`` lists (op_type, node name, opset)."""

    def __init__(self, ops: list[tuple[str, str, int]], hint: str | None = None):
        self.ops = ops
        listing = "; ".join(f"{t} (node {n!r}, opset {v})" for t, n, v in ops)
        super().__init__(f"unsupported ONNX ops: {listing}", hint or
                         "replace them with supported ops (see docs/supported_ops.md) before exporting")


class DataError(SnnccError):
    """Calibration/test data is missing, malformed or does not fit the model."""


class SnnFileError(SnnccError):
    """A .snn file is missing, corrupt or of an unsupported format version."""


def one_line(e: BaseException | str, limit: int = 240) -> str:
    """A message (an exception's, whole: checker messages put the node on later lines) on one line,
    cut at a word boundary to at most ``limit`` characters; the exception's type when it has none."""
    s = " ".join(str(e).split())
    if not s:
        return type(e).__name__ if isinstance(e, BaseException) else ""
    return s if len(s) <= limit else s[:limit].rsplit(" ", 1)[0] + " ..."
