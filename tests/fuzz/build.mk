# tests/fuzz/build.mk - builds the libFuzzer targets and the seed generator
# into build/fuzz/ (run from the repository root; tests/fuzz/run.sh calls it).
# The library sources are compiled straight into each fuzzer, with the same
# defines and ISA flags as the Makefile, plus coverage and ASan+UBSan.
FUZZ_CC ?= clang
FZ ?= build/fuzz
FZSAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FZFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -pthread -ffp-contract=off $(FZSAN) -Iinclude -Isrc
FZLIBS := -lopenblas -lzstd -lyaml -lpthread -lm

FZ_LIBSRC := $(sort $(wildcard src/*.c src/*/*.c))
FZ_LIBOBJ := $(patsubst src/%.c,$(FZ)/obj/%.o,$(FZ_LIBSRC))
FZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,$(FZ)/fuzz_%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))

%kernels_avx2.o: ISA := -mavx2 -mf16c -mfma
%kernels_avx512.o: ISA := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mf16c -mfma

all: $(FZ_TARGETS) $(FZ)/gen_seeds

$(FZ)/obj/%.o: src/%.c $(wildcard src/*.h src/*/*.h) include/hma.h tests/fuzz/build.mk
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FZFLAGS) -fsanitize=fuzzer-no-link -DHMA_BUILDING_LIBRARY $(ISA) -c $< -o $@

$(FZ)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h $(FZ_LIBOBJ)
	$(FUZZ_CC) $(FZFLAGS) -Wall -Wextra -Werror -fsanitize=fuzzer -o $@ $< $(FZ_LIBOBJ) $(FZLIBS)

$(FZ)/gen_seeds: tests/fuzz/gen_seeds.c tests/fuzz/fuzz_common.h $(FZ_LIBOBJ)
	$(FUZZ_CC) $(FZFLAGS) -Wall -Wextra -Werror -fsanitize=fuzzer-no-link -o $@ $< $(FZ_LIBOBJ) $(FZLIBS)

.PHONY: all
