/* registry.c - the process-wide set of files held open by stores, so that a
 * writer can refuse to replace a file some store is still reading (replacing
 * a memory-mapped input could SIGBUS its readers or silently change them). */
#include "internal.h"

#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

/* Keyed by (device, inode) rather than by path: the same file reached by
 * another name (symlink, relative path, hard link) is still the same input. */
typedef struct reg_entry {
    unsigned long long dev, ino;
    size_t refs; /* one file may be open in several stores */
} reg_entry;

/* The only mutable globals of the library besides the per-thread error
 * message; every access holds reg_lock. */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static reg_entry *reg_items;
static size_t reg_len, reg_cap;

static size_t reg_find_locked(unsigned long long dev, unsigned long long ino) {
    for (size_t i = 0; i < reg_len; i++)
        if (reg_items[i].dev == dev && reg_items[i].ino == ino) return i;
    return (size_t)-1;
}

int hma__registry_add(const char *path, unsigned long long dev, unsigned long long ino) {
    int rc = HMA_OK;
    pthread_mutex_lock(&reg_lock);
    size_t i = reg_find_locked(dev, ino);
    if (i != (size_t)-1) {
        reg_items[i].refs++;
    } else {
        if (reg_len == reg_cap) {
            size_t ncap = reg_cap ? reg_cap * 2 : 16;
            reg_entry *n = hma__realloc(reg_items, ncap * sizeof *n);
            if (!n) {
                rc = hma__fail(HMA_ERR_NO_MEMORY, "%s: cannot register open input", path ? path : "?");
                goto out;
            }
            reg_items = n;
            reg_cap = ncap;
        }
        reg_items[reg_len].dev = dev;
        reg_items[reg_len].ino = ino;
        reg_items[reg_len].refs = 1;
        reg_len++;
    }
out:
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

void hma__registry_remove(unsigned long long dev, unsigned long long ino) {
    pthread_mutex_lock(&reg_lock);
    size_t i = reg_find_locked(dev, ino);
    if (i != (size_t)-1 && --reg_items[i].refs == 0) {
        reg_items[i] = reg_items[reg_len - 1];
        reg_len--;
        if (reg_len == 0) { /* leave no allocation behind for leak checkers */
            hma__free(reg_items);
            reg_items = NULL;
            reg_cap = 0;
        }
    }
    pthread_mutex_unlock(&reg_lock);
}

int hma__registry_contains_path(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0) return 0;
    pthread_mutex_lock(&reg_lock);
    int found = reg_find_locked((unsigned long long)st.st_dev, (unsigned long long)st.st_ino) != (size_t)-1;
    pthread_mutex_unlock(&reg_lock);
    return found;
}
