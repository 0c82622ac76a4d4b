#!/usr/bin/env python3
"""Learn HMA's per-group ratios by gradient descent, as the paper does.

    /usr/bin/python3 examples/python/learn_ratios.py [--mean 0.5] [--steps 30] [--check-grad] [--json]

Lin et al. (EMNLP 2024) learn one logit l_k per group of layers; the ratios
(weights of the aligned model) are

    a_k = mean * K * (sigmoid(l_k) + eps) / sum_j (sigmoid(l_j) + eps),   eps = 0.2,

so their mean stays fixed, and the logits are trained on alignment data with
the language-model loss plus a penalty reg * sum_k |a_k - mean|. Each step:

 1. libhma merges the pair with the current ratios (hma_plan_merge_tensor,
    float32 output) into numpy arrays that the PyTorch model uses as its
    weights without copying (torch.from_numpy);
 2. PyTorch computes the loss of a batch of the alignment set (align.bin)
    and, by backward(), dL/dtheta for every merged tensor;
 3. libhma turns those gradient buffers (handed over as numpy views of the
    torch .grad tensors, no copy) into dL/da_k (hma_plan_group_gradients);
 4. libhma's optimizer (hma_ratio_opt, HMA_OPT_ADAM) adds the penalty's
    subgradient, applies the chain rule to the logits (hma_logits_gradient)
    and takes one Adam step on the logits.

--check-grad compares, on the first batch, libhma's dL/dl_k with PyTorch
autograd through a merge built from torch operations on the logits. At the
end the merge with the learned ratios (in the inputs' dtype, BF16: the bytes
`hma merge` would write) is scored on eval.bin in bits per byte, code
(forgetting) and prose (alignment), lower is better.

Needs PyTorch (Debian: python3-torch) and numpy; run it with the interpreter
that has them (/usr/bin/python3 on Debian).
"""
import argparse
import json
import math
import os
import re
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hma  # noqa: E402

TOY = os.path.normpath(os.path.join(HERE, "..", "data", "toy-llama"))
EPS = 0.2  # the paper's eps (HMA_RATIO_EPS_DEFAULT)
LN2 = math.log(2.0)

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:  # the test runner looks for this exact exit status
    torch = None
    _TORCH_ERROR = e

# ---------------------------------------------------------------------------
# The toy model (examples/data/toy-llama/README.md, "Architecture")
# ---------------------------------------------------------------------------
HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, VOCAB = 256, 8, 8, 4, 32, 256
NORM_EPS, ROPE_THETA = 1e-5, 10000.0


def tensor_names():
    names = ["model.embed_tokens.weight"]
    for i in range(LAYERS):
        p = "model.layers.%d." % i
        names += [p + "input_layernorm.weight"]
        names += [p + "self_attn.%s_proj.weight" % x for x in "qkvo"]
        names += [p + "post_attention_layernorm.weight"]
        names += [p + "mlp.%s_proj.weight" % x for x in ("gate", "up", "down")]
    return names + ["model.norm.weight", "lm_head.weight"]


