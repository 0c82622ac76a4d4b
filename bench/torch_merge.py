#!/usr/bin/env python3
"""torch_merge.py - the way users merge today, for the benchmark: load both
state dicts with safetensors, average key by key in float32, save.

    torch_merge.py BASE ALIGNED OUT [--alpha A] [--threads N] [--verify LIBHMA_OUT]

Prints "torch_seconds S" (load + average + save) and, with --verify, compares
every tensor of LIBHMA_OUT with torch's result bit for bit and prints
"differing_elements N" (0 means libhma computed exactly what PyTorch does).
alpha is the weight of the aligned model: (1 - a) * base + a * aligned.
"""
import argparse
import resource
import sys
import time

import torch
from safetensors.torch import load_file, save_file


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("aligned")
    ap.add_argument("out")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--verify", metavar="LIBHMA_OUT")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = its default)")
    args = ap.parse_args()
    a = args.alpha
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    t0 = time.perf_counter()
    x = load_file(args.base)
    y = load_file(args.aligned)
    merged = {}
    for k in x:
        merged[k] = ((1 - a) * x[k].float() + a * y[k].float()).to(x[k].dtype)
    save_file(merged, args.out, metadata={"format": "pt"})
    t = time.perf_counter() - t0
    print("torch_seconds %.6f" % t)
    print("torch %s, %d threads, peak RSS %.0f MiB" % (
        torch.__version__, torch.get_num_threads(),
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))
    del x, y
    sys.stdout.flush()

    if args.verify:
        h = load_file(args.verify)
        diff = 0
        if set(h) != set(merged):
            print("key sets differ: %d vs %d" % (len(h), len(merged)))
            diff = -1
        else:
            for k in merged:
                p, q = merged[k], h[k]
                if p.dtype != q.dtype or p.shape != q.shape:
                    print("%s: %s %s vs %s %s" % (k, p.dtype, tuple(p.shape), q.dtype, tuple(q.shape)))
                    diff += p.numel()
                    continue
                # compare bits, not values (NaN != NaN, -0 == 0)
                iv = {2: torch.int16, 4: torch.int32, 8: torch.int64}[p.element_size()]
                n = int((p.view(iv) != q.view(iv)).sum())
                if n:
                    print("%s: %d of %d elements differ" % (k, n, p.numel()))
                diff += n
        print("differing_elements %d" % diff)


if __name__ == "__main__":
    main()
