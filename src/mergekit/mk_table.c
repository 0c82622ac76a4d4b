/*
 * mk_table.c - the names, parameters and defaults of mergekit's methods, as
 * mergekit a6e4028 declares them (parameters() / tensor_parameters() in
 * mergekit/merge_methods/NAME.py, the registry in merge_methods/registry.py).
 */
#include "mergekit/mk.h"

#include <string.h>

static const char *const k_param_names[HMA__P_COUNT] = {
    [HMA__P_WEIGHT] = "weight",
    [HMA__P_DENSITY] = "density",
    [HMA__P_GAMMA] = "gamma",
    [HMA__P_EPSILON] = "epsilon",
    [HMA__P_SCALE] = "scale",
    [HMA__P_NORMALIZE] = "normalize",
    [HMA__P_RESCALE] = "rescale",
    [HMA__P_LAMBDA] = "lambda",
    [HMA__P_INT8_MASK] = "int8_mask",
    [HMA__P_T] = "t",
    [HMA__P_FILTER_WISE] = "filter_wise",
    [HMA__P_NUSLERP_FLATTEN] = "nuslerp_flatten",
    [HMA__P_NUSLERP_ROW_WISE] = "nuslerp_row_wise",
    [HMA__P_MAX_ITER] = "max_iter",
    [HMA__P_TOL] = "tol",
    [HMA__P_NORMALIZE_WEIGHTS] = "normalize_weights",
    [HMA__P_EPS] = "eps",
    [HMA__P_SELECT_TOPK] = "select_topk",
    [HMA__P_R] = "r",
    [HMA__P_ALPHA] = "alpha",
};

/* {id, per_model, required, has_default, default} */
#define PM(id, req) {id, 1, req, !(req), 0.0}
#define PMD(id, d) {id, 1, 0, 1, d}
#define PG(id, d) {id, 0, 0, 1, d}
#define PGREQ(id) {id, 0, 1, 0, 0.0}

static const hma__mk_pdef p_linear[] = {PG(HMA__P_NORMALIZE, 1.0), PM(HMA__P_WEIGHT, 1)};

/* GeneralizedTaskArithmeticMerge: int8_mask, normalize, rescale, lambda;
 * weight (required), density (1.0); gamma for magnitude_outliers, epsilon
 * for della_magprune. normalize/rescale defaults differ per method. */
#define GTA_COMMON(norm, resc)                                                              \
    PG(HMA__P_INT8_MASK, 0.0), PG(HMA__P_NORMALIZE, norm), PG(HMA__P_RESCALE, resc),         \
        PG(HMA__P_LAMBDA, 1.0), PM(HMA__P_WEIGHT, 1), PMD(HMA__P_DENSITY, 1.0)
static const hma__mk_pdef p_task_arithmetic[] = {GTA_COMMON(0.0, 0.0)};
static const hma__mk_pdef p_ties[] = {GTA_COMMON(1.0, 0.0)};
static const hma__mk_pdef p_dare_ties[] = {GTA_COMMON(0.0, 1.0)};
static const hma__mk_pdef p_dare_linear[] = {GTA_COMMON(0.0, 1.0)};
static const hma__mk_pdef p_breadcrumbs[] = {GTA_COMMON(0.0, 0.0), PMD(HMA__P_GAMMA, 0.01)};
static const hma__mk_pdef p_breadcrumbs_ties[] = {GTA_COMMON(0.0, 0.0), PMD(HMA__P_GAMMA, 0.01)};
static const hma__mk_pdef p_della[] = {GTA_COMMON(1.0, 1.0), PMD(HMA__P_EPSILON, 0.15)};
static const hma__mk_pdef p_della_linear[] = {GTA_COMMON(0.0, 1.0), PMD(HMA__P_EPSILON, 0.15)};

static const hma__mk_pdef p_passthrough[] = {{HMA__P_SCALE, 1, 0, 0, 0.0}};
static const hma__mk_pdef p_slerp[] = {PGREQ(HMA__P_T)};
static const hma__mk_pdef p_nuslerp[] = {PG(HMA__P_NUSLERP_ROW_WISE, 0.0), PG(HMA__P_NUSLERP_FLATTEN, 1.0),
                                         PM(HMA__P_WEIGHT, 1)};
static const hma__mk_pdef p_multislerp[] = {PM(HMA__P_WEIGHT, 1), PG(HMA__P_NORMALIZE_WEIGHTS, 1.0),
                                            PG(HMA__P_EPS, 1e-8)};
