"""mk_reference.py - an independent NumPy reference of mergekit's merge methods
and of its parameter evaluation and slice planning, as libhma implements them.

Written from mergekit's rules (arcee-ai/mergekit a6e4028: mergekit/merge_methods/
*.py, mergekit/sparsify.py, mergekit/config.py, mergekit/plan.py;
/work/shared/mergekit-semantics.md), never by calling libhma, so that the tests
compare two implementations. Arrays are float32 numpy arrays.

Numerics (libhma's contract, src/mergekit/mk.h):
- element-wise arithmetic is float32 in mergekit's operation order; a Python
  scalar that torch multiplies a float32 tensor by is first rounded to float32
  (torch's wrapped-number rule), so f32(s) * x;
- sums over models run in model order starting from +0.0 (torch's reduction
  identity);
- reductions over elements (norms, dots, L1 sums, means) are double, summed per
  fixed chunk of CHUNK elements and then over chunks in order; the per-tensor
  factors derived from them are computed in double (Python's math module: the
  same C library functions as libhma) and rounded to float32 where mergekit
  multiplies a float32 tensor by them;
- the two deliberate differences from mergekit: stable tie order at every
  selection threshold (issue 12 item 5) and breadcrumbs with n_top = 0 keeping
  the bottom-trimmed delta (mergekit drops the whole delta there).
"""
import math

import numpy as np

F32 = np.float32
CHUNK = 1 << 16


def f32(v):
    return F32(v)


# ---------------------------------------------------------------- reductions
def dsum(x):
    """Sum of x (any float array) in double: per chunk of CHUNK elements, then over chunks in order."""
    x = np.asarray(x).reshape(-1)
    s = 0.0
    for c in range(0, x.size, CHUNK):
        s += float(np.sum(x[c:c + CHUNK], dtype=np.float64))
    return s


def ddot(a, b):
    return dsum(np.asarray(a, np.float64).reshape(-1) * np.asarray(b, np.float64).reshape(-1))


def dnorm(a):
    return math.sqrt(ddot(a, a))


def model_sum(arrs):
    """sum over models in order, float32, from +0.0 (torch's sum(dim=0))."""
    acc = np.zeros_like(arrs[0], dtype=F32)
    for a in arrs:
        acc = acc + a
    return acc


# ---------------------------------------------------------------- randomness
# DARE / DELLA draws: libhma's counter-based generator (src/mergekit/mk_rng.c, written
# down there and in docs/merging.md), keyed by (seed, output tensor name, source position
# in mergekit's order, the base counted) and the flat element index:
#   fmix = splitmix64's finaliser; fnv = 64-bit FNV-1a of the name's bytes;
#   key = fmix(fmix(seed ^ fnv(name)) + G (source + 1)), G = 0x9E3779B97F4A7C15;
#   uniform(key, i) = (fmix(key + G (i + 1)) >> 40) * 2^-24  (all arithmetic mod 2^64).
# An element survives a draw with probability p iff uniform < (float)p.
RNG_IS_LIBHMA = True
_G = np.uint64(0x9E3779B97F4A7C15)
_M64 = (1 << 64) - 1


def _fmix_int(z):
    z &= _M64
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & _M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & _M64
    z ^= z >> 31
    return z


def _fmix_arr(z):
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def rng_key(seed, name, source):
    h = 0xCBF29CE484222325
    for c in name.encode():
        h ^= c
        h = (h * 0x100000001B3) & _M64
    return (_fmix_int(_fmix_int((int(seed) & _M64) ^ h) + 0x9E3779B97F4A7C15 * (source + 1))) & _M64


def rng_uniform(seed, name, source, n):
    """n uniform float32 draws in [0, 1) (multiples of 2^-24) for elements 0..n-1."""
    key = np.uint64(rng_key(seed, name, source))
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = _fmix_arr(key + _G * i)
    return (z >> np.uint64(40)).astype(np.float32) * F32(2.0 ** -24)


def dare_keep(u, density):
    """Entry kept when its draw is below the keep probability, compared in float32."""
    return u < f32(density)


def della_keep(u, p):
    return u < p


# ---------------------------------------------------------------- sparsify
def rescale_l1(d, masked):
    """mergekit's rescaled_masked_tensor with the L1 norm: one factor per tensor."""
    before = dsum(np.abs(d.astype(np.float64)))
    after = dsum(np.abs(masked.astype(np.float64)))
    if before < 1e-7 or after < 1e-7:
        return masked
    return masked * f32(before / after)


