#!/usr/bin/env python3
"""Average a base (pre-RLHF) and an aligned (post-RLHF) checkpoint with libhma.

    python3 examples/python/merge.py BASE ALIGNED OUT [--ratio A]
    python3 examples/python/merge.py BASE ALIGNED OUT --groups split:2,5 --ratios 0.2,0.4,0.6

A is the weight of the aligned model: theta = (1 - A) * base + A * aligned.
With no arguments it merges the toy pair in examples/data/toy-llama at 0.3.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hma  # noqa: E402

TOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "toy-llama")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", nargs="?", default=os.path.join(TOY, "base.safetensors"))
    ap.add_argument("aligned", nargs="?", default=os.path.join(TOY, "aligned.safetensors"))
    ap.add_argument("out", nargs="?", default="merged.safetensors")
    ap.add_argument("--ratio", type=float, default=0.3, help="one ratio for every layer (MA)")
    ap.add_argument("--groups", default="all", help='"all", "blocks:K", "split:S1,S2,..", "layers"')
    ap.add_argument("--ratios", help="one ratio per group, comma-separated (HMA)")
    ap.add_argument("--method", default="linear", choices=["linear", "task_arithmetic", "slerp"])
    args = ap.parse_args()

    def progress(done, total):
        print("\r%5.1f%%" % (100.0 * done / max(total, 1)), end="", file=sys.stderr, flush=True)

    try:
        with hma.Store(args.base) as base, hma.Store(args.aligned) as aligned, \
                hma.Plan([base, aligned], groups=args.groups, method=args.method) as plan:
            if args.ratios:
                plan.set_ratios([float(x) for x in args.ratios.split(",")])
            else:
                plan.set_ratio(args.ratio)
            for row in plan.rows():
                if row.action != hma.Action.MERGE:
                    print("note: %s: %s %s" % (row.name, row.action.name, row.reason), file=sys.stderr)
            t0 = time.perf_counter()
            plan.merge_to(args.out, progress=progress)
            print(file=sys.stderr)
            print("wrote %s: %d tensors, %d groups, ratios %s, mean %.4f (%.2f s)"
                  % (args.out, len(plan), plan.group_count, [round(w[1], 4) for w in plan.weights],
                     plan.mean_weights()[1], time.perf_counter() - t0))
    except hma.HmaError as e:
        print("merge.py: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a Ctrl-C in the progress callback cancels the merge cleanly
        print("\nmerge.py: cancelled, nothing written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
