# libhma - top-level Makefile.
#   make            library (lib/libhma.so.1.0.0, lib/libhma.a) and examples/hma
#                   (installs missing Debian packages first, as make deps)
#   make run        the main job on the built-in toy checkpoint pair
#   make test       every test (installs missing Debian packages first)
#   make bench      benchmarks (not part of make test)
#   make install PREFIX=/usr/local DESTDIR=   /   make uninstall   /   make clean
#                   (library, header, pkg-config file, and the Python binding hma.py)
#   make SAN=asan test    the same tests under ASan+UBSan+LSan (build in build/asan)
#   make SAN=tsan test-concurrency   the multi-threaded tests under TSan (build/tsan)
#   make valgrind   the unit test programs under valgrind memcheck
#   make abi-check  compare the library's ABI and exported symbols with abi/
#   make abi-update regenerate abi/libhma.abi and abi/symbols.txt (then commit)
#   make mpi        examples/hma-mpi, the MPI program (mpicc; also built by
#                   make test when mpicc exists; libhma itself never links MPI)

VERSION_MAJOR := $(shell sed -n 's/^\#define HMA_VERSION_MAJOR \([0-9]*\).*/\1/p' include/hma.h)
VERSION_MINOR := $(shell sed -n 's/^\#define HMA_VERSION_MINOR \([0-9]*\).*/\1/p' include/hma.h)
VERSION_PATCH := $(shell sed -n 's/^\#define HMA_VERSION_PATCH \([0-9]*\).*/\1/p' include/hma.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
VERSION_NUMBER := $(shell echo $$(($(VERSION_MAJOR) * 10000 + $(VERSION_MINOR) * 100 + $(VERSION_PATCH))))

CC ?= cc
PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR_INSTALL ?= $(PREFIX)/lib
INCDIR_INSTALL ?= $(PREFIX)/include
PYTHON ?= /usr/bin/python3
# Where `make install` puts the Python binding hma.py: the folder $(PYTHON)
# reads modules of $(PREFIX) from (tools/python-sitedir.py).
PYTHON_SITEDIR ?= $(shell $(PYTHON) tools/python-sitedir.py $(PREFIX) 2>/dev/null)

# Sanitizer builds live in their own folders so that they never mix with the
# normal objects.
SAN ?=
ifeq ($(SAN),)
BUILD ?= build
LIBOUT ?= lib
SANFLAGS :=
else ifeq ($(SAN),asan)
BUILD := build/asan
LIBOUT := build/asan/lib
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else ifeq ($(SAN),tsan)
BUILD := build/tsan
LIBOUT := build/tsan/lib
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else
$(error SAN must be empty, asan or tsan)
endif

OPT ?= -O2
# -ffp-contract=off: no fused multiply-add behind our back, so every SIMD path
# and the scalar path round identically (bit-exact results).
BASEFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -g -pthread -ffp-contract=off $(SANFLAGS)
WARN := -Wall -Wextra -Werror
LIBWARN := $(WARN) -Wconversion -Wno-sign-conversion -Wshadow -Wstrict-prototypes
LIB_CFLAGS := $(BASEFLAGS) $(LIBWARN) -fPIC -fvisibility=hidden -DHMA_BUILDING_LIBRARY -Iinclude -Isrc $(CFLAGS)
APP_CFLAGS := $(BASEFLAGS) $(WARN) -Iinclude $(CFLAGS)
LIBS := -lopenblas -lzstd -lyaml -lpthread -lm
LDFLAGS ?=

LIB_SRC := $(sort $(wildcard src/*.c src/*/*.c))
LIB_OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRC))
# ar keeps archive members by file name alone: two src/ files with one name
# would silently replace each other in libhma.a.
LIB_DUPS := $(sort $(foreach n,$(notdir $(LIB_SRC)),$(if $(filter-out 1,$(words $(filter %/$(n),$(LIB_SRC)))),$(n))))
$(if $(LIB_DUPS),$(error src/ has several C files named $(LIB_DUPS); give each a unique name))
# Per-file ISA flags: these files are only entered after a run-time CPU check.
# (pattern-specific, so a kernel file may live in any folder of src/)
%kernels_avx2.o: ISAFLAGS := -mavx2 -mf16c -mfma
%kernels_avx512.o: ISAFLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mf16c -mfma

SONAME := libhma.so.$(VERSION_MAJOR)
SHARED := $(LIBOUT)/libhma.so.$(VERSION)
STATIC := $(LIBOUT)/libhma.a

