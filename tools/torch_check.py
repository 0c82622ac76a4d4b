#!/usr/bin/env python3
"""torch_check.py - prove that what libhma writes loads in PyTorch's stack.

Run where torch, safetensors and transformers are importable:

    torch_check.py TOY_DIR MA_FILE HMA_FOLDER ALPHA

TOY_DIR holds base.safetensors, aligned.safetensors, config.json, eval.bin;
MA_FILE is `hma merge --alpha ALPHA` of the pair (one file); HMA_FOLDER is a
sharded Hugging Face folder written by `hma merge -o FOLDER --shard-size ...`.
Checks, printing one line each and exiting non-zero on any failure:
  1. safetensors.torch.load_file reads MA_FILE; every tensor equals PyTorch's
     own ((1-a)*x.float() + a*y.float()).bfloat16() bit for bit;
  2. transformers loads HMA_FOLDER (sharded index, config.json copied) and
     the base folder layout, and scores the first rows of eval.bin; the
     score of the base is printed next to the README's reference.
"""
import json
import os
import shutil
import struct
import sys
import tempfile

import torch
from safetensors.torch import load_file


def bits_differ(p, q):
    iv = {2: torch.int16, 4: torch.int32, 8: torch.int64}[p.element_size()]
    return int((p.view(iv) != q.view(iv)).sum())


def score(model, rows):
    with torch.no_grad():
        x = torch.tensor(rows, dtype=torch.long)
        logits = model(input_ids=x[:, :-1]).logits.float()
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1))
    return float(loss) / 0.6931471805599453


def main():
    toy, ma_file, hma_dir, alpha = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    ok = True
    x = load_file(os.path.join(toy, "base.safetensors"))
    y = load_file(os.path.join(toy, "aligned.safetensors"))
    h = load_file(ma_file)
    diff = total = 0
    for k in x:
        ref = ((1 - alpha) * x[k].float() + alpha * y[k].float()).to(torch.bfloat16)
        diff += bits_differ(ref, h[k])
        total += ref.numel()
    print("torch_check: MA a=%g: %d of %d elements differ from PyTorch (%d tensors, loaded by safetensors %s)"
          % (alpha, diff, total, len(h), __import__("safetensors").__version__))
    ok &= diff == 0 and set(h) == set(x)

    from transformers import AutoModelForCausalLM
    import transformers
    with open(os.path.join(toy, "eval.bin"), "rb") as f:
        n, L = struct.unpack("<II", f.read(8))
        data = f.read()
    code = [list(data[i * L:(i + 1) * L]) for i in range(8)]
    prose = [list(data[(n + i) * L:(n + i + 1) * L]) for i in range(8)]
    # The base as a plain HF folder, for the reference score.
    with tempfile.TemporaryDirectory() as d:
        shutil.copy(os.path.join(toy, "config.json"), d)
        shutil.copy(os.path.join(toy, "base.safetensors"), os.path.join(d, "model.safetensors"))
        base = AutoModelForCausalLM.from_pretrained(d, torch_dtype=torch.float32)
        print("torch_check: base via transformers %s: code %.4f prose %.4f bits/byte (8 rows each)"
              % (transformers.__version__, score(base, code), score(base, prose)))
    files = sorted(os.listdir(hma_dir))
    model = AutoModelForCausalLM.from_pretrained(hma_dir, torch_dtype=torch.float32)
    idx = json.load(open(os.path.join(hma_dir, "model.safetensors.index.json")))
    sc, sp = score(model, code), score(model, prose)
    print("torch_check: HMA folder %s (%d shards) loaded by transformers: code %.4f prose %.4f bits/byte"
          % (files, len(set(idx["weight_map"].values())), sc, sp))
    ok &= all(map(lambda v: v == v and v < 8, (sc, sp)))
    print("torch_check:", "ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
