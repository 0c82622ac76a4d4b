/*
 * recipe_run.c - run a resolved recipe: one output tensor at a time, every
 * source loaded as float32 (or, for the methods that only read their
 * sources, hma__mk_reads_raw, handed over as the mapped bytes), merged by
 * hma__mk_merge, checked finite, rounded once to the output dtype and
 * written (those methods hand each chunk of the result to a sink that does
 * this while it is in cache); the output (shards, index, config.json and
 * tokenizer files) is committed atomically by the writer. Those methods
 * also run ahead: while the writer begins (reserves the output) on a
 * thread of its own, the next tensors' selections run (hma__mk_prepare),
 * and their combining pass releases the mappings of the source ranges it
 * has finished (hma__tensor_release).
 *
 * Memory: the float32 buffers are (sources + 2) x the largest output
 * tensor (x[0..sources), out, scratch), allocated once, and touched only
 * where used (the raw-reading methods touch none of x and out); everything
 * else is small (the recipe, the names, per-chunk read buffers of unmapped
 * stores, the sink's per-worker chunk buffers), well within the issue's
 * bound of 64 MiB + the largest tensor x (models + 2).
 */
#include "mergekit/recipe_impl.h"

#include "core/fileio.h"
#include "core/pool.h"
#include "io/store.h"
#include "merge/kernels.h"
#include "text/json.h"
#include "text/strbuf.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the writer's begin, off the merge's critical path ---------------------- */

/*
 * hma_writer_begin() reserves the whole output (fallocate): on tmpfs that
 * allocates every page of it, about a quarter of a TIES merge's time, with
 * one core busy and the other idle. A task (core/pool.h) runs it while the
 * tensors' selection passes (which write nothing: the lookahead of
 * hma__recipe_run) run on the pool; every write waits for it first. Its
 * error, if any, is the merge's error (it is what a begin before the merge
 * would have reported). Reserving in steps behind the writes instead was
 * slower (A/B: pwrite and fallocate then contend for the inode's lock).
 */
static int begin_task(void *w) { return hma_writer_begin(w); }

/* ---- parallel chunk loops ------------------------------------------------- */

/* Convert elements [off, off + n) of one source tensor into dst[0..n). */
typedef struct load_arg {
    const hma_store *st;
    const hma_tensor *t;
    const unsigned char *data; /* mapped bytes, or NULL: hma_store_read */
    hma_dtype dt;
    size_t esz;
    uint64_t off;
    float *dst;
    int path;
} load_arg;

static int load_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const load_arg *a = arg;
    size_t n = (size_t)(e1 - e0);
    if (a->data) {
        hma__kernel_convert(a->path, a->dt, a->data + (a->off + e0) * a->esz, HMA_DTYPE_F32, a->dst + e0, n);
        return HMA_OK;
    }
    unsigned char *buf = hma__malloc(n * a->esz); /* at most HMA__MK_CHUNK x 8 bytes */
    if (!buf) return hma__fail(HMA_ERR_NO_MEMORY, "tensor '%s': out of memory", hma_tensor_name(a->t));
    int rc = hma_store_read(a->st, a->t, (a->off + e0) * a->esz, buf, n * a->esz);
    if (!rc) hma__kernel_convert(a->path, a->dt, buf, HMA_DTYPE_F32, a->dst + e0, n);
    hma__free(buf);
    return rc;
}

static int load(const hma_recipe *r, const hma__rsrc *s, uint64_t off, uint64_t n, float *dst, unsigned threads) {
    load_arg a;
    a.st = r->models[s->model].store;
    a.t = s->t;
    a.data = NULL;
    const void *d = NULL;
    int rc = hma_tensor_data_get(s->t, &d);
    if (rc) return hma__fail_prefix(rc, "model '%s'", r->models[s->model].path);
    a.data = d;
    a.dt = hma_tensor_dtype(s->t);
    a.esz = hma_dtype_bits(a.dt) / 8;
    a.off = off;
    a.dst = dst;
    a.path = hma__cpu_level();
    return hma__mk_for(threads, n, load_chunk, &a);
}

