/* writer_layout.c - what the writer puts where: tensors assigned to shards,
 * every output file named, and the bytes of each shard's safetensors header
 * and of the index, exactly as the reference writers produce them. */
#include "io/writer_impl.h"

#include <stdio.h>
#include <string.h>

/* The safetensors header of shard s, padded with spaces to a multiple of 8,
 * exactly as the reference writer (serde_json, compact) produces it. */
int hma__writer_build_header(const hma_writer *w, const hma__wfile *s, hma__strbuf *sb) {
    hma__sb_putc(sb, '{');
    if (w->nmeta) {
        hma__sb_puts(sb, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nmeta; i++) {
            if (i) hma__sb_putc(sb, ',');
            hma__sb_json_string(sb, w->mkeys[i], strlen(w->mkeys[i]));
            hma__sb_putc(sb, ':');
            hma__sb_json_string(sb, w->mvals[i], strlen(w->mvals[i]));
        }
        hma__sb_putc(sb, '}');
    }
    for (size_t i = 0; i < s->count; i++) {
        const hma__wtensor *t = &w->t[s->first + i];
        if (i || w->nmeta) hma__sb_putc(sb, ',');
        hma__sb_json_string(sb, t->name, t->name_len);
        hma__sb_puts(sb, ":{\"dtype\":\"");
        hma__sb_puts(sb, hma_dtype_name(t->dtype));
        hma__sb_puts(sb, "\",\"shape\":[");
        for (unsigned d = 0; d < t->ndim; d++) {
            if (d) hma__sb_putc(sb, ',');
            hma__sb_u64(sb, t->shape[d]);
        }
        hma__sb_puts(sb, "],\"data_offsets\":[");
        hma__sb_u64(sb, t->begin);
        hma__sb_putc(sb, ',');
        hma__sb_u64(sb, t->begin + t->nbytes);
        hma__sb_puts(sb, "]}");
    }
    hma__sb_putc(sb, '}');
    /* sb holds the 8 length bytes too, so this makes the header length a
     * multiple of 8 and the data 8-aligned. */
    return hma__sb_fill(sb, ' ', (8 - sb->len % 8) % 8);
}

static int cmp_names(const void *a, const void *b) {
    const hma__wtensor *x = *(const hma__wtensor *const *)a, *y = *(const hma__wtensor *const *)b;
    return strcmp(x->name, y->name); /* byte order = code point order for UTF-8 */
}

/* model.safetensors.index.json as transformers writes it:
 * json.dumps(index, indent=2, sort_keys=True) + "\n". */
int hma__writer_build_index(const hma_writer *w, hma__strbuf *sb) {
    const hma__wtensor **sorted = hma__malloc((w->nt ? w->nt : 1) * sizeof *sorted);
    if (!sorted) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory building the index", w->path);
    for (size_t i = 0; i < w->nt; i++) sorted[i] = &w->t[i];
    qsort(sorted, w->nt, sizeof *sorted, cmp_names);
    hma__sb_puts(sb, "{\n  \"metadata\": {\n    \"total_size\": ");
    hma__sb_u64(sb, w->total);
    hma__sb_puts(sb, "\n  },\n  \"weight_map\": {");
    for (size_t i = 0; i < w->nt; i++) {
        hma__sb_puts(sb, i ? ",\n    " : "\n    ");
        hma__sb_json_string_ascii(sb, sorted[i]->name, sorted[i]->name_len);
        hma__sb_puts(sb, ": ");
        const char *base = hma__path_base(w->files[sorted[i]->shard].final_path);
        hma__sb_json_string_ascii(sb, base, strlen(base));
    }
    int rc = hma__sb_puts(sb, w->nt ? "\n  }\n}\n" : "}\n}\n");
    hma__free(sorted);
    return rc;
}

/* Assign tensors to shards in declaration order and name the files. */
int hma__writer_layout(hma_writer *w) {
    size_t n = 1;
    uint64_t cur = 0; /* data bytes in the current shard */
    for (size_t i = 0; i < w->nt; i++) {
        uint64_t sz = w->t[i].nbytes;
        /* Zero-size tensors never open a shard; a tensor over the limit
         * opens one and the next non-empty tensor opens another. */
        if (w->shard_size && sz > 0 && cur > 0 && (cur > w->shard_size || sz > w->shard_size - cur)) {
            n++;
            cur = 0;
        }
        w->t[i].shard = n - 1;
        w->t[i].begin = cur;
        cur += sz;
    }
    w->sharded = w->folder && n > 1;
    w->nshards = n;
    w->nfiles = n + w->nx + (w->sharded ? 1 : 0);
    w->files = hma__calloc(w->nfiles, sizeof *w->files);
    if (!w->files) {
        w->nfiles = w->nshards = 0;
        return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
    }
    for (size_t i = 0; i < w->nfiles; i++) w->files[i].af.fd = -1;
    for (size_t i = 0; i < w->nt; i++) {
        hma__wfile *f = &w->files[w->t[i].shard];
        if (f->count == 0) f->first = i;
        f->count++;
        f->data_size = w->t[i].begin + w->t[i].nbytes;
    }
    for (size_t i = 0; i < w->nfiles; i++) {
        hma__wfile *f = &w->files[i];
        char name[64];
        if (!w->folder) {
            f->final_path = hma__strdup(w->path);
        } else if (i >= n && i < n + w->nx) {
            f->src = w->xsrcs[i - n];
            f->mem = w->xdata[i - n];
            f->mem_len = w->xdlen[i - n];
            f->final_path = hma__path_join(w->dir, w->xnames[i - n]);
        } else {
            if (!w->sharded) snprintf(name, sizeof name, HMA__SINGLE_NAME);
            else if (i < n) snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, n);
            else snprintf(name, sizeof name, HMA__INDEX_NAME);
            f->final_path = hma__path_join(w->dir, name);
        }
        if (!f->final_path) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
    }
    return HMA_OK;
}