def order_desc_stable(key):
    """Flat positions by key descending, equal keys by ascending index."""
    k = np.asarray(key).reshape(-1)
    # -k for floats (no NaN): descending; argsort(stable) keeps index order among equals.
    return np.argsort(-k, kind="stable")


def magnitude(d, density, rescale=False):
    """TIES trim: keep the k = int(density * n) largest |d| (ties: lower flat index first)."""
    if density >= 1:
        return d
    n = d.size
    k = int(density * n)
    if k <= 0:
        raise ValueError("magnitude: density keeps no element")
    keep = order_desc_stable(np.abs(d))[:k]
    mask = np.zeros(n, dtype=F32)
    mask[keep] = 1
    masked = d * mask.reshape(d.shape)
    return rescale_l1(d, masked) if rescale else masked


def breadcrumbs(d, density, gamma, rescale=False):
    """magnitude_outliers: ascending |d| (ties by index), keep positions [n_bot, n - n_top).
    n_top = 0 keeps the bottom-trimmed delta (mergekit's slice [n_bot:-0] drops all: libhma's fix)."""
    if density >= 1:
        return d
    n = d.size
    target = int(density * n)
    n_top = int(gamma * n)
    n_bot = n - target - n_top
    if n_bot < 0:
        n_top += n_bot
        n_bot = 0
    order = np.argsort(np.abs(d).reshape(-1), kind="stable")
    mask = np.zeros(n, dtype=F32)
    mask[order[n_bot:n - n_top]] = 1
    masked = d * mask.reshape(d.shape)
    return rescale_l1(d, masked) if rescale else masked


def dare(d, density, rescale, u):
    """Random keep with probability density (u: the draws), L1 rescale per tensor."""
    if density >= 1:
        return d
    mask = dare_keep(u, density).astype(F32).reshape(d.shape)
    masked = d * mask
    return rescale_l1(d, masked) if rescale else masked


def della_probs(d, density, epsilon):
    """Per-row keep probabilities, float32 as torch computes them: rank r = 1..n by |d|
    ascending, where equal |d| rank by index as in a descending stable order (the lower
    index ranks higher); rank_norm = (r - 1) / (n - 1);
    p = f32(density - epsilon) + (rank_norm * 2) * f32(epsilon). Rows: dim 0 of a 2-D
    tensor; a 1-D tensor is one row."""
    rows = d.reshape(1, -1) if d.ndim < 2 else d.reshape(d.shape[0], -1)
    R, n = rows.shape
    order = np.argsort(-np.abs(rows), axis=1, kind="stable")  # descending, ties by index
    rank = np.empty((R, n), dtype=F32)
    np.put_along_axis(rank, order, np.broadcast_to(n - np.arange(n, dtype=F32), (R, n)), axis=1)
    rank_norm = np.clip((rank - F32(1)) / F32(n - 1), F32(0), F32(1)) if n > 1 else np.zeros((R, n), F32)
    p = f32(density - epsilon) + (rank_norm * F32(2)) * f32(epsilon)
    return p.reshape(d.shape)


def della(d, density, epsilon, rescale, u):
    if density >= 1:
        return d
    if density <= 0:
        return np.zeros_like(d)
    if density + epsilon >= 1 or density - epsilon <= 0:
        raise ValueError("della: density +/- epsilon must lie in (0, 1)")
    p = della_probs(d, density, epsilon)
    mask = della_keep(u.reshape(d.shape), p).astype(F32)
    masked = d * mask
    return rescale_l1(d, masked) if rescale else masked


# ---------------------------------------------------------------- GTA family
GTA = {  # method: (sparsification, sign election, default normalize, default rescale)
    "task_arithmetic": (None, False, 0.0, 0.0),
    "ties": ("magnitude", True, 1.0, 0.0),
    "dare_ties": ("random", True, 0.0, 1.0),
    "dare_linear": ("random", False, 0.0, 1.0),
    "breadcrumbs": ("magnitude_outliers", False, 0.0, 0.0),
    "breadcrumbs_ties": ("magnitude_outliers", True, 0.0, 0.0),
    "della": ("della_magprune", True, 1.0, 1.0),
    "della_linear": ("della_magprune", False, 0.0, 1.0),
}


def sign_mask(wd):
    """get_mask(method="sum"): majority +1 where sum_i wd_i >= 0; counted where sign(wd_i) == majority."""
    s = model_sum(wd)
    majority = np.where(s >= 0, F32(1), F32(-1))
    return [np.sign(w) == majority for w in wd]


