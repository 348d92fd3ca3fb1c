"""Shared test helpers: paths of the committed ONNX fixtures."""
import os

import pytest

FIXTURES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


@pytest.fixture
def fixture_path():
    """``fixture_path("resnet_legacy.onnx")`` -> absolute path under tests/fixtures."""
    return lambda *parts: os.path.join(FIXTURES_DIR, *parts)
