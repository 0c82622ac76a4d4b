#!/usr/bin/python3
"""test_mergekit_methods.py - libhma's mergekit methods and recipes against the NumPy
reference (tests/python/mk_reference.py), tensor by tensor.

Every method of issue 12 item 1 runs through `hma merge --config RECIPE.yml -o OUT`
on the toy pair (examples/data/toy-llama) and on a 3-model case (toy base, aligned and a
third checkpoint made by tests/python/make_third.py), with gradients and filters in
the parameters, `out_dtype: float32` and a bfloat16 output; then mergekit's example
recipes (tests/recipes/*.yml); then threads 1 vs 2 (identical bytes) and --seed.

Comparison per case (printed: the measured max error):
- exact: the output tensors equal the reference bit for bit (element-wise float32 in
  mergekit's order, exact selections). A +0/-0 difference is reported, not failed.
- ulps K: the methods with per-tensor factors from double reductions (norms, dots, L1
  sums, cosines, variance weights). libhma and the reference compute those factors in
  double from the same float32 inputs, so they agree to about 1e-16 relative; what can
  differ is where an implementation rounds a factor to float32 (1 ulp of the factor)
  and the last rounding of a product or sum (1 ulp). Allowed per element:
  |libhma - ref| <= K ulp32(S), with S = max(|ref|, |x_i|, |ref - base|) (the size of
  the terms: a factor off by an ulp moves a term of that size by an ulp of it). BF16
  output: an element may differ only by one BF16 ulp and only where the float32
  reference lies within K ulp32(S) of the rounding midpoint between the two BF16 values.
- DARE / DELLA: exact once mk_reference.RNG_IS_LIBHMA is True (the generator of
  src/mergekit/mk_rng.c transcribed into mk_reference.rng_uniform); before that, a
  statistical check only (the fraction of kept elements), said as such.

Usage: tests/test_mergekit_methods.py [--hma PATH] [--only SUBSTRING] [--keep DIR] [--list]
Exit status: 0 all passed (or skipped, with a message), 1 a case failed.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

try:
    import numpy as np
except ImportError:
    print("test_mergekit_methods: SKIP: numpy is missing")
    sys.exit(0)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import make_third  # noqa: E402
import mk_reference as R  # noqa: E402
import st_io  # noqa: E402

TOY = os.path.join(ROOT, "examples", "data", "toy-llama")
DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}

# Tolerances in float32 ulps of the element's scale (see the docstring), per method.
# 0 = exact. Why each value: one factor rounded to float32 at a point of the
# implementer's choosing (1 ulp) plus the last rounding (1 ulp) = 2; multislerp and
# karcher chain several normalisations (unit vectors, mean, tangent, exponential map;
# karcher iterates) = 4. The L1 rescale of DARE/DELLA and SCE's weights are exact (0):
# the reference sums in double in the same fixed chunks of 65536 as libhma
# (src/mergekit/mk.h), so both round the same double to float32.
K = {"slerp": 2, "nuslerp": 2, "model_stock": 2, "sce": 0, "multislerp": 4, "karcher": 4,
     "rescale": 0, "arcee_fusion": 4}


# --------------------------------------------------------------------------- cases
def C(label, method, models, params=None, base=None, gp=None, out="float32", extra="", seed=None,
      slices=None):
    """A recipe as YAML text. models: [(placeholder, {param: value})]."""
    y = ["merge_method: %s" % method, "dtype: float32", "out_dtype: %s" % out]
    if base:
        y.append("base_model: %s" % base)
    if slices:
        y.append(slices)
    else:
        y.append("models:")
        for m, p in models:
            y.append("  - model: %s" % m)
            if p:
                y.append("    parameters:")
                for k, v in p.items():
                    y.append("      %s: %s" % (k, v))
    if gp:
        y.append("parameters:")
        for k, v in gp.items():
            y.append("  %s: %s" % (k, v))
    return {"label": label, "method": method, "text": "\n".join(y) + "\n" + extra, "seed": seed}


MLP_FILTER = "\n        - filter: mlp\n          value: %s\n        - value: %s"


def cases():
    B, A, Th = "@BASE@", "@A@", "@C@"
    two = [
        C("linear 2", "linear", [(A, {"weight": "[1.0, 0.2]"}), (B, {"weight": 0.5})]),
        C("linear 2 bf16 filter", "linear", [(A, {"weight": MLP_FILTER % (0.7, 0.4)}), (B, {"weight": 0.3})],
          out="bfloat16"),
        C("task_arithmetic 2", "task_arithmetic", [(A, {"weight": "[0.5, 1.0]"})], base=B, gp={"lambda": 0.8}),
        C("ties 2", "ties", [(A, {"weight": 1.0, "density": 0.5})], base=B),
        C("dare_linear 2 no rescale", "dare_linear", [(A, {"weight": 1.0, "density": 0.6})], base=B,
          gp={"rescale": "false"}, seed=5),
        C("dare_ties 2", "dare_ties", [(A, {"weight": 0.9, "density": 0.5})], base=B, seed=7),
        C("breadcrumbs 2 gamma filter", "breadcrumbs",
          [(A, {"weight": 1.0, "density": 0.8, "gamma": "\n        - filter: layernorm\n          value: 0.002"
                                                          "\n        - value: 0.01"})], base=B),
        C("breadcrumbs_ties 2", "breadcrumbs_ties", [(A, {"weight": 1.0, "density": 0.7, "gamma": 0.02})], base=B),
        C("della 2", "della", [(A, {"weight": 1.0, "density": 0.5, "epsilon": 0.1})], base=B, seed=3),
        C("della_linear 2", "della_linear", [(A, {"weight": 0.8, "density": 0.6, "epsilon": 0.2})], base=B, seed=3),
        C("passthrough 2 slices", "passthrough", None, slices="""slices:
  - sources:
      - model: @BASE@
        layer_range: [0, 3]
  - sources:
      - model: @A@
        layer_range: [2, 8]
        parameters:
          scale:
            - filter: mlp
              value: 0.5
            - value: 1.0"""),
        C("slerp 2 t filters", "slerp", [(B, None), (A, None)], base=B,
          gp={"t": "\n    - filter: self_attn\n      value: [0, 0.5, 0.3, 0.7, 1]\n    - value: 0.4"}),
        C("slerp 2 bf16", "slerp", [(B, None), (A, None)], base=B, gp={"t": 0.3}, out="bfloat16"),
        C("nuslerp 2 flat", "nuslerp", [(B, {"weight": 0.4}), (A, {"weight": 0.6})]),
        C("nuslerp 2 rows", "nuslerp", [(B, {"weight": 0.4}), (A, {"weight": 0.6})],
          gp={"nuslerp_flatten": "false"}),
        C("nuslerp 2 row_wise", "nuslerp", [(B, {"weight": 0.4}), (A, {"weight": 0.6})],
          gp={"nuslerp_flatten": "false", "nuslerp_row_wise": "true"}),
        C("multislerp 2", "multislerp", [(B, {"weight": 0.3}), (A, {"weight": 0.7})]),
        C("karcher 2", "karcher", [(B, None), (A, None)]),
        C("sce 2", "sce", [(A, None)], base=B, gp={"select_topk": 0.5}),
        C("nearswap 2", "nearswap", [(A, None)], base=B, gp={"t": 0.001}),
        C("ram 2", "ram", [(A, None)], base=B, gp={"epsilon": 0.001}),
        C("ramplus_tl 2", "ramplus_tl", [(A, None)], base=B, gp={"epsilon": 0.001, "r": 0.2, "alpha": 0.5}),
        C("arcee_fusion 2", "arcee_fusion", [(B, None), (A, None)], base=B),
    ]
    three = [
        C("linear 3", "linear", [(B, {"weight": 1.0}), (A, {"weight": 0.3}), (Th, {"weight": 0.5})]),
        C("task_arithmetic 3", "task_arithmetic", [(A, {"weight": 0.6}), (Th, {"weight": "[0.2, 0.9]"})], base=B),
        C("ties 3", "ties", [(A, {"weight": 1.0, "density": "[1, 0.7, 0.1]"}),
                             (Th, {"weight": MLP_FILTER % (0.5, 0.8), "density": 0.5})], base=B),
        C("ties 3 bf16 lambda", "ties", [(A, {"weight": 0.7, "density": 0.4}), (Th, {"weight": 0.6, "density": 0.6})],
          base=B, gp={"normalize": "false", "lambda": 1.3}, out="bfloat16"),
        C("dare_linear 3", "dare_linear", [(A, {"weight": 0.5, "density": 0.5}), (Th, {"weight": 0.5, "density": 0.7})],
          base=B, seed=11),
        C("dare_ties 3", "dare_ties", [(A, {"weight": 1.0, "density": 0.5}), (Th, {"weight": 0.7, "density": 0.6})],
          base=B, seed=11),
        C("breadcrumbs 3", "breadcrumbs", [(A, {"weight": 1.0, "density": 0.6}), (Th, {"weight": 0.5, "density": 0.9})],
          base=B),
        C("breadcrumbs_ties 3", "breadcrumbs_ties", [(A, {"weight": 1.0, "density": 0.6, "gamma": 0.05}),
                                                     (Th, {"weight": 0.5, "density": 0.5})], base=B),
        C("della 3", "della", [(A, {"weight": 1.0, "density": 0.5}), (Th, {"weight": 0.8, "density": 0.4})],
          base=B, seed=2),
        C("della_linear 3", "della_linear", [(A, {"weight": 0.6, "density": 0.5}), (Th, {"weight": 0.4, "density": 0.5})],
          base=B, seed=2),
        C("passthrough 3 slices", "passthrough", None, slices="""slices:
  - sources:
      - model: @BASE@
        layer_range: [0, 2]
  - sources:
      - model: @C@
        layer_range: [2, 5]
  - sources:
      - model: @A@
        layer_range: [5, 8]
        parameters:
          scale: 0.9"""),
        C("nuslerp 3 base flat", "nuslerp", [(A, {"weight": 0.4}), (Th, {"weight": 0.6})], base=B),
        C("nuslerp 3 base row_wise bf16", "nuslerp", [(A, {"weight": 0.4}), (Th, {"weight": 0.6})], base=B,
          gp={"nuslerp_flatten": "false", "nuslerp_row_wise": "true"}, out="bfloat16"),
        C("multislerp 3 base", "multislerp", [(A, {"weight": 0.5}), (Th, {"weight": "[0.2, 0.8]"})], base=B),
        C("multislerp 3 bf16", "multislerp", [(B, {"weight": 0.2}), (A, {"weight": 0.5}), (Th, {"weight": 0.3})],
          out="bfloat16"),
        C("karcher 3", "karcher", [(B, None), (A, None), (Th, None)], gp={"max_iter": 20, "tol": "1.0e-6"}),
        C("model_stock 3", "model_stock", [(A, None), (Th, None)], base=B),
        C("model_stock 3 filter_wise bf16", "model_stock", [(A, None), (Th, None)], base=B,
          gp={"filter_wise": "true"}, out="bfloat16"),
        C("sce 3", "sce", [(A, None), (Th, None)], base=B, gp={"select_topk": 0.4}),
        C("sce 3 all", "sce", [(A, None), (Th, None)], base=B),
        C("ram 3", "ram", [(A, None), (Th, None)], base=B),
        C("ramplus_tl 3", "ramplus_tl", [(A, None), (Th, None)], base=B, gp={"r": 0.3, "alpha": 0.4}),
    ]
    return two + three


# --------------------------------------------------------------------------- running
class Env:
    def __init__(self, hma, tmp):
        self.hma, self.tmp = hma, tmp
        self.paths = {"@BASE@": os.path.join(TOY, "base.safetensors"),
                      "@A@": os.path.join(TOY, "aligned.safetensors"),
                      "@C@": os.path.join(tmp, "third.safetensors"),
                      "@D@": os.path.join(tmp, "fourth.safetensors")}
        make_third.make_third(self.paths["@BASE@"], self.paths["@A@"], self.paths["@C@"], 3)
        make_third.make_third(self.paths["@BASE@"], self.paths["@A@"], self.paths["@D@"], 4)
        self.stores = {}

    def store(self, path):
        if path not in self.stores:
            self.stores[path] = st_io.SafeTensors(path)
        return self.stores[path]

    def subst(self, text):
        for k, v in self.paths.items():
            text = text.replace(k, v)
        return text

    def run(self, text, tag, seed=None, threads=2, extra=()):
        rp = os.path.join(self.tmp, tag + ".yml")
        out = os.path.join(self.tmp, tag + ".safetensors")
        with open(rp, "w") as f:
            f.write(text)
        if os.path.exists(out):
            os.unlink(out)
        cmd = [self.hma, "merge", "--config", rp, "-o", out, "--threads", str(threads)]
        if seed is not None:
            cmd += ["--seed", str(seed)]
        cmd += list(extra)
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True)
        return p, out, time.time() - t0


def ulp32(s):
    return np.spacing(np.abs(s).astype(np.float32)).astype(np.float64)


def compare(ref, got_bits, got_dtype, scale, k):
    """(ok, message) for one tensor: ref float32 (before the output rounding), the libhma
    tensor's stored array, its dtype, the element scale S, K (0 = exact)."""
    if got_dtype == "F32":
        got = got_bits.astype(np.float32)
        want = ref
    elif got_dtype == "BF16":
        got = st_io.bf16_bits_to_f32(got_bits)
        want = st_io.round_to(ref, "BF16")
    else:
        got = got_bits.astype(np.float32)
        want = st_io.round_to(ref, "F16")
    got = got.reshape(ref.shape)
    if np.isnan(got).any():
        return False, "NaN in output", 0.0
    diff = want != got
    zsign = int(np.count_nonzero((want == got) & (np.signbit(want) != np.signbit(got))))
    nd = int(np.count_nonzero(diff))
    if got_dtype == "F32":
        err = np.abs(got.astype(np.float64) - ref.astype(np.float64)) / ulp32(scale)
        m = float(err.max()) if err.size else 0.0
        ok = nd == 0 if k == 0 else m <= k
        return ok, "max %.2f ulps (%d differ)%s" % (m, nd, " +-0: %d" % zsign if zsign else ""), m
    # rounded outputs: every differing element must be the neighbour of the reference's
    # rounding (bit patterns one apart, same sign), with the float32 reference within
    # K ulp32(S) of the midpoint between the two values
    if nd == 0:
        return True, "identical%s" % (" +-0: %d" % zsign if zsign else ""), 0.0
    if k == 0:
        return False, "%d of %d elements differ" % (nd, ref.size), float("inf")
    wb = (st_io.f32_to_bf16_bits(want) if got_dtype == "BF16" else want.astype(np.float16).view(np.uint16))
    gb = got_bits.reshape(ref.shape).view(np.uint16)
    wb, gb = wb[diff].astype(np.int64), gb[diff].astype(np.int64)
    adjacent = (np.abs(wb - gb) == 1) & ((wb >> 15) == (gb >> 15))
    mid = (want[diff].astype(np.float64) + got[diff].astype(np.float64)) / 2
    dist = np.abs(ref[diff].astype(np.float64) - mid) / ulp32(scale[diff])
    m = float(dist.max())
    ok = bool(adjacent.all()) and m <= k
    return ok, "%d of %d rounded differently (%s; ref within %.2f ulps of the midpoint)" % (
        nd, ref.size, "all neighbours" if adjacent.all() else "NOT neighbours", m), m