# The hma program: its commands (examples/cli/), the experiment they run
# (examples/experiment/: toy evaluator, search driver, plot) and the helpers
# the examples share (examples/common/: the worker pool).
EX_SRC := $(sort $(wildcard examples/cli/*.c examples/experiment/*.c examples/common/*.c))
EX_INC := -Iexamples/cli -Iexamples/experiment -Iexamples/common
HMA_BIN := $(if $(SAN),$(BUILD)/examples/hma,examples/hma)

TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
ITEST_SRC := $(sort $(wildcard tests/internal/test_*.c))
ITEST_BIN := $(patsubst tests/internal/%.c,$(BUILD)/tests/internal/%,$(ITEST_SRC))
TESTUTIL := tests/testutil.c

.PHONY: mpi
.PHONY: default all lib deps run test test-unit test-concurrency valgrind abi-check abi-update bench install uninstall clean docs fuzz interop
# Plain `make` first installs the Debian packages that are missing (make deps;
# silent when all are there), like make test and make run; `make all` builds
# without that check.
.DEFAULT_GOAL := default
default: deps
	@$(MAKE) --no-print-directory all
all: lib $(HMA_BIN)
lib: $(SHARED) $(LIBOUT)/libhma.so.$(VERSION_MAJOR) $(LIBOUT)/libhma.so $(STATIC)

# ---- dependencies (Debian 12) ----------------------------------------------
DEB_PKGS := build-essential pkg-config libopenblas-dev libzstd-dev libyaml-dev libcmocka-dev \
            python3 python3-numpy python3-pip python3-setuptools valgrind abigail-tools clang libclang-rt-14-dev \
            libopenmpi-dev openmpi-bin
# make bench also measures the PyTorch merge users run today (Debian's torch).
BENCH_PKGS := python3-torch
# CI (.ci/run sets CI=true) also installs PyTorch, so that make test runs
# tests/test_learn_ratios.sh (skipped, with a message, where torch is missing).
ifeq ($(CI),true)
DEB_PKGS += python3-torch
endif
deps:
	@command -v dpkg-query >/dev/null || { echo "make deps: not a Debian system: install the equivalents of $(DEB_PKGS) yourself"; exit 0; }; \
	missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null \
	  || { echo "make deps: could not install$$missing: run 'make deps' as root (or with sudo), or install them yourself"; exit 1; }; \
	fi

# ---- library -----------------------------------------------------------------
$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h src/*/*.h) include/hma.h
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) $(ISAFLAGS) -MMD -MP -c $< -o $@

