"""hma.py - Python binding of libhma (pure ctypes, no compiled extension).

Copy this one file next to your script, put examples/python on sys.path, or
install it: `make install` (with the library), or `pip install ./examples/python`.
The library is found, in this order, at $HMA_LIBRARY, in the source tree's
lib/ folder (../../lib/libhma.so.1 from this file), in the folder `make
install` wrote into this file, then wherever the dynamic linker finds
libhma.so.1 (an installed prefix). numpy is optional: without it
everything works except the calls that return arrays, which raise HmaError.

    import hma
    with hma.Store("base.safetensors") as base, hma.Store("aligned.safetensors") as al:
        with hma.Plan([base, al], groups="blocks:3") as plan:
            plan.set_ratios([0.2, 0.4, 0.6])
            plan.merge_to("merged.safetensors", progress=lambda done, total: None)

Handles (Store, Writer, Plan, Points, RatioOptimizer) are freed by their
context managers or close(), and safely at garbage collection. A Store stays
mapped while arrays from Store.numpy(), plans or pack stores still use it:
close() then only marks it closed, and the mapping goes when the last user
goes. Errors raise HmaError subclasses carrying .code and .message (the C
library's detail message). See docs/python.md.
"""
import ctypes
import ctypes.util
import enum
import numbers
import os
import sys
import threading
from collections import namedtuple

try:  # numpy is optional
    import numpy as _np
except ImportError:  # pragma: no cover - exercised only without numpy
    _np = None

__all__ = [
    "HmaError", "InvalidArgumentError", "OutOfMemoryError", "HmaIOError", "NotFoundError",
    "FormatError", "StateError", "OverwritesInputError", "CancelledError", "MismatchError",
    "UnsupportedError", "NonFiniteError", "CorruptError", "WrongBaseError", "ThreadError",
    "IncompleteError", "CallbackError", "ExistsError",
    "Dtype", "Method", "Action", "Simd", "PointKind", "GROUP_MEAN", "GROUP_NONE",
    "TensorInfo", "PlanRow", "Point", "PackStats",
    "Store", "Writer", "Plan", "Points", "RatioOptimizer", "Searcher",
    "version", "version_number", "library_path", "strerror", "max_dims",
    "dtype_bits", "dtype_is_float", "layer_from_name", "is_embedding_name", "gradient_eval",
    "simd_best", "simd_available", "simd_name", "save_file", "bf16_to_float32", "float32_to_bf16",
    "ratios_from_logits", "ratios_jacobian", "logits_gradient", "logits_from_ratios",
    "delta_dot", "search", "sweep", "project_ratios", "pareto_front",
    "pack_create", "pack_open", "pack_unpack", "pack_verify", "pack_needs_base",
    "Recipe", "RecipeTensor", "RecipeError", "side_file_names",
]

#: The C header version this binding was written for (include/hma.h 1.0.0).
HEADER_VERSION = (1, 0, 0)
#: The binding's own version (pyproject.toml reads it): HEADER_VERSION as text.
__version__ = "1.0.0"
#: The folder of the installed libhma.so.1; `make install` writes it here.
_LIBDIR = None

# ---------------------------------------------------------------------------
# Loading the library
# ---------------------------------------------------------------------------


def _candidates():
    env = os.environ.get("HMA_LIBRARY")
    if env:
        return [env]  # an explicit choice is never second-guessed
    here = os.path.dirname(os.path.abspath(__file__))
    out = [os.path.normpath(os.path.join(here, "..", "..", "lib", "libhma.so.1"))]
    if _LIBDIR:
        out.append(os.path.join(_LIBDIR, "libhma.so.1"))
    found = ctypes.util.find_library("hma")
    if found:
        out.append(found)
    out.append("libhma.so.1")  # the dynamic linker's own search (LD_LIBRARY_PATH, ldconfig)
    for prefix in (sys.prefix, "/usr/local", "/usr"):
        out.append(os.path.join(prefix, "lib", "libhma.so.1"))
    return out


def _load():
    tried = []
    for cand in _candidates():
        if os.sep in cand and not os.path.exists(cand):
            tried.append(cand + " (missing)")
            continue
        try:
            lib = ctypes.CDLL(cand)
        except OSError as e:
            tried.append("%s (%s)" % (cand, e))
            continue
        try:
            lib.hma_version_number.restype = ctypes.c_uint
            lib.hma_version_number.argtypes = []
            num = lib.hma_version_number()
        except AttributeError:
            tried.append(cand + " (not libhma: no hma_version_number)")
            continue
        want = HEADER_VERSION[0] * 10000 + HEADER_VERSION[1] * 100 + HEADER_VERSION[2]
        if num // 10000 != HEADER_VERSION[0] or num < want:
            raise ImportError("hma: %s is libhma %d.%d.%d; this binding needs %d.x >= %d.%d.%d"
                              % (cand, num // 10000, num // 100 % 100, num % 100, HEADER_VERSION[0],
                                 *HEADER_VERSION))
        return lib, cand
    raise ImportError("hma: cannot load libhma.so.1 (set HMA_LIBRARY to its path); tried: "
                      + "; ".join(tried))


_lib, _lib_path = _load()

c_int, c_uint, c_long, c_size_t = ctypes.c_int, ctypes.c_uint, ctypes.c_long, ctypes.c_size_t
c_u64, c_double, c_char_p, c_void_p = ctypes.c_uint64, ctypes.c_double, ctypes.c_char_p, ctypes.c_void_p
P = ctypes.POINTER
_PD = P(c_double)
_SIZE_MAX = (1 << (8 * ctypes.sizeof(c_size_t))) - 1
NPOS = _SIZE_MAX  # HMA_NPOS: "no such position" (hma_plan_find, hma_plan_copy_unmatched off)

PROGRESS_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_u64, c_u64)
EVAL_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_size_t, _PD, c_size_t, _PD)
GRAD_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_char_p, P(c_void_p), P(c_int), P(c_u64))


class _GroupGradOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("flags", c_uint), ("threads", c_uint)]


class _RatioOptOptions(ctypes.Structure):
    # method: hma_opt_method (a C enum, int-sized)
    _fields_ = [("struct_size", c_size_t), ("method", c_int), ("lr", c_double), ("mean", c_double),
                ("eps", c_double), ("penalty", c_double), ("momentum", c_double),
                ("beta1", c_double), ("beta2", c_double), ("adam_eps", c_double)]


class _SearchOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("k", c_size_t), ("mean", c_double), ("lo", c_double),
                ("hi", c_double), ("lo_each", _PD), ("hi_each", _PD), ("budget", c_size_t),
                ("seed", c_u64), ("n_scores", c_size_t), ("weights", _PD),
                ("tolerance", c_double), ("start", _PD), ("prior", c_void_p),
                ("batch", c_size_t)]


class _SweepOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("ma_ratios", _PD), ("n_ma", c_size_t),
                ("hma_means", _PD), ("n_means", c_size_t), ("search", _SearchOptions)]


class _PackOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("level", c_int), ("threads", c_uint), ("chunk_size", c_u64)]


class _RecipeOptions(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("seed", c_u64), ("threads", c_uint), ("shard_size", c_u64),
                ("progress", PROGRESS_FN), ("progress_user", c_void_p)]


class _PackStats(ctypes.Structure):
    _fields_ = [("struct_size", c_size_t), ("raw_bytes", c_u64), ("packed_bytes", c_u64), ("tensors", c_u64),
                ("tensors_on_base", c_u64), ("chunks", c_u64), ("seconds", c_double)]