def gta(method, xs, base, mp, gp, name="", seed=0):
    spars, elect, _, _ = GTA[method]
    b = xs[base]
    tvs = []
    for i, x in enumerate(xs):
        if i == base:
            continue
        d = x - b
        p = mp[i]
        dens = p.get("density", 1.0)
        resc = bool(gp["rescale"])
        if spars == "magnitude":
            d = magnitude(d, dens, resc)
        elif spars == "magnitude_outliers":
            d = breadcrumbs(d, dens, p.get("gamma", 0.01), resc)
        elif spars == "random":
            if dens < 1:
                d = dare(d, dens, resc, rng_uniform(seed, name, i, d.size))
        elif spars == "della_magprune":
            if 0 < dens < 1:
                d = della(d, dens, p.get("epsilon", 0.15), resc, rng_uniform(seed, name, i, d.size))
            elif dens <= 0:
                d = np.zeros_like(d)
        tvs.append((d, f32(p["weight"])))
    if not tvs:
        return b.copy()
    wd = [d * w for d, w in tvs]
    if elect:
        mask = sign_mask(wd)
        mixed = model_sum([w * m for w, m in zip(wd, mask)])
        divisor = model_sum([np.where(m, w, F32(0)) for (_, w), m in zip(tvs, mask)])
        divisor[divisor == 0] = 1
    else:
        mixed = model_sum(wd)
        divisor = F32(0)
        for _, w in tvs:
            divisor = F32(divisor + w)
        if abs(divisor) < 1e-8:
            divisor = F32(1)
    if gp["normalize"]:
        mixed = mixed / divisor
    if gp["lambda"] != 1:
        mixed = mixed * f32(gp["lambda"])
    return b + mixed


# ---------------------------------------------------------------- element-wise methods
def linear(xs, mp, gp):
    ws = [f32(p["weight"]) for p in mp]
    res = model_sum([w * x for w, x in zip(ws, xs)])
    if gp["normalize"]:
        wsum = F32(0)
        for w in ws:
            wsum = F32(wsum + w)
        res = res / wsum
    return res


def passthrough(xs, mp):
    x = xs[0]
    s = mp[0].get("scale")
    return x * f32(s) if s is not None else x.copy()


def nearswap(xs, base, gp):
    a = xs[base]
    b = xs[1 - base]
    absdiff = np.abs(a - b)
    # torch evaluates the scalar `t / tensor` as reciprocal(tensor) * t (Tensor.__rtruediv__):
    # two roundings, not one division
    w = np.clip((F32(1) / np.maximum(absdiff, f32(1e-6))) * f32(gp["t"]), F32(0), F32(1))
    return w * b + (F32(1) - w) * a


def _ram_prep(xs, base, eps):
    b = xs[base]
    tvs = [x - b for i, x in enumerate(xs) if i != base]
    nz = [np.abs(t) > f32(eps) for t in tvs]
    counts = np.sum(np.stack(nz), axis=0)
    return b, tvs, nz, counts, counts > 1, counts == 1


def ram(xs, base, gp):
    b, tvs, nz, counts, overlap, unique = _ram_prep(xs, base, gp["epsilon"])
    cnt = np.maximum(counts, 1).astype(F32)
    terms = []
    for t, m in zip(tvs, nz):
        tz = t * m
        terms.append(tz * unique + tz * overlap / cnt)
    return b + model_sum(terms)


def ramplus_tl(xs, base, gp):
    eps, r, alpha = gp["epsilon"], gp["r"], gp["alpha"]
    b, tvs, nz, counts, overlap, unique = _ram_prep(xs, base, eps)
    cnt = np.maximum(counts, 1).astype(F32)
    terms = []
    for t, m in zip(tvs, nz):
        shared = int(np.count_nonzero(m & overlap))
        uniq = int(np.count_nonzero(m & unique))
        rho = F32(F32(shared) / max(F32(uniq), f32(eps)))
        lam = F32(F32(1) + F32(f32(r) * min(max(rho, F32(0)), f32(alpha))))
        tz = t * m
        terms.append((tz * unique) * lam + tz * overlap / cnt)
    return b + model_sum(terms)


# ---------------------------------------------------------------- spherical methods
def slerp(xs, base, gp):
    """Flattened slerp from the base (t = 0) to the other model; lerp when |cos| > 0.9995."""
    t = gp["t"]
    v0, v1 = xs[base], xs[1 - base]
    n0, n1 = dnorm(v0), dnorm(v1)
    d = ddot(v0, v1)
    dot = d / ((n0 if n0 > 1e-8 else 1.0) * (n1 if n1 > 1e-8 else 1.0))
    if abs(dot) > 0.9995:
        return f32(1 - t) * v0 + f32(t) * v1
    theta0 = math.acos(dot)
    s = math.sin(theta0)
    s0 = math.sin(theta0 - theta0 * t) / s
    s1 = math.sin(theta0 * t) / s
    return f32(s0) * v0 + f32(s1) * v1


