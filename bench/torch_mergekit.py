#!/usr/bin/env python3
"""torch_mergekit.py - mergekit's task-vector methods (task_arithmetic, ties,
dare_ties, dare_linear) run with PyTorch, for the benchmark: load every model,
merge tensor by tensor, save.

    torch_mergekit.py RECIPE OUT [--threads N] [--seed N] [--verify LIBHMA_OUT]
                      [--stable-ties]

mergekit itself cannot be imported here (it needs pydantic, transformers and
more), so the merge math below is a transcription of mergekit commit a6e4028
(arcee-ai/mergekit), keeping its structure, names and operation order:
  mergekit/sparsify.py: rescaled_masked_tensor, magnitude, bernoulli, sparsify
  mergekit/merge_methods/generalized_task_arithmetic.py: GTATask.execute,
      get_task_vectors, get_mask
  mergekit/merge_methods/registry.py: the four methods' settings
  mergekit/io/tasks.py: LoadTensor converts to `dtype`, SaveTensor to `out_dtype`
  mergekit/merge.py / options.py: --seed seeds torch (transformers' set_seed).
Only what these methods use is transcribed (no slices, gradients or filters:
the recipe must give plain numbers; anything else is refused).

RECIPE is the same mergekit YAML file given to `hma merge --config` (JSON
works without PyYAML). Prints "torch_seconds S" (load + merge + save, timed
like bench/torch_merge.py, whose safetensors reader/writer is used) and, with
--verify, compares LIBHMA_OUT with torch's result bit for bit and prints
"differing_elements N". For TIES a nonzero count is expected: torch.argsort
is not stable, so which of the elements tied with the k-th largest |delta|
survive is unspecified, while libhma keeps the lowest flat indices
(/work/shared/mergekit-semantics.md, "Tie order"). --stable-ties sorts
stably instead (equal |delta| by ascending index, libhma's documented rule),
a deliberate departure from mergekit that should give 0 differences.
"""
import argparse
import json
import os
import resource
import sys
import time
from enum import Enum
from typing import Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_merge import LOADER, load_file, save_file, verify  # noqa: E402

STABLE_TIES = False  # --stable-ties


# ---- mergekit/sparsify.py ----------------------------------------------------

class SparsificationMethod(str, Enum):
    magnitude = "magnitude"
    random = "random"
    magnitude_outliers = "magnitude_outliers"
    della_magprune = "della_magprune"


class RescaleNorm(str, Enum):
    l1 = "l1"
    l2 = "l2"
    linf = "linf"


def rescaled_masked_tensor(tensor: torch.Tensor, mask: torch.Tensor, norm: Optional[RescaleNorm],
                           eps: float = 1e-7) -> torch.Tensor:
    masked = tensor * mask
    if norm is None:
        return masked
    elif norm == RescaleNorm.l1:
        before_scale = tensor.abs().sum()
        after_scale = masked.abs().sum()
    elif norm == RescaleNorm.l2:
        before_scale = tensor.norm()
        after_scale = masked.norm()
    elif norm == RescaleNorm.linf:
        before_scale = tensor.abs().max()
        after_scale = masked.abs().max()
    else:
        raise NotImplementedError(norm)
    if before_scale < eps or after_scale < eps:
        return masked
    return masked * (before_scale / after_scale)


def magnitude(tensor: torch.Tensor, density: float, rescale_norm: Optional[RescaleNorm] = None) -> torch.Tensor:
    """Masks out the smallest values, retaining a proportion of `density`."""
    if density >= 1:
        return tensor

    k = int(density * tensor.numel())

    assert k > 0, "not gonna zero out the whole tensor buddy"
    mask = torch.zeros_like(tensor)
    w = tensor.abs().view(-1)
    if w.device.type == "cpu":
        w = w.float()
    if STABLE_TIES:  # not mergekit: libhma's tie rule, for --verify
        topk = torch.sort(w, descending=True, stable=True).indices[:k]
    else:
        topk = torch.argsort(w, descending=True)[:k]
    mask.view(-1)[topk] = 1

    res = rescaled_masked_tensor(tensor, mask, rescale_norm)
    return res


def bernoulli(tensor: torch.Tensor, density: float, rescale_norm: Optional[RescaleNorm] = None) -> torch.Tensor:
    if density >= 1:
        return tensor

    if (tensor.device.type != "cpu") or tensor.dtype == torch.bfloat16:
        work_dtype = tensor.dtype
    else:
        # torch.bernoulli not implemented for float16 on CPU, upcast to float32
        work_dtype = torch.float32

    mask = torch.bernoulli(torch.full_like(input=tensor, fill_value=density, dtype=work_dtype))
    res = rescaled_masked_tensor(tensor.to(work_dtype), mask, rescale_norm)
    return res.to(tensor.dtype)