_SIGNATURES = {
    # version, errors, limits, dtypes
    "hma_version_string": (c_char_p, []),
    "hma_strerror": (c_char_p, [c_int]),
    "hma_last_error": (c_char_p, []),
    "hma_last_error_code": (c_int, []),
    "hma_max_dims": (c_uint, []),
    "hma_dtype_name": (c_char_p, [c_int]),
    "hma_dtype_from_name": (c_int, [c_char_p, P(c_int)]),
    "hma_dtype_bits": (c_uint, [c_int]),
    "hma_dtype_is_float": (c_int, [c_int]),
    # store
    "hma_store_open": (c_int, [P(c_void_p), c_char_p, c_uint]),
    "hma_store_close": (None, [c_void_p]),
    "hma_store_count": (c_size_t, [c_void_p]),
    "hma_store_tensor": (c_void_p, [c_void_p, c_size_t]),
    "hma_store_find": (c_void_p, [c_void_p, c_char_p]),
    "hma_store_metadata_count": (c_size_t, [c_void_p]),
    "hma_store_metadata_at": (c_int, [c_void_p, c_size_t, P(c_char_p), P(c_char_p)]),
    "hma_store_metadata": (c_char_p, [c_void_p, c_char_p]),
    "hma_store_file_count": (c_size_t, [c_void_p]),
    "hma_store_file_path": (c_char_p, [c_void_p, c_size_t]),
    "hma_store_read": (c_int, [c_void_p, c_void_p, c_u64, c_void_p, c_size_t]),
    "hma_tensor_name": (c_char_p, [c_void_p]),
    "hma_tensor_dtype": (c_int, [c_void_p]),
    "hma_tensor_ndim": (c_uint, [c_void_p]),
    "hma_tensor_shape": (P(c_u64), [c_void_p]),
    "hma_tensor_nelements": (c_u64, [c_void_p]),
    "hma_tensor_nbytes": (c_u64, [c_void_p]),
    "hma_tensor_data": (c_void_p, [c_void_p]),
    "hma_tensor_data_get": (c_int, [c_void_p, P(c_void_p)]),
    "hma_tensor_index": (c_size_t, [c_void_p]),
    "hma_tensor_file": (c_size_t, [c_void_p]),
    # writer
    "hma_writer_create": (c_int, [P(c_void_p), c_char_p, c_u64]),
    "hma_writer_set_metadata": (c_int, [c_void_p, c_char_p, c_char_p]),
    "hma_writer_add_tensor": (c_int, [c_void_p, c_char_p, c_int, c_uint, P(c_u64)]),
    "hma_writer_begin": (c_int, [c_void_p]),
    "hma_writer_count": (c_size_t, [c_void_p]),
    "hma_writer_find": (c_size_t, [c_void_p, c_char_p]),
    "hma_writer_add_file": (c_int, [c_void_p, c_char_p, c_char_p]),
    "hma_writer_write": (c_int, [c_void_p, c_size_t, c_u64, c_void_p, c_size_t]),
    "hma_writer_commit": (c_int, [c_void_p]),
    "hma_writer_free": (None, [c_void_p]),
    # plans
    "hma_simd_best": (c_int, []),
    "hma_simd_available": (c_int, [c_int]),
    "hma_simd_name": (c_char_p, [c_int]),
    "hma_layer_from_name": (c_long, [c_char_p]),
    "hma_is_embedding_name": (c_int, [c_char_p]),
    "hma_gradient_eval": (c_double, [_PD, c_size_t, c_double]),
    "hma_plan_create": (c_int, [P(c_void_p), P(c_void_p), c_size_t]),
    "hma_plan_free": (None, [c_void_p]),
    "hma_plan_input_count": (c_size_t, [c_void_p]),
    "hma_plan_layer_count": (c_long, [c_void_p]),
    "hma_plan_set_method": (c_int, [c_void_p, c_int]),
    "hma_plan_set_base": (c_int, [c_void_p, c_size_t]),
    "hma_plan_set_normalize": (c_int, [c_void_p, c_int]),
    "hma_plan_set_groups": (c_int, [c_void_p, c_char_p]),
    "hma_plan_groups_spec": (c_char_p, [c_void_p]),
    "hma_plan_group_count": (c_size_t, [c_void_p]),
    "hma_plan_add_rule": (c_int, [c_void_p, c_char_p, c_int]),
    "hma_plan_clear_rules": (None, [c_void_p]),
    "hma_plan_set_output_dtype": (c_int, [c_void_p, c_int]),
    "hma_plan_copy_unmatched": (c_int, [c_void_p, c_size_t]),
    "hma_plan_input": (c_void_p, [c_void_p, c_size_t]),
    "hma_plan_set_metadata": (c_int, [c_void_p, c_char_p, c_char_p]),
    "hma_plan_merge_into": (c_int, [c_void_p, c_void_p]),
    "hma_plan_set_flags": (c_int, [c_void_p, c_uint]),
    "hma_plan_set_threads": (c_int, [c_void_p, c_uint]),
    "hma_plan_set_simd": (c_int, [c_void_p, c_int]),
    "hma_plan_set_progress": (c_int, [c_void_p, PROGRESS_FN, c_void_p]),
    "hma_plan_set_weights": (c_int, [c_void_p, _PD, c_size_t]),
    "hma_plan_set_ratios": (c_int, [c_void_p, _PD, c_size_t]),
    "hma_plan_set_ratio": (c_int, [c_void_p, c_double]),
    "hma_plan_set_ratio_gradient": (c_int, [c_void_p, _PD, c_size_t]),
    "hma_plan_set_weight_gradient": (c_int, [c_void_p, _PD, c_size_t]),
    "hma_plan_get_weights": (c_int, [c_void_p, _PD, c_size_t, P(c_u64)]),
    "hma_plan_mean_weights": (c_int, [c_void_p, _PD, c_size_t]),
    "hma_plan_generation": (c_u64, [c_void_p]),
    "hma_plan_tensor_count": (c_size_t, [c_void_p]),
    "hma_plan_find": (c_size_t, [c_void_p, c_char_p]),
    "hma_plan_tensor_name": (c_char_p, [c_void_p, c_size_t]),
    "hma_plan_tensor_layer": (c_long, [c_void_p, c_size_t]),
    "hma_plan_tensor_group": (c_int, [c_void_p, c_size_t]),
    "hma_plan_tensor_action": (c_int, [c_void_p, c_size_t]),
    "hma_plan_tensor_reason": (c_char_p, [c_void_p, c_size_t]),
    "hma_plan_tensor_input": (c_void_p, [c_void_p, c_size_t, c_size_t]),
    "hma_plan_tensor_dtype": (c_int, [c_void_p, c_size_t]),
    "hma_plan_tensor_nbytes": (c_u64, [c_void_p, c_size_t]),
    "hma_plan_tensor_weights": (c_int, [c_void_p, c_size_t, _PD, c_size_t, P(c_u64)]),
    "hma_plan_merge_to": (c_int, [c_void_p, c_char_p, c_u64]),
    "hma_plan_merge_tensor_at": (c_int, [c_void_p, c_size_t, c_u64, c_void_p, c_size_t, P(c_u64)]),
    "hma_plan_merge_tensor": (c_int, [c_void_p, c_char_p, c_u64, c_void_p, c_size_t, P(c_u64)]),
    "hma_plan_tensor_stats": (c_int, [c_void_p, c_size_t, c_size_t, c_size_t, _PD]),
    # search
    "hma_ratios_from_logits": (c_int, [c_size_t, _PD, c_double, c_double, _PD]),
    "hma_ratios_jacobian": (c_int, [c_size_t, _PD, c_double, c_double, _PD]),
    "hma_logits_gradient": (c_int, [c_size_t, _PD, c_double, c_double, _PD, _PD]),
    "hma_logits_from_ratios": (c_int, [c_size_t, _PD, c_double, _PD, _PD]),
    "hma_delta_dot": (c_int, [c_u64, c_void_p, c_int, c_void_p, c_int, c_void_p, c_int, _PD]),
    "hma_group_grad_options_init_size": (None, [P(_GroupGradOptions), c_size_t]),
    "hma_plan_group_gradients": (c_int, [c_void_p, GRAD_FN, c_void_p,
                                         P(_GroupGradOptions), _PD, c_size_t]),
    "hma_plan_group_gradients_store": (c_int, [c_void_p, c_void_p,
                                               P(_GroupGradOptions), _PD, c_size_t]),
    "hma_ratio_opt_options_init_size": (None, [P(_RatioOptOptions), c_size_t]),
    "hma_ratio_opt_create": (c_int, [P(c_void_p), c_size_t, _PD, P(_RatioOptOptions)]),
    "hma_ratio_opt_free": (None, [c_void_p]),
    "hma_ratio_opt_k": (c_size_t, [c_void_p]),
    "hma_ratio_opt_steps": (c_u64, [c_void_p]),
    "hma_ratio_opt_get": (c_int, [c_void_p, _PD, _PD]),
    "hma_ratio_opt_step": (c_int, [c_void_p, _PD, _PD, _PD]),
    "hma_search_options_init_size": (None, [P(_SearchOptions), c_size_t]),
    "hma_search": (c_int, [P(_SearchOptions), EVAL_FN, c_void_p, P(c_void_p)]),
    "hma_searcher_create": (c_int, [P(c_void_p), P(_SearchOptions)]),
    "hma_searcher_ask": (c_int, [c_void_p, _PD, c_size_t, P(c_size_t)]),
    "hma_searcher_tell": (c_int, [c_void_p, _PD, c_size_t]),
    "hma_searcher_done": (c_int, [c_void_p]),
    "hma_searcher_points": (c_int, [c_void_p, P(c_void_p)]),
    "hma_searcher_free": (None, [c_void_p]),
    "hma_project_ratios": (c_int, [c_size_t, _PD, c_double, _PD, _PD, _PD]),
    "hma_points_count": (c_size_t, [c_void_p]),
    "hma_points_k": (c_size_t, [c_void_p]),
    "hma_points_n_scores": (c_size_t, [c_void_p]),
    "hma_points_ratios": (_PD, [c_void_p, c_size_t]),
    "hma_points_scores": (_PD, [c_void_p, c_size_t]),
    "hma_points_info": (c_int, [c_void_p, c_size_t, P(c_int), P(c_size_t)]),  # hma_point_kind *
    "hma_points_best": (c_size_t, [c_void_p]),
    "hma_points_free": (None, [c_void_p]),
    "hma_pareto_front": (c_int, [c_size_t, _PD, _PD, c_uint, P(c_size_t), P(c_size_t)]),
    "hma_points_pareto": (c_int, [c_void_p, c_size_t, c_size_t, c_uint, P(c_size_t), P(c_size_t)]),
    "hma_sweep_options_init_size": (None, [P(_SweepOptions), c_size_t]),
    "hma_sweep": (c_int, [P(_SweepOptions), EVAL_FN, c_void_p, P(c_void_p)]),
    # packs
    "hma_pack_options_init_size": (None, [P(_PackOptions), c_size_t]),
    "hma_pack_stats_init_size": (None, [P(_PackStats), c_size_t]),
    "hma_pack_create": (c_int, [c_char_p, c_void_p, c_char_p, P(_PackOptions), P(_PackStats)]),
    "hma_pack_open": (c_int, [P(c_void_p), c_char_p, c_void_p, c_uint, c_uint]),
    "hma_pack_unpack": (c_int, [c_char_p, c_void_p, c_char_p, P(_PackOptions), P(_PackStats)]),
    "hma_pack_verify": (c_int, [c_char_p, c_void_p, c_char_p, P(_PackOptions), P(_PackStats)]),
    "hma_pack_needs_base": (c_int, [c_char_p, P(c_int)]),
    # recipes
    "hma_side_file_name": (c_char_p, [c_size_t]),
    "hma_recipe_load": (c_int, [P(c_void_p), c_char_p]),
    "hma_recipe_parse": (c_int, [P(c_void_p), c_char_p, c_size_t, c_char_p]),
    "hma_recipe_free": (None, [c_void_p]),
    "hma_recipe_method": (c_char_p, [c_void_p]),
    "hma_recipe_resolve": (c_int, [c_void_p]),
    "hma_recipe_model_count": (c_size_t, [c_void_p]),
    "hma_recipe_model_path": (c_char_p, [c_void_p, c_size_t]),
    "hma_recipe_tensor_count": (c_size_t, [c_void_p]),
    "hma_recipe_tensor_name": (c_char_p, [c_void_p, c_size_t]),
    "hma_recipe_tensor_dtype": (c_int, [c_void_p, c_size_t]),
    "hma_recipe_tensor_shape": (P(c_u64), [c_void_p, c_size_t, P(c_uint)]),
    "hma_recipe_tensor_t": (c_double, [c_void_p, c_size_t]),
    "hma_recipe_tensor_source_count": (c_size_t, [c_void_p, c_size_t]),
    "hma_recipe_tensor_source": (c_int, [c_void_p, c_size_t, c_size_t, P(c_size_t), P(c_char_p)]),
    "hma_recipe_tensor_param": (c_int, [c_void_p, c_size_t, c_size_t, c_char_p, P(c_double)]),
    "hma_recipe_note_count": (c_size_t, [c_void_p]),
    "hma_recipe_note": (c_char_p, [c_void_p, c_size_t]),
    "hma_recipe_options_init_size": (None, [P(_RecipeOptions), c_size_t]),
    "hma_recipe_set_metadata": (c_int, [c_void_p, c_char_p, c_char_p]),
    "hma_recipe_merge_to": (c_int, [c_void_p, c_char_p, P(_RecipeOptions)]),
}


