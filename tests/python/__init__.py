"""Tests of the Python binding (examples/python/hma.py), run by `make test` as
`python3 -m unittest discover -s tests/python -t .` with HMA_LIBRARY set.
Shared setup lives here: the module path, the toy pair and a temp folder."""
import os
import shutil
import sys
import tempfile
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples", "python"))

import hma  # noqa: E402  (needs the path above)

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

TOY = os.environ.get("HMA_TOY_DIR") or os.path.join(ROOT, "examples", "data", "toy-llama")
BASE = os.path.join(TOY, "base.safetensors")
ALIGNED = os.path.join(TOY, "aligned.safetensors")

__all__ = ["ROOT", "TOY", "BASE", "ALIGNED", "hma", "np", "needs_numpy", "TempDirCase", "write_raw"]

needs_numpy = unittest.skipIf(np is None, "numpy is not importable")


class TempDirCase(unittest.TestCase):
    """A TestCase with self.tmp, a fresh folder removed after each test."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="hma-py-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)


def write_raw(path, header, data=b""):
    """A safetensors file from a raw JSON header (str or bytes) and data bytes."""
    if isinstance(header, str):
        header = header.encode()
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + data)
