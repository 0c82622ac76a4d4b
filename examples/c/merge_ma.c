/*
 * merge_ma.c - the C guide's example (docs/guide-c.md): HMA merge of a base
 * and an aligned checkpoint with one ratio per block of layers, written to a
 * file, then one tensor re-merged in memory at another ratio.
 *
 *   cc merge_ma.c $(pkg-config --cflags --libs libhma) -o merge_ma
 *   ./merge_ma BASE ALIGNED OUT.safetensors
 */
#include <hma.h>
#include <stdio.h>
#include <stdlib.h>

static int progress(void *user, uint64_t done, uint64_t total) {
    (void)user;
    fprintf(stderr, "\r%3.0f%%", total ? 100.0 * (double)done / (double)total : 100.0);
    return 0; /* HMA_CANCEL would cancel: nothing would appear under OUT */
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s BASE ALIGNED OUT.safetensors\n", argv[0]);
        return 2;
    }
    hma_store *in[2] = {NULL, NULL};
    hma_plan *plan = NULL;
    int rc = hma_store_open(&in[0], argv[1], 0);
    if (rc == HMA_OK) rc = hma_store_open(&in[1], argv[2], 0);
    if (rc == HMA_OK) rc = hma_plan_create(&plan, in, 2); /* borrows the stores */
    if (rc == HMA_OK) rc = hma_plan_set_groups(plan, "blocks:3");
    /* a_k is the weight of the ALIGNED model in block k; mean 0.5. */
    const double ratios[3] = {0.3, 0.5, 0.7};
    if (rc == HMA_OK) rc = hma_plan_set_ratios(plan, ratios, 3);
    if (rc == HMA_OK) rc = hma_plan_set_progress(plan, progress, NULL);
    if (rc == HMA_OK) rc = hma_plan_merge_to(plan, argv[3], 0);
    if (rc == HMA_OK) {
        fprintf(stderr, "\rwrote %s\n", argv[3]);
        /* The server case: re-merge one tensor in memory at a new ratio. */
        size_t i = hma_plan_find(plan, "lm_head.weight");
        uint64_t nbytes = i == HMA_NPOS ? 0 : hma_plan_tensor_nbytes(plan, i);
        void *buf = malloc(nbytes ? (size_t)nbytes : 1);
        uint64_t gen = 0;
        if (!buf) rc = HMA_ERR_NO_MEMORY;
        if (rc == HMA_OK) rc = hma_plan_set_ratio(plan, 0.8);
        if (rc == HMA_OK && nbytes)
            rc = hma_plan_merge_tensor(plan, "lm_head.weight", 0, buf, (size_t)nbytes, &gen);
        if (rc == HMA_OK)
            printf("lm_head.weight re-merged at a = 0.8: %llu bytes (weights generation %llu)\n",
                   (unsigned long long)nbytes, (unsigned long long)gen);
        free(buf);
    }
    if (rc != HMA_OK) fprintf(stderr, "error: %s: %s\n", hma_strerror(rc), hma_last_error());
    hma_plan_free(plan); /* free the plan before the stores it borrows */
    hma_store_close(in[1]);
    hma_store_close(in[0]);
    return rc == HMA_OK ? 0 : 1;
}