def _rows_dot(a, b):
    """Row-wise dot products in double (a row lies inside one chunk of the contract)."""
    return np.sum(a.astype(np.float64) * b.astype(np.float64), axis=1)


def _nuslerp_vecs(v0, v1, t):
    """nuslerp over the rows of 2-D float32 arrays (one row: flattened)."""
    if v0.shape[0] == 1:
        na, nb, dab = dnorm(v0), dnorm(v1), ddot(v0, v1)
        na, nb, dab = np.array([na]), np.array([nb]), np.array([dab])
    else:
        na, nb, dab = np.sqrt(_rows_dot(v0, v0)), np.sqrt(_rows_dot(v1, v1)), _rows_dot(v0, v1)
    c = dab / (np.maximum(na, 1e-7) * np.maximum(nb, 1e-7))
    theta = np.arccos(np.clip(c, -1.0, 1.0))
    st = np.sin(theta)
    out = np.empty_like(v0)
    lin = np.abs(st) < 1e-8
    sp = ~lin
    if sp.any():
        a0 = np.sin((1 - t) * theta[sp]).astype(F32)[:, None]
        a1 = np.sin(t * theta[sp]).astype(F32)[:, None]
        out[sp] = (a0 * v0[sp] + a1 * v1[sp]) / st[sp].astype(F32)[:, None]
    if lin.any():
        out[lin] = f32(1 - t) * v0[lin] + f32(t) * v1[lin]
    return out


def nuslerp(xs, base, mp, gp):
    idx = [i for i in range(len(xs)) if i != base]
    if len(idx) != 2:
        raise ValueError("nuslerp: two models (plus an optional base)")
    wa, wb = mp[idx[0]]["weight"], mp[idx[1]]["weight"]
    t = 0.5 if abs(wa + wb) < 1e-6 else wb / (wa + wb)
    v0, v1 = xs[idx[0]], xs[idx[1]]
    if base is not None and base >= 0:
        v0, v1 = v0 - xs[base], v1 - xs[base]
    shape = v0.shape
    if gp["nuslerp_flatten"]:
        r = _nuslerp_vecs(v0.reshape(1, -1), v1.reshape(1, -1), t).reshape(shape)
    elif gp["nuslerp_row_wise"] and v0.ndim >= 2:
        # mergekit transposes dim 0 to the end: the vectors are the columns
        a = np.ascontiguousarray(np.swapaxes(v0, 0, -1))
        b = np.ascontiguousarray(np.swapaxes(v1, 0, -1))
        sh = a.shape
        r = _nuslerp_vecs(a.reshape(-1, sh[-1]), b.reshape(-1, sh[-1]), t).reshape(sh)
        r = np.ascontiguousarray(np.swapaxes(r, 0, -1))
    else:
        r = _nuslerp_vecs(v0.reshape(-1, shape[-1]), v1.reshape(-1, shape[-1]), t).reshape(shape)
    if base is not None and base >= 0:
        return xs[base] + r
    return r


def multislerp(xs, base, mp, gp):
    idx = [i for i in range(len(xs)) if i != base]
    if len(idx) == 1:
        return xs[idx[0]].copy()
    eps = gp["eps"]
    has_base = base is not None and base >= 0
    tv = [xs[i] - xs[base] if has_base else xs[i] for i in idx]
    w = [f32(mp[i]["weight"]) for i in idx]
    if gp["normalize_weights"]:
        ws = F32(0)
        for x in w:
            ws = F32(ws + x)
        w = [F32(x / ws) for x in w]
    norms = [dnorm(v) for v in tv]
    units = [v / f32(n + eps) for v, n in zip(tv, norms)]
    mean = model_sum([u * wi for u, wi in zip(units, w)])
    mn = dnorm(mean)
    if mn < eps:
        if len(tv) == 2:
            res = tv[0] * w[0] + tv[1] * w[1]
            return res + xs[base] if has_base else res
        raise ValueError("multislerp: the weighted sum of the inputs is zero")
    mean = mean / f32(mn)
    dots = [ddot(u, mean) for u in units]
    tang = [u - f32(dt) * mean for u, dt in zip(units, dots)]
    tr = model_sum([tg * wi for tg, wi in zip(tang, w)])
    tn = dnorm(tr) + eps
    res = mean * f32(math.cos(tn)) + tr * f32(math.sin(tn) / tn)
    avg = 0.0
    for n, wi in zip(norms, w):
        avg += n * float(wi)
    res = res * f32(avg)
    return res + xs[base] if has_base else res


