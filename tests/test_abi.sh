#!/bin/sh
# The shared library exports nothing but the public API (hma_*), under the
# HMA_1.0 version node, with SONAME libhma.so.1, and every exported function
# is declared in include/hma.h.
set -u
LIBOUT=${LIBOUT:-lib}
so=$LIBOUT/libhma.so.1
fail() { echo "test_abi: $*"; exit 1; }
[ -e "$so" ] || fail "$so missing"
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libhma.so.1 ] || fail "SONAME is '$soname', expected libhma.so.1"
syms=$(nm -D --defined-only "$so" | awk '{print $3}' | sed 's/@.*//' | sort -u)
[ -n "$syms" ] || fail "no exported symbols"
bad=$(echo "$syms" | grep -v '^hma_' | grep -v '^HMA_1\.0$' || true)
[ -z "$bad" ] || fail "symbols outside the public API are exported: $bad"
internal=$(echo "$syms" | grep '^hma__' || true)
[ -z "$internal" ] || fail "internal hma__ symbols are exported: $internal"
for s in $(echo "$syms" | grep '^hma_'); do
    grep -q "HMA_API[^;]*[ *]$s(" include/hma.h || fail "exported $s is not declared HMA_API in include/hma.h"
done
versioned=$(objdump -T "$so" | grep -c ' HMA_1\.0 ' || true)
[ "$versioned" -gt 0 ] || fail "symbols are not versioned HMA_1.0"
unver=$(objdump -T "$so" | awk '$2 != "l" && / hma_/ && !/HMA_1\.0/' || true)
[ -z "$unver" ] || fail "hma_ symbols without the HMA_1.0 version: $unver"
# The exported list is exactly the committed one (abi/symbols.txt): an
# addition or removal must be recorded on purpose (make abi-update).
if [ -f abi/symbols.txt ]; then
    now=$(echo "$syms" | grep -v '^HMA_1\.0$' | LC_ALL=C sort -u)
    if [ "$now" != "$(cat abi/symbols.txt)" ]; then
        echo "$now" >"${TMPDIR:-/tmp}/hma-test-abi.$$"
        diff -u abi/symbols.txt "${TMPDIR:-/tmp}/hma-test-abi.$$" | sed -n '3,$p' | grep '^[-+]'
        rm -f "${TMPDIR:-/tmp}/hma-test-abi.$$"
        fail "exported symbols differ from abi/symbols.txt (- removed, + added); if intended, run make abi-update and commit"
    fi
else
    fail "abi/symbols.txt missing (make abi-update)"
fi
n=$(echo "$syms" | grep -c '^hma_')
echo "test_abi: $n hma_ symbols exported (as in abi/symbols.txt), all versioned HMA_1.0, SONAME $soname: ok"