def reference_tensors(env, text, seed):
    """{output name: (ref float32, scale S, extras)} and the output dtype, from the recipe."""
    cfg = R.load_recipe(text)
    models = set()
    for sl in R.normalize_config(cfg, lambda m: R.layer_count(env.store(m).names())):
        for s in sl["sources"]:
            models.add(s["model"])
    names = {m: env.store(m).names() for m in models}
    out_dtype = DTYPES.get(cfg.get("out_dtype") or cfg.get("dtype") or "", None)
    res = {}
    for job in R.plan(cfg, names):
        xs = [env.store(m).f32(n) for m, n in job["sources"]]
        if out_dtype is None:
            out_dtype = env.store(job["sources"][0][0]).dtype(job["sources"][0][1])
        ref = R.merge(cfg["merge_method"], [x.copy() for x in xs], job["base"], job["mp"], job["gp"],
                      name=job["out"], seed=seed or 0)
        s = np.abs(ref).astype(np.float64)
        for x in xs:
            s = np.maximum(s, np.abs(x))
        if job["base"] >= 0:
            s = np.maximum(s, np.abs(ref.astype(np.float64) - xs[job["base"]]))
        extra = {}
        if cfg["merge_method"] == "arcee_fusion":
            _, imp, thr = R.arcee_fusion_parts(xs, job["base"])
            extra = {"imp": imp, "thr": thr, "xs": xs, "base": job["base"]}
        res[job["out"]] = (ref.astype(np.float32), s, extra, job)
    return cfg, res, out_dtype