/* Round elements [p0 + e0, p0 + e1) once to the output dtype and write
 * them, unless one is not finite: then the lowest such index (times 2,
 * plus 1 for a NaN) goes to *bad (atomic min; UINT64_MAX: none) and the
 * tensor fails after the pass (a failed merge commits nothing). One pass:
 * the check reads what the conversion reads, while it is in cache. */
typedef struct write_arg {
    hma_writer *w;
    size_t idx;
    const float *x;
    hma_dtype odt;
    size_t osz;
    uint64_t p0;
    unsigned char *obuf; /* room for the pass (position-indexed), or per worker (sink) */
    int path;
    uint64_t *bad;
    hma__task *begin; /* the writer's begin: writes wait for it */
} write_arg;

/* Any element of v[0, n) inf or NaN (exponent all ones)? Branch-free over
 * 4-element vectors with adds and ors only (gcc does not vectorize a loop
 * that exits early), so the common all-finite piece costs little. */
typedef uint32_t rr_v4u __attribute__((vector_size(16)));
static int any_nonfinite(const float *v, size_t n) {
    const rr_v4u ex = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u};
    rr_v4u bad0 = {0, 0, 0, 0}, bad1 = bad0;
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        rr_v4u u0, u1;
        memcpy(&u0, v + j, sizeof u0);
        memcpy(&u1, v + j + 4, sizeof u1);
        bad0 |= (u0 & ex) + 0x00800000u; /* bit 31 set iff the exponent is all ones */
        bad1 |= (u1 & ex) + 0x00800000u;
    }
    bad0 |= bad1;
    uint32_t any = (bad0[0] | bad0[1] | bad0[2] | bad0[3]) >> 31;
    for (; j < n; j++) any |= !isfinite(v[j]);
    return any != 0;
}

/* v[0..n): elements [at, at + n) of the tensor; dst: room for n outputs. */
static int write_piece(const write_arg *a, uint64_t at, const float *v, size_t n, unsigned char *dst) {
    int rc = hma__task_wait(a->begin);
    if (rc) return rc;
    if (any_nonfinite(v, n)) /* then find the first bad one */
        for (size_t j = 0; j < n; j++)
            if (!isfinite(v[j])) {
                uint64_t code = (at + j) * 2 + (isnan(v[j]) ? 1 : 0);
                uint64_t cur = __atomic_load_n(a->bad, __ATOMIC_RELAXED);
                while (code < cur && !__atomic_compare_exchange_n(a->bad, &cur, code, 0, __ATOMIC_RELAXED,
                                                                  __ATOMIC_RELAXED)) {
                }
                return HMA_OK;
            }
    if (a->odt == HMA_DTYPE_F32) return hma_writer_write(a->w, a->idx, at * 4, v, n * 4);
    hma__kernel_convert(a->path, HMA_DTYPE_F32, v, a->odt, dst, n);
    return hma_writer_write(a->w, a->idx, at * a->osz, dst, n * a->osz);
}

static int write_chunk(void *arg, uint64_t c, uint64_t e0, uint64_t e1) {
    (void)c;
    const write_arg *a = arg;
    return write_piece(a, a->p0 + e0, a->x + a->p0 + e0, (size_t)(e1 - e0), a->obuf + e0 * a->osz);
}

/* The method's sink (hma__mk_job.sink): a piece of the result while it is
 * in cache, through a per-worker output buffer of HMA__MK_CHUNK elements. */
static int sink_piece(void *user, unsigned worker, uint64_t e0, const float *v, size_t len) {
    const write_arg *a = user;
    return write_piece(a, e0, v, len, a->obuf + (size_t)worker * HMA__MK_CHUNK * a->osz);
}