if torch is not None:
    class ToyLlama(torch.nn.Module):
        """The toy byte-level Llama as a PyTorch module. It holds no weights of
        its own: forward() takes a mapping tensor name -> torch tensor, so the
        same module runs on libhma's merged buffers (leaf tensors that share
        memory with numpy arrays) and on a merge built from torch operations
        (for the gradient check)."""

        def __init__(self):
            super().__init__()
            inv_freq = ROPE_THETA ** (-torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)
            self.register_buffer("inv_freq", inv_freq, persistent=False)
            self._rope = {}

        def tables(self, t):
            """RoPE cos/sin [T, 1, 32] and the causal mask for query rows
            ordered (head pair, position): [2T, T], 0 or -inf."""
            if t not in self._rope:
                ang = torch.outer(torch.arange(t, dtype=torch.float64), self.inv_freq)
                ang = torch.cat([ang, ang], dim=-1)[:, None, :]
                mask = torch.full((t, t), float("-inf")).triu(1)
                rep = HEADS // KV_HEADS
                self._rope[t] = (ang.cos().float(), ang.sin().float(), mask.repeat(rep, 1))
            return self._rope[t]

        @staticmethod
        def rmsnorm(x, w):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS) * w

        @staticmethod
        def rotate(x, cos, sin):
            """q' = q cos + rotate_half(q) sin on [B, T, heads, 32]."""
            half = x.shape[-1] // 2
            return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin

        def attention(self, h, w, p):
            b, t, _ = h.shape
            cos, sin, mask = self.tables(t)
            rep = HEADS // KV_HEADS  # query heads 2j and 2j+1 use key/value head j
            q = self.rotate((h @ w[p + "self_attn.q_proj.weight"].t()).view(b, t, HEADS, HEAD_DIM), cos, sin)
            k = self.rotate((h @ w[p + "self_attn.k_proj.weight"].t()).view(b, t, KV_HEADS, HEAD_DIM), cos, sin)
            v = (h @ w[p + "self_attn.v_proj.weight"].t()).view(b, t, KV_HEADS, HEAD_DIM)
            # Query heads grouped by their key/value head: [B * 4, 2T, 32], no copies of k and v.
            q = q.view(b, t, KV_HEADS, rep, HEAD_DIM).permute(0, 2, 3, 1, 4).reshape(b * KV_HEADS, rep * t, HEAD_DIM)
            k = k.permute(0, 2, 1, 3).reshape(b * KV_HEADS, t, HEAD_DIM)
            v = v.permute(0, 2, 1, 3).reshape(b * KV_HEADS, t, HEAD_DIM)
            att = torch.softmax(torch.baddbmm(mask, q, k.transpose(1, 2), alpha=1.0 / math.sqrt(HEAD_DIM)), dim=-1)
            y = (att @ v).view(b, KV_HEADS, rep, t, HEAD_DIM).permute(0, 3, 1, 2, 4).reshape(b, t, HIDDEN)
            return y @ w[p + "self_attn.o_proj.weight"].t()

        def forward(self, tokens, w):
            """Logits [B, T, 256] of byte tokens [B, T] (int64)."""
            x = F.embedding(tokens, w["model.embed_tokens.weight"])
            for i in range(LAYERS):
                p = "model.layers.%d." % i
                x = x + self.attention(self.rmsnorm(x, w[p + "input_layernorm.weight"]), w, p)
                h = self.rmsnorm(x, w[p + "post_attention_layernorm.weight"])
                g = F.silu(h @ w[p + "mlp.gate_proj.weight"].t()) * (h @ w[p + "mlp.up_proj.weight"].t())
                x = x + g @ w[p + "mlp.down_proj.weight"].t()
            return self.rmsnorm(x, w["model.norm.weight"]) @ w["lm_head.weight"].t()

        def loss(self, rows, w, reduction="mean"):
            """Cross-entropy (nats) of each row's bytes 1..L-1 given the bytes before."""
            logits = self.forward(rows[:, :-1], w)
            return F.cross_entropy(logits.reshape(-1, VOCAB), rows[:, 1:].reshape(-1), reduction=reduction)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def read_rows(path, sets):
    """`sets` arrays of [n, L] uint8 rows from a file: u32 n, u32 L, rows."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: too short" % path)
    n, length = struct.unpack("<II", data[:8])
    if n < 1 or length < 2 or len(data) != 8 + sets * n * length:
        raise ValueError("%s: %d bytes, want 8 + %d x %d x %d" % (path, len(data), sets, n, length))
    arr = np.frombuffer(data, dtype=np.uint8, offset=8).reshape(sets, n, length)
    return [arr[i] for i in range(sets)]


def pick_rows(rows, count):
    """`count` evenly spaced rows (j * n / count), as `hma eval --rows` picks them; 0 = all."""
    n = rows.shape[0]
    if count <= 0 or count >= n:
        return rows
    return rows[[j * n // count for j in range(count)]]


# ---------------------------------------------------------------------------
# Groups: the rule of hma_plan_set_groups(), written out for the check
# ---------------------------------------------------------------------------


def group_of(name, spec, k, layers):
    """Group index of a tensor under `spec`, or None for HMA_GROUP_MEAN: the
    embedding joins group 0, a layer's tensors its layer's group, every other
    tensor takes the mean ratio (hma.h, hma_plan_set_groups)."""
    m = re.match(r"model\.layers\.(\d+)\.", name)
    if m is None:
        return 0 if name == "model.embed_tokens.weight" else None
    i = int(m.group(1))
    if spec in ("all", "none"):
        return 0
    if spec == "layers":
        return i
    if spec.startswith("blocks:"):
        return i * k // layers
    if spec.startswith("split:"):
        cuts = [int(s) for s in spec[6:].split(",")]
        for g, c in enumerate(cuts):
            if i <= c:
                return g
        return len(cuts)
    raise ValueError("group spec %r not handled by the check" % spec)


def ratios_torch(logits, mean, eps):
    """The paper's normalised sigmoid in torch (autograd flows to the logits)."""
    u = torch.sigmoid(logits) + eps
    return mean * logits.numel() * u / u.sum()