class _Missing:
    """Stands for a function this libhma build lacks; calling it raises."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        raise HmaError(30, "%s: not exported by %s (library older than this binding?)"
                       % (self.name, _lib_path))


class _C:
    """The declared C functions, as attributes without the hma_ prefix."""


C = _C()
for _name, (_res, _args) in _SIGNATURES.items():
    try:
        _f = getattr(_lib, _name)
    except AttributeError:
        setattr(C, _name[4:], _Missing(_name))
        continue
    _f.restype = _res
    _f.argtypes = _args
    setattr(C, _name[4:], _f)
C.version_number = _lib.hma_version_number

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------

_CODE_NAMES = [
    "HMA_OK", "HMA_ERR_INVALID_ARGUMENT", "HMA_ERR_NO_MEMORY", "HMA_ERR_IO", "HMA_ERR_NOT_FOUND",
    "HMA_ERR_HEADER_SIZE", "HMA_ERR_TRUNCATED", "HMA_ERR_JSON_SYNTAX", "HMA_ERR_JSON_UTF8",
    "HMA_ERR_JSON_DEPTH", "HMA_ERR_DUPLICATE_KEY", "HMA_ERR_BAD_DTYPE", "HMA_ERR_BAD_SHAPE",
    "HMA_ERR_BAD_OFFSETS", "HMA_ERR_SIZE_MISMATCH", "HMA_ERR_TRAILING_DATA", "HMA_ERR_BAD_NAME",
    "HMA_ERR_BAD_METADATA", "HMA_ERR_BAD_INDEX", "HMA_ERR_BAD_SHARD_PATH", "HMA_ERR_INDEX_MISMATCH",
    "HMA_ERR_OVERFLOW", "HMA_ERR_STATE", "HMA_ERR_OVERWRITES_INPUT", "HMA_ERR_CANCELLED",
    "HMA_ERR_MISMATCH", "HMA_ERR_UNSUPPORTED_DTYPE", "HMA_ERR_NONFINITE", "HMA_ERR_CORRUPT",
    "HMA_ERR_WRONG_BASE", "HMA_ERR_UNSUPPORTED", "HMA_ERR_THREAD", "HMA_ERR_INCOMPLETE",
    "HMA_ERR_CALLBACK", "HMA_ERR_EXISTS", "HMA_ERR_RECIPE",
]
# The codes as module constants: hma.ERR_IO == 3, ...
for _i, _n in enumerate(_CODE_NAMES):
    globals()[_n[4:]] = _i
    __all__.append(_n[4:])


class HmaError(Exception):
    """A libhma call failed. .code is the hma_error number, .code_name its
    name ("HMA_ERR_IO"), .message the detail message (file, tensor, what was
    expected)."""

    def __init__(self, code, message=""):
        self.code = int(code)
        self.message = message
        super().__init__(code, message)

    @property
    def code_name(self):
        if 0 <= self.code < len(_CODE_NAMES):
            return _CODE_NAMES[self.code]
        return "HMA_ERR_%d" % self.code

    def __str__(self):
        what = strerror(self.code)
        if self.message:
            return "%s (%s: %s)" % (self.message, self.code_name, what)
        return "%s: %s" % (self.code_name, what)


class InvalidArgumentError(HmaError, ValueError):
    """HMA_ERR_INVALID_ARGUMENT."""


class OutOfMemoryError(HmaError, MemoryError):
    """HMA_ERR_NO_MEMORY."""


class HmaIOError(HmaError):
    """HMA_ERR_IO: open/read/write/mmap/fsync/rename failed."""


class NotFoundError(HmaError, LookupError):
    """HMA_ERR_NOT_FOUND: no such file, tensor, key or index entry."""


class FormatError(HmaError):
    """A malformed checkpoint: HMA_ERR_HEADER_SIZE .. HMA_ERR_OVERFLOW."""


class StateError(HmaError):
    """HMA_ERR_STATE: a call not valid now (also: a closed or busy Python handle)."""


class OverwritesInputError(HmaError):
    """HMA_ERR_OVERWRITES_INPUT."""


class CancelledError(HmaError):
    """HMA_ERR_CANCELLED: a callback asked to stop."""


class MismatchError(HmaError):
    """HMA_ERR_MISMATCH: inputs disagree."""


class UnsupportedError(HmaError):
    """HMA_ERR_UNSUPPORTED_DTYPE and HMA_ERR_UNSUPPORTED."""


class NonFiniteError(HmaError):
    """HMA_ERR_NONFINITE."""


class CorruptError(HmaError):
    """HMA_ERR_CORRUPT: a pack failed its checks."""


class WrongBaseError(HmaError):
    """HMA_ERR_WRONG_BASE."""


class ThreadError(HmaError):
    """HMA_ERR_THREAD."""


class IncompleteError(HmaError):
    """HMA_ERR_INCOMPLETE."""


class CallbackError(HmaError):
    """HMA_ERR_CALLBACK."""


class ExistsError(HmaError):
    """HMA_ERR_EXISTS."""


class RecipeError(HmaError, ValueError):
    """HMA_ERR_RECIPE: a merge recipe is malformed or asks for something impossible."""


_CLASS_OF = {1: InvalidArgumentError, 2: OutOfMemoryError, 3: HmaIOError, 4: NotFoundError,
             22: StateError, 23: OverwritesInputError, 24: CancelledError, 25: MismatchError,
             26: UnsupportedError, 27: NonFiniteError, 28: CorruptError, 29: WrongBaseError,
             30: UnsupportedError, 31: ThreadError, 32: IncompleteError, 33: CallbackError,
             34: ExistsError, 35: RecipeError}
for _c in range(5, 22):
    _CLASS_OF[_c] = FormatError


def _s(b):
    return b.decode("utf-8", "replace") if b is not None else None


def strerror(code):
    """Static description of an error code ("invalid argument", ...)."""
    return _s(C.strerror(int(code)))


def _error(code):
    """The exception for a failed call; reads this thread's message now."""
    return _CLASS_OF.get(code, HmaError)(code, _s(C.last_error()))


def _check(rc):
    if rc != 0:
        raise _error(rc)


def _closed(what):
    return StateError(22, "%s is closed" % what)


# ---------------------------------------------------------------------------
# Enums and small converters
# ---------------------------------------------------------------------------


class Dtype(enum.IntEnum):
    BOOL = 0
    U8 = 1
    I8 = 2
    I16 = 3
    U16 = 4
    I32 = 5
    U32 = 6
    I64 = 7
    U64 = 8
    F16 = 9
    BF16 = 10
    F32 = 11
    F64 = 12
    C64 = 13
    F8_E4M3 = 14
    F8_E5M2 = 15
    F8_E8M0 = 16
    F8_E4M3FNUZ = 17
    F8_E5M2FNUZ = 18
    F4 = 19
    F6_E2M3 = 20
    F6_E3M2 = 21


class Method(enum.IntEnum):
    LINEAR = 0
    TASK_ARITHMETIC = 1
    SLERP = 2


class Action(enum.IntEnum):
    MERGE = 0
    COPY_IDENTICAL = 1
    COPY_FROM = 2
    SKIP = 3
    MISMATCH = 4


class Simd(enum.IntEnum):
    AUTO = -1
    SCALAR = 0
    AVX2 = 1
    AVX512 = 2


class PointKind(enum.IntEnum):
    SEARCH = 0
    MA = 1
    PRIOR = 2


GROUP_MEAN = -1
GROUP_NONE = -2
MERGE_ALLOW_NONFINITE = 1
GRAD_ALLOW_MISSING = 1
CANCEL = EVAL_CANCEL = -1  # HMA_CANCEL (HMA_EVAL_CANCEL is its former name)
PARETO_MAX_X = 1
PARETO_MAX_Y = 2
OPEN_PREAD = 1

# numpy typestr of each dtype; BF16 is viewed as uint16, FP8/FP4/FP6 as raw bytes.
_TYPESTR = {0: "|b1", 1: "|u1", 2: "|i1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<i8",
            8: "<u8", 9: "<f2", 10: "<u2", 11: "<f4", 12: "<f8", 13: "<c8"}


def _dtype(d):
    """A Dtype from a Dtype, int, name ("BF16") or numpy dtype."""
    if isinstance(d, Dtype):
        return d
    if isinstance(d, str):
        try:
            return Dtype[d]
        except KeyError:
            raise InvalidArgumentError(11, "unknown dtype %r (expected one of %s)"
                                       % (d, ", ".join(Dtype.__members__))) from None
    if isinstance(d, int) and not isinstance(d, bool):
        try:
            return Dtype(d)
        except ValueError:
            raise InvalidArgumentError(11, "unknown dtype number %d" % d) from None
    if _np is not None:
        try:
            nd = _np.dtype(d)
        except TypeError:
            nd = None
        if nd is not None:
            m = {"bool": Dtype.BOOL, "uint8": Dtype.U8, "int8": Dtype.I8, "int16": Dtype.I16,
                 "uint16": Dtype.U16, "int32": Dtype.I32, "uint32": Dtype.U32, "int64": Dtype.I64,
                 "uint64": Dtype.U64, "float16": Dtype.F16, "float32": Dtype.F32,
                 "float64": Dtype.F64, "complex64": Dtype.C64}.get(nd.name)
            if m is not None:
                return m
    raise TypeError("dtype must be a Dtype, a name like 'BF16' or a numpy dtype, not %r" % (d,))


def _cstr(s, what="string"):
    """UTF-8 bytes for C; refuses NUL bytes (C would silently cut the string)."""
    if isinstance(s, os.PathLike):
        s = os.fspath(s)
    if isinstance(s, str):
        s = s.encode("utf-8", "surrogateescape")
    elif not isinstance(s, bytes):
        raise TypeError("%s must be str, bytes or a path, not %s" % (what, type(s).__name__))
    if b"\0" in s:
        raise InvalidArgumentError(1, "%s %r contains a NUL byte" % (what, s))
    return s


def _num(x, what="value"):
    """A float from a real number; strings and other types raise TypeError."""
    if not isinstance(x, numbers.Real):
        raise TypeError("%s must be a real number, not %s" % (what, type(x).__name__))
    return float(x)


def _doubles(seq, what="values"):
    """A ctypes double array from an iterable of numbers (or a numpy array)."""
    if isinstance(seq, (str, bytes)) or not hasattr(seq, "__iter__"):
        raise TypeError("%s must be a sequence of numbers, not %s" % (what, type(seq).__name__))
    vals = [_num(x, what[:-1] if what.endswith("s") else what)
            for x in (seq.ravel() if hasattr(seq, "ravel") else seq)]
    return (c_double * max(len(vals), 1))(*vals), len(vals)


def _need_numpy(what):
    if _np is None:
        raise HmaError(30, "%s needs numpy, which is not importable here" % what)


def _index(v, what):
    if isinstance(v, bool) or not hasattr(v, "__index__"):
        raise TypeError("%s must be an integer, not %s" % (what, type(v).__name__))
    return v.__index__()


def _readable(data):
    """(address, nbytes, keepalive) of a C-contiguous bytes-like object."""
    if _np is not None and isinstance(data, _np.ndarray):
        arr = _np.ascontiguousarray(data)
        return arr.ctypes.data, arr.nbytes, arr
    if isinstance(data, bytes):
        p = ctypes.c_char_p(data)  # points into the bytes object itself, no copy
        return ctypes.cast(p, c_void_p).value, len(data), (data, p)
    try:
        mv = memoryview(data)
    except TypeError:
        raise TypeError("data must be bytes-like or a numpy array, not %s" % type(data).__name__) from None
    if not mv.c_contiguous:
        raise TypeError("data must be C-contiguous")
    mv = mv.cast("B")
    if mv.readonly:
        return _readable(mv.tobytes())
    buf = (ctypes.c_char * len(mv)).from_buffer(mv)
    return ctypes.addressof(buf), len(mv), (buf, mv)


def _writable(buf):
    """(address, nbytes, keepalive) of a writable C-contiguous buffer."""
    if _np is not None and isinstance(buf, _np.ndarray):
        if not buf.flags.c_contiguous or not buf.flags.writeable:
            raise InvalidArgumentError(1, "output array must be writable and C-contiguous")
        return buf.ctypes.data, buf.nbytes, buf
    try:
        mv = memoryview(buf)
    except TypeError:
        raise TypeError("output must be a writable buffer or numpy array, not %s"
                        % type(buf).__name__) from None
    if mv.readonly or not mv.c_contiguous:
        raise InvalidArgumentError(1, "output buffer must be writable and C-contiguous")
    mv = mv.cast("B")
    cbuf = (ctypes.c_char * len(mv)).from_buffer(mv)
    return ctypes.addressof(cbuf), len(mv), (cbuf, mv)


class _CallbackGuard:
    """Runs a Python callable inside a C callback: any exception (even
    KeyboardInterrupt) is kept, the callback returns `cancel`, and raise_pending()
    re-raises it once the C call is back."""

    def __init__(self, cancel):
        self.cancel = cancel
        self.exc = None

    def run(self, fn, *args):
        if self.exc is not None:
            return self.cancel
        try:
            return fn(*args)
        except BaseException as e:  # noqa: B902 - re-raised after the C call
            self.exc = e
            return self.cancel

    def raise_pending(self):
        if self.exc is not None:
            e, self.exc = self.exc, None
            raise e


# ---------------------------------------------------------------------------
# Handles: one C pointer, freed once, never used after
# ---------------------------------------------------------------------------