/* The method's release (hma__mk_job.release): done with a range of a
 * mapped source, whose page mappings can go (hma__tensor_release). */
typedef struct release_arg {
    const hma__rout *o;
} release_arg;

static void release_range(void *user, size_t src, uint64_t e0, uint64_t e1) {
    const release_arg *a = user;
    const hma_tensor *t = a->o->src[src].t;
    uint64_t esz = hma_dtype_bits(hma_tensor_dtype(t)) / 8;
    hma__tensor_release(t, e0 * esz, (e1 - e0) * esz);
}

/* ---- one output tensor ------------------------------------------------------ */

typedef struct run_state {
    hma_recipe *r;
    hma_writer *w;
    unsigned threads;
    uint64_t seed;
    float **x;
    const void **raw; /* per source: mapped bytes the method reads directly, or NULL */
    hma_dtype *raw_dt;
    size_t nx;
    float *out, *scratch;
    void **xbase, *outbase, *scratchbase; /* what hma__big_alloc() gave to free */
    unsigned char *sinkbuf; /* sink_workers x HMA__MK_CHUNK x 8 bytes */
    unsigned sink_workers;
    hma__mk_ws ws; /* the methods' buffers, kept from tensor to tensor */
    hma__task begin; /* hma_writer_begin(w) */
} run_state;

/* The job of output tensor o, without its sources (raw, x loaded) and sink;
 * shp: room for HMA_MAX_DIMS. */
static void job_init(run_state *S, const hma__rout *o, hma__mk_job *job_out, uint64_t *shp) {
    hma_recipe *r = S->r;
    uint64_t inner = 1;
    for (unsigned d = 1; d < o->ndim; d++) inner *= o->shape[d];
    uint64_t m = o->ndim ? o->rows_all * inner : 1; /* elements the method merges */
    hma__mk_job job;
    memset(&job, 0, sizeof job);
    memcpy(shp, o->shape, HMA_MAX_DIMS * sizeof *shp);
    shp[0] = o->ndim ? o->rows_all : 1;
    job.method = r->mi->method;
    job.name = o->name;
    job.ndim = o->ndim ? o->ndim : 1;
    job.shape = shp;
    job.n = m;
    job.n_in = o->n_src;
    job.x = S->x;
    job.base = o->base;
    job.model = o->pv;
    job.global = &o->global;
    job.seed = S->seed;
    job.out = S->out;
    job.scratch = S->scratch;
    job.threads = S->threads;
    job.ws = &S->ws;
    job.raw = S->raw;
    job.raw_dtype = S->raw_dt;
    *job_out = job;
}

/*
 * The part of tensor i's merge that reads and writes nothing (its
 * selections: hma__mk_prepare), run ahead while the output is being
 * reserved; *out NULL when there is nothing to run ahead: the method loads
 * float32 copies, or a source is not mapped (its copy would go into the
 * x buffers that the tensors before it still use).
 */
static int prepare_tensor(run_state *S, size_t i, hma__mk_prep **out) {
    *out = NULL;
    const hma__rout *o = &S->r->out[i];
    hma__mk_job job;
    uint64_t shp[HMA_MAX_DIMS];
    if (o->n == 0) return HMA_OK;
    job_init(S, o, &job, shp);
    if (!hma__mk_reads_raw(&job)) return HMA_OK;
    for (size_t k = 0; k < o->n_src; k++) {
        const void *d = NULL;
        if (hma_tensor_data_get(o->src[k].t, &d) != HMA_OK || !d) return HMA_OK;
        S->raw[k] = d;
        S->raw_dt[k] = hma_tensor_dtype(o->src[k].t);
    }
    return hma__mk_prepare(&job, out);
}