def karcher(xs, gp):
    max_iter, tol = int(gp["max_iter"]), gp["tol"]
    if len(xs) == 1:
        return xs[0].copy()
    alphas = [1.0 / len(xs)] * len(xs)
    norms, units = [], []
    for x in xs:
        n = dnorm(x)
        norms.append(n)
        units.append(np.zeros_like(x) if n == 0.0 else x / f32(n))
    valid = [i for i, n in enumerate(norms) if n > tol]
    if not valid:
        return np.zeros_like(xs[0])
    asum = sum(alphas[i] for i in valid)
    na = [alphas[i] / asum for i in valid]
    vu = [units[i] for i in valid]
    u = np.zeros_like(vu[0])
    for a, ui in zip(na, vu):
        u = u + f32(a) * ui
    nu = dnorm(u)
    u = vu[0].copy() if nu < tol else u / f32(nu)
    for _ in range(max_iter):
        T = np.zeros_like(u)
        for a, ui in zip(na, vu):
            dot = min(1.0, max(-1.0, ddot(u, ui)))
            theta = math.acos(dot)
            if theta < tol:
                continue
            T = T + f32(a * theta / math.sin(theta)) * (ui - f32(dot) * u)
        nT = dnorm(T)
        if nT < tol:
            break
        u = f32(math.cos(nT)) * u + f32(math.sin(nT)) * (T / f32(nT))
        un = dnorm(u)
        if un > tol:
            u = u / f32(un)
    s = 0.0
    for a, n in zip(alphas, norms):
        s += a * n
    return f32(s) * u


def model_stock(xs, base, gp):
    w0 = xs[base]
    ws = [x for i, x in enumerate(xs) if i != base]
    if len(ws) < 2:
        raise ValueError("model_stock: base plus two or more models")
    shape = w0.shape
    fw = bool(gp["filter_wise"])
    if fw:
        rows = (lambda a: a.reshape(1, -1)) if w0.ndim == 1 else (lambda a: a.reshape(-1, shape[-1]))
    else:
        rows = lambda a: a.reshape(1, -1)  # noqa: E731
    W0 = rows(w0)
    offs = [rows(w) - W0 for w in ws]
    N = len(ws)

    def dots(a, b):
        return np.array([ddot(a, b)]) if a.shape[0] == 1 else _rows_dot(a, b)

    cs = []
    for i in range(N):
        for j in range(i + 1, N):
            a, b = offs[i], offs[j]
            c = dots(a, b) / np.maximum(np.sqrt(dots(a, a)) * np.sqrt(dots(b, b)), 1e-6)
            cs.append(np.clip(c, -1.0, 1.0))
    c = sum(cs) / len(cs)
    t = N * c / (1 + (N - 1) * c)
    avg = model_sum(ws)
    avg = avg / f32(N)
    tf = t.astype(F32)[:, None]
    res = tf * rows(avg) + (F32(1) - tf) * W0
    return res.reshape(shape)


def sce_topk_k(var, select_topk):
    return int(np.count_nonzero(var) * select_topk)


def sce(xs, base, gp):
    b = xs[base]
    tvs = [x - b for i, x in enumerate(xs) if i != base]
    if not tvs:
        return b.copy()
    st = gp["select_topk"]
    if st < 1:
        if st <= 0:
            tvs = [np.zeros_like(t) for t in tvs]
        else:
            var = sce_variance(tvs)
            k = sce_topk_k(var, st)
            mask = np.zeros(var.size, dtype=F32)
            if k > 0:
                mask[order_desc_stable(var)[:k]] = 1
            mask = mask.reshape(b.shape)
            tvs = [t * mask for t in tvs]
    em = sign_mask(tvs)
    m = [dsum(t.astype(np.float64) ** 2) / t.size for t in tvs]
    ms = sum(m)
    if abs(ms) < 1e-6:
        w = [f32(1.0 / len(tvs))] * len(tvs)
    else:
        w = [f32(x / ms) for x in m]
    ew = [np.where(e, wi, F32(0)) for e, wi in zip(em, w)]
    merged = model_sum([t * e for t, e in zip(tvs, ew)])
    den = np.maximum(model_sum(ew), f32(1e-6))
    return b + merged / den