# ---------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------


def score_bits(model, w, rows, chunk=32):
    """Mean cross-entropy over rows and positions, in bits per byte."""
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, rows.shape[0], chunk):
            r = torch.from_numpy(rows[s:s + chunk].astype(np.int64))
            total += float(model.loss(r, w, reduction="sum"))
            count += r.shape[0] * (r.shape[1] - 1)
    return total / count / LN2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default=os.path.join(TOY, "base.safetensors"), help="the model before alignment")
    ap.add_argument("--model", default=os.path.join(TOY, "aligned.safetensors"), help="the aligned model")
    ap.add_argument("--train", default=os.path.join(TOY, "align.bin"), help="alignment training rows")
    ap.add_argument("--eval", default=os.path.join(TOY, "eval.bin"), help="evaluation set (code, prose)")
    ap.add_argument("--groups", default="blocks:3", help="layer grouping (hma_plan_set_groups spec)")
    ap.add_argument("--mean", type=float, default=0.5, help="the fixed mean ratio")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps")
    ap.add_argument("--batch", type=int, default=16, help="rows of align.bin per step")
    ap.add_argument("--lr", type=float, default=0.05, help="Adam learning rate on the logits")
    ap.add_argument("--reg", type=float, default=0.01, help="penalty reg * sum_k |a_k - mean| (nats)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the batch order")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch's intra-op threads and libhma's (matrix products also use OpenBLAS's own)")
    ap.add_argument("--eval-rows", type=int, default=0,
                    help="score N evenly spaced rows of each eval set (0 = all 256)")
    ap.add_argument("--check-grad", action="store_true", help="check dL/dl against autograd on the first batch")
    ap.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    args = ap.parse_args()
    if torch is None:
        print("learn_ratios.py: PyTorch cannot be imported (%s); install python3-torch" % _TORCH_ERROR,
              file=sys.stderr)
        return 2
    if args.steps < 0 or args.batch < 1 or args.threads < 1:
        ap.error("--steps >= 0, --batch >= 1 and --threads >= 1")
    t_start = time.perf_counter()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    log = lambda *a: print(*a, flush=True)  # noqa: E731 (the JSON line, if any, comes last)

    train = read_rows(args.train, 1)[0]
    code, prose = read_rows(args.eval, 2)
    rng = np.random.default_rng(args.seed)
    model = ToyLlama()

    with hma.Plan([args.base, args.model], groups=args.groups) as plan:
        plan.set_threads(args.threads)
        k = plan.group_count
        names = [r.name for r in plan.rows() if r.group != hma.GROUP_NONE]
        if sorted(names) != sorted(tensor_names()):
            raise SystemExit("learn_ratios.py: the inputs are not the toy Llama (tensor names differ)")
        opt = hma.RatioOptimizer(k, method="adam", lr=args.lr, mean=args.mean, eps=EPS, penalty=args.reg)
        logits, ratios = opt.logits, opt.ratios

        # The merged weights: float32 numpy arrays, filled by libhma in place
        # each step, that torch uses as leaf tensors without a copy.
        plan.set_output_dtype("F32")
        plan.set_ratios(ratios)
        bufs = {n: plan.merge_tensor(n) for n in names}
        weights = {n: torch.from_numpy(b).requires_grad_(True) for n, b in bufs.items()}
        for n, b in bufs.items():
            assert weights[n].data_ptr() == b.ctypes.data, "torch copied a merged buffer"

        check_err = None
        history = []
        t_train = time.perf_counter()
        for step in range(args.steps):
            if step:
                plan.set_ratios(ratios)
                for n in names:
                    plan.merge_tensor(n, out=bufs[n])
            rows = torch.from_numpy(train[rng.choice(train.shape[0], args.batch, replace=False)].astype(np.int64))
            for t in weights.values():
                t.grad = None
            loss = model.loss(rows, weights)
            loss.backward()
            # dL/da_k: libhma reads the torch gradient buffers in place.
            grad_a = plan.group_gradients(lambda name: weights[name].grad.numpy(), threads=args.threads)
            grad_l = hma.logits_gradient(logits, args.mean, grad_a, eps=EPS)
            if step == 0 and args.check_grad:
                check_err = check_gradient(plan, model, rows, logits, args, names, grad_l, log)
            penalty = args.reg * sum(abs(a - args.mean) for a in ratios)
            history.append({"step": step, "loss_bits": float(loss) / LN2, "penalty": penalty, "ratios": ratios,
                            "grad_ratios": grad_a, "grad_logits": grad_l})
            log("step %3d  loss %.4f bits/byte  penalty %.5f  ratios (%s)  dL/da (%s)" % (
                step, float(loss) / LN2, penalty, ", ".join("%.4f" % a for a in ratios),
                ", ".join("%+.4f" % g for g in grad_a)))
            ratios = opt.step(grad_a)  # penalty subgradient, J^T, Adam: all in libhma
            logits = opt.logits
        train_seconds = time.perf_counter() - t_train

        # Score the learned merge as it would be saved: the inputs' dtype (BF16).
        t_eval = time.perf_counter()
        plan.set_output_dtype(None)
        plan.set_ratios(ratios)
        final = {}
        for n in names:
            out = plan.merge_tensor(n, bf16="float32")
            final[n] = torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))
        code_rows, prose_rows = pick_rows(code, args.eval_rows), pick_rows(prose, args.eval_rows)
        code_bits = score_bits(model, final, code_rows)
        prose_bits = score_bits(model, final, prose_rows)
        eval_seconds = time.perf_counter() - t_eval

    seconds = time.perf_counter() - t_start
    mean_now = sum(ratios) / len(ratios)
    log("learned ratios (%s), mean %.6f, logits (%s)" % (
        ", ".join("%.4f" % a for a in ratios), mean_now, ", ".join("%.4f" % x for x in logits)))
    log("eval.bin (%d rows a set): code %.4f bits/byte, prose %.4f bits/byte" % (
        code_rows.shape[0], code_bits, prose_bits))
    log("%d steps of batch %d: %.1f s training, %.1f s scoring, %.1f s in all" % (
        args.steps, args.batch, train_seconds, eval_seconds, seconds))
    if args.json:
        print(json.dumps({
            "ratios": ratios, "logits": logits, "mean": args.mean, "groups": args.groups, "code": code_bits,
            "prose": prose_bits, "eval_rows": int(code_rows.shape[0]), "grad_check_rel_err": check_err,
            "steps": args.steps, "batch": args.batch, "lr": args.lr, "reg": args.reg, "seed": args.seed,
            "optimizer": "hma_ratio_opt (HMA_OPT_ADAM)", "train_seconds": train_seconds,
            "eval_seconds": eval_seconds, "seconds": seconds,
            "first_loss_bits": history[0]["loss_bits"] if history else None,
            "last_loss_bits": history[-1]["loss_bits"] if history else None}), flush=True)
    return 0