static const hma__mk_pdef p_karcher[] = {PG(HMA__P_MAX_ITER, 10.0), PG(HMA__P_TOL, 1e-5)};
static const hma__mk_pdef p_model_stock[] = {PG(HMA__P_FILTER_WISE, 0.0)};
static const hma__mk_pdef p_sce[] = {PG(HMA__P_INT8_MASK, 0.0), PG(HMA__P_SELECT_TOPK, 1.0)};
static const hma__mk_pdef p_nearswap[] = {PGREQ(HMA__P_T)};
static const hma__mk_pdef p_ram[] = {PG(HMA__P_EPSILON, 1e-5)};
static const hma__mk_pdef p_ramplus_tl[] = {PG(HMA__P_R, 0.1), PG(HMA__P_ALPHA, 0.2), PG(HMA__P_EPSILON, 1e-5)};

#define M(name, id, base, tab, run, check) {name, id, base, tab, sizeof tab / sizeof tab[0], run, check}
#define GTA(name, id, tab) M(name, id, HMA__MK_BASE_REQUIRED, tab, hma__mk_run_gta, hma__mk_validate_gta)
static const hma__mk_info k_methods[HMA__MK_METHOD_COUNT] = {
    M("linear", HMA__MK_LINEAR, HMA__MK_BASE_NONE, p_linear, hma__mk_run_linear, NULL),
    GTA("task_arithmetic", HMA__MK_TASK_ARITHMETIC, p_task_arithmetic),
    GTA("ties", HMA__MK_TIES, p_ties),
    GTA("dare_linear", HMA__MK_DARE_LINEAR, p_dare_linear),
    GTA("dare_ties", HMA__MK_DARE_TIES, p_dare_ties),
    GTA("breadcrumbs", HMA__MK_BREADCRUMBS, p_breadcrumbs),
    GTA("breadcrumbs_ties", HMA__MK_BREADCRUMBS_TIES, p_breadcrumbs_ties),
    GTA("della", HMA__MK_DELLA, p_della),
    GTA("della_linear", HMA__MK_DELLA_LINEAR, p_della_linear),
    M("passthrough", HMA__MK_PASSTHROUGH, HMA__MK_BASE_NONE, p_passthrough, hma__mk_run_passthrough, NULL),
    M("slerp", HMA__MK_SLERP, HMA__MK_BASE_REQUIRED, p_slerp, hma__mk_run_slerp, NULL),
    M("nuslerp", HMA__MK_NUSLERP, HMA__MK_BASE_OPTIONAL, p_nuslerp, hma__mk_run_nuslerp, NULL),
    M("multislerp", HMA__MK_MULTISLERP, HMA__MK_BASE_OPTIONAL, p_multislerp, hma__mk_run_multislerp, NULL),
    M("karcher", HMA__MK_KARCHER, HMA__MK_BASE_NONE, p_karcher, hma__mk_run_karcher, NULL),
    M("model_stock", HMA__MK_MODEL_STOCK, HMA__MK_BASE_REQUIRED, p_model_stock, hma__mk_run_model_stock, NULL),
    M("sce", HMA__MK_SCE, HMA__MK_BASE_REQUIRED, p_sce, hma__mk_run_sce, hma__mk_validate_sce),
    M("nearswap", HMA__MK_NEARSWAP, HMA__MK_BASE_REQUIRED, p_nearswap, hma__mk_run_nearswap, NULL),
    M("ram", HMA__MK_RAM, HMA__MK_BASE_REQUIRED, p_ram, hma__mk_run_ram, NULL),
    M("ramplus_tl", HMA__MK_RAMPLUS_TL, HMA__MK_BASE_REQUIRED, p_ramplus_tl, hma__mk_run_ram, NULL),
    {"arcee_fusion", HMA__MK_ARCEE_FUSION, HMA__MK_BASE_REQUIRED, NULL, 0, hma__mk_run_arcee_fusion, NULL},
};

const hma__mk_info *hma__mk_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < HMA__MK_METHOD_COUNT; i++)
        if (strcmp(k_methods[i].name, name) == 0) return &k_methods[i];
    return NULL;
}

const hma__mk_info *hma__mk_info_of(hma__mk_method m) {
    return (unsigned)m < HMA__MK_METHOD_COUNT ? &k_methods[m] : NULL;
}

const char *hma__mk_param_name(hma__mk_param p) {
    return (unsigned)p < HMA__P_COUNT ? k_param_names[p] : NULL;
}

int hma__mk_param_from_name(const char *name) {
    if (!name) return -1;
    for (int p = 0; p < HMA__P_COUNT; p++)
        if (strcmp(k_param_names[p], name) == 0) return p;
    return -1;
}

const hma__mk_pdef *hma__mk_pdef_of(const hma__mk_info *mi, hma__mk_param p) {
    if (!mi) return NULL;
    for (size_t i = 0; i < mi->n_params; i++)
        if (mi->params[i].id == p) return &mi->params[i];
    return NULL;
}