def sce_variance(tvs):
    """Population variance over the models per element, in double, rounded once to float32."""
    s = np.stack([t.astype(np.float64) for t in tvs])
    mean = s.mean(axis=0)
    return (((s - mean) ** 2).mean(axis=0)).astype(F32)


def arcee_fusion_parts(xs, base):
    """(result, importance, threshold): importance = |b - a| * KL(softmax(b) || softmax(a)) per
    row (last dim; KL in double), threshold = median + 1.5 IQR of the sorted importances at
    positions int(q (n - 1)) (q float32 as mergekit's torch.tensor([q]))."""
    a, b = xs[base], xs[1 - base]
    diff = np.abs(b - a)
    A = a.astype(np.float64).reshape(-1, a.shape[-1])
    B = b.astype(np.float64).reshape(-1, b.shape[-1])

    def softmax(z):
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    p = softmax(B) + 1e-8
    q = softmax(A) + 1e-8
    kl = np.sum(p * np.log(p / q), axis=-1)
    imp = (diff.reshape(-1, a.shape[-1]).astype(np.float64) * kl[:, None]).astype(F32).reshape(a.shape)
    srt = np.sort(imp.reshape(-1))
    n = srt.size

    def qi(qv):
        return int(F32(qv) * F32(n - 1))

    median, q1, q3 = srt[qi(0.5)], srt[qi(0.25)], srt[qi(0.75)]
    thr = F32(median + F32(F32(1.5) * F32(q3 - q1)))
    mask = (imp >= thr).astype(F32)
    return a + (b - a) * mask, imp, thr


# ---------------------------------------------------------------- dispatch
def merge(method, xs, base, mp, gp, name="", seed=0):
    """One output tensor. xs: float32 sources in mergekit's order; base: index or -1;
    mp: per-source parameter dicts; gp: global parameters (defaults filled in)."""
    if method in GTA:
        return gta(method, xs, base, mp, gp, name, seed)
    if method == "linear":
        return linear(xs, mp, gp)
    if method == "passthrough":
        return passthrough(xs, mp)
    if method == "nearswap":
        return nearswap(xs, base, gp)
    if method == "ram":
        return ram(xs, base, gp)
    if method == "ramplus_tl":
        return ramplus_tl(xs, base, gp)
    if method == "slerp":
        return slerp(xs, base, gp)
    if method == "nuslerp":
        return nuslerp(xs, base, mp, gp)
    if method == "multislerp":
        return multislerp(xs, base, mp, gp)
    if method == "karcher":
        return karcher(xs, gp)
    if method == "model_stock":
        return model_stock(xs, base, gp)
    if method == "sce":
        return sce(xs, base, gp)
    if method == "arcee_fusion":
        return arcee_fusion_parts(xs, base)[0]
    raise ValueError("unknown method " + method)


# ---------------------------------------------------------------- parameters
# (name, per_model, default or REQUIRED / NONE): mergekit's parameters() and
# tensor_parameters() of each method.
REQUIRED, NONE = "required", "none"


def _gta_params(norm, resc, extra=()):
    return [("int8_mask", 0, 0.0), ("normalize", 0, norm), ("rescale", 0, resc), ("lambda", 0, 1.0),
            ("weight", 1, REQUIRED), ("density", 1, 1.0)] + list(extra)


METHOD_PARAMS = {
    "linear": [("normalize", 0, 1.0), ("weight", 1, REQUIRED)],
    "passthrough": [("scale", 1, NONE)],
    "slerp": [("t", 0, REQUIRED)],
    "nuslerp": [("nuslerp_row_wise", 0, 0.0), ("nuslerp_flatten", 0, 1.0), ("weight", 1, REQUIRED)],
    "multislerp": [("weight", 1, REQUIRED), ("normalize_weights", 0, 1.0), ("eps", 0, 1e-8)],
    "karcher": [("max_iter", 0, 10.0), ("tol", 0, 1e-5)],
    "model_stock": [("filter_wise", 0, 0.0)],
    "sce": [("int8_mask", 0, 0.0), ("select_topk", 0, 1.0)],
    "nearswap": [("t", 0, REQUIRED)],
    "ram": [("epsilon", 0, 1e-5)],
    "ramplus_tl": [("r", 0, 0.1), ("alpha", 0, 0.2), ("epsilon", 0, 1e-5)],
    "arcee_fusion": [],
}
for _m, (_s, _e, _n, _r) in GTA.items():
    _extra = ()
    if _s == "magnitude_outliers":
        _extra = [("gamma", 1, 0.01)]
    elif _s == "della_magprune":
        _extra = [("epsilon", 1, 0.15)]
    METHOD_PARAMS[_m] = _gta_params(_n, _r, _extra)


