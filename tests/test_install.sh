#!/bin/sh
# make install into a temporary DESTDIR, then build a consumer program through
# `pkg-config --cflags --libs libhma` only, shared and --static, and run both.
set -u
[ -n "${SAN:-}" ] && { echo "test_install: skipped under sanitizers"; exit 0; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
prefix=/opt/hma-test
make --no-print-directory -s install DESTDIR="$tmp/root" PREFIX=$prefix >/dev/null || { echo "test_install: make install failed"; exit 1; }
root=$tmp/root$prefix
for f in include/hma.h lib/libhma.so.1.0.0 lib/libhma.so.1 lib/libhma.so lib/libhma.a lib/pkgconfig/libhma.pc; do
    [ -e "$root/$f" ] || { echo "test_install: $f not installed"; exit 1; }
done
grep -q "^prefix=$prefix\$" "$root/lib/pkgconfig/libhma.pc" || { echo "test_install: .pc prefix wrong"; exit 1; }
cat > "$tmp/consumer.c" <<'C'
#include <hma.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (hma_version_number() != HMA_VERSION_NUMBER) return 2;
    if (strcmp(hma_version_string(), HMA_VERSION_STRING) != 0) return 3;
    hma_store *s = NULL;
    if (argc > 1) {
        if (hma_store_open(&s, argv[1], 0) != HMA_OK) { fprintf(stderr, "%s\n", hma_last_error()); return 4; }
        printf("%zu tensors\n", hma_store_count(s));
        hma_store_close(s);
    }
    return 0;
}
C
# pkg-config sees the DESTDIR copy through PKG_CONFIG_SYSROOT_DIR.
export PKG_CONFIG_PATH="$root/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$tmp/root"
cc -std=c11 -o "$tmp/consumer" "$tmp/consumer.c" $(pkg-config --cflags --libs libhma) || { echo "test_install: shared build failed"; exit 1; }
LD_LIBRARY_PATH="$root/lib" "$tmp/consumer" examples/data/toy-llama/base.safetensors | grep -q '^75 tensors$' || { echo "test_install: shared consumer failed"; exit 1; }
ldd_out=$(LD_LIBRARY_PATH="$root/lib" ldd "$tmp/consumer" | grep libhma)
case "$ldd_out" in *"$root/lib/libhma.so.1"*) ;; *) echo "test_install: consumer did not load the installed libhma.so.1: $ldd_out"; exit 1;; esac
cc -std=c11 -static -o "$tmp/consumer_static" "$tmp/consumer.c" $(pkg-config --static --cflags --libs libhma) 2>"$tmp/static.err" \
  || cc -std=c11 -o "$tmp/consumer_static" "$tmp/consumer.c" -Wl,-Bstatic $(pkg-config --static --cflags --libs-only-L libhma) -lhma -Wl,-Bdynamic $(pkg-config --static --libs-only-l libhma | sed 's/-lhma//') \
  || { cat "$tmp/static.err"; echo "test_install: static build failed"; exit 1; }
ldd "$tmp/consumer_static" 2>/dev/null | grep -q libhma && { echo "test_install: static consumer links libhma dynamically"; exit 1; }
"$tmp/consumer_static" examples/data/toy-llama/base.safetensors | grep -q '^75 tensors$' || { echo "test_install: static consumer failed"; exit 1; }
# The C guide's example (docs/guide-c.md), built the way the guide says.
cc -std=c11 -Wall -Wextra -Werror -o "$tmp/merge_ma" examples/c/merge_ma.c $(pkg-config --cflags --libs libhma) || { echo "test_install: guide example failed to build"; exit 1; }
LD_LIBRARY_PATH="$root/lib" "$tmp/merge_ma" examples/data/toy-llama/base.safetensors examples/data/toy-llama/aligned.safetensors "$tmp/m.safetensors" 2>/dev/null | grep -q 'lm_head.weight re-merged' || { echo "test_install: guide example failed"; exit 1; }
[ -s "$tmp/m.safetensors" ] || { echo "test_install: guide example wrote nothing"; exit 1; }
make --no-print-directory -s uninstall DESTDIR="$tmp/root" PREFIX=$prefix >/dev/null
left=$(find "$tmp/root" -type f | wc -l)
[ "$left" = 0 ] || { echo "test_install: uninstall left $left files"; exit 1; }
echo "test_install: installed, consumer and guide example built via pkg-config (shared and static) and ran: ok"
