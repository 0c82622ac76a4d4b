/* testutil.h - small helpers shared by the cmocka tests. */
#ifndef HMA_TESTUTIL_H
#define HMA_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Folder of the shipped toy pair (examples/data/toy-llama), resolved from the
 * HMA_TOY_DIR environment variable or the source tree. */
const char *tu_toy_dir(void);
/* tu_toy_dir() joined with a file name; static buffer per call site not needed:
 * returns a malloc'd string the caller frees. */
char *tu_toy_path(const char *file);

/* A fresh empty folder under $TMPDIR (or /tmp); malloc'd path. */
char *tu_mkdtemp(void);
/* rm -rf of a folder made by tu_mkdtemp(). */
void tu_rmtree(const char *path);
/* A temporary folder for a whole cmocka group: tu_group_setup() makes it
 * (tu_dir), tu_group_teardown() removes it with everything inside. */
extern char *tu_dir;
int tu_group_setup(void **state);
int tu_group_teardown(void **state);
/* dir + "/" + name, malloc'd. */
char *tu_join(const char *dir, const char *name);

/* Write bytes to a file (created/truncated); 0 on success. */
int tu_write_file(const char *path, const void *data, size_t len);
/* Read a whole file; malloc'd buffer, *len set; NULL on failure. */
unsigned char *tu_read_file(const char *path, size_t *len);

/* Build a safetensors file: 8-byte little-endian length of `header`, the
 * header, then `data_len` bytes of `data`. 0 on success. */
int tu_write_safetensors_raw(const char *path, const char *header, size_t header_len,
                             const void *data, size_t data_len);

/* Number of entries in a folder (excluding . and ..), -1 on error. */
int tu_count_entries(const char *dir);
/* 1 if the folder holds an entry whose name starts with prefix. */
int tu_has_entry_prefix(const char *dir, const char *prefix);

#endif