def _num(v):
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    return float(v)


def evaluate_setting(tensor_name, setting, t=0.0):
    """mergekit's evaluate_setting: number, gradient (list of numbers), or filter list."""
    if isinstance(setting, (bool, int, float)):
        return _num(setting)
    if isinstance(setting, list):
        if all(isinstance(e, (bool, int, float)) for e in setting):
            scaled = t * (len(setting) - 1)
            i0 = int(scaled)
            i1 = min(len(setting) - 1, i0 + 1)
            frac = scaled - i0
            return (1 - frac) * _num(setting[i0]) + frac * _num(setting[i1])
        for cond in setting:
            f = cond.get("filter")
            if f is None or f == "*" or (tensor_name and f in tensor_name):
                return evaluate_setting(tensor_name, cond["value"], t)
        return None
    if isinstance(setting, dict):  # a single {filter, value}
        return evaluate_setting(tensor_name, [setting], t)
    raise ValueError("unexpected setting %r" % (setting,))


def lookup(cfg, slice_def, name, model, tensor_name, t):
    """ConfigReader.parameter without the default: source > slice > global; None if nothing."""
    if slice_def is not None:
        if model is not None:
            for s in slice_def["sources"]:
                if s["model"] == model and s.get("parameters") and name in s["parameters"]:
                    v = evaluate_setting(tensor_name, s["parameters"][name], t)
                    if v is not None:
                        return v
        if slice_def.get("parameters") and name in slice_def["parameters"]:
            v = evaluate_setting(tensor_name, slice_def["parameters"][name], t)
            if v is not None:
                return v
    if cfg.get("parameters") and name in cfg["parameters"]:
        v = evaluate_setting(tensor_name, cfg["parameters"][name], t)
        if v is not None:
            return v
    return None


# ---------------------------------------------------------------- planning (llama layout)
def layer_count(names):
    ls = [int(n.split(".")[2]) for n in names if n.startswith("model.layers.")]
    return max(ls) + 1 if ls else 0


def normalize_config(cfg, layers_of):
    """`models:` -> one slice over all layers, the base appended when not listed (plan.py)."""
    if cfg.get("slices"):
        return cfg["slices"]
    srcs, base, have = [], cfg.get("base_model"), False
    for m in cfg["models"]:
        have = have or (base is not None and m["model"] == base)
        srcs.append({"model": m["model"], "layer_range": [0, layers_of(m["model"])], "parameters": m.get("parameters")})
    if base is not None and not have:
        srcs.append({"model": base, "layer_range": [0, layers_of(base)]})
    return [{"sources": srcs}]


PRE = ["model.embed_tokens.weight"]
POST = ["model.norm.weight", "lm_head.weight"]


def plan(cfg, model_names):
    """Output tensors of a recipe, in mergekit's order: a list of dicts with out (name), t,
    sources [(model, input name)], base (index or -1), mp (per-source params), gp (global).
    model_names: {model string: list of its tensor names}."""
    method = cfg["merge_method"]
    defs = METHOD_PARAMS[method]
    slices = normalize_config(cfg, lambda m: layer_count(model_names[m]))
    out = []

    def tensor(out_name, in_names, models, sl, t):
        base_model = sl.get("base_model") or cfg.get("base_model")
        gp, mp = {}, []
        for pname, per_model, dflt in defs:
            if per_model:
                continue
            v = lookup(cfg, sl, pname, None, out_name, t)
            if v is None:
                if dflt == REQUIRED:
                    raise ValueError("missing required parameter %s for %s" % (pname, out_name))
                v = None if dflt == NONE else dflt
            gp[pname] = v
        for m, in_name in zip(models, in_names):
            d = {}
            for pname, per_model, dflt in defs:
                if not per_model:
                    continue
                v = lookup(cfg, sl, pname, m, in_name, t)
                if v is None:
                    if dflt == REQUIRED and m != base_model:
                        raise ValueError("missing required parameter %s for %s.%s" % (pname, m, in_name))
                    if dflt in (REQUIRED, NONE):
                        continue
                    v = dflt
                d[pname] = v
            mp.append(d)
        base = models.index(base_model) if base_model in models else -1
        out.append({"out": out_name, "t": t, "sources": list(zip(models, in_names)), "base": base,
                    "mp": mp, "gp": gp})

    first, last = slices[0], slices[-1]
    for n in PRE:
        ms = [s["model"] for s in first["sources"]]
        tensor(n, [n] * len(ms), ms, first, 0.0)
    layer = 0
    for sl in slices:
        lens = [s["layer_range"][1] - s["layer_range"][0] for s in sl["sources"]]
        if len(set(lens)) != 1:
            raise ValueError("all sources of a slice need the same number of layers")
        nl = lens[0]
        m0 = sl["sources"][0]["model"]
        for j in range(nl):
            t = j / (nl - 1) if nl > 1 else 1.0
            pre_in = "model.layers.%d." % (sl["sources"][0]["layer_range"][0] + j)
            suffixes = [n[len(pre_in):] for n in model_names[m0] if n.startswith(pre_in)]
            for suf in suffixes:
                ins = ["model.layers.%d.%s" % (s["layer_range"][0] + j, suf) for s in sl["sources"]]
                tensor("model.layers.%d.%s" % (layer, suf), ins, [s["model"] for s in sl["sources"]], sl, t)
            layer += 1
    for n in POST:
        # plan.py zips len(first slice's sources) copies with the last slice's models
        ms = [s["model"] for s in last["sources"]][:len(first["sources"])]
        tensor(n, [n] * len(ms), ms, last, 0.0)
    return out


