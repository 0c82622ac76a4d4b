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

import json
import struct

import torch

try:
    from safetensors.torch import load_file, save_file
    import safetensors
    LOADER = "safetensors " + safetensors.__version__
except ImportError:
    # Debian 12 packages PyTorch (1.13) but not safetensors: read and write
    # the format the way safetensors.torch does (whole file in, tensors copied
    # out; header + raw bytes out), so the timing still measures PyTorch.
    LOADER = "built-in safetensors reader (no safetensors package)"
    _DT = {"BF16": torch.bfloat16, "F16": torch.float16, "F32": torch.float32, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
           "U8": torch.uint8, "BOOL": torch.bool}
    _NAME = {v: k for k, v in _DT.items()}

    def load_file(path):
        with open(path, "rb") as f:
            buf = bytearray(f.read())
        n = struct.unpack("<Q", buf[:8])[0]
        header = json.loads(buf[8:8 + n])
        out = {}
        for k, v in header.items():
            if k == "__metadata__":
                continue
            b, e = v["data_offsets"]
            dt = _DT[v["dtype"]]
            count = (e - b) // torch.tensor([], dtype=dt).element_size()
            t = torch.frombuffer(buf, dtype=dt, count=count, offset=8 + n + b) if count else torch.empty(0, dtype=dt)
            out[k] = t.reshape(v["shape"]).clone()
        return out

    def save_file(tensors, path, metadata=None):
        header, off = {}, 0
        if metadata:
            header["__metadata__"] = metadata
        names = sorted(tensors)
        for k in names:
            t = tensors[k]
            nb = t.numel() * t.element_size()
            header[k] = {"dtype": _NAME[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + nb]}
            off += nb
        h = json.dumps(header, separators=(",", ":")).encode()
        h += b" " * (-len(h) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(h)))
            f.write(h)
            for k in names:
                t = tensors[k].contiguous()
                iv = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
                f.write(t.view(iv).numpy().tobytes())


def verify(merged, path, top=None):
    """Compare the tensors `merged` with the file at `path` bit for bit and
    print "differing_elements N" (-1: the key sets differ) and
    "differing_fraction F". Per tensor that differs: every one in file order
    (top None), or the `top` with the largest differing fractions."""
    h = load_file(path)
    diff = total = 0
    per = []
    if set(h) != set(merged):
        print("key sets differ: %d vs %d" % (len(h), len(merged)))
        diff = -1
    else:
        for k in merged:
            p, q = merged[k], h[k]
            total += p.numel()
            if p.dtype != q.dtype or p.shape != q.shape:
                print("%s: %s %s vs %s %s" % (k, p.dtype, tuple(p.shape), q.dtype, tuple(q.shape)))
                diff += p.numel()
                continue
            # compare bits, not values (NaN != NaN, -0 == 0)
            iv = {2: torch.int16, 4: torch.int32, 8: torch.int64}[p.element_size()]
            n = int((p.view(iv) != q.view(iv)).sum())
            if n:
                if top is None:
                    print("%s: %d of %d elements differ" % (k, n, p.numel()))
                per.append((n / p.numel(), k, n, p.numel()))
            diff += n
        if top is not None:
            for frac, k, n, numel in sorted(per, reverse=True)[:top]:
                print("%s: %d of %d elements differ (%.2f %%)" % (k, n, numel, 100.0 * frac))
            if len(per) > top:
                print("(%d more tensors differ)" % (len(per) - top))
    print("differing_elements %d" % diff)
    if diff >= 0 and total:
        print("differing_fraction %.6f" % (diff / total))


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
    print("torch %s (%s), %d threads, peak RSS %.0f MiB" % (
        torch.__version__, LOADER, torch.get_num_threads(),
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))
    del x, y
    sys.stdout.flush()

    if args.verify:
        verify(merged, args.verify)


if __name__ == "__main__":
    main()