def tolerance(cfg):
    m = cfg["merge_method"]
    if m in K and m != "rescale":
        return K[m]
    gps = cfg.get("parameters") or {}
    if m in R.GTA:
        spars, _, _, resc_default = R.GTA[m]
        resc = gps.get("rescale", resc_default)
        if resc and spars in ("random", "della_magprune"):
            return K["rescale"]
        if resc and spars in ("magnitude", "magnitude_outliers"):
            return K["rescale"]
    return 0


def check_case(env, label, text, seed, results):
    text = env.subst(text)
    tag = "".join(ch if ch.isalnum() else "_" for ch in label)
    p, out, dt = env.run(text, tag, seed=seed)
    if p.returncode != 0:
        results.append((label, False, "hma merge failed (%d): %s" % (p.returncode, (p.stderr or p.stdout).strip()[-400:])))
        return None
    t0 = time.time()
    cfg, refs, out_dtype = reference_tensors(env, text, seed)
    rt = time.time() - t0
    got = st_io.SafeTensors(out)
    method = cfg["merge_method"]
    random_method = method in R.GTA and R.GTA[method][0] in ("random", "della_magprune")
    problems = []
    if set(got.names()) != set(refs):
        problems.append("tensor names differ: missing %s, extra %s"
                        % (sorted(set(refs) - set(got.names()))[:4], sorted(set(got.names()) - set(refs))[:4]))
    k = tolerance(cfg)
    worst, worst_name, notes = 0.0, "", []
    for name in sorted(set(refs) & set(got.names())):
        ref, scale, extra, job = refs[name]
        if got.dtype(name) != out_dtype:
            problems.append("%s: dtype %s, want %s" % (name, got.dtype(name), out_dtype))
            continue
        if got.shape(name) != ref.shape:
            problems.append("%s: shape %s, want %s" % (name, got.shape(name), ref.shape))
            continue
        bits = got.raw(name)
        if random_method and not R.RNG_IS_LIBHMA:
            ok, msg = check_random_stats(ref, bits, got.dtype(name), job, env, cfg)
            if not ok:
                problems.append("%s: %s" % (name, msg))
            continue
        if method == "arcee_fusion":
            ok, msg, m = check_fusion(extra, bits, got.dtype(name))
        else:
            ok, msg, m = compare(ref, bits, got.dtype(name), scale, k)
        if "+-0" in msg:
            notes.append("%s %s" % (name, msg))
        if m > worst or (not ok):
            worst, worst_name = max(m, worst), name + ": " + msg
        if not ok:
            problems.append("%s: %s" % (name, msg))
    if random_method and not R.RNG_IS_LIBHMA:
        summary = "statistics only (mk_reference.rng_uniform is not libhma's generator yet)"
    else:
        summary = "%s; worst %s" % ("exact" if k == 0 else "tolerance %d ulps" % k, worst_name or "identical")
    summary += "  [hma %.1fs, ref %.1fs]" % (dt, rt)
    if notes:
        summary += "; sign of zero differs in %d tensors (not failed)" % len(notes)
    results.append((label, not problems, summary if not problems else "; ".join(problems[:5])))
    return out