class _Handle:
    """Owns one C pointer. Calls run inside `with self._use() as p:`; close()
    refuses while another thread is inside a call, and frees the pointer only
    once nothing depends on it any more (pins: arrays, plans, pack stores)."""

    _kind = "handle"

    def __init__(self):
        self._ptr = None
        self._closed = True
        self._lock = threading.Lock()
        self._busy = 0
        self._pins = 0

    def _adopt(self, ptr):
        self._ptr = ptr
        self._closed = False

    def _use(self):
        return _Use(self)

    def _pin(self):
        with self._lock:
            if self._closed:
                raise _closed(self._kind)
            self._pins += 1

    def _unpin(self):
        with self._lock:
            self._pins -= 1
            free = self._closed and self._pins == 0 and self._busy == 0
        if free:
            self._free()

    def _free(self):
        with self._lock:
            ptr, self._ptr = self._ptr, None
        if ptr is not None:
            self._release(ptr)

    def _release(self, ptr):  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @property
    def closed(self):
        return self._closed

    def close(self):
        """Free the C object now (or, for a Store still used by arrays or plans,
        as soon as the last of them goes). Idempotent."""
        with self._lock:
            if self._closed:
                return
            if self._busy:
                raise StateError(22, "%s is in use by another thread; close it after that call"
                                 % self._kind)
            self._closed = True
            free = self._pins == 0
        if free:
            self._free()

    def __enter__(self):
        if self._closed:
            raise _closed(self._kind)
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Pins hold references to us, so at collection nothing depends on the pointer.
        try:
            if getattr(self, "_ptr", None) is not None:
                self._closed = True
                self._free()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


class _Use:
    __slots__ = ("h",)

    def __init__(self, h):
        self.h = h

    def __enter__(self):
        h = self.h
        with h._lock:
            if h._closed or h._ptr is None:
                raise _closed(h._kind)
            h._busy += 1
            return h._ptr

    def __exit__(self, *exc):
        h = self.h
        with h._lock:
            h._busy -= 1
            free = h._closed and h._busy == 0 and h._pins == 0
        if free:
            h._free()


# ---------------------------------------------------------------------------
# Version and free functions
# ---------------------------------------------------------------------------


def version():
    """The linked library's version string, e.g. "1.0.0"."""
    return _s(C.version_string())


def version_number():
    """The linked library's version as MAJOR*10000 + MINOR*100 + PATCH."""
    return int(C.version_number())


def library_path():
    """The path the library was loaded from."""
    return _lib_path


def max_dims():
    return int(C.max_dims())


def dtype_bits(dtype):
    return int(C.dtype_bits(_dtype(dtype)))


def dtype_is_float(dtype):
    """True if libhma can average tensors of this dtype (F16, BF16, F32, F64)."""
    return bool(C.dtype_is_float(_dtype(dtype)))


def layer_from_name(name):
    """The layer index in a tensor name, or None."""
    v = C.layer_from_name(_cstr(name, "name"))
    return None if v < 0 else int(v)


def is_embedding_name(name):
    return bool(C.is_embedding_name(_cstr(name, "name")))


def gradient_eval(anchors, t):
    """mergekit-style gradient value at t in [0, 1] over evenly spread anchors."""
    arr, n = _doubles(anchors, "anchors")
    if n == 0:
        raise InvalidArgumentError(1, "gradient_eval: no anchors")
    return C.gradient_eval(arr, n, _num(t, "t"))


def simd_best():
    return Simd(C.simd_best())


def simd_available(level):
    return bool(C.simd_available(int(level)))


def simd_name(level):
    return _s(C.simd_name(int(level)))


# ---------------------------------------------------------------------------
# Store
# ---------------------------------------------------------------------------

TensorInfo = namedtuple("TensorInfo", "name dtype shape nelements nbytes index file")
TensorInfo.__doc__ = "One tensor of a Store: dtype is a Dtype, shape a tuple of ints."


def _tensor_info(t):
    ndim = C.tensor_ndim(t)
    shp = C.tensor_shape(t)
    return TensorInfo(_s(C.tensor_name(t)), Dtype(C.tensor_dtype(t)),
                      tuple(int(shp[i]) for i in range(ndim)), int(C.tensor_nelements(t)),
                      int(C.tensor_nbytes(t)), int(C.tensor_index(t)), int(C.tensor_file(t)))


class _Mapped:
    """The base object of a zero-copy array: numpy reads __array_interface__
    once; the object then keeps the Store (and so its mapping) alive."""

    __slots__ = ("__array_interface__", "_store", "__weakref__")

    def __init__(self, store, ptr, shape, typestr):
        store._pin()
        self._store = store
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": typestr,
                                    "data": (ptr, True), "strides": None}

    def __del__(self):
        try:
            self._store._unpin()
        except Exception:
            pass


class Store(_Handle):
    """An open, validated, immutable checkpoint (a .safetensors file, a sharded
    index, a model folder, or a pack via pack_open()).

    len(store), iteration over tensor names (store order), `name in store`,
    store[name] -> TensorInfo, store.metadata -> dict, store.numpy(name) ->
    zero-copy read-only array. Every read method is thread-safe.
    """

    _kind = "Store"

    def __init__(self, path, pread=False):
        super().__init__()
        out = c_void_p()
        _check(C.store_open(ctypes.byref(out), _cstr(path, "path"), OPEN_PREAD if pread else 0))
        self._adopt(out.value)
        self.path = os.fspath(path) if not isinstance(path, bytes) else path
        self.pread = bool(pread)
        self._deps = []

    @classmethod
    def _from_ptr(cls, ptr, path, deps):
        self = cls.__new__(cls)
        _Handle.__init__(self)
        self._adopt(ptr)
        self.path, self.pread, self._deps = path, False, deps
        return self

    def _release(self, ptr):
        C.store_close(ptr)
        deps, self._deps = self._deps, []
        for d in deps:
            d._unpin()

    def __repr__(self):
        return "<hma.Store %r%s>" % (self.path, " closed" if self._closed else "")

    def __len__(self):
        with self._use() as p:
            return int(C.store_count(p))

    def names(self):
        """Tensor names in store order."""
        with self._use() as p:
            return [_s(C.tensor_name(C.store_tensor(p, i))) for i in range(C.store_count(p))]

    def __iter__(self):
        return iter(self.names())

    def __contains__(self, name):
        if not isinstance(name, (str, bytes)):
            return False
        with self._use() as p:
            return bool(C.store_find(p, _cstr(name, "name")))

    def _find(self, p, name):
        t = C.store_find(p, _cstr(name, "tensor name"))
        if not t:
            raise KeyError(name)
        return t

    def __getitem__(self, name):
        with self._use() as p:
            return _tensor_info(self._find(p, name))

    def tensors(self):
        """TensorInfo of every tensor, in store order."""
        with self._use() as p:
            return [_tensor_info(C.store_tensor(p, i)) for i in range(C.store_count(p))]

    @property
    def metadata(self):
        """The __metadata__ entries as a dict (file order)."""
        with self._use() as p:
            out = {}
            k, v = c_char_p(), c_char_p()
            for i in range(C.store_metadata_count(p)):
                _check(C.store_metadata_at(p, i, ctypes.byref(k), ctypes.byref(v)))
                out[_s(k.value)] = _s(v.value)
            return out

    @property
    def files(self):
        """Paths of the files behind the store."""
        with self._use() as p:
            return [_s(C.store_file_path(p, i)) for i in range(C.store_file_count(p))]

    def read(self, name, offset=0, size=None):
        """Copy `size` bytes (default: to the end) of a tensor from `offset` as bytes.
        Works in every mode (mapped, pread, pack)."""
        offset = _index(offset, "offset")
        with self._use() as p:
            t = self._find(p, name)
            nbytes = C.tensor_nbytes(t)
            if size is None:
                size = max(nbytes - offset, 0) if offset >= 0 else 0
            size = _index(size, "size")
            if offset < 0 or size < 0:
                raise InvalidArgumentError(1, "read: negative offset or size")
            buf = ctypes.create_string_buffer(max(size, 1))
            _check(C.store_read(p, t, offset, buf, size))
            return buf.raw[:size]

    def data_pointer(self, name):
        """Address of the tensor's bytes in the mapping (None in pread mode).
        Raises when the bytes cannot be produced (a pack tensor that does not
        decode)."""
        with self._use() as p:
            return _data_pointer(self._find(p, name))

    def numpy(self, name, bf16="view"):
        """The tensor as a numpy array of its shape.

        Mapped stores: a zero-copy, read-only view of the file's bytes; the
        array keeps the mapping alive (closing the Store is deferred until it
        dies). pread stores: a copy. BF16 comes as uint16 (bf16="view", the
        raw bits) or as a new float32 array (bf16="float32"). FP8/FP4/FP6
        tensors come as the raw uint8 bytes (1-D)."""
        _need_numpy("Store.numpy()")
        if bf16 not in ("view", "float32"):
            raise InvalidArgumentError(1, "bf16 must be 'view' or 'float32', not %r" % (bf16,))
        with self._use() as p:
            t = self._find(p, name)
            info = _tensor_info(t)
            typestr = _TYPESTR.get(int(info.dtype))
            shape = info.shape if typestr else (info.nbytes,)
            typestr = typestr or "|u1"
            ptr = _data_pointer(t)
            if ptr:
                arr = _np.asarray(_Mapped(self, ptr, shape, typestr))
            elif self.pread:
                raw = bytearray(info.nbytes)
                addr, n, keep = _writable(raw)
                _check(C.store_read(p, t, 0, addr, n))
                del keep
                arr = _np.frombuffer(raw, dtype=_np.dtype(typestr)).reshape(shape)
            else:
                raise _error(C.last_error_code() or 1)
        if bf16 == "float32" and info.dtype == Dtype.BF16:
            return bf16_to_float32(arr)
        return arr


def bf16_to_float32(u16):
    """BF16 bits (a uint16 array) as a new float32 array (exact)."""
    _need_numpy("bf16_to_float32()")
    return (_np.asarray(u16, dtype=_np.uint16).astype(_np.uint32) << 16).view(_np.float32)


def float32_to_bf16(f32):
    """float32 values rounded to BF16 bits (round to nearest even; NaN -> 0x7fc0)."""
    _need_numpy("float32_to_bf16()")
    b = _np.ascontiguousarray(f32, dtype=_np.float32).view(_np.uint32)
    r = ((b + _np.uint32(0x7FFF) + ((b >> 16) & _np.uint32(1))) >> 16).astype(_np.uint16)
    return _np.where(_np.isnan(b.view(_np.float32)), _np.uint16(0x7FC0), r)


# ---------------------------------------------------------------------------
# Writer
# ---------------------------------------------------------------------------


def _data_pointer(t):
    """hma_tensor_data_get(): the address, None when the store has no
    zero-copy bytes (pread mode); raises on a failure."""
    out = c_void_p()
    _check(C.tensor_data_get(t, ctypes.byref(out)))
    return out.value


