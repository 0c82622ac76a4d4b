#!/bin/sh
# The shared library exports nothing but the public API (hma_*), under the
# HMA_1.0 version node, with SONAME libhma.so.1; the exported functions are
# exactly the HMA_API ones of include/hma.h, and its static inline wrappers
# are not exported but call exported functions.
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
# ... and the other way round: every HMA_API function of hma.h is exported.
declared=$(grep -o 'HMA_API[^;(]*[ *]hma_[a-z0-9_]*(' include/hma.h | sed 's/.*[ *]\(hma_[a-z0-9_]*\)(/\1/' | sort -u)
[ -n "$declared" ] || fail "no HMA_API functions found in include/hma.h"
for s in $declared; do
    echo "$syms" | grep -qx "$s" || fail "$s is declared HMA_API in include/hma.h but not exported"
done
# The header's static inline functions (hma_X_init(o) -> hma_X_init_size(o,
# sizeof *o)) are compiled into the caller, never exported, and each calls
# an exported function (so that the work, and the struct's layout, stays the
# library's).
inl=$(sed -n 's/^static inline [^(]*[ *]\(hma_[a-z0-9_]*\)(.*/\1/p' include/hma.h)
[ -n "$inl" ] || fail "no static inline functions found in include/hma.h (expected the hma_X_init wrappers)"
for s in $inl; do
    echo "$syms" | grep -qx "$s" && fail "static inline $s of include/hma.h is also exported"
    body=$(sed -n "/^static inline [^(]*[ *]$s(/,/^}/p" include/hma.h | sed 1d)
    callee=$(echo "$body" | grep -o 'hma_[a-z0-9_]*(' | head -1 | tr -d '(')
    [ -n "$callee" ] && echo "$syms" | grep -qx "$callee" || fail "static inline $s does not call an exported function (calls '$callee')"
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
ni=$(echo "$inl" | wc -l)
echo "test_abi: $n hma_ symbols exported (as in abi/symbols.txt, = the HMA_API declarations), all versioned HMA_1.0, SONAME $soname, $ni inline wrappers not exported: ok"
