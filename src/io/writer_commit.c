/* writer_commit.c - put a writer's finished temporaries in place: fsync
 * each, rename them to their final names (shards, copied files, index last;
 * a stale index removed), fsync the folders, and undo every rename when a
 * later step fails. */
#include "io/writer_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One step of the commit: publish af at final (or, af == NULL, remove
 * final), keeping a hard link to what was there so the step can be undone. */
typedef struct wstep {
    const char *final_path;
    hma__afile *af;
    char *backup; /* hard link to the previous file, or NULL */
    int done;
} wstep;

static void undo_steps(wstep *s, size_t n) {
    for (size_t i = n; i-- > 0;) {
        if (!s[i].done) continue;
        if (s[i].backup) hma__backup_restore(&s[i].backup, s[i].final_path);
        else if (s[i].af) unlink(s[i].final_path);
        s[i].done = 0;
    }
}

static int run_steps(hma_writer *w, wstep *s, size_t n, const char *stem) {
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (lstat(s[i].final_path, &st) == 0) {
            /* No temporary of ours to name the backup after: cannot be undone. */
            int rc = stem ? hma__backup_link(s[i].final_path, w->dir, stem, i, &s[i].backup) : HMA_OK;
            if (rc) {
                undo_steps(s, i);
                return rc;
            }
        } else if (!s[i].af) {
            continue; /* nothing to remove */
        }
        int rc = HMA_OK;
        if (s[i].af) {
            rc = hma__afile_publish(s[i].af);
        } else if (unlink(s[i].final_path) != 0 && errno != ENOENT) {
            rc = hma__fail_errno(HMA_ERR_IO, errno, s[i].final_path, "cannot remove the stale index");
        }
        if (rc) {
            if (s[i].backup) { /* the old file is still in place */
                unlink(s[i].backup);
                hma__free(s[i].backup);
                s[i].backup = NULL;
            }
            undo_steps(s, i);
            return hma__fail_prefix(rc, "%s: earlier renames undone", w->path);
        }
        s[i].done = 1;
    }
    return HMA_OK;
}

/* fsync the destination folder, and the parent of every folder begin made
 * (a folder we created must itself be recorded in its parent). */
int hma__writer_sync_folders(const hma_writer *w) {
    int rc = hma__fsync_dir(w->dir);
    for (size_t i = 0; i < w->nmade && !rc; i++) {
        char *parent = hma__path_dir(w->made_dirs[i]);
        if (!parent) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
        rc = hma__fsync_dir(parent);
        hma__free(parent);
    }
    return rc;
}

int hma__writer_commit_files(hma_writer *w) {
    for (size_t i = 0; i < w->nfiles; i++) {
        if (!hma__writer_file_active(w, i)) continue; /* finalize: the parts' shards */
        int rc = hma__afile_sync(&w->files[i].af);
        if (rc) return hma__fail_prefix(rc, "%s: cannot flush to disk", w->files[i].final_path);
    }
    /* Shards first, the index last: a reader that finds the new index finds
     * every shard it names. A single model.safetensors written into a folder
     * also removes an index left there by an earlier sharded output, which
     * readers would otherwise prefer over the new file. */
    int want_stale = w->folder && !w->sharded;
    wstep *s = hma__calloc(w->nfiles + 1, sizeof *s);
    char *stale = NULL, *stem = NULL;
    if (!s) return hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
    size_t n = 0;
    for (size_t i = 0; i < w->nfiles; i++) {
        if (!hma__writer_file_active(w, i)) continue;
        s[n].final_path = w->files[i].final_path;
        s[n].af = &w->files[i].af;
        n++;
    }
    int rc = HMA_OK;
    if (want_stale) {
        stale = hma__path_join(w->dir, HMA__INDEX_NAME);
        s[n++].final_path = stale;
    }
    /* A whole output has at least one file, whose temporary exists until
     * published; finalize of an output without copied files or index has
     * none (its stale index is then removed without a backup). */
    if (s[0].af) stem = hma__strdup(hma__path_base(s[0].af->tmp));
    if ((s[0].af && !stem) || (want_stale && !stale)) rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: out of memory", w->path);
    if (!rc) rc = run_steps(w, s, n, stem);
    if (!rc) {
        rc = hma__writer_sync_folders(w);
        if (rc) {
            char why[512];
            snprintf(why, sizeof why, "%s", hma_last_error());
            undo_steps(s, n);
            hma__fsync_dir(w->dir); /* best effort: the first error is reported */
            rc = hma__fail(rc, "%s: renames undone: %s", w->path, why);
        }
    }
    for (size_t i = 0; i < n; i++) {
        /* After a failed commit a backup is left only if it could not be put
         * back; it then is the sole copy of the old file: keep it. */
        if (s[i].backup && !rc) unlink(s[i].backup);
        hma__free(s[i].backup);
    }
    hma__free(stem);
    hma__free(stale);
    hma__free(s);
    return rc;
}