def check_fusion(extra, bits, dtype):
    """arcee_fusion: every element is the base or the model; the choice may differ from the
    reference only where the importance lies within K ulps of the threshold."""
    xs, b, imp, thr = extra["xs"], extra["base"], extra["imp"], extra["thr"]
    a, m = xs[b], xs[1 - b]
    got = st_io.bf16_bits_to_f32(bits) if dtype == "BF16" else bits.astype(np.float32)
    got = got.reshape(a.shape)
    took_m = got == st_io.round_to(a + (m - a), dtype)
    took_a = got == st_io.round_to(a, dtype)
    if not (took_m | took_a).all():
        return False, "%d elements are neither base nor model" % int(np.count_nonzero(~(took_m | took_a))), float("inf")
    want_m = imp >= thr
    flip = (want_m & ~took_m) | (~want_m & ~took_a)
    flip &= ~(took_m & took_a)  # equal values: either choice
    nf = int(np.count_nonzero(flip))
    if nf == 0:
        return True, "identical mask", 0.0
    d = float((np.abs(imp[flip].astype(np.float64) - float(thr)) / np.spacing(np.float32(thr))).max())
    return d <= K["arcee_fusion"], "%d mask flips within %.1f ulps of the threshold" % (nf, d), d


def check_random_stats(ref, bits, dtype, job, env, cfg):
    """Without libhma's generator: the kept fraction of each task vector's elements is
    density within 6 sigma (single task vector, no rescale only), else shape and finiteness."""
    got = st_io.bf16_bits_to_f32(bits) if dtype == "BF16" else bits.astype(np.float32)
    if not np.isfinite(got).all():
        return False, "non-finite values"
    tv = [i for i in range(len(job["sources"])) if i != job["base"]]
    gp = job["gp"]
    if len(tv) != 1 or gp.get("rescale") or cfg["merge_method"] != "dare_linear":
        return True, ""
    xs = [env.store(mm).f32(n) for mm, n in job["sources"]]
    b = xs[job["base"]]
    d = xs[tv[0]] - b
    moved = d != 0
    kept = np.count_nonzero((got.reshape(b.shape) != b) & moved)
    n = np.count_nonzero(moved)
    p = job["mp"][tv[0]].get("density", 1.0)
    if n < 1000:
        return True, ""
    sigma = (n * p * (1 - p)) ** 0.5
    ok = abs(kept - n * p) <= 6 * sigma + 0.01 * n  # +1%: elements whose w*d rounds away
    return ok, "kept %d of %d changed elements, expected about %.0f" % (kept, n, n * p)