# ---------------------------------------------------------------- recipe text
def _scalar(tok):
    tok = tok.strip()
    if len(tok) >= 2 and tok[0] == tok[-1] and tok[0] in "'\"":
        return tok[1:-1]
    low = tok.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("null", "~", ""):
        return None
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        return tok


def _strip_comment(line):
    q = None
    for i, ch in enumerate(line):
        if q:
            if ch == q:
                q = None
        elif ch in "'\"":
            q = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _value(tok):
    tok = tok.strip()
    if tok.startswith("[") and tok.endswith("]"):
        inner = tok[1:-1].strip()
        return [_scalar(x) for x in inner.split(",")] if inner else []
    return _scalar(tok)


def parse_yaml_subset(text):
    """The block YAML that mergekit recipes use: maps, '- ' lists (of scalars or maps),
    flow lists of scalars, scalars, comments. Enough for tests/recipes/*.yml."""
    lines = []
    for raw in text.splitlines():
        s = _strip_comment(raw)
        if s.strip() and s.strip() != "---":
            lines.append((len(s) - len(s.lstrip(" ")), s.strip()))
    pos = [0]

    def block(indent):
        ind, s = lines[pos[0]]
        if s.startswith("- ") or s == "-":
            out = []
            while pos[0] < len(lines) and lines[pos[0]][0] == ind and lines[pos[0]][1].startswith("-"):
                _, s = lines[pos[0]]
                rest = s[1:].strip()
                if not rest:
                    pos[0] += 1
                    out.append(block(lines[pos[0]][0]))
                elif ":" in rest and not rest.startswith("[") and _key_split(rest):
                    # "- key: value" opens a map at the column of "key"
                    lines[pos[0]] = (ind + 2, rest)
                    out.append(block(ind + 2))
                else:
                    out.append(_value(rest))
                    pos[0] += 1
            return out
        out = {}
        while pos[0] < len(lines) and lines[pos[0]][0] == ind and not lines[pos[0]][1].startswith("- "):
            _, s = lines[pos[0]]
            k, v = _key_split(s)
            pos[0] += 1
            if v == "":
                if pos[0] < len(lines) and (lines[pos[0]][0] > ind or
                                            (lines[pos[0]][0] == ind and lines[pos[0]][1].startswith("- "))):
                    out[k] = block(lines[pos[0]][0])
                else:
                    out[k] = None
            else:
                out[k] = _value(v)
        return out

    return block(lines[0][0]) if lines else None


def _key_split(s):
    q = None
    for i, ch in enumerate(s):
        if q:
            if ch == q:
                q = None
        elif ch in "'\"":
            q = ch
        elif ch == ":" and (i + 1 == len(s) or s[i + 1] == " "):
            return _scalar(s[:i]), s[i + 1:].strip()
    return None


def load_recipe(text):
    """A recipe's text as Python data: PyYAML when it imports (checked against the subset
    parser), else the subset parser."""
    mine = parse_yaml_subset(text)
    try:
        import yaml
    except ImportError:
        return mine
    theirs = yaml.safe_load(text)
    if theirs != mine:
        raise ValueError("the YAML subset parser disagrees with PyYAML:\n%r\n%r" % (mine, theirs))
    return theirs
