/* testutil.c - small helpers shared by the cmocka tests. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *tu_toy_dir(void) {
    const char *d = getenv("HMA_TOY_DIR");
    return d && *d ? d : "examples/data/toy-llama";
}

char *tu_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

char *tu_toy_path(const char *file) { return tu_join(tu_toy_dir(), file); }

char *tu_mkdtemp(void) {
    const char *t = getenv("TMPDIR");
    char *tmpl = tu_join(t && *t ? t : "/tmp", "hma-test-XXXXXX");
    if (tmpl && !mkdtemp(tmpl)) {
        free(tmpl);
        return NULL;
    }
    return tmpl;
}

char *tu_dir;

int tu_group_setup(void **state) {
    (void)state;
    tu_dir = tu_mkdtemp();
    return tu_dir ? 0 : -1;
}

int tu_group_teardown(void **state) {
    (void)state;
    tu_rmtree(tu_dir);
    free(tu_dir);
    tu_dir = NULL;
    return 0;
}

void tu_rmtree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char *p = tu_join(path, e->d_name);
            struct stat st;
            if (p && lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
                tu_rmtree(p);
            else if (p)
                unlink(p);
            free(p);
        }
        closedir(d);
    }
    rmdir(path);
}

int tu_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = len ? fwrite(data, 1, len, f) : 0;
    int rc = fclose(f);
    return (w == len && rc == 0) ? 0 : -1;
}

unsigned char *tu_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return NULL; }
    long n = ftell(f);
    rewind(f);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) *len = (size_t)n;
    return buf;
}

int tu_write_safetensors_raw(const char *path, const char *header, size_t header_len,
                             const void *data, size_t data_len) {
    size_t total = 8 + header_len + data_len;
    unsigned char *buf = malloc(total ? total : 1);
    if (!buf) return -1;
    uint64_t n = header_len;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    memcpy(buf + 8, header, header_len);
    if (data_len) memcpy(buf + 8 + header_len, data, data_len);
    int rc = tu_write_file(path, buf, total);
    free(buf);
    return rc;
}

int tu_count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

int tu_has_entry_prefix(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    size_t pl = strlen(prefix);
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, pl) == 0) found = 1;
    closedir(d);
    return found;
}