def tensors_only(path):
    """(header without __metadata__, data bytes) of a safetensors file."""
    hdr, start = st_io.read_header(path)
    hdr.pop("__metadata__", None)
    with open(path, "rb") as f:
        f.seek(start)
        return hdr, f.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hma", default=os.environ.get("HMA_BIN", os.path.join(ROOT, "examples", "hma")))
    ap.add_argument("--only", default="")
    ap.add_argument("--keep", default="")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    all_cases = cases()
    recipes_dir = os.path.join(ROOT, "tests", "recipes")
    recipe_files = sorted(f for f in os.listdir(recipes_dir) if f.endswith(".yml"))
    if a.list:
        for c in all_cases:
            print(c["label"])
        for f in recipe_files:
            print("recipe " + f)
        print("threads 1 vs 2\nseed")
        return 0
    hma = a.hma if os.path.isabs(a.hma) else os.path.join(ROOT, a.hma)
    if not os.path.exists(hma):
        print("test_mergekit_methods: FAIL: no hma program at %s (make all)" % hma)
        return 1
    # Before the recipe parts are integrated, the CLI has no --config option at all: the
    # option's name is then absent from the program (a plain byte search, so that a
    # changed help text can never turn this test into a silent skip).
    with open(hma, "rb") as f:
        if b"--config" not in f.read():
            print("test_mergekit_methods: SKIP: %s has no `merge --config` (recipes not built in yet)" % hma)
            return 0
    tmp = a.keep or tempfile.mkdtemp(prefix="hma-mk.")
    os.makedirs(tmp, exist_ok=True)
    results = []
    try:
        env = Env(hma, tmp)
        print("reference generator: %s" % ("libhma's (exact DARE/DELLA)" if R.RNG_IS_LIBHMA
                                           else "a stand-in (DARE/DELLA: statistics only)"))
        for c in all_cases:
            if a.only in c["label"]:
                check_case(env, c["label"], c["text"], c["seed"], results)
                print("%-4s %-32s %s" % ("ok" if results[-1][1] else "FAIL", results[-1][0], results[-1][2]),
                      flush=True)
        for f in recipe_files:
            label = "recipe " + f
            if a.only not in label:
                continue
            with open(os.path.join(recipes_dir, f)) as fh:
                text = fh.read()
            check_case(env, label, text, None, results)
            print("%-4s %-32s %s" % ("ok" if results[-1][1] else "FAIL", results[-1][0], results[-1][2]), flush=True)
        if a.only in "threads 1 vs 2":
            for c in all_cases:
                if c["label"] in ("ties 3", "dare_ties 3", "model_stock 3 filter_wise bf16", "multislerp 3 base",
                                  "sce 3", "della 3"):
                    text = env.subst(c["text"])
                    tag = "thr_" + "".join(ch if ch.isalnum() else "_" for ch in c["label"])
                    p1, o1, _ = env.run(text, tag + "_1", seed=c["seed"], threads=1)
                    p2, o2, _ = env.run(text, tag + "_2", seed=c["seed"], threads=2)
                    ok = p1.returncode == 0 and p2.returncode == 0 and tensors_only(o1) == tensors_only(o2)
                    results.append(("threads 1 vs 2: " + c["label"], ok, "identical tensors" if ok else "differ"))
                    print("%-4s %-32s %s" % ("ok" if ok else "FAIL", results[-1][0], results[-1][2]), flush=True)
        if a.only in "seed":
            c = [c for c in all_cases if c["label"] == "dare_ties 3"][0]
            text = env.subst(c["text"])
            r = [env.run(text, "seed_%d" % i, seed=s) for i, s in enumerate((1, 1, 2))]
            ok_run = all(p.returncode == 0 for p, _, _ in r)
            same = ok_run and tensors_only(r[0][1]) == tensors_only(r[1][1])
            diff = ok_run and tensors_only(r[0][1])[1] != tensors_only(r[2][1])[1]
            for lab, ok in (("seed: same seed reproduces", same), ("seed: another seed changes DARE", diff)):
                results.append((lab, ok, ""))
                print("%-4s %s" % ("ok" if ok else "FAIL", lab), flush=True)
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    failed = [r for r in results if not r[1]]
    print("test_mergekit_methods: %d passed, %d failed" % (len(results) - len(failed), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
