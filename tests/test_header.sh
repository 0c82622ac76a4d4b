#!/bin/sh
# include/hma.h compiles alone as C11 and as C++ (extern "C") under strict
# warnings, with gcc and clang when present.
set -u
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '#include "hma.h"\nint main(void) { return hma_version_number() == HMA_VERSION_NUMBER ? 0 : 1; }\n' > "$tmp/h.c"
printf '#include "hma.h"\nint main() { hma_store *s = nullptr; (void)s; return HMA_OK; }\n' > "$tmp/h.cpp"
# the static inline hma_X_init() wrappers compile as C and as C++
printf 'int f(void);\nint f(void) { hma_pack_options o; hma_sweep_options w; hma_pack_options_init(&o); hma_sweep_options_init(&w); return (int)(o.struct_size + w.search.struct_size); }\n' >> "$tmp/h.c"
printf 'int f() { hma_pack_stats st; hma_search_options o; hma_pack_stats_init(&st); hma_search_options_init(&o); return (int)(st.struct_size + o.struct_size); }\n' >> "$tmp/h.cpp"
rc=0
for cc in gcc clang; do
    command -v $cc >/dev/null 2>&1 || continue
    $cc -std=c11 -Wall -Wextra -pedantic -Werror -Iinclude -c "$tmp/h.c" -o "$tmp/h.o" || { echo "test_header: $cc C11 failed"; rc=1; }
done
for cxx in g++ clang++; do
    command -v $cxx >/dev/null 2>&1 || continue
    $cxx -std=c++11 -Wall -Wextra -pedantic -Werror -Iinclude -c "$tmp/h.cpp" -o "$tmp/hpp.o" || { echo "test_header: $cxx C++ failed"; rc=1; }
done
[ $rc = 0 ] && echo "test_header: hma.h compiles alone as C11 and C++: ok"
exit $rc