/* Merge and write output tensor i (prep: what prepare_tensor ran, or NULL). */
static int run_tensor(run_state *S, size_t i, hma__mk_prep *prep) {
    hma_recipe *r = S->r;
    const hma__rout *o = &r->out[i];
    const char *src = hma__recipe_src(r);
    if (o->n == 0) return HMA_OK;
    uint64_t inner = 1;
    for (unsigned d = 1; d < o->ndim; d++) inner *= o->shape[d];
    uint64_t m = o->ndim ? o->rows_all * inner : 1; /* elements the method merges */
    int rc = HMA_OK;
    hma__mk_job job;
    uint64_t shp[HMA_MAX_DIMS];
    job_init(S, o, &job, shp);
    /* Methods that only read their sources take the mapped bytes and
     * convert blocks on the fly: no float32 copy of the tensor is made
     * (less memory touched, one pass less); the others get x loaded. */
    int raw = hma__mk_reads_raw(&job);
    for (size_t k = 0; k < o->n_src && !rc; k++) {
        const void *d = NULL;
        S->raw[k] = NULL;
        if (raw && hma_tensor_data_get(o->src[k].t, &d) == HMA_OK && d) {
            S->raw[k] = d;
            S->raw_dt[k] = hma_tensor_dtype(o->src[k].t);
        } else {
            rc = load(r, &o->src[k], 0, m, S->x[k], S->threads);
        }
    }
    if (rc) return hma__fail_prefix(rc, "%s: tensor '%s'", src, o->name);
    uint64_t bad = UINT64_MAX;
    write_arg wa;
    wa.w = S->w;
    wa.idx = i;
    wa.x = S->out;
    wa.odt = o->dtype;
    wa.osz = hma_dtype_bits(o->dtype) / 8;
    wa.obuf = S->sinkbuf;
    wa.path = hma__cpu_level();
    wa.bad = &bad;
    wa.begin = &S->begin;
    /* the result straight to the file, a chunk at a time, while in cache */
    int sunk = raw && S->sinkbuf && hma__pool_threads(S->threads, hma__mk_chunks(m)) <= S->sink_workers;
    release_arg ra = {o};
    if (sunk) {
        job.sink = sink_piece;
        job.sink_user = &wa;
        job.release = release_range;
        job.release_user = &ra;
    }
    if (m && (rc = hma__mk_merge_prepared(&job, prep))) return rc;
    /* a vocabulary mismatch: the rows only some models have are copied */
    for (uint64_t row = o->rows_all; o->vocab && row < o->shape[0] && !rc;) {
        uint64_t end = hma__rout_extra_end(o, row);
        size_t from = hma__rout_extra_source(o, row);
        rc = load(r, &o->src[from], row * inner, (end - row) * inner, S->out + row * inner, S->threads);
        if (rc) return hma__fail_prefix(rc, "%s: tensor '%s'", src, o->name);
        row = end;
    }
    /* round once and write what the sink did not (all, or the extra rows);
     * the scratch holds n float32 = 4n bytes, so an F64 output goes in
     * passes of half the tensor */
    wa.obuf = (unsigned char *)S->scratch;
    uint64_t pass = wa.osz <= 4 ? o->n : r->max_n * 4 / wa.osz;
    for (uint64_t p0 = sunk ? m : 0; p0 < o->n && !rc; p0 += pass) {
        wa.p0 = p0;
        rc = hma__mk_for(S->threads, o->n - p0 < pass ? o->n - p0 : pass, write_chunk, &wa);
    }
    if (!rc && bad != UINT64_MAX)
        return hma__fail(HMA_ERR_NONFINITE,
                         "%s: tensor '%s': element %llu of the merged tensor is %s (from an input, or an overflow "
                         "of the method's arithmetic)",
                         src, o->name, (unsigned long long)(bad / 2), bad % 2 ? "NaN" : "infinite");
    return rc;
}

/* ---- metadata and side files ----------------------------------------------- */