$(SHARED): $(LIB_OBJ) src/libhma.map
	@mkdir -p $(@D)
	$(CC) $(SANFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libhma.map \
	  -Wl,--no-undefined -o $@ $(LIB_OBJ) $(LDFLAGS) $(LIBS)

$(LIBOUT)/libhma.so.$(VERSION_MAJOR): $(SHARED)
	ln -sf libhma.so.$(VERSION) $@
$(LIBOUT)/libhma.so: $(SHARED)
	ln -sf libhma.so.$(VERSION) $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@
	ar rcs $@ $(LIB_OBJ)

# ---- examples ------------------------------------------------------------------
# The example programs link the shared library as a user would; the rpath
# lets them run from the source tree without installing.
$(HMA_BIN): $(EX_SRC) $(wildcard examples/cli/*.h examples/experiment/*.h examples/common/*.h) include/hma.h $(SHARED) $(LIBOUT)/libhma.so $(LIBOUT)/libhma.so.$(VERSION_MAJOR)
	@mkdir -p $(@D)
	$(CC) $(APP_CFLAGS) $(EX_INC) -o $@ $(EX_SRC) -L$(LIBOUT) -Wl,-rpath,'$$ORIGIN/../$(LIBOUT)' -Wl,-rpath,$(abspath $(LIBOUT)) -lhma $(LIBS)

# ---- the MPI program ---------------------------------------------------------------
# examples/mpi/ plus the `hma merge` and `hma search` code it runs on each
# rank (with the experiment: toy evaluator, search driver); built with mpicc. Not under SAN: LSan reports Open MPI's own allocations.
MPICC ?= mpicc
HAVE_MPICC := $(if $(SAN),,$(shell command -v $(MPICC) 2>/dev/null))
MPI_BIN := examples/hma-mpi
MPI_SRC := $(sort $(wildcard examples/mpi/*.c)) examples/cli/merge.c examples/cli/search.c examples/cli/args.c \
  examples/cli/progress.c examples/cli/report.c $(sort $(wildcard examples/experiment/*.c examples/common/*.c))
mpi: $(MPI_BIN)
$(MPI_BIN): $(MPI_SRC) $(wildcard examples/mpi/*.h examples/cli/*.h examples/experiment/*.h examples/common/*.h) include/hma.h $(SHARED) $(LIBOUT)/libhma.so $(LIBOUT)/libhma.so.$(VERSION_MAJOR)
	@[ -z "$(SAN)" ] || { echo "make mpi: not with SAN=$(SAN)"; exit 2; }
	@command -v $(MPICC) >/dev/null || { echo "make mpi: $(MPICC) not found: install libopenmpi-dev and openmpi-bin (make deps)"; exit 1; }
	$(MPICC) $(APP_CFLAGS) $(EX_INC) -o $@ $(MPI_SRC) -L$(LIBOUT) -Wl,-rpath,'$$ORIGIN/../$(LIBOUT)' -Wl,-rpath,$(abspath $(LIBOUT)) -lhma $(LIBS)

# ---- tests -----------------------------------------------------------------------
# tests/test_*.c use only the public API and link the shared library;
# tests/internal/test_*.c reach internal functions through the static library.
# A test of example code (tests/test_toyllm.c) also compiles the example it tests.
$(BUILD)/tests/test_toyllm: TEST_EXTRA := -Iexamples/common examples/experiment/toyllm.c examples/common/pool.c
$(BUILD)/tests/test_toyllm: examples/experiment/toyllm.c examples/experiment/toyllm.h examples/common/pool.c examples/common/pool.h

# test_version checks the header and the library against the Makefile's VERSION.
$(BUILD)/tests/test_version: TEST_EXTRA := -DHMA_TEST_VERSION='"$(VERSION)"' -DHMA_TEST_VERSION_NUMBER=$(VERSION_NUMBER)

$(BUILD)/tests/%: tests/%.c $(TESTUTIL) tests/testutil.h include/hma.h $(SHARED) $(LIBOUT)/libhma.so $(LIBOUT)/libhma.so.$(VERSION_MAJOR)
	@mkdir -p $(@D)
	$(CC) $(APP_CFLAGS) -Itests -Iexamples/experiment -o $@ $< $(TEST_EXTRA) $(TESTUTIL) -L$(LIBOUT) -Wl,-rpath,$(abspath $(LIBOUT)) -lhma -lcmocka $(LIBS)

$(BUILD)/tests/internal/%: tests/internal/%.c $(TESTUTIL) tests/testutil.h $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(APP_CFLAGS) -Isrc -Itests -o $@ $< $(TESTUTIL) $(STATIC) -lcmocka $(LIBS)

test: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory test-unit

# Sanitizer run-time options: leaks are errors (LSan), the first report stops
# the program with a nonzero exit.
SAN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1 \
  LSAN_OPTIONS=report_objects=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
TEST_ENV := HMA_BIN=$(HMA_BIN) HMA_MPI_BIN=$(if $(HAVE_MPICC),$(MPI_BIN)) LIBOUT=$(LIBOUT) BUILD=$(BUILD) PYTHON=$(PYTHON) SAN=$(SAN) $(SAN_ENV)

# Runs every test program and script, then prints one closing line.
test-unit: all $(TEST_BIN) $(ITEST_BIN) $(if $(HAVE_MPICC),$(MPI_BIN))
	@$(TEST_ENV) sh tests/run_all.sh $(TEST_BIN) $(ITEST_BIN)

# The test programs that run many threads at once (make SAN=tsan test-concurrency).
CONC_BIN := $(patsubst %,$(BUILD)/tests/%,test_concurrency test_merge test_store test_writer test_recipe) \
            $(patsubst %,$(BUILD)/tests/internal/%,test_mk_sparse test_mk_raw test_mk_methods)
test-concurrency: deps
	@$(MAKE) --no-print-directory lib $(HMA_BIN) $(CONC_BIN)
	@$(TEST_ENV) HMA_PROGRAMS_ONLY=1 sh tests/run_all.sh $(CONC_BIN)

# The cmocka programs under valgrind memcheck: any error, and definite or
# indirect leaks, fail. Not with SAN (valgrind and sanitizers exclude each other).
# test_toyllm is left out: it tests example code (a toy transformer forward
# pass, > 20 min under valgrind); the library calls it makes are covered.
VALGRIND_BIN := $(filter-out $(BUILD)/tests/test_toyllm,$(TEST_BIN)) $(ITEST_BIN)
valgrind: deps
	@[ -z "$(SAN)" ] || { echo "make valgrind: not with SAN=$(SAN)"; exit 2; }
	@$(MAKE) --no-print-directory all $(VALGRIND_BIN)
	@$(TEST_ENV) HMA_VALGRIND=1 HMA_PROGRAMS_ONLY=1 sh tests/run_all.sh $(VALGRIND_BIN)

# ---- ABI ---------------------------------------------------------------------------
# abi/libhma.abi (abidw) and abi/symbols.txt are the committed baseline; see
# docs/reliability.md. abi-check fails on removed or changed functions, types
# or symbols; additions are reported and allowed by abidiff, but the symbol
# list must still be updated (make abi-update) so that each one is reviewed.
abi-check: lib
	@sh abi/check.sh $(SHARED)
abi-update: lib
	@sh abi/check.sh --update $(SHARED)

run: deps
	@$(MAKE) --no-print-directory all
	@sh examples/experiment/run.sh $(HMA_BIN)

bench:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEB_PKGS) $(BENCH_PKGS)"
	@$(MAKE) --no-print-directory all
	@PYTHON=$(PYTHON) sh bench/run.sh $(HMA_BIN)

# Fuzzing (libFuzzer, clang): each target runs FUZZ_SECONDS seconds.
FUZZ_SECONDS ?= 60
fuzz: deps
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

# llama.cpp interop (docs/interop.md): npm installs node-llama-cpp into build/interop.
interop: all
	@sh tests/interop/run.sh

# docs/api.md is generated from the header comments (the single source).
docs:
	$(PYTHON) tools/gen-api-doc.py include/hma.h > docs/api.md

# ---- install -------------------------------------------------------------------------
install: lib
	install -d $(DESTDIR)$(LIBDIR_INSTALL)/pkgconfig $(DESTDIR)$(INCDIR_INSTALL)
	install -m 644 include/hma.h $(DESTDIR)$(INCDIR_INSTALL)/hma.h
	install -m 755 $(SHARED) $(DESTDIR)$(LIBDIR_INSTALL)/libhma.so.$(VERSION)
	ln -sf libhma.so.$(VERSION) $(DESTDIR)$(LIBDIR_INSTALL)/libhma.so.$(VERSION_MAJOR)
	ln -sf libhma.so.$(VERSION) $(DESTDIR)$(LIBDIR_INSTALL)/libhma.so
	install -m 644 $(STATIC) $(DESTDIR)$(LIBDIR_INSTALL)/libhma.a
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR_INSTALL)|' \
	    -e 's|@INCLUDEDIR@|$(INCDIR_INSTALL)|' -e 's|@VERSION@|$(VERSION)|' \
	    pkgconfig/libhma.pc.in > $(DESTDIR)$(LIBDIR_INSTALL)/pkgconfig/libhma.pc
	@[ -n "$(PYTHON_SITEDIR)" ] || { echo "make install: $(PYTHON) not found: set PYTHON_SITEDIR"; exit 1; }
	install -d $(DESTDIR)$(PYTHON_SITEDIR)
	sed -e 's|^_LIBDIR = None$$|_LIBDIR = "$(LIBDIR_INSTALL)"|' examples/python/hma.py > $(DESTDIR)$(PYTHON_SITEDIR)/hma.py
	chmod 644 $(DESTDIR)$(PYTHON_SITEDIR)/hma.py

uninstall:
	rm -f $(DESTDIR)$(INCDIR_INSTALL)/hma.h $(DESTDIR)$(LIBDIR_INSTALL)/libhma.so.$(VERSION) \
	      $(DESTDIR)$(LIBDIR_INSTALL)/libhma.so.$(VERSION_MAJOR) $(DESTDIR)$(LIBDIR_INSTALL)/libhma.so \
	      $(DESTDIR)$(LIBDIR_INSTALL)/libhma.a $(DESTDIR)$(LIBDIR_INSTALL)/pkgconfig/libhma.pc
	[ -z "$(PYTHON_SITEDIR)" ] || rm -f $(DESTDIR)$(PYTHON_SITEDIR)/hma.py $(DESTDIR)$(PYTHON_SITEDIR)/__pycache__/hma.*.pyc

clean:
	rm -rf build lib examples/hma examples/hma-mpi

-include $(LIB_OBJ:.o=.d)
