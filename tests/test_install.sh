#!/bin/sh
# make install into a temporary DESTDIR, then build a consumer program through
# `pkg-config --cflags --libs libhma` only, shared and --static, and run both;
# then import the installed Python binding (make install, and pip install).
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
# The Python binding: make install put hma.py where $PYTHON reads the prefix's
# modules; it imports and reports the installed library's version.
PY=${PYTHON:-/usr/bin/python3}
ver=$(pkg-config --modversion libhma)
pyhma() { # PYTHONPATH [LD_LIBRARY_PATH]: prints "version|module file|loaded libhma"
    (cd "$tmp" && env -u HMA_LIBRARY PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$1" LD_LIBRARY_PATH="${2:-}" "$PY" -c '
import hma
maps = [l.split()[-1] for l in open("/proc/self/maps") if "libhma.so" in l]
print("%s|%s|%s" % (hma.version(), hma.__file__, maps[0] if maps else "-"))')
}
site=$("$PY" tools/python-sitedir.py "$("$PY" -c 'import sys; print(sys.prefix)')")
"$PY" -c 'import sys; sys.exit(sys.argv[1] not in sys.path)' "$site" || { echo "test_install: $site is not on $PY's sys.path"; exit 1; }
site=$("$PY" tools/python-sitedir.py $prefix)
[ -f "$tmp/root$site/hma.py" ] || { echo "test_install: hma.py not installed in $site"; exit 1; }
# (under DESTDIR the library is not yet where hma.py will look: LD_LIBRARY_PATH)
got=$(pyhma "$tmp/root$site" "$root/lib")
[ "$got" = "$ver|$tmp/root$site/hma.py|$root/lib/libhma.so.$ver" ] || { echo "test_install: installed hma.py: got '$got', want version $ver from $root/lib"; exit 1; }
# Installed elsewhere (PYTHON_SITEDIR), it finds the library through the folder make install wrote into it.
p3=$tmp/p3
make --no-print-directory -s install PREFIX="$p3" PYTHON_SITEDIR="$tmp/p3site" >/dev/null || { echo "test_install: make install PREFIX=$p3 failed"; exit 1; }
got=$(pyhma "$tmp/p3site")
[ "$got" = "$ver|$tmp/p3site/hma.py|$p3/lib/libhma.so.$ver" ] || { echo "test_install: hma.py in PYTHON_SITEDIR: got '$got', want version $ver from $p3/lib"; exit 1; }
make --no-print-directory -s uninstall PREFIX="$p3" PYTHON_SITEDIR="$tmp/p3site" >/dev/null
left=$(find "$p3" "$tmp/p3site" -type f | wc -l)
[ "$left" = 0 ] || { echo "test_install: uninstall PREFIX=$p3 left $left files"; exit 1; }
# pip (offline, from the source tree's pyproject.toml): the module alone; the
# dynamic linker finds libhma.so.1 (here through LD_LIBRARY_PATH).
cp -R examples/python "$tmp/pysrc" && rm -rf "$tmp/pysrc/build" "$tmp/pysrc"/*.egg-info
"$PY" -m pip install -q --no-build-isolation --no-deps --no-index --root-user-action=ignore --target "$tmp/pip" "$tmp/pysrc" >"$tmp/pip.log" 2>&1 \
  || { cat "$tmp/pip.log"; echo "test_install: pip install ./examples/python failed"; exit 1; }
[ -f "$tmp/pip/hma.py" ] && ls "$tmp/pip" | grep -q "^libhma-$ver.dist-info\$" || { ls "$tmp/pip"; echo "test_install: pip did not install hma.py as libhma $ver"; exit 1; }
got=$(pyhma "$tmp/pip" "$root/lib")
[ "$got" = "$ver|$tmp/pip/hma.py|$root/lib/libhma.so.$ver" ] || { echo "test_install: pip-installed hma.py: got '$got', want version $ver from $root/lib"; exit 1; }
make --no-print-directory -s uninstall DESTDIR="$tmp/root" PREFIX=$prefix >/dev/null
left=$(find "$tmp/root" -type f | wc -l)
[ "$left" = 0 ] || { echo "test_install: uninstall left $left files"; exit 1; }
echo "test_install: installed, consumer and guide example built via pkg-config (shared and static) and ran; hma.py installed by make install and pip imports: ok"