static char *recipe_json(const hma_recipe *r, uint64_t seed) {
    hma__strbuf sb = HMA__STRBUF_INIT;
    hma__sb_printf(&sb, "{\"libhma\":\"%s\",\"method\":", hma_version_string());
    hma__sb_json_string(&sb, r->cfg->method, strlen(r->cfg->method));
    hma__sb_printf(&sb, ",\"seed\":%llu,\"models\":[", (unsigned long long)seed);
    for (size_t m = 0; m < r->n_models; m++) {
        if (m) hma__sb_putc(&sb, ',');
        hma__sb_json_string(&sb, r->models[m].path, strlen(r->models[m].path));
    }
    hma__sb_puts(&sb, "]}");
    return hma__sb_detach(&sb, NULL);
}

static int set_metadata(const hma_recipe *r, hma_writer *w, uint64_t seed) {
    int user_format = 0;
    for (size_t k = 0; k < r->nmeta; k++) user_format |= strcmp(r->mkeys[k], "format") == 0;
    int rc = user_format ? HMA_OK : hma_writer_set_metadata(w, "format", "pt");
    char *js = rc ? NULL : recipe_json(r, seed);
    if (!rc && !js) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", hma__recipe_src(r));
    if (!rc) rc = hma_writer_set_metadata(w, "hma_recipe", js);
    hma__free(js);
    if (!rc) rc = hma_writer_set_metadata(w, "hma_recipe_text", r->cfg->text);
    for (size_t k = 0; k < r->nmeta && !rc; k++) rc = hma_writer_set_metadata(w, r->mkeys[k], r->mvals[k]);
    return rc;
}

/* The Hugging Face folder of a model path: the folder itself, or the folder
 * of an index; NULL for a single file (as `hma merge` does). malloc'ed. */
static char *model_folder(const char *path, int *oom) {
    struct stat st;
    *oom = 0;
    char *f = NULL;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) f = hma__strdup(path);
    else if (hma__ends_with(path, ".json")) f = hma__path_dir(path);
    else return NULL;
    *oom = f == NULL;
    return f;
}

/* Where the number of top-level key `key` is in the text, when it is a
 * number other than `value`: returns 1 with *cut_at, *cut_len set. */
static int edit_number(const hma__json *root, const char *key, uint64_t value, size_t *cut_at,
                       size_t *cut_len) {
    const hma__json *v = hma__json_get(root, key);
    if (!v || v->type != HMA__JSON_NUMBER || (v->is_uint && v->u == value)) return 0;
    *cut_at = v->offset;
    *cut_len = v->len;
    return 1;
}

/* config.json of folder `dir`, with num_hidden_layers and vocab_size set to
 * the output's when the merge changed them (a text edit of those two
 * top-level numbers: everything else stays byte for byte). */