class Writer(_Handle):
    """A safetensors output: add_tensor()..., begin(), write()..., commit().
    Leaving the `with` block (or close()) without commit() abandons the
    output: nothing appears under `path`."""

    _kind = "Writer"

    def __init__(self, path, shard_size=0):
        super().__init__()
        out = c_void_p()
        _check(C.writer_create(ctypes.byref(out), _cstr(path, "path"), _index(shard_size, "shard_size")))
        self._adopt(out.value)
        self.path = path

    def _release(self, ptr):
        C.writer_free(ptr)

    def __repr__(self):
        return "<hma.Writer %r%s>" % (self.path, " closed" if self._closed else "")

    def set_metadata(self, key, value):
        with self._use() as p:
            _check(C.writer_set_metadata(p, _cstr(key, "key"), _cstr(value, "value")))

    def add_tensor(self, name, dtype, shape):
        """Declare the next tensor; returns its index."""
        dims = [_index(d, "shape entry") for d in shape]
        arr = (c_u64 * max(len(dims), 1))(*[d & 0xFFFFFFFFFFFFFFFF for d in dims])
        if any(d < 0 for d in dims):
            raise InvalidArgumentError(12, "shape %r has a negative dimension" % (tuple(dims),))
        with self._use() as p:
            _check(C.writer_add_tensor(p, _cstr(name, "name"), _dtype(dtype), len(dims), arr))
            return int(C.writer_count(p)) - 1

    def begin(self):
        with self._use() as p:
            _check(C.writer_begin(p))

    def __len__(self):
        with self._use() as p:
            return int(C.writer_count(p))

    def add_file(self, name, src_path):
        """Copy the file src_path into the output folder as `name` (e.g.
        "config.json") as part of the commit: copied at begin(), in place
        only once commit() succeeds. Folder outputs only, before begin()."""
        with self._use() as p:
            _check(C.writer_add_file(p, _cstr(name, "name"), _cstr(src_path, "src_path")))

    def find(self, name):
        """Index of a declared tensor, or None."""
        with self._use() as p:
            i = C.writer_find(p, _cstr(name, "name"))
        return None if i == _SIZE_MAX else int(i)

    def write(self, tensor, data, offset=0):
        """Write bytes (any bytes-like object or numpy array) into tensor
        `tensor` (index or name) at byte `offset`. Thread-safe after begin()."""
        if isinstance(tensor, (str, bytes)):
            i = self.find(tensor)
            if i is None:
                raise NotFoundError(4, "writer %s: no declared tensor %r" % (self.path, tensor))
        else:
            i = _index(tensor, "tensor")
        addr, n, keep = _readable(data)
        with self._use() as p:
            _check(C.writer_write(p, i, _index(offset, "offset"), addr, n))
        del keep

    def commit(self):
        with self._use() as p:
            _check(C.writer_commit(p))


def save_file(path, tensors, metadata=None, dtypes=None, shard_size=0):
    """Write a dict name -> numpy array (or (bytes, dtype, shape)) as safetensors.
    `dtypes` may override a tensor's dtype (e.g. {"w": "BF16"} for uint16 bits)."""
    dtypes = dtypes or {}
    with Writer(path, shard_size) as w:
        for k, v in (metadata or {}).items():
            w.set_metadata(k, v)
        items = []
        for name, val in tensors.items():
            if isinstance(val, tuple):
                data, dt, shape = val
            else:
                _need_numpy("save_file() with arrays")
                data = _np.ascontiguousarray(val)
                dt, shape = data.dtype, data.shape
            dt = dtypes.get(name, dt)
            items.append((w.add_tensor(name, dt, shape), data))
        w.begin()
        for i, data in items:
            w.write(i, data)
        w.commit()


# ---------------------------------------------------------------------------
# Merge plans
# ---------------------------------------------------------------------------

PlanRow = namedtuple("PlanRow", "index name layer group action reason dtype nbytes")
PlanRow.__doc__ = ("One output tensor of a Plan: layer None when the name has none, group an "
                   "index, GROUP_MEAN or GROUP_NONE, action an Action, dtype the output Dtype "
                   "(None if skipped).")


class _ProgressState:
    """Lives apart from the Plan so the C callback does not form a cycle with it."""

    def __init__(self):
        self.fn = None
        self.tls = threading.local()

    def __call__(self, user, done, total):
        fn = getattr(self.tls, "fn", None) or self.fn
        guard = getattr(self.tls, "guard", None)
        if fn is None or guard is None:
            return 0
        r = guard.run(fn, int(done), int(total))
        return EVAL_CANCEL if r else 0  # HMA_CANCEL: the merge fails with HMA_ERR_CANCELLED