def sparsify(tensor: torch.Tensor, density: float, method: SparsificationMethod, gamma: float = 0,
             epsilon: float = 0, rescale_norm: Optional[RescaleNorm] = None) -> torch.Tensor:
    if method == SparsificationMethod.magnitude:
        return magnitude(tensor, density=density, rescale_norm=rescale_norm)
    elif method == SparsificationMethod.random:
        return bernoulli(tensor, density=density, rescale_norm=rescale_norm)
    else:
        # magnitude_outliers and della_magprune are not transcribed here
        raise NotImplementedError(method)


# ---- mergekit/merge_methods/generalized_task_arithmetic.py ------------------

class ConsensusMethod(str, Enum):
    count = "count"
    sum = "sum"


class GeneralizedTaskArithmeticMerge:
    def __init__(self, consensus_method, sparsification_method, default_normalize, default_rescale, method_name):
        self.consensus_method = consensus_method
        self.sparsification_method = sparsification_method
        self.default_normalize = default_normalize
        self.default_rescale = default_rescale
        self.method_name = method_name

    def parameters(self):  # name -> default (ConfigParameterDef)
        return {"int8_mask": False, "normalize": self.default_normalize, "rescale": self.default_rescale,
                "lambda": 1.0}

    def tensor_parameters(self):  # name -> default; None = required
        return {"weight": None, "density": 1.0}


# mergekit/merge_methods/registry.py, STATIC_MERGE_METHODS (the GTA entries used here)
METHODS = {m.method_name: m for m in [
    GeneralizedTaskArithmeticMerge(None, None, False, False, "task_arithmetic"),
    GeneralizedTaskArithmeticMerge(ConsensusMethod.sum, SparsificationMethod.magnitude, True, False, "ties"),
    GeneralizedTaskArithmeticMerge(ConsensusMethod.sum, SparsificationMethod.random, False, True, "dare_ties"),
    GeneralizedTaskArithmeticMerge(None, SparsificationMethod.random, False, True, "dare_linear"),
]}


class WeightInfo:
    def __init__(self, name):
        self.name = name
        self.is_embed = name in ("model.embed_tokens.weight", "lm_head.weight")


class GTATask:
    def __init__(self, method, base_model, weight_info, tensor_parameters, int8_mask, normalize, lambda_,
                 rescale_norm):
        self.method = method
        self.base_model = base_model
        self.weight_info = weight_info
        self.tensor_parameters = tensor_parameters
        self.int8_mask = int8_mask
        self.normalize = normalize
        self.lambda_ = lambda_
        self.rescale_norm = rescale_norm

    def execute(self, tensors):
        # collect task vectors
        tvs, base = get_task_vectors(self.weight_info, self.base_model, tensors,
                                     tensor_parameters=self.tensor_parameters)
        if not tvs:
            return base

        # sparsify
        if self.method.sparsification_method:
            for tv_info in tvs:
                kwargs = {}
                if "gamma" in tv_info:
                    kwargs["gamma"] = tv_info["gamma"]

                if "epsilon" in tv_info:
                    kwargs["epsilon"] = tv_info["epsilon"]

                tv_info["delta"] = sparsify(tv_info["delta"], density=tv_info["density"],
                                            method=self.method.sparsification_method,
                                            rescale_norm=self.rescale_norm, **kwargs)

        deltas = torch.stack([tv["delta"] for tv in tvs], dim=0)

        weights = torch.tensor([tv["weight"] for tv in tvs], dtype=deltas.dtype, device=deltas.device)
        while len(deltas.shape) > len(weights.shape):
            weights.unsqueeze_(-1)

        weighted_deltas = deltas * weights

        # get sign consensus and mix deltas
        if self.method.consensus_method:
            mask_dtype = torch.int8 if self.int8_mask else base.dtype
            mask = get_mask(weighted_deltas, method=self.method.consensus_method, mask_dtype=mask_dtype)
            mixed_delta = (weighted_deltas * mask).sum(dim=0)
            divisor = (weights * mask).sum(dim=0)
            divisor[divisor == 0] = 1
        else:
            mixed_delta = weighted_deltas.sum(dim=0)
            divisor = weights.sum(dim=0)
            divisor[divisor.abs() < 1e-8] = 1

        if self.normalize:
            mixed_delta /= divisor

        if self.lambda_ != 1:
            mixed_delta *= self.lambda_

        return (base + mixed_delta).to(base.dtype)


def get_task_vectors(weight_info, base_model, tensors, tensor_parameters):
    keys = list(tensors.keys())
    base = tensors[base_model]

    parameter_name = weight_info.name

    res = []
    for model in keys:
        if model == base_model:
            continue

        x = tensors[model].to(base.dtype)
        if x.shape != base.shape:
            if weight_info.is_embed:
                x = x[: base.shape[0], : base.shape[1]]
                print(f"warning: using submatrix of {model}:{parameter_name}", file=sys.stderr)
            else:
                print(f"warning: skipping {model}:{parameter_name} due to size mismatch", file=sys.stderr)
                continue

        delta = x - base
        del x
        del tensors[model]

        d = {}
        d["model"] = model
        d["delta"] = delta
        for p in tensor_parameters[model]:
            d[p] = tensor_parameters[model][p]
        res.append(d)
    return res, base