static int add_config(const hma_recipe *r, hma_writer *w, const char *path) {
    const hma__rmodel *cm = &r->models[r->cfg_model];
    int fd;
    struct stat st;
    int rc = hma__open_read(path, &fd, &st);
    if (rc) return rc;
    if (st.st_size > (64 << 20)) {
        close(fd);
        return hma_writer_add_file(w, "config.json", path); /* not a config we edit */
    }
    size_t len = (size_t)st.st_size;
    char *text = hma__malloc(len + 1);
    if (!text) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", path);
    if (!rc) rc = hma__pread_full(fd, path, text, len, 0);
    close(fd);
    hma__json_doc *doc = NULL;
    if (!rc && hma__json_parse(text, len, path, &doc, NULL) != HMA_OK) {
        hma__free(text); /* not JSON we can read: copied as is */
        return hma_writer_add_file(w, "config.json", path);
    }
    if (rc) {
        hma__free(text);
        return rc;
    }
    const hma__json *root = hma__json_root(doc);
    /* the output's rows of the embedding, against the config model's own */
    uint64_t vocab = 0, own = 0;
    for (size_t i = 0; i < r->n_out; i++) {
        const hma__rout *o = &r->out[i];
        if (o->layer >= 0 || o->ndim != 2 || !hma_is_embedding_name(o->name)) continue;
        const hma_tensor *t = hma_store_find(cm->store, o->name);
        vocab = o->shape[0];
        own = t && hma_tensor_ndim(t) == 2 ? hma_tensor_shape(t)[0] : vocab;
        break;
    }
    size_t at[2], cl[2];
    uint64_t val[2];
    int ne = 0;
    if (root && root->type == HMA__JSON_OBJECT) {
        if (r->out_layers != cm->layers &&
            edit_number(root, "num_hidden_layers", (uint64_t)r->out_layers, &at[ne], &cl[ne]))
            val[ne++] = (uint64_t)r->out_layers;
        if (vocab != own && edit_number(root, "vocab_size", vocab, &at[ne], &cl[ne])) val[ne++] = vocab;
    }
    hma__json_free(doc);
    if (ne == 0) {
        hma__free(text);
        return hma_writer_add_file(w, "config.json", path);
    }
    if (ne == 2 && at[1] < at[0]) { /* edit in text order */
        size_t ta = at[0], tc = cl[0];
        uint64_t tv = val[0];
        at[0] = at[1], cl[0] = cl[1], val[0] = val[1];
        at[1] = ta, cl[1] = tc, val[1] = tv;
    }
    hma__strbuf sb = HMA__STRBUF_INIT;
    size_t pos = 0;
    for (int e = 0; e < ne; e++) {
        hma__sb_append(&sb, text + pos, at[e] - pos);
        hma__sb_u64(&sb, val[e]);
        pos = at[e] + cl[e];
    }
    hma__sb_append(&sb, text + pos, len - pos);
    hma__free(text);
    if ((rc = hma__sb_error(&sb))) {
        hma__sb_free(&sb);
        return hma__fail(rc, "%s: out of memory", path);
    }
    rc = hma__writer_add_file_data(w, "config.json", sb.data, sb.len);
    hma__sb_free(&sb);
    return rc;
}

static int add_side_files(const hma_recipe *r, hma_writer *w) {
    int oom;
    char *dir = model_folder(r->models[r->cfg_model].path, &oom);
    if (!dir) return oom ? hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", hma__recipe_src(r)) : HMA_OK;
    int rc = HMA_OK;
    const char *name;
    for (size_t i = 0; (name = hma_side_file_name(i)) != NULL && !rc; i++) {
        char *p = hma__path_join(dir, name);
        struct stat st;
        if (!p) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", hma__recipe_src(r));
        else if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
            rc = strcmp(name, "config.json") == 0 ? add_config(r, w, p) : hma_writer_add_file(w, name, p);
        hma__free(p);
    }
    hma__free(dir);
    return rc;
}

/* ---- the merge ---------------------------------------------------------------- */