class Plan(_Handle):
    """How N >= 2 stores are averaged into one checkpoint (see docs/merging.md).

    inputs: Store objects or paths (paths are opened here and closed with the
    plan). The plan keeps its stores open while it lives. Weight setters,
    getters, merge_tensor*() and tensor_stats() are thread-safe.
    """

    _kind = "Plan"

    def __init__(self, inputs, groups=None, ratio=None, method=None, progress=None):
        super().__init__()
        if isinstance(inputs, (str, bytes, os.PathLike, Store)):
            raise TypeError("inputs must be a list of Stores or paths")
        stores, owned = [], []
        try:
            for x in inputs:
                if isinstance(x, Store):
                    stores.append(x)
                else:
                    s = Store(x)
                    owned.append(s)
                    stores.append(s)
            pinned = []
            try:
                for s in stores:
                    s._pin()
                    pinned.append(s)
            except BaseException:
                for s in pinned:
                    s._unpin()
                raise
            arr = (c_void_p * max(len(stores), 1))(*[s._ptr for s in stores])
            out = c_void_p()
            rc = C.plan_create(ctypes.byref(out), arr, len(stores))
            if rc:
                err = _error(rc)
                for s in stores:
                    s._unpin()
                raise err
        except BaseException:
            for s in owned:
                s.close()
            raise
        self._adopt(out.value)
        self._stores, self._owned = stores, owned
        self._copy_input = None
        self._progress = _ProgressState()
        self._progress_c = PROGRESS_FN(self._progress)  # referenced as long as the plan
        _check(C.plan_set_progress(self._ptr, self._progress_c, None))
        if method is not None:
            self.set_method(method)
        if groups is not None:
            self.set_groups(groups)
        if ratio is not None:
            if isinstance(ratio, numbers.Real):
                self.set_ratio(ratio)
            else:
                self.set_ratios(ratio)
        if progress is not None:
            self.set_progress(progress)

    def _release(self, ptr):
        C.plan_free(ptr)
        for s in self._stores:
            s._unpin()
        for s in self._owned:
            s.close()
        self._stores, self._owned = [], []

    def __repr__(self):
        if self._closed:
            return "<hma.Plan closed>"
        return "<hma.Plan %d inputs, groups %r>" % (self.input_count, self.groups_spec)

    @property
    def stores(self):
        return list(self._stores)

    # ---- structure (not thread-safe) ----
    @property
    def input_count(self):
        with self._use() as p:
            return int(C.plan_input_count(p))

    @property
    def layer_count(self):
        with self._use() as p:
            return int(C.plan_layer_count(p))

    def set_method(self, method):
        """Method.LINEAR, TASK_ARITHMETIC, SLERP, or their names ("slerp")."""
        if isinstance(method, str):
            try:
                method = Method[method.upper()]
            except KeyError:
                raise InvalidArgumentError(1, "unknown method %r" % method) from None
        with self._use() as p:
            _check(C.plan_set_method(p, _index(method, "method")))

    def set_base(self, base_input):
        with self._use() as p:
            _check(C.plan_set_base(p, _index(base_input, "base_input")))

    def set_normalize(self, on=True):
        with self._use() as p:
            _check(C.plan_set_normalize(p, 1 if on else 0))

    def set_groups(self, spec):
        """"all", "blocks:K", "split:S1,S2,...", or "layers". Resets the weights."""
        with self._use() as p:
            _check(C.plan_set_groups(p, _cstr(spec, "group spec")))

    @property
    def groups_spec(self):
        with self._use() as p:
            return _s(C.plan_groups_spec(p))

    @property
    def group_count(self):
        with self._use() as p:
            return int(C.plan_group_count(p))

    def add_rule(self, pattern, group):
        """Name rule (glob with * or ?, else substring) -> group index or GROUP_MEAN ("mean")."""
        if group == "mean":
            group = GROUP_MEAN
        with self._use() as p:
            _check(C.plan_add_rule(p, _cstr(pattern, "pattern"), _index(group, "group")))

    def clear_rules(self):
        with self._use() as p:
            C.plan_clear_rules(p)

    def set_output_dtype(self, dtype):
        """F16, BF16, F32 or F64 for averaged tensors; None = each tensor's input-0 dtype."""
        d = len(Dtype) if dtype is None else _dtype(dtype)
        with self._use() as p:
            _check(C.plan_set_output_dtype(p, d))

    def copy_unmatched(self, input):
        """Copy unmatched tensors from input `input` (None: fail on them, the default)."""
        v = NPOS if input is None else _index(input, "input")
        with self._use() as p:
            _check(C.plan_copy_unmatched(p, v))
        self._copy_input = None if v == NPOS else v

    def set_flags(self, flags):
        with self._use() as p:
            _check(C.plan_set_flags(p, _index(flags, "flags")))

    def set_allow_nonfinite(self, on=True):
        self.set_flags(MERGE_ALLOW_NONFINITE if on else 0)

    def set_threads(self, threads):
        with self._use() as p:
            _check(C.plan_set_threads(p, _index(threads, "threads")))

    def set_simd(self, level):
        """A Simd value (or "scalar", "avx2", "avx512", "auto")."""
        if isinstance(level, str):
            level = Simd[level.upper()]
        with self._use() as p:
            _check(C.plan_set_simd(p, _index(level, "level")))

    def set_progress(self, fn):
        """fn(done, total) called during merge_to() on the calling thread; a
        true return value cancels (CancelledError); an exception cancels and
        is re-raised by merge_to(). None removes it."""
        if fn is not None and not callable(fn):
            raise TypeError("progress must be callable or None")
        self._progress.fn = fn

    # ---- weights (thread-safe) ----
    def set_weights(self, weights):
        """K rows of N weights (nested lists or a K x N array)."""
        if _np is not None and isinstance(weights, _np.ndarray):
            flat = weights.ravel()
        else:
            flat = [x for row in weights for x in (row if hasattr(row, "__iter__") else [row])]
        arr, n = _doubles(flat, "weights")
        with self._use() as p:
            _check(C.plan_set_weights(p, arr, n))

    def set_ratios(self, ratios):
        """2 inputs: one ratio per group (weight of input 1, the aligned model)."""
        arr, n = _doubles(ratios, "ratios")
        with self._use() as p:
            _check(C.plan_set_ratios(p, arr, n))

    def set_ratio(self, a):
        """2 inputs: the same ratio for every group (plain MA)."""
        with self._use() as p:
            _check(C.plan_set_ratio(p, _num(a, "ratio")))

    def set_ratio_gradient(self, anchors):
        arr, n = _doubles(anchors, "anchors")
        with self._use() as p:
            _check(C.plan_set_ratio_gradient(p, arr, n))

    def set_weight_gradient(self, anchors):
        """Rows of N weights each, interpolated across groups."""
        rows = [list(r) for r in anchors]
        arr, _ = _doubles([x for r in rows for x in r], "anchors")
        with self._use() as p:
            _check(C.plan_set_weight_gradient(p, arr, len(rows)))

    def get_weights(self):
        """(K rows of N weights as lists, generation)."""
        with self._use() as p:
            k, n = C.plan_group_count(p), C.plan_input_count(p)
            arr = (c_double * (k * n))()
            gen = c_u64()
            _check(C.plan_get_weights(p, arr, k * n, ctypes.byref(gen)))
        return [list(arr[r * n:(r + 1) * n]) for r in range(k)], int(gen.value)

    @property
    def weights(self):
        return self.get_weights()[0]

    def mean_weights(self):
        with self._use() as p:
            n = C.plan_input_count(p)
            arr = (c_double * n)()
            _check(C.plan_mean_weights(p, arr, n))
        return list(arr)

    @property
    def generation(self):
        with self._use() as p:
            return int(C.plan_generation(p))

    # ---- rows (thread-safe) ----
    def __len__(self):
        with self._use() as p:
            return int(C.plan_tensor_count(p))

    def find(self, name):
        """Row index of a tensor name, or None."""
        with self._use() as p:
            i = C.plan_find(p, _cstr(name, "name"))
        return None if i == NPOS else int(i)

    def input(self, i):
        """The plan's input `i` (the Store given to the constructor)."""
        i = _index(i, "input")
        with self._use() as p:
            ptr = C.plan_input(p, i)
        if not ptr:
            raise InvalidArgumentError(1, "plan: input %d out of range" % i)
        return self._stores[i]

    def set_metadata(self, key, value):
        """An extra __metadata__ entry for merge_to() / merge_into()."""
        with self._use() as p:
            _check(C.plan_set_metadata(p, _cstr(key, "key"), _cstr(value, "value")))

    def _row_index(self, p, tensor):
        if isinstance(tensor, (str, bytes)):
            i = C.plan_find(p, _cstr(tensor, "tensor name"))
            if i == NPOS:
                raise NotFoundError(4, "plan: no tensor %r" % (tensor,))
            return int(i)
        i = _index(tensor, "tensor")
        if not 0 <= i < C.plan_tensor_count(p):
            raise InvalidArgumentError(1, "plan: row %d out of range" % i)
        return i

    def row(self, tensor):
        """PlanRow of a row index or tensor name."""
        with self._use() as p:
            i = self._row_index(p, tensor)
            layer = C.plan_tensor_layer(p, i)
            dt = C.plan_tensor_dtype(p, i)
            return PlanRow(i, _s(C.plan_tensor_name(p, i)), None if layer < 0 else int(layer),
                           int(C.plan_tensor_group(p, i)), Action(C.plan_tensor_action(p, i)),
                           _s(C.plan_tensor_reason(p, i)), Dtype(dt) if dt < len(Dtype) else None,
                           int(C.plan_tensor_nbytes(p, i)))

    def rows(self):
        return [self.row(i) for i in range(len(self))]

    def tensor_weights(self, tensor):
        """(the N weights the row is merged with now, generation)."""
        with self._use() as p:
            i = self._row_index(p, tensor)
            n = C.plan_input_count(p)
            arr = (c_double * n)()
            gen = c_u64()
            _check(C.plan_tensor_weights(p, i, arr, n, ctypes.byref(gen)))
        return list(arr), int(gen.value)

    def tensor_stats(self, tensor, a=0, b=1):
        """(sum x*y, sum x*x, sum y*y, sum (y-x)^2) between inputs a and b."""
        with self._use() as p:
            i = self._row_index(p, tensor)
            out = (c_double * 4)()
            _check(C.plan_tensor_stats(p, i, _index(a, "a"), _index(b, "b"), out))
        return tuple(out)

    def _out_shape(self, p, i):
        order = list(range(C.plan_input_count(p)))
        if self._copy_input is not None and C.plan_tensor_action(p, i) == Action.COPY_FROM:
            order.insert(0, self._copy_input)
        for j in order:
            t = C.plan_tensor_input(p, i, j)
            if t:
                ndim = C.tensor_ndim(t)
                shp = C.tensor_shape(t)
                return tuple(int(shp[d]) for d in range(ndim))
        return None

    # ---- merging ----
    def merge_to(self, path, shard_size=0, progress=None):
        """Merge every row and write the result to `path` (a .safetensors file
        or a folder), atomically. `progress` (for this call) overrides the
        plan's progress callable."""
        if progress is not None and not callable(progress):
            raise TypeError("progress must be callable or None")
        tls = self._progress.tls
        guard = _CallbackGuard(EVAL_CANCEL)
        tls.fn, tls.guard = progress, guard
        try:
            with self._use() as p:
                rc = C.plan_merge_to(p, _cstr(path, "path"), _index(shard_size, "shard_size"))
                err = _error(rc) if rc else None
        finally:
            tls.fn = tls.guard = None
        guard.raise_pending()
        if err is not None:
            raise err

    def merge_into(self, writer, progress=None):
        """Merge every row into `writer` (a new Writer, maybe with metadata set,
        no tensors declared); the caller then commits it. The writer's own
        metadata keys win over the plan's."""
        if not isinstance(writer, Writer):
            raise TypeError("writer must be a Writer")
        if progress is not None and not callable(progress):
            raise TypeError("progress must be callable or None")
        tls = self._progress.tls
        guard = _CallbackGuard(EVAL_CANCEL)
        tls.fn, tls.guard = progress, guard
        try:
            with self._use() as p, writer._use() as pw:
                rc = C.plan_merge_into(p, pw)
                err = _error(rc) if rc else None
        finally:
            tls.fn = tls.guard = None
        guard.raise_pending()
        if err is not None:
            raise err

    def merge_tensor_into(self, tensor, out, offset=0):
        """Merge bytes [offset, offset + len(out)) of a row's output (name or
        index) into `out` (a writable numpy array or buffer) with the current
        weights; returns the weights' generation. Thread-safe."""
        addr, n, keep = _writable(out)
        gen = c_u64()
        with self._use() as p:
            i = self._row_index(p, tensor)
            _check(C.plan_merge_tensor_at(p, i, _index(offset, "offset"), addr, n, ctypes.byref(gen)))
        del keep
        return int(gen.value)

    def merge_tensor(self, tensor, bf16="view", out=None):
        """The whole merged tensor as a new numpy array of its shape and output
        dtype (BF16 as uint16 bits, or float32 with bf16="float32"). With
        `out` (an array of the right size), fill and return it instead: the
        server case, reusing one buffer as the weights change."""
        _need_numpy("Plan.merge_tensor()")
        if bf16 not in ("view", "float32"):
            raise InvalidArgumentError(1, "bf16 must be 'view' or 'float32', not %r" % (bf16,))
        with self._use() as p:
            i = self._row_index(p, tensor)
            dt = C.plan_tensor_dtype(p, i)
            nbytes = int(C.plan_tensor_nbytes(p, i))
            shape = self._out_shape(p, i)
        if dt >= len(Dtype):
            raise StateError(22, "plan: tensor %r is skipped (no output)" % (tensor,))
        typestr = _TYPESTR.get(dt, "|u1")
        ndt = _np.dtype(typestr)
        if shape is None or int(_np.prod(shape, dtype=_np.int64)) * ndt.itemsize != nbytes:
            shape = (nbytes // ndt.itemsize,)
        if out is None:
            out = _np.empty(shape, dtype=ndt)
        elif out.nbytes != nbytes:
            raise InvalidArgumentError(1, "out has %d bytes, tensor %r has %d" % (out.nbytes, tensor, nbytes))
        self.merge_tensor_into(i, out)
        if bf16 == "float32" and dt == Dtype.BF16:
            return bf16_to_float32(out)
        return out

    # ---- group gradients (2-input plans) ----
    def group_gradients(self, grads, allow_missing=False, threads=0):
        """dL/da_k for every group. `grads` is a Store of gradients (same names),
        a dict name -> array, or a callable name -> array (or (array, dtype),
        or None for no gradient). Arrays: float16/float32/float64, or uint16
        with dtype "BF16"; anything numpy views without a copy also works (a
        CPU torch tensor, e.g. param.grad). Exceptions in the callable are re-raised."""
        opts = _GroupGradOptions()
        C.group_grad_options_init_size(ctypes.byref(opts), ctypes.sizeof(opts))
        opts.flags = GRAD_ALLOW_MISSING if allow_missing else 0
        opts.threads = _index(threads, "threads")
        if len(self._stores) != 2:
            raise InvalidArgumentError(1, "group_gradients: the plan needs exactly 2 inputs")
        with self._use() as p:
            k = C.plan_group_count(p)
            out = (c_double * k)()
            if isinstance(grads, Store):
                with grads._use() as pg:
                    rc = C.plan_group_gradients_store(p, pg, ctypes.byref(opts), out, k)
                _check(rc)
                return list(out)
            lookup = grads if callable(grads) else (lambda name: grads.get(name))
            guard = _CallbackGuard(EVAL_CANCEL)
            keep = []

            def fn(user, name, data, dtype, nelem):
                val = lookup(_s(name))
                if val is None:
                    data[0] = None
                    return 0
                dt = None
                if isinstance(val, tuple):
                    val, dt = val
                _need_numpy("group_gradients with arrays")
                arr = _np.ascontiguousarray(val)
                dt = _dtype(dt if dt is not None else arr.dtype)
                keep.append(arr)
                data[0] = arr.ctypes.data
                dtype[0] = int(dt)
                nelem[0] = arr.size
                return 0

            cb = GRAD_FN(lambda *a: guard.run(fn, *a))
            rc = C.plan_group_gradients(p, cb, None, ctypes.byref(opts), out, k)
            err = _error(rc) if rc else None
        guard.raise_pending()
        if err is not None:
            raise err
        return list(out)


# ---------------------------------------------------------------------------
# Ratio parametrisation and optimizer
# ---------------------------------------------------------------------------


def ratios_from_logits(logits, mean, eps=0.2):
    """K ratios with mean `mean` from K logits (the paper's normalised sigmoid)."""
    arr, k = _doubles(logits, "logits")
    out = (c_double * max(k, 1))()
    _check(C.ratios_from_logits(k, arr, _num(mean, "mean"), _num(eps, "eps"), out))
    return list(out[:k])


def ratios_jacobian(logits, mean, eps=0.2):
    """The K x K Jacobian d a_i / d l_j as a list of rows."""
    arr, k = _doubles(logits, "logits")
    out = (c_double * max(k * k, 1))()
    _check(C.ratios_jacobian(k, arr, _num(mean, "mean"), _num(eps, "eps"), out))
    return [list(out[i * k:(i + 1) * k]) for i in range(k)]


def logits_gradient(logits, mean, grad_ratios, eps=0.2):
    """J^T grad_ratios: the gradient with respect to the logits."""
    arr, k = _doubles(logits, "logits")
    g, kg = _doubles(grad_ratios, "grad_ratios")
    if kg != k:
        raise InvalidArgumentError(1, "logits_gradient: %d logits but %d gradients" % (k, kg))
    out = (c_double * max(k, 1))()
    _check(C.logits_gradient(k, arr, _num(mean, "mean"), _num(eps, "eps"), g, out))
    return list(out[:k])


def logits_from_ratios(ratios, eps=0.2):
    """(logits, mean) that ratios_from_logits() maps back to `ratios`."""
    arr, k = _doubles(ratios, "ratios")
    out = (c_double * max(k, 1))()
    mean = c_double()
    _check(C.logits_from_ratios(k, arr, _num(eps, "eps"), out, ctypes.byref(mean)))
    return list(out[:k]), mean.value


def delta_dot(grad, aligned, base):
    """<grad, aligned - base> as libhma computes it (numpy arrays of equal size;
    float16/32/64, or (uint16 array, "BF16") pairs)."""
    _need_numpy("delta_dot()")
    args, n = [], None
    for v in (grad, aligned, base):
        dt = None
        if isinstance(v, tuple):
            v, dt = v
        a = _np.ascontiguousarray(v)
        dt = _dtype(dt if dt is not None else a.dtype)
        if n is None:
            n = a.size
        elif a.size != n:
            raise InvalidArgumentError(1, "delta_dot: arrays of different sizes")
        args.append((a, dt))
    out = c_double()
    _check(C.delta_dot(n, args[0][0].ctypes.data, args[0][1], args[1][0].ctypes.data, args[1][1],
                       args[2][0].ctypes.data, args[2][1], ctypes.byref(out)))
    return out.value


class RatioOptimizer(_Handle):
    """The authors' gradient method on K logits (SGD or Adam), see hma_ratio_opt_*.
    Options: method ("adam"/"sgd"), lr, mean, eps, penalty, momentum, beta1,
    beta2, adam_eps."""

    _kind = "RatioOptimizer"

    def __init__(self, k, logits0=None, **options):
        super().__init__()
        o = _RatioOptOptions()
        C.ratio_opt_options_init_size(ctypes.byref(o), ctypes.sizeof(o))
        if o.struct_size != ctypes.sizeof(o):
            raise UnsupportedError(30, "hma_ratio_opt_options layout differs from this binding's")
        for key, val in options.items():
            if key == "method":
                val = {"sgd": 0, "adam": 1}.get(val, val) if isinstance(val, str) else val
                o.method = _index(val, "method")
            elif key in ("lr", "mean", "eps", "penalty", "momentum", "beta1", "beta2", "adam_eps"):
                setattr(o, key, _num(val, key))
            else:
                raise TypeError("RatioOptimizer: unknown option %r" % key)
        k = _index(k, "k")
        l0 = None
        if logits0 is not None:
            l0, n = _doubles(logits0, "logits0")
            if n != k:
                raise InvalidArgumentError(1, "RatioOptimizer: %d logits for k = %d" % (n, k))
        out = c_void_p()
        _check(C.ratio_opt_create(ctypes.byref(out), k, l0, ctypes.byref(o)))
        self._adopt(out.value)

    def _release(self, ptr):
        C.ratio_opt_free(ptr)

    @property
    def k(self):
        with self._use() as p:
            return int(C.ratio_opt_k(p))

    @property
    def steps(self):
        with self._use() as p:
            return int(C.ratio_opt_steps(p))

    def _get(self):
        with self._use() as p:
            k = C.ratio_opt_k(p)
            lg, rt = (c_double * k)(), (c_double * k)()
            _check(C.ratio_opt_get(p, lg, rt))
        return list(lg), list(rt)

    @property
    def logits(self):
        return self._get()[0]

    @property
    def ratios(self):
        return self._get()[1]

    def step(self, grad_ratios):
        """One step from dL/da_k; returns the new ratios."""
        g, n = _doubles(grad_ratios, "grad_ratios")
        with self._use() as p:
            k = C.ratio_opt_k(p)
            if n != k:
                raise InvalidArgumentError(1, "step: %d gradients for k = %d" % (n, k))
            rt = (c_double * k)()
            _check(C.ratio_opt_step(p, g, None, rt))
        return list(rt)


# ---------------------------------------------------------------------------
# Search, sweeps, Pareto fronts
# ---------------------------------------------------------------------------

Point = namedtuple("Point", "ratios scores kind run")
Point.__doc__ = "One evaluated point: ratios and scores as tuples, kind a PointKind."


class Points(_Handle):
    """Evaluated points (from search() or sweep()): len, iteration over Point,
    p[i], best(), pareto()."""

    _kind = "Points"

    def __init__(self, ptr):
        super().__init__()
        self._adopt(ptr)

    def _release(self, ptr):
        C.points_free(ptr)

    def __len__(self):
        with self._use() as p:
            return int(C.points_count(p))

    @property
    def k(self):
        with self._use() as p:
            return int(C.points_k(p))

    @property
    def n_scores(self):
        with self._use() as p:
            return int(C.points_n_scores(p))

    def __getitem__(self, i):
        with self._use() as p:
            n = C.points_count(p)
            i = _index(i, "index")
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError("point index out of range")
            k, ns = C.points_k(p), C.points_n_scores(p)
            r, s = C.points_ratios(p, i), C.points_scores(p, i)
            kind, run = c_int(), c_size_t()
            _check(C.points_info(p, i, ctypes.byref(kind), ctypes.byref(run)))
            return Point(tuple(r[j] for j in range(k)), tuple(s[j] for j in range(ns)),
                         PointKind(kind.value), int(run.value))

    def __iter__(self):
        return iter([self[i] for i in range(len(self))])

    def best(self):
        """Index of the point with the lowest weighted score sum, or None."""
        with self._use() as p:
            i = C.points_best(p)
        return None if i == _SIZE_MAX else int(i)  # HMA_NPOS

    def pareto(self, sx=0, sy=1, max_x=False, max_y=False):
        """Indices of the non-dominated points on scores sx, sy, by increasing x."""
        flags = (PARETO_MAX_X if max_x else 0) | (PARETO_MAX_Y if max_y else 0)
        with self._use() as p:
            n = C.points_count(p)
            idx = (c_size_t * max(n, 1))()
            nf = c_size_t()
            _check(C.points_pareto(p, _index(sx, "sx"), _index(sy, "sy"), flags, idx, ctypes.byref(nf)))
        return [int(idx[i]) for i in range(nf.value)]


def pareto_front(x, y, max_x=False, max_y=False):
    """Indices of the non-dominated (x[i], y[i]) points, by increasing x."""
    xa, n = _doubles(x, "x")
    ya, ny = _doubles(y, "y")
    if n != ny:
        raise InvalidArgumentError(1, "pareto_front: %d x values but %d y values" % (n, ny))
    flags = (PARETO_MAX_X if max_x else 0) | (PARETO_MAX_Y if max_y else 0)
    idx = (c_size_t * max(n, 1))()
    nf = c_size_t()
    _check(C.pareto_front(n, xa, ya, flags, idx, ctypes.byref(nf)))
    return [int(idx[i]) for i in range(nf.value)]


def project_ratios(y, mean, lo=0.0, hi=1.0):
    """Euclidean projection of y onto {mean(a) = mean, lo <= a <= hi}
    (lo, hi: numbers or K-sequences)."""
    ya, k = _doubles(y, "y")
    lo_a, nlo = _doubles([lo] * k if isinstance(lo, numbers.Real) else lo, "lo")
    hi_a, nhi = _doubles([hi] * k if isinstance(hi, numbers.Real) else hi, "hi")
    if nlo != k or nhi != k:
        raise InvalidArgumentError(1, "project_ratios: lo and hi need %d entries" % k)
    out = (c_double * max(k, 1))()
    _check(C.project_ratios(k, ya, _num(mean, "mean"), lo_a, hi_a, out))
    return list(out[:k])


def _eval_trampoline(evaluate, guard):
    def fn(user, k, ratios, n_scores, scores):
        def call():
            r = evaluate([ratios[i] for i in range(k)])
            if isinstance(r, (str, bytes)) or not (isinstance(r, numbers.Real) or hasattr(r, "__iter__")):
                raise TypeError("evaluate must return a number or a sequence of numbers, not %s"
                                % type(r).__name__)
            vals = [r] if isinstance(r, numbers.Real) else list(r)
            if len(vals) != n_scores:
                raise ValueError("evaluate returned %d scores, expected %d" % (len(vals), n_scores))
            for i, v in enumerate(vals):
                scores[i] = _num(v, "score")
            return 0
        return guard.run(call)
    return EVAL_FN(fn)


def _fill_search(o, k, mean, lo, hi, lo_each, hi_each, budget, seed, n_scores, weights,
                 tolerance, keep, batch=1):
    o.k = _index(k, "k")
    o.batch = _index(batch, "batch")
    if mean is not None:
        o.mean = _num(mean, "mean")
    o.lo, o.hi = _num(lo, "lo"), _num(hi, "hi")
    o.budget = _index(budget, "budget")
    o.seed = _index(seed, "seed") & 0xFFFFFFFFFFFFFFFF
    o.n_scores = _index(n_scores, "n_scores")
    if tolerance is not None:
        o.tolerance = _num(tolerance, "tolerance")
    for field, val, n in (("lo_each", lo_each, o.k), ("hi_each", hi_each, o.k),
                          ("weights", weights, o.n_scores)):
        if val is not None:
            arr, m = _doubles(val, field)
            if m != n:
                raise InvalidArgumentError(1, "%s needs %d entries, got %d" % (field, n, m))
            keep.append(arr)
            setattr(o, field, ctypes.cast(arr, _PD))


def _run_search(cfn, opts, evaluate):
    guard = _CallbackGuard(CANCEL)
    cb = _eval_trampoline(evaluate, guard)
    out = c_void_p()
    rc = cfn(ctypes.byref(opts), cb, None, ctypes.byref(out))
    err = _error(rc) if rc else None
    pts = Points(out.value) if out.value else None
    if guard.exc is not None:
        try:
            guard.exc.hma_points = pts  # what was evaluated before the stop
        except AttributeError:
            if pts is not None:
                pts.close()
        guard.raise_pending()
    if err is not None:
        if pts is not None:
            err.points = pts
        raise err
    return pts


def _search_opts(k, mean, lo, hi, budget, seed, n_scores, weights, tolerance, start, lo_each,
                 hi_each, batch, keep):
    o = _SearchOptions()
    C.search_options_init_size(ctypes.byref(o), ctypes.sizeof(o))
    if o.struct_size != ctypes.sizeof(o):
        raise UnsupportedError(30, "hma_search_options layout differs from this binding's")
    _fill_search(o, k, mean, lo, hi, lo_each, hi_each, budget, seed, n_scores, weights, tolerance,
                 keep, batch)
    if start is not None:
        arr, m = _doubles(start, "start")
        if m != o.k:
            raise InvalidArgumentError(1, "start needs %d entries, got %d" % (o.k, m))
        keep.append(arr)
        o.start = ctypes.cast(arr, _PD)
    return o


def search(evaluate, k, mean=0.5, lo=0.0, hi=1.0, budget=20, seed=0, n_scores=1, weights=None,
           tolerance=None, start=None, prior=None, lo_each=None, hi_each=None, batch=1):
    """Derivative-free minimisation of the weighted score sum over K ratios with
    a fixed mean and bounds. evaluate(ratios: list) returns a number or
    n_scores numbers (lower is better). batch B > 1: candidates proposed B at a
    time (the same points as Searcher with the same options), evaluated one
    after the other. An exception in evaluate stops the search and is
    re-raised (with .hma_points: the points evaluated so far). Returns Points."""
    if not callable(evaluate):
        raise TypeError("evaluate must be callable")
    keep = []
    o = _search_opts(k, mean, lo, hi, budget, seed, n_scores, weights, tolerance, start, lo_each,
                     hi_each, batch, keep)
    if prior is not None:
        if not isinstance(prior, Points):
            raise TypeError("prior must be Points")
        with prior._use() as pp:
            o.prior = pp
            return _run_search(C.search, o, evaluate)
    return _run_search(C.search, o, evaluate)


class Searcher(_Handle):
    """The search as an ask/tell handle (hma_searcher_*), for candidates scored
    elsewhere (several GPUs, processes): ask() gives a numpy array of up to
    `batch` candidates (n x K), score them anywhere, tell() their scores
    (n x n_scores, or n values when n_scores == 1) in the same row order;
    repeat until ask() gives 0 rows (or .done). points() returns the Points so
    far. Same options as search(); the same options and scores give the
    points search() gives, bit for bit. ask() needs numpy."""

    _kind = "Searcher"

    def __init__(self, k, mean=0.5, lo=0.0, hi=1.0, budget=20, seed=0, n_scores=1, weights=None,
                 tolerance=None, start=None, prior=None, lo_each=None, hi_each=None, batch=1):
        super().__init__()
        keep = []
        o = _search_opts(k, mean, lo, hi, budget, seed, n_scores, weights, tolerance, start,
                         lo_each, hi_each, batch, keep)
        out = c_void_p()
        if prior is not None:
            if not isinstance(prior, Points):
                raise TypeError("prior must be Points")
            with prior._use() as pp:  # copied by hma_searcher_create
                o.prior = pp
                _check(C.searcher_create(ctypes.byref(out), ctypes.byref(o)))
        else:
            _check(C.searcher_create(ctypes.byref(out), ctypes.byref(o)))
        self._adopt(out.value)
        self.k, self.n_scores, self.batch = int(o.k), int(o.n_scores), int(o.batch)
        self._room = min(self.batch, int(o.budget))

    def _release(self, ptr):
        C.searcher_free(ptr)

    def ask(self):
        """The next batch: a float64 numpy array of shape (n, K); n == 0 once
        the search has ended. Raises StateError if the last batch was not told."""
        _need_numpy("Searcher.ask")
        out = _np.empty((self._room, self.k), dtype=_np.float64)
        n = c_size_t()
        with self._use() as p:
            _check(C.searcher_ask(p, out.ctypes.data_as(_PD), self._room, ctypes.byref(n)))
        return out[:n.value].copy()

    def tell(self, scores):
        """The scores of the last batch, row i for candidate i: an array-like of
        shape (n, n_scores), or (n,) when n_scores == 1."""
        _need_numpy("Searcher.tell")
        a = _np.ascontiguousarray(scores, dtype=_np.float64)
        if a.ndim == 1 and self.n_scores == 1:
            a = a.reshape(-1, 1)
        if a.ndim != 2 or a.shape[1] != self.n_scores:
            raise InvalidArgumentError(1, "Searcher.tell: scores must have shape (n, %d), not %s"
                                       % (self.n_scores, a.shape))
        with self._use() as p:
            _check(C.searcher_tell(p, a.ctypes.data_as(_PD), a.shape[0]))

    @property
    def done(self):
        """True once the search has ended (budget spent or no distinct vector left)."""
        with self._use() as p:
            return bool(C.searcher_done(p))

    def points(self):
        """A copy of the points so far (prior points first, then the told candidates)."""
        out = c_void_p()
        with self._use() as p:
            _check(C.searcher_points(p, ctypes.byref(out)))
        return Points(out.value)


def sweep(evaluate, k, ma_ratios=(), hma_means=(), lo=0.0, hi=1.0, budget=20, seed=0,
          n_scores=2, weights=None, tolerance=None, lo_each=None, hi_each=None, batch=1):
    """The alignment-forgetting sweep: plain MA at each of ma_ratios, then one
    search() per mean in hma_means (budget each, batches of `batch`). Returns
    Points; take the front with points.pareto(0, 1)."""
    if not callable(evaluate):
        raise TypeError("evaluate must be callable")
    o = _SweepOptions()
    C.sweep_options_init_size(ctypes.byref(o), ctypes.sizeof(o))
    if o.struct_size != ctypes.sizeof(o) or o.search.struct_size != ctypes.sizeof(_SearchOptions):
        raise UnsupportedError(30, "hma_sweep_options layout differs from this binding's")
    keep = []
    _fill_search(o.search, k, None, lo, hi, lo_each, hi_each, budget, seed, n_scores, weights,
                 tolerance, keep, batch)
    ma, nma = _doubles(ma_ratios, "ma_ratios")
    hm, nhm = _doubles(hma_means, "hma_means")
    o.ma_ratios, o.n_ma = ctypes.cast(ma, _PD), nma
    o.hma_means, o.n_means = ctypes.cast(hm, _PD), nhm
    return _run_search(C.sweep, o, evaluate)


# ---------------------------------------------------------------------------
# Delta packs
# ---------------------------------------------------------------------------

PackStats = namedtuple("PackStats", "raw_bytes packed_bytes tensors tensors_on_base chunks seconds")


def _pack_opts(level=0, threads=0, chunk_size=0):
    o = _PackOptions()
    C.pack_options_init_size(ctypes.byref(o), ctypes.sizeof(o))
    if o.struct_size != ctypes.sizeof(o):
        raise UnsupportedError(30, "hma_pack_options layout differs from this binding's")
    o.level = _index(level, "level")
    o.threads = _index(threads, "threads")
    o.chunk_size = _index(chunk_size, "chunk_size")
    return o


def _new_stats():
    s = _PackStats()
    C.pack_stats_init_size(ctypes.byref(s), ctypes.sizeof(s))
    if s.struct_size != ctypes.sizeof(s):
        raise UnsupportedError(30, "hma_pack_stats layout differs from this binding's")
    return s


def _stats(s):
    return PackStats(int(s.raw_bytes), int(s.packed_bytes), int(s.tensors),
                     int(s.tensors_on_base), int(s.chunks), float(s.seconds))


class _MaybeUse:
    """`with` over an optional Store: yields its pointer or None."""

    def __init__(self, store):
        if store is not None and not isinstance(store, Store):
            raise TypeError("base must be a Store or None")
        self.u = store._use() if store is not None else None

    def __enter__(self):
        return self.u.__enter__() if self.u else None

    def __exit__(self, *exc):
        if self.u:
            self.u.__exit__(*exc)


def pack_create(model_path, out_path, base=None, level=0, threads=0, chunk_size=0):
    """Pack one .safetensors file losslessly (against `base`, a Store, if given)."""
    o, st = _pack_opts(level, threads, chunk_size), _new_stats()
    with _MaybeUse(base) as pb:
        _check(C.pack_create(_cstr(model_path, "model_path"), pb, _cstr(out_path, "out_path"),
                             ctypes.byref(o), ctypes.byref(st)))
    return _stats(st)


def pack_open(pack_path, base=None, threads=0, pread=False):
    """Open a pack as a Store (the base Store stays open while it lives).
    pread=True: HMA_OPEN_PREAD (no whole-tensor decoding; numpy() copies)."""
    out = c_void_p()
    with _MaybeUse(base) as pb:
        _check(C.pack_open(ctypes.byref(out), _cstr(pack_path, "pack_path"), pb,
                           OPEN_PREAD if pread else 0, _index(threads, "threads")))
        deps = []
        if base is not None:
            base._pin()
            deps.append(base)
    st = Store._from_ptr(out.value, os.fspath(pack_path), deps)
    st.pread = bool(pread)
    return st


def pack_unpack(pack_path, out_path, base=None, threads=0):
    """Restore the original file from a pack, byte for byte."""
    o, st = _pack_opts(threads=threads), _new_stats()
    with _MaybeUse(base) as pb:
        _check(C.pack_unpack(_cstr(pack_path, "pack_path"), pb, _cstr(out_path, "out_path"),
                             ctypes.byref(o), ctypes.byref(st)))
    return _stats(st)


def pack_verify(pack_path, base=None, original=None, threads=0):
    """Decode and check every chunk (and compare with `original` if given)."""
    o, st = _pack_opts(threads=threads), _new_stats()
    orig = None if original is None else _cstr(original, "original")
    with _MaybeUse(base) as pb:
        _check(C.pack_verify(_cstr(pack_path, "pack_path"), pb, orig, ctypes.byref(o), ctypes.byref(st)))
    return _stats(st)


def pack_needs_base(path):
    """Whether the pack at `path` was made against a base."""
    v = c_int()
    _check(C.pack_needs_base(_cstr(path, "path"), ctypes.byref(v)))
    return bool(v.value)


# ---------------------------------------------------------------------------
# mergekit recipes
# ---------------------------------------------------------------------------


def side_file_names():
    """The config and tokenizer files a merge into a folder copies from a model folder."""
    out, i = [], 0
    while True:
        n = C.side_file_name(i)
        if n is None:
            return out
        out.append(_s(n))
        i += 1


#: One output tensor of a resolved recipe: sources are (model path, input name) pairs.
RecipeTensor = namedtuple("RecipeTensor", "name shape dtype t sources")


class Recipe(_Handle):
    """A mergekit YAML (or JSON) recipe: Recipe.load(path) or Recipe.parse(text),
    then merge_to(out). resolve() opens the models and plans the output
    (tensors, param()); merge_to() resolves when needed. Not thread-safe."""

    _kind = "recipe"

    def _release(self, ptr):
        C.recipe_free(ptr)

    @classmethod
    def _new(cls, call):
        ptr = c_void_p()
        _check(call(ctypes.byref(ptr)))
        r = cls()
        r._adopt(ptr.value)
        return r

    @classmethod
    def load(cls, path):
        """Parse the recipe file at `path`."""
        return cls._new(lambda out: C.recipe_load(out, _cstr(path, "path")))

    @classmethod
    def parse(cls, text, name=None):
        """Parse recipe text (str or bytes); `name` names it in error messages."""
        b = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        nm = None if name is None else _cstr(name, "name")
        return cls._new(lambda out: C.recipe_parse(out, b, len(b), nm))

    @property
    def method(self):
        with self._use() as p:
            return _s(C.recipe_method(p))

    def resolve(self):
        """Open the models and plan every output tensor and parameter (idempotent)."""
        with self._use() as p:
            _check(C.recipe_resolve(p))
        return self

    @property
    def models(self):
        """Paths of the distinct models (after resolve())."""
        with self._use() as p:
            return [_s(C.recipe_model_path(p, m)) for m in range(C.recipe_model_count(p))]

    @property
    def tensors(self):
        """The output tensors (after resolve()), as RecipeTensor tuples."""
        out = []
        with self._use() as p:
            models = [_s(C.recipe_model_path(p, m)) for m in range(C.recipe_model_count(p))]
            for i in range(C.recipe_tensor_count(p)):
                nd = c_uint()
                sh = C.recipe_tensor_shape(p, i, ctypes.byref(nd))
                srcs = []
                for j in range(C.recipe_tensor_source_count(p, i)):
                    m, inp = c_size_t(), c_char_p()
                    _check(C.recipe_tensor_source(p, i, j, ctypes.byref(m), ctypes.byref(inp)))
                    srcs.append((models[m.value], _s(inp.value)))
                out.append(RecipeTensor(_s(C.recipe_tensor_name(p, i)), tuple(sh[d] for d in range(nd.value)),
                                        Dtype(C.recipe_tensor_dtype(p, i)), C.recipe_tensor_t(p, i), srcs))
        return out

    def param(self, i, j, name):
        """Value of parameter `name` for output tensor i (index or name): source j's
        for a per-model parameter, the tensor's for a global one (j None). None when
        the method does not take it or it has no value here."""
        with self._use() as p:
            if not isinstance(i, numbers.Integral):
                names = [_s(C.recipe_tensor_name(p, k)) for k in range(C.recipe_tensor_count(p))]
                if i not in names:
                    raise NotFoundError(4, "no output tensor %r" % (i,))
                i = names.index(i)
            v = c_double()
            rc = C.recipe_tensor_param(p, int(i), NPOS if j is None else int(j), _cstr(name, "name"),
                                       ctypes.byref(v))
            if rc == 4:  # HMA_ERR_NOT_FOUND: not taken by the method, or no value
                return None
            _check(rc)
            return v.value

    @property
    def notes(self):
        """Warnings: vocabulary rows, tokenizer, dtype notes."""
        with self._use() as p:
            return [_s(C.recipe_note(p, k)) for k in range(C.recipe_note_count(p))]

    def set_metadata(self, key, value):
        """Add a string to the output's __metadata__."""
        with self._use() as p:
            _check(C.recipe_set_metadata(p, _cstr(key, "key"), _cstr(value, "value")))

    def merge_to(self, out, seed=0, threads=0, shard_size=0, progress=None):
        """Resolve if needed and write the merge to `out` (a .safetensors file or a
        folder). progress(done, total) may return False to cancel."""
        o = _RecipeOptions()
        C.recipe_options_init_size(ctypes.byref(o), ctypes.sizeof(o))
        o.seed, o.threads, o.shard_size = int(seed), int(threads), int(shard_size)
        guard = _CallbackGuard(CANCEL)

        def cb(user, done, total):
            r = guard.run(progress, done, total)
            return CANCEL if r is False or r == CANCEL else 0

        keep = None
        if progress is not None:
            keep = o.progress = PROGRESS_FN(cb)
        with self._use() as p:
            rc = C.recipe_merge_to(p, _cstr(out, "out"), ctypes.byref(o))
        del keep
        guard.raise_pending()
        _check(rc)
