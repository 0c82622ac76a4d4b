#!/usr/bin/python3
"""fake_hma.py - a stand-in for `hma merge --config` built on mk_reference.py, to check
tests/test_mergekit_methods.py itself (dev tool, not a test): with it every case must
pass, and with FAKE_HMA_PERTURB=ulp (one element of each tensor moved by one float32
ulp before the output rounding) or =bf16 (one element moved by one BF16 ulp after it)
the exact cases must fail.

Usage: tests/test_mergekit_methods.py --hma tests/python/fake_hma.py
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mk_reference as R  # noqa: E402
import st_io  # noqa: E402

DT = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def main():
    if sys.argv[1:2] != ["merge"]:
        sys.exit("fake_hma: only `merge --config`")
    if "--help" in sys.argv:
        print("usage: fake_hma merge --config RECIPE.yml -o OUT [--seed N] [--threads T]")
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("-o", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(sys.argv[2:])
    cfg = R.load_recipe(open(a.config).read())
    stores = {}

    def st(m):
        if m not in stores:
            stores[m] = st_io.SafeTensors(m)
        return stores[m]

    models = {s["model"] for sl in R.normalize_config(cfg, lambda m: R.layer_count(st(m).names()))
              for s in sl["sources"]}
    out_dt = DT.get(cfg.get("out_dtype") or cfg.get("dtype") or "")
    perturb = os.environ.get("FAKE_HMA_PERTURB", "")
    out = {}
    for job in R.plan(cfg, {m: st(m).names() for m in models}):
        xs = [st(m).f32(n) for m, n in job["sources"]]
        r = R.merge(cfg["merge_method"], xs, job["base"], job["mp"], job["gp"], name=job["out"], seed=a.seed)
        dt = out_dt or st(job["sources"][0][0]).dtype(job["sources"][0][1])
        r = np.array(r, dtype=np.float32)
        if perturb == "ulp":
            r.reshape(-1)[7] = np.nextafter(r.reshape(-1)[7], np.float32(np.inf))
        if dt == "BF16":
            bits = st_io.f32_to_bf16_bits(r)
            if perturb == "bf16":
                bits.reshape(-1)[7] += 1
            out[job["out"]] = ("BF16", bits)
        else:
            out[job["out"]] = (dt, st_io.round_to(r, dt).astype(np.float16 if dt == "F16" else np.float32))
    st_io.write(a.o, out, {"format": "pt", "fake": "1"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
