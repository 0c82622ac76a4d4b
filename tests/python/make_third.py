#!/usr/bin/python3
"""make_third.py - a third toy checkpoint for the 3-model tests of the mergekit methods.

third = bf16(base + 0.5 (aligned - base) * keep + noise): half of the alignment delta
on a random 60% of the elements, plus noise of about one BF16 ulp of each base value
(relative 2^-8, normal), so that the three task vectors point in different
directions and disagree in sign where TIES elects one. Deterministic (numpy's
PCG64 with a fixed seed per tensor), numpy only.

Usage: make_third.py BASE.safetensors ALIGNED.safetensors OUT.safetensors [SEED]
"""
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402


def make_third(base_path, aligned_path, out_path, seed=3):
    b = st_io.SafeTensors(base_path)
    a = st_io.SafeTensors(aligned_path)
    out = {}
    for name in b.names():
        x0, x1 = b.f32(name), a.f32(name)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        keep = (rng.random(x0.shape) < 0.6).astype(np.float32)
        noise = (rng.standard_normal(x0.shape) * np.abs(x0) * 2.0 ** -8).astype(np.float32)
        out[name] = ("BF16", x0 + np.float32(0.5) * (x1 - x0) * keep + noise)
    st_io.write(out_path, out, {"format": "pt"})


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    make_third(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) == 5 else 3)