int hma__recipe_run(hma_recipe *r, const char *out_path, const hma_recipe_options *o) {
    const char *src = hma__recipe_src(r);
    if (hma__ends_with(out_path, ".gguf"))
        return hma__fail(HMA_ERR_INVALID_ARGUMENT,
                         "%s: output '%s': recipes write safetensors (a .safetensors file or a folder), not GGUF", src,
                         out_path);
    int folder = !hma__ends_with(out_path, ".safetensors");
    hma_writer *w = NULL;
    run_state S;
    memset(&S, 0, sizeof S);
    S.r = r;
    S.threads = o->threads;
    S.seed = o->seed;
    int rc = hma_writer_create(&w, out_path, o->shard_size);
    if (!rc) rc = set_metadata(r, w, o->seed);
    uint64_t total = 0;
    for (size_t i = 0; i < r->n_out && !rc; i++) {
        const hma__rout *t = &r->out[i];
        rc = hma_writer_add_tensor(w, t->name, t->dtype, t->ndim, t->shape);
        total += t->n * (hma_dtype_bits(t->dtype) / 8);
    }
    if (!rc && folder) rc = add_side_files(r, w);
    /* the buffers: x[0..max sources), out, scratch, each of the largest tensor */
    for (size_t i = 0; i < r->n_out; i++)
        if (r->out[i].n_src > S.nx) S.nx = r->out[i].n_src;
    uint64_t cap = r->max_n ? r->max_n : 1;
    if (!rc && (cap > SIZE_MAX / 4 / (S.nx + 2)))
        rc = hma__fail(HMA_ERR_OVERFLOW, "%s: the tensors are too large for this machine's address space", src);
    if (!rc) {
        S.x = hma__calloc(S.nx ? S.nx : 1, sizeof *S.x);
        S.xbase = hma__calloc(S.nx ? S.nx : 1, sizeof *S.xbase);
        S.raw = hma__calloc(S.nx ? S.nx : 1, sizeof *S.raw);
        S.raw_dt = hma__calloc(S.nx ? S.nx : 1, sizeof *S.raw_dt);
        /* the sink's per-worker output buffers (8 bytes: any output dtype) */
        S.sink_workers = hma__pool_threads(S.threads, hma__mk_chunks(cap));
        S.sinkbuf = hma__malloc((size_t)S.sink_workers * HMA__MK_CHUNK * 8);
        S.out = hma__big_alloc((size_t)cap * sizeof(float), &S.outbase);
        S.scratch = hma__big_alloc((size_t)cap * sizeof(float), &S.scratchbase);
        int ok = S.x && S.xbase && S.raw && S.raw_dt && S.sinkbuf && S.out && S.scratch;
        for (size_t k = 0; k < S.nx && ok; k++)
            ok = (S.x[k] = hma__big_alloc((size_t)cap * sizeof(float), &S.xbase[k])) != NULL;
        if (!ok)
            rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory for %zu buffers of %llu float32", src, S.nx + 2,
                           (unsigned long long)cap);
    }
    int begun = !rc;
    if (begun) hma__task_start(&S.begin, begin_task, w);
    S.w = w;
    uint64_t done = 0;
    /* While the output is being reserved nothing can be written: the
     * tensors' selections run ahead meanwhile (prep[j], tensors
     * [i, ahead)), then each tensor's merge uses its own. */
    hma__mk_prep **prep = begun && r->n_out ? hma__calloc(r->n_out, sizeof *prep) : NULL;
    size_t ahead = 0;
    for (size_t i = 0; i < r->n_out && !rc; i++) {
        if (ahead < i) ahead = i;
        while (prep && ahead < r->n_out && !rc && (!hma__task_done(&S.begin) || r->lookahead_all)) {
            rc = prepare_tensor(&S, ahead, &prep[ahead]);
            ahead++;
        }
        if (!rc) rc = run_tensor(&S, i, prep ? prep[i] : NULL);
        if (prep) {
            hma__mk_prep_free(prep[i]);
            prep[i] = NULL;
        }
        done += r->out[i].n * (hma_dtype_bits(r->out[i].dtype) / 8);
        if (!rc && o->progress)
            rc = hma__callback_result(o->progress(o->progress_user, done, total), "hma_recipe_merge_to: progress callback");
    }
    for (size_t j = 0; prep && j < r->n_out; j++) hma__mk_prep_free(prep[j]);
    hma__free(prep);
    if (begun) {
        int brc = hma__task_finish(&S.begin);
        if (brc) rc = brc; /* what a begin before the merge would have said */
    }
    if (!rc) rc = hma_writer_commit(w);
    hma_writer_free(w); /* not committed: nothing appears */
    for (size_t k = 0; S.xbase && k < S.nx; k++) hma__free(S.xbase[k]);
    hma__free(S.x);
    hma__free(S.xbase);
    hma__free(S.raw);
    hma__free(S.raw_dt);
    hma__free(S.outbase);
    hma__free(S.scratchbase);
    hma__free(S.sinkbuf);
    hma__mk_ws_free(&S.ws);
    return rc;
}