def check_gradient(plan, model, rows, logits, args, names, grad_l, log):
    """dL/dl by autograd through theta = (1 - a) base + a aligned built in
    torch (float64, rounded once to float32 as libhma does), a from the
    logits by the paper's formula, each tensor placed by the grouping rule;
    returns max_k |libhma - autograd| / max_k |autograd|."""
    k = len(logits)
    layers = plan.layer_count
    base, aligned = plan.input(0), plan.input(1)
    lt = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    a = ratios_torch(lt, args.mean, EPS)
    w = {}
    for n in names:
        g = group_of(n, args.groups, k, layers)
        lib_g = plan.row(n).group
        if (hma.GROUP_MEAN if g is None else g) != lib_g:
            raise SystemExit("learn_ratios.py: group of %s: rule says %s, libhma %s" % (n, g, lib_g))
        ratio = a.mean() if g is None else a[g]  # a mean-placed tensor: (1/K) sum_k a_k
        b = torch.from_numpy(base.numpy(n, bf16="float32").astype(np.float64))
        al = torch.from_numpy(aligned.numpy(n, bf16="float32").astype(np.float64))
        w[n] = ((1 - ratio) * b + ratio * al).float()
    loss = model.loss(rows, w)
    loss.backward()
    auto = lt.grad.tolist()
    scale = max(abs(x) for x in auto)
    err = max(abs(x - y) for x, y in zip(grad_l, auto)) / scale if scale > 0 else 0.0
    log("check-grad: dL/dl libhma   (%s)" % ", ".join("%+.8e" % x for x in grad_l))
    log("check-grad: dL/dl autograd (%s)" % ", ".join("%+.8e" % x for x in auto))
    log("check-grad: largest error %.3e of the largest |dL/dl| (%s)" % (err, "ok" if err < 1e-3 else "TOO LARGE"))
    return err


if __name__ == "__main__":
    sys.exit(main())
