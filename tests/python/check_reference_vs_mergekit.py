#!/usr/bin/python3
"""check_reference_vs_mergekit.py - validate mk_reference.py against mergekit's own code.

A development check, not part of `make test`. It needs PyTorch and mergekit's
source: the git mirror /work/.mirror/arcee-ai+mergekit/repo (read with
`git show HEAD:PATH`) or a checkout named by MERGEKIT_SRC (files read from
disk). mergekit as a package is not imported (it needs pydantic, transformers,
...): the function bodies that do the arithmetic are cut out of its files with
`ast` and run with the imports they need and stand-ins for the planner's
objects (WeightInfo, ImmutableMap). sparsify.py imports only torch and is run
whole.

Inputs are random float32 tensors (continuous values, so no two |delta| or
variances are equal: no ties, where mergekit's order is unspecified). The
random methods run with the mask injected: torch.bernoulli is replaced by
`u < p` with the same draws u that the reference gets. All arithmetic is float32
(mergekit's `dtype: float32`). Reported: the max |difference| and the max
difference in float32 ulps of the mergekit value, per case.

Usage: /usr/bin/python3 tests/python/check_reference_vs_mergekit.py
Exit status 0 when every case is within its expected bound (exact for the
element-wise methods; a few ulps where mergekit reduces in float32 and the
reference in double), 1 otherwise, 0 with "SKIP" when torch or mergekit is absent.
"""
import ast
import math
import os
import subprocess
import sys
import textwrap
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mk_reference as R  # noqa: E402

MIRROR = "/work/.mirror/arcee-ai+mergekit/repo"


def source(path):
    src = os.environ.get("MERGEKIT_SRC")
    if src and os.path.isdir(src):
        with open(os.path.join(src, path)) as f:
            return f.read()
    return subprocess.run(["git", "-C", MIRROR, "show", "HEAD:" + path], check=True,
                          capture_output=True, text=True).stdout


def have_source():
    src = os.environ.get("MERGEKIT_SRC")
    if src and os.path.isdir(src):
        return True
    return os.path.isdir(MIRROR)


def extract(text, names):
    """Source of top-level functions/classes, or 'Class.method' (dedented, decorators dropped)."""
    tree = ast.parse(text)
    out = []
    for want in names:
        cls, _, meth = want.partition(".")
        found = None
        for node in tree.body:
            if getattr(node, "name", None) != cls:
                continue
            if not meth:
                found = node
            else:
                for sub in node.body:
                    if getattr(sub, "name", None) == meth:
                        found = sub
        if found is None:
            raise KeyError(want)
        lines = text.splitlines()
        seg = "\n".join(lines[found.lineno - 1:found.end_lineno])  # from 'def', decorators excluded
        out.append(textwrap.dedent(seg))
    # annotations stay unevaluated: mergekit's types (ModelReference, ...) are not defined here
    return "from __future__ import annotations\n\n" + "\n\n".join(out)