def get_mask(delta: torch.Tensor, method: str = "sum", mask_dtype: Optional[torch.dtype] = None):
    if mask_dtype is None:
        mask_dtype = delta.dtype

    sign = delta.sign().to(mask_dtype)

    if method == "sum":
        sign_weight = delta.sum(dim=0)
        majority_sign = (sign_weight >= 0).to(mask_dtype) * 2 - 1
        del sign_weight
    elif method == "count":
        majority_sign = (sign.sum(dim=0) >= 0).to(mask_dtype) * 2 - 1
    else:
        raise RuntimeError(f'Unimplemented mask method "{method}"')

    return sign == majority_sign


# ---- the recipe (the subset these methods need) and the run -----------------

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}  # common.dtype_from_name


def number(v, what):
    # mergekit's pydantic reads booleans as numbers (true = 1.0)
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)):
        return float(v)
    sys.exit(f"torch_mergekit.py: {what}: only plain numbers are supported by this transcription, got {v!r}")


def read_recipe(path):
    with open(path) as f:
        text = f.read()
    try:
        import yaml
        cfg = yaml.safe_load(text)
    except ImportError:
        cfg = json.loads(text)
    known = {"merge_method", "base_model", "models", "parameters", "dtype", "out_dtype"}
    extra = set(cfg) - known
    if extra:
        sys.exit(f"torch_mergekit.py: recipe keys not supported here: {sorted(extra)}")
    method = METHODS.get(cfg["merge_method"])
    if method is None:
        sys.exit(f"torch_mergekit.py: merge_method {cfg['merge_method']!r} not transcribed (have {sorted(METHODS)})")
    base_model = cfg["base_model"]
    glob = {k: number(v, "parameters." + k) for k, v in (cfg.get("parameters") or {}).items()}
    tparams = {}
    for m in cfg["models"]:
        p = {k: number(v, m["model"] + ": " + k) for k, v in (m.get("parameters") or {}).items()}
        if m["model"] == base_model:
            continue  # the base's own parameters are not used by these methods
        tp = {}
        for name, default in method.tensor_parameters().items():
            v = p.get(name, glob.get(name, default))
            if v is None:
                sys.exit(f"torch_mergekit.py: {m['model']}: parameter {name} is required")
            tp[name] = v
        tparams[m["model"]] = tp
    params = {name: glob.get(name, default) for name, default in method.parameters().items()}
    return cfg, method, base_model, tparams, params


def main():
    global STABLE_TIES
    ap = argparse.ArgumentParser()
    ap.add_argument("recipe")
    ap.add_argument("out")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = its default)")
    ap.add_argument("--seed", type=int, default=None, help="as mergekit's --random-seed")
    ap.add_argument("--verify", metavar="LIBHMA_OUT")
    ap.add_argument("--stable-ties", action="store_true", help="break magnitude ties by index (libhma's rule)")
    args = ap.parse_args()
    STABLE_TIES = args.stable_ties
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.seed is not None:
        torch.manual_seed(args.seed)
    cfg, method, base_model, tparams, params = read_recipe(args.recipe)
    dtype = DTYPES[cfg["dtype"]] if cfg.get("dtype") else None
    out_dtype = DTYPES[cfg["out_dtype"]] if cfg.get("out_dtype") else None
    order = list(tparams) + [base_model]  # mergekit's normalize_config appends the base

    t0 = time.perf_counter()
    sd = {m: load_file(m) for m in order}
    merged = {}
    for name in list(sd[base_model]):
        tensors = {}
        for m in order:
            x = sd[m].pop(name)
            if dtype is not None and dtype != x.dtype:  # io/tasks.py LoadTensor
                x = x.to(dtype=dtype)
            tensors[m] = x
        task = GTATask(method, base_model, WeightInfo(name), tparams, int8_mask=params["int8_mask"],
                       normalize=params["normalize"], lambda_=params["lambda"],
                       rescale_norm=RescaleNorm.l1 if params["rescale"] else None)
        y = task.execute(tensors)
        if out_dtype is not None:  # io/tasks.py SaveTensor
            y = y.to(dtype=out_dtype)
        merged[name] = y
    del sd
    save_file(merged, args.out, metadata={"format": "pt"})
    t = time.perf_counter() - t0
    print("torch_seconds %.6f" % t)
    ties = ""
    if method.sparsification_method == SparsificationMethod.magnitude:
        ties = ", top-k ties: " + ("stable (by index)" if STABLE_TIES else "mergekit's argsort")
    print("torch %s (%s), %s, %d models, %d threads%s, peak RSS %.0f MiB" % (
        torch.__version__, LOADER, method.method_name, len(order), torch.get_num_threads(), ties,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))
    sys.stdout.flush()

    if args.verify:
        verify(merged, args.verify, top=5)  # five tensors, not hundreds


if __name__ == "__main__":
    main()
