#!/usr/bin/env python3
"""Search per-block mixing ratios (HMA) with a Python evaluation callback.

    python3 examples/python/search.py [BASE ALIGNED] [--blocks 3] [--budget 12]

The plan merges one tensor at a time into numpy arrays (no file is written);
evaluate() turns a ratio vector into two lower-is-better scores. Replace it
with your own benchmark (alignment score, forgetting score). Here, as a
stand-in, it measures how far the merged weights move from each model:
  score 0 ("alignment loss"): mean squared distance to the aligned model,
  score 1 ("forgetting"):     mean squared distance to the base model.
The sweep evaluates plain MA at a few ratios, then searches block ratios at
the same means, and prints the Pareto front of the two scores.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hma  # noqa: E402

TOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "toy-llama")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", nargs="?", default=os.path.join(TOY, "base.safetensors"))
    ap.add_argument("aligned", nargs="?", default=os.path.join(TOY, "aligned.safetensors"))
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--budget", type=int, default=12, help="evaluations per searched mean")
    args = ap.parse_args()

    with hma.Store(args.base) as base, hma.Store(args.aligned) as aligned, \
            hma.Plan([base, aligned], groups="blocks:%d" % args.blocks) as plan:
        names = [r.name for r in plan.rows() if r.action == hma.Action.MERGE]
        x = {n: base.numpy(n, bf16="float32") for n in names}
        y = {n: aligned.numpy(n, bf16="float32") for n in names}
        count = sum(v.size for v in x.values())

        def evaluate(ratios):
            plan.set_ratios(ratios)
            d_al = d_base = 0.0
            for n in names:
                theta = plan.merge_tensor(n, bf16="float32")
                d_al += float(np.sum((theta - y[n]) ** 2, dtype=np.float64))
                d_base += float(np.sum((theta - x[n]) ** 2, dtype=np.float64))
            return [d_al / count, d_base / count]

        pts = hma.sweep(evaluate, k=plan.group_count, ma_ratios=[0.2, 0.4, 0.6, 0.8],
                        hma_means=[0.4, 0.6], budget=args.budget, n_scores=2, seed=1)
        with pts:
            print("%d evaluations; Pareto front (alignment loss, forgetting):" % len(pts))
            for i in pts.pareto(0, 1):
                p = pts[i]
                print("  %-6s ratios %s  scores %.3e %.3e" % (p.kind.name, ["%.3f" % a for a in p.ratios],
                                                          p.scores[0], p.scores[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