def main():
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        print("SKIP: torch does not import (%s)" % e)
        return 0
    if not have_source():
        print("SKIP: no mergekit source (mirror %s or MERGEKIT_SRC)" % MIRROR)
        return 0
    torch.manual_seed(0)
    rng = np.random.default_rng(12)

    # ---- draws shared by mergekit's bernoulli and the reference
    draws = {}

    class TorchProxy(types.ModuleType):
        def __getattr__(self, k):
            return getattr(torch, k)

    proxy = TorchProxy("torch")

    def fake_bernoulli(p):
        u = draws["u"][draws["i"]]
        draws["i"] += 1
        return (torch.from_numpy(u.astype(np.float64)).reshape(p.shape) < p.double()).to(p.dtype)

    proxy.bernoulli = fake_bernoulli

    ns = {"torch": proxy, "Optional": __import__("typing").Optional, "Enum": __import__("enum").Enum}
    sp = source("mergekit/sparsify.py")
    exec(compile(sp, "sparsify.py", "exec"), ns)
    ns["torch"] = proxy
    # the reference's draws come from the same table, by source position
    R.rng_uniform = lambda seed, name, src, n: draws["ref"][src]

    gta_src = source("mergekit/merge_methods/generalized_task_arithmetic.py")
    typing = __import__("typing")
    gns = {"torch": torch, "logging": __import__("logging"), "Any": typing.Any, "Dict": typing.Dict,
           "List": typing.List, "Tuple": typing.Tuple, "Optional": typing.Optional,
           "Literal": typing.Literal, "ImmutableMap": dict, "ModelReference": str,
           "WeightInfo": object, "sparsify": ns["sparsify"], "RescaleNorm": ns["RescaleNorm"],
           "SparsificationMethod": ns["SparsificationMethod"]}
    exec(extract(gta_src, ["get_task_vectors", "get_mask", "GTATask.execute"]), gns)

    def mk_gta(method, xs, base, mp, gp):
        spars, elect, _, _ = R.GTA[method]
        names = ["m%d" % i for i in range(len(xs))]
        self = types.SimpleNamespace(
            weight_info=types.SimpleNamespace(name="w", is_embed=False), base_model=names[base],
            tensor_parameters=types.SimpleNamespace(data={n: dict(p) for n, p in zip(names, mp)}),
            method=types.SimpleNamespace(
                sparsification_method=ns["SparsificationMethod"](spars) if spars else None,
                consensus_method="sum" if elect else None),
            int8_mask=bool(gp["int8_mask"]), normalize=bool(gp["normalize"]), lambda_=gp["lambda"],
            rescale_norm=ns["RescaleNorm"].l1 if gp["rescale"] else None)
        return gns["execute"](self, {n: torch.from_numpy(x.copy()) for n, x in zip(names, xs)}).numpy()

    # ---- other methods
    def load(path, names, extra=None):
        g = {"torch": torch, "np": np, "F": torch.nn.functional, "logging": __import__("logging")}
        for k in ("Any", "Dict", "List", "Tuple", "Optional", "Union"):
            g[k] = getattr(typing, k)
        g["rectify_embed_sizes"] = lambda wi, ts: None
        g["Tensor"] = torch.Tensor
        if extra:
            g.update(extra)
        exec(extract(source(path), names), g)
        return g

    lin = load("mergekit/merge_methods/linear.py", ["LinearMergeTask.execute"])
    sl = load("mergekit/merge_methods/slerp.py", ["lerp", "slerp", "maybe_torch", "normalize"])
    nu = load("mergekit/merge_methods/nuslerp.py", ["nuslerp"])
    ms = load("mergekit/merge_methods/multislerp.py", ["multislerp"])
    ka = load("mergekit/merge_methods/karcher.py", ["karcher_merge_tensors"])
    mst = load("mergekit/merge_methods/model_stock.py", ["ModelStockMergeTask.execute",
                                                          "ModelStockMergeTask.get_rectified_weights"])
    sce = load("mergekit/merge_methods/sce.py", ["sce_merge", "sce_weight", "sce_mask"],
               {"sign_consensus_mask": gns["get_mask"]})
    nsw = load("mergekit/merge_methods/nearswap.py", ["nearswap_merge"])
    ram = load("mergekit/merge_methods/ram.py", ["ram_merge", "ramplus_tl_merge", "_prepare_ram_vectors"])
    af = load("mergekit/merge_methods/arcee_fusion.py", ["DynamicThresholdFusion", "ArceeFusionMergeTask._compute_importance"])
    pt = load("mergekit/merge_methods/passthrough.py", ["PassthroughMergeTask.execute"])

    T = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731

    def mk(method, xs, base, mp, gp):
        if method in R.GTA:
            return mk_gta(method, xs, base, mp, gp)
        names = ["m%d" % i for i in range(len(xs))]
        tens = {n: T(x.copy()) for n, x in zip(names, xs)}
        others = [T(x.copy()) for i, x in enumerate(xs) if i != base]
        bt = T(xs[base].copy()) if base >= 0 else None
        if method == "linear":
            self = types.SimpleNamespace(tensor_parameters={n: p for n, p in zip(names, mp)},
                                         weight_info=None, normalize=bool(gp["normalize"]))
            return lin["execute"](self, tens).numpy()
        if method == "passthrough":
            self = types.SimpleNamespace(tensor_parameters={names[0]: types.SimpleNamespace(data=mp[0])})
            return pt["execute"](self, {names[0]: T(xs[0].copy())}).numpy()
        if method == "slerp":
            return sl["slerp"](gp["t"], T(xs[base].copy()), others[0]).numpy()
        if method == "nuslerp":
            idx = [i for i in range(len(xs)) if i != base]
            wa, wb = mp[idx[0]]["weight"], mp[idx[1]]["weight"]
            t = 0.5 if abs(wa + wb) < 1e-6 else wb / (wa + wb)
            a, b = others
            kw = dict(dim=0 if gp["nuslerp_row_wise"] else -1, flatten=bool(gp["nuslerp_flatten"]))
            if bt is not None:
                return (bt + nu["nuslerp"](t, a - bt, b - bt, **kw)).numpy()
            return nu["nuslerp"](t, a, b, **kw).numpy()
        if method == "multislerp":
            w = [mp[i]["weight"] for i in range(len(xs)) if i != base]
            return ms["multislerp"](others, w, bt, bool(gp["normalize_weights"]), gp["eps"]).numpy()
        if method == "karcher":
            return ka["karcher_merge_tensors"]([T(x.copy()) for x in xs], [1.0 / len(xs)] * len(xs),
                                               int(gp["max_iter"]), gp["tol"]).numpy()
        if method == "model_stock":
            self = types.SimpleNamespace(base_model=names[base], weight_info=None,
                                         filter_wise=bool(gp["filter_wise"]))
            self.get_rectified_weights = lambda t: mst["get_rectified_weights"](self, t)
            return mst["execute"](self, tens).numpy()
        if method == "sce":
            return sce["sce_merge"](others, bt, bool(gp["int8_mask"]), gp["select_topk"]).numpy()
        if method == "nearswap":
            return nsw["nearswap_merge"](others, bt, gp["t"]).numpy()
        if method == "ram":
            return ram["ram_merge"](others, bt, gp["epsilon"]).numpy()
        if method == "ramplus_tl":
            return ram["ramplus_tl_merge"](others, bt, gp["r"], gp["alpha"], gp["epsilon"]).numpy()
        if method == "arcee_fusion":
            a, b = bt, others[0]
            imp = af["_compute_importance"](None, b, a)
            mask, _ = af["DynamicThresholdFusion"]().compute_fusion_mask(imp)
            return (a + (b - a) * mask).numpy()
        raise KeyError(method)

    def defaults(method, **over):
        gp = {n: d for n, pm, d in R.METHOD_PARAMS[method] if not pm and d not in (R.REQUIRED, R.NONE)}
        gp.update(over)
        return gp

    def ulps(a, b, xs, base):
        """|a - b| in float32 ulps of the element's scale: the largest of |a|, |b| and the
        inputs' |x_i| (a per-tensor factor that differs in its last bit moves a term of the
        size of the inputs by an ulp of that size, whatever the cancellation in the sum)."""
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        s = np.maximum(np.abs(a), np.abs(b))
        for x in xs:
            s = np.maximum(s, np.abs(x))
        if base >= 0:  # the merged delta: the size of the terms a task-vector method adds
            s = np.maximum(s, np.maximum(np.abs(a - xs[base]), np.abs(b - xs[base])))
        sp = np.spacing(s.astype(np.float32)).astype(np.float64)
        return np.abs(a - b) / sp

    # ---- the cases: (label, method, shapes, n models incl. base, base index, mp, gp, bound in ulps)
    cases = []
    w3 = [{}, {"weight": 0.7, "density": 0.4}, {"weight": 0.5, "density": 0.6}]
    for m in ["task_arithmetic", "ties", "breadcrumbs", "breadcrumbs_ties", "dare_linear", "dare_ties",
              "della", "della_linear"]:
        mp = [dict(p) for p in w3]
        if m.startswith("breadcrumbs"):
            mp[1]["gamma"], mp[2]["gamma"] = 0.05, 0.02
        if m.startswith("della"):
            mp[1]["epsilon"], mp[2]["epsilon"] = 0.1, 0.2
        resc = R.GTA[m][3]
        # exact unless an L1 rescale factor (float32 sums in torch, double here) is involved
        # exact unless an L1 rescale factor is involved: torch sums |d| in float32 (a few ulps
        # of noise over thousands of elements), the reference in double
        cases.append((m, m, 3, 0, mp, defaults(m, **{"lambda": 0.9}), 8 if resc else 0))
        cases.append((m + " rescale", m, 3, 0, mp, defaults(m, rescale=1.0, normalize=1.0), 8))
        if resc:  # the random masks alone: exact
            cases.append((m + " no rescale", m, 3, 0, mp, defaults(m, rescale=0.0), 0))
    cases += [
        ("linear", "linear", 3, -1, [{"weight": 1.0}, {"weight": 0.3}, {"weight": 0.5}], defaults("linear"), 0),
        ("linear raw", "linear", 2, -1, [{"weight": 0.6}, {"weight": 0.3}], defaults("linear", normalize=0.0), 0),
        ("passthrough scale", "passthrough", 1, -1, [{"scale": 0.7}], {}, 0),
        ("nearswap", "nearswap", 2, 0, [{}, {}], defaults("nearswap", t=0.05), 0),
        ("ram", "ram", 3, 0, [{}, {}, {}], defaults("ram", epsilon=0.02), 0),
        ("ramplus_tl", "ramplus_tl", 3, 0, [{}, {}, {}], defaults("ramplus_tl", epsilon=0.02), 0),
        ("slerp t=0.3", "slerp", 2, 0, [{}, {}], defaults("slerp", t=0.3), 4),
        ("nuslerp flat base", "nuslerp", 3, 0, [{}, {"weight": 0.4}, {"weight": 0.8}], defaults("nuslerp"), 4),
        ("nuslerp rows", "nuslerp", 2, -1, [{"weight": 0.4}, {"weight": 0.8}],
         defaults("nuslerp", nuslerp_flatten=0.0), 4),
        ("nuslerp row_wise", "nuslerp", 3, 0, [{}, {"weight": 0.4}, {"weight": 0.8}],
         defaults("nuslerp", nuslerp_flatten=0.0, nuslerp_row_wise=1.0), 4),
        ("multislerp base", "multislerp", 3, 0, [{}, {"weight": 0.4}, {"weight": 0.8}], defaults("multislerp"), 8),
        ("multislerp", "multislerp", 3, -1, [{"weight": 0.2}, {"weight": 0.4}, {"weight": 0.8}],
         defaults("multislerp"), 8),
        ("karcher", "karcher", 3, -1, [{}, {}, {}], defaults("karcher"), 8),
        ("model_stock", "model_stock", 3, 0, [{}, {}, {}], defaults("model_stock"), 4),
        ("model_stock filter_wise", "model_stock", 3, 0, [{}, {}, {}], defaults("model_stock", filter_wise=1.0), 4),
        ("sce", "sce", 3, 0, [{}, {}, {}], defaults("sce"), 4),
        ("sce topk 0.4", "sce", 3, 0, [{}, {}, {}], defaults("sce", select_topk=0.4), 4),
        ("arcee_fusion", "arcee_fusion", 2, 0, [{}, {}], {}, None),
    ]
    shapes = [(96, 80), (80,)]
    ok = True
    for label, method, nm, base, mp, gp, bound in cases:
        for shape in shapes:
            b = rng.normal(0, 0.05, size=shape).astype(np.float32)
            xs = [b] + [(b + rng.normal(0, 0.01, size=shape)).astype(np.float32) for _ in range(nm - 1)]
            if method == "slerp":  # an angle wide enough to take the spherical path
                xs[1] = (0.6 * b + rng.normal(0, 0.05, size=shape)).astype(np.float32)
            if method == "nearswap":
                xs[1] = (b + rng.normal(0, 0.1, size=shape)).astype(np.float32)
            if method == "arcee_fusion":
                xs[1] = (b + rng.normal(0, 0.3, size=shape)).astype(np.float32)
            n = int(np.prod(shape))
            u = [rng.random(n) for _ in range(nm)]
            draws.update(u=[u[i] for i in range(nm) if i != base], i=0, ref=u)
            try:
                want = mk(method, [x.copy() for x in xs], base, mp, gp)
                got = R.merge(method, [x.copy() for x in xs], base, mp, gp, name="w", seed=0)
            except Exception as e:  # noqa: BLE001
                print("%-28s %-9s ERROR %s: %s" % (label, shape, type(e).__name__, e))
                ok = False
                continue
            d = np.abs(want.astype(np.float64) - got.astype(np.float64))
            if bound is None:  # arcee_fusion: elements are base or model; count mask flips
                flips = int(np.count_nonzero(want != got))
                print("%-28s %-9s mask flips %d of %d (KL float32 in torch, double here)"
                      % (label, str(shape), flips, n))
                ok &= flips <= max(2, n // 1000)
                continue
            mu = float(ulps(want, got, xs, base).max())
            good = mu <= bound
            ok &= good
            print("%-28s %-9s max|diff| %.3g  max ulps %.1f  (bound %d)%s"
                  % (label, str(shape), float(d.max()), mu, bound, "" if good else "  FAIL"))
    print("all within bounds" if ok else "SOME CASES FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
