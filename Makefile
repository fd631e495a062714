# eopt: `make` (CPU, into build/), `make CUDA=1` (adds the CUDA backend, into build-cuda/),
# `make MPI=1` (data-parallel over mpirun / srun, into build-mpi/; with CUDA=1 also NCCL, into
# build-cuda-mpi/), `make test-mpi`, `make test`, `make test-asan` (into <build>-asan/), `make install PREFIX=...`, `make bench`,
# `make deps` (Debian packages and data the build, tests and default run need).
CC       ?= cc
NVCC     ?= /usr/local/cuda/bin/nvcc
# One folder per configuration, so that a CPU and a CUDA build never share objects or libraries.
ifeq ($(CUDA),1)
  BUILD  ?= build-cuda$(if $(filter 1,$(MPI)),-mpi)
else
  BUILD  ?= build$(if $(filter 1,$(MPI)),-mpi)
endif
FIXTURES ?= $(abspath ../shared/fixtures)
# The version lives in framework/version.h (the programs and the library report it from there).
VERSION  := $(shell sed -n 's/^#define EOPT_VERSION "\(.*\)"$$/\1/p' framework/version.h)
SOVERSION := $(firstword $(subst ., ,$(VERSION)))
PREFIX   ?= /usr/local
LIBDIR   ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR   ?= $(PREFIX)/bin
# The serial HDF5 by name: with libhdf5-openmpi-dev installed too, plain `hdf5` may name that one.
# MPI=1 takes the parallel one (a data-parallel save writes each rank's state through MPI-IO).
HDF5_PC     := $(if $(shell pkg-config --exists hdf5-serial 2>/dev/null && echo y),hdf5-serial,hdf5)
ifeq ($(MPI),1)
  HDF5_PC   := hdf5-openmpi
endif
HDF5_CFLAGS := $(shell pkg-config --cflags $(HDF5_PC) 2>/dev/null)
HDF5_LIBS   := $(shell pkg-config --libs $(HDF5_PC) 2>/dev/null)
# OpenBLAS's OpenMP build: BLAS and eopt's own loops share one OpenMP thread pool. With the
# pthread build the two pools spin against each other and 2 threads run slower than 1.
# DT_RPATH (not RUNPATH) so that liblapacke's own liblapack/libblas come from it too.
OPENBLAS_DIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
OPENBLAS_INC := /usr/include/x86_64-linux-gnu/openblas-openmp
OPT      ?= -O2 -g
CFLAGS   := $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC -fopenmp -fno-math-errno -I. -I$(OPENBLAS_INC) $(HDF5_CFLAGS)
LDLIBS   := $(HDF5_LIBS) -lconfig -llapacke -L$(OPENBLAS_DIR) -Wl,--disable-new-dtags,-rpath,$(OPENBLAS_DIR) -lopenblas -lz -lm -fopenmp
# oneDNN's sgemm for the CPU's float32 products (framework/backend_cpu.c, sgemm: why); ONEDNN=0
# builds with OpenBLAS's alone, as does EOPT_CPU_GEMM=openblas at run time.
ONEDNN   ?= 1
ifeq ($(ONEDNN),1)
  $(if $(wildcard /usr/include/dnnl.h),,$(error make ONEDNN=1 needs oneDNN (Debian's libdnnl-dev, in make deps); make ONEDNN=0 builds without it))
  CFLAGS += -DEOPT_ONEDNN
  LDLIBS := $(LDLIBS:-lopenblas=-ldnnl -lopenblas)
endif

# The library's source folders (cmd/ minus main.c is in the library so that tests can drive
# the commands). A new folder is added here and nowhere else.
SRC_DIRS := framework optimizers checkpoint models train cmd
LIB_SRC  := $(filter-out cmd/main.c,$(wildcard $(SRC_DIRS:%=%/*.c)))
ifeq ($(CUDA),1)
  CUDA_HOME ?= /usr/local/cuda
  LIB_SRC := $(filter-out framework/backend_nocuda.c,$(LIB_SRC))
  CU_SRC  := $(wildcard $(SRC_DIRS:%=%/*.cu))
  # --fmad=false: no contraction of a*b+c into FMA, so the shared element-wise math rounds as
  # on the CPU (C11 mode contracts nothing) and the backends agree bit for bit.
  NVFLAGS := -O2 -std=c++17 -Xcompiler -fPIC,-Wall,-Wextra -I. -arch=sm_90 --fmad=false -Werror all-warnings
  # cuRAND's device API (header-only, no library) draws Philox4_32_10; framework/rng.h computes
  # the same stream on the CPU, so both backends draw identical numbers from the same seed.
  LDLIBS  += -L$(CUDA_HOME)/lib64 -lcublas -lcusolver -lcudart -lstdc++
  CFLAGS  += -DEOPT_CUDA=1
endif
# MPI (Debian's openmpi-bin and libopenmpi-dev): framework/comm_mpi.c instead of comm_single.c;
# with CUDA, device tensors go through NCCL (the CUDA toolkit's libnccl).
ifeq ($(MPI),1)
  $(if $(HDF5_LIBS),,$(error make MPI=1 needs parallel HDF5 (Debian's libhdf5-openmpi-dev, in make deps)))
  LIB_SRC := $(filter-out framework/comm_single.c,$(LIB_SRC))
  CFLAGS  += -DEOPT_MPI=1 $(shell mpicc --showme:compile 2>/dev/null)
  LDLIBS  += $(shell mpicc --showme:link 2>/dev/null)
  ifeq ($(CUDA),1)
    CFLAGS += -DEOPT_NCCL=1 -I$(CUDA_HOME)/include
    LDLIBS += -lnccl
  endif
else
  LIB_SRC := $(filter-out framework/comm_mpi.c,$(LIB_SRC))
endif
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
TEST_SRC := $(wildcard tests/*.c)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o) $(if $(CU_SRC),$(patsubst %.cu,$(BUILD)/%.cu.o,$(wildcard tests/*.cu)))
# Run by `make test` before the Criterion suites (whose summary line closes the output).
TEST_SCRIPTS ?= tests/build_dirs.sh tests/install.sh

.PHONY: all test test-asan test-slurm test-mpi bench-ckpt-mpi install deps clean bench docs fuzz fuzz-ci fuzz-lib memcheck soak gpu-check gpu-pack
all: $(BUILD)/eopt $(BUILD)/libeopt.a $(BUILD)/libeopt.so

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libeopt.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

# --no-undefined: the shared library names every library it needs, so a program links with
# -leopt alone. Its DT_RPATH finds OpenBLAS's OpenMP build for it and its dependencies.
$(BUILD)/libeopt.so: $(LIB_OBJ)
	$(CC) $(CFLAGS) -shared -Wl,-soname,libeopt.so.$(SOVERSION),--no-undefined -o $@ $^ $(LDLIBS)

$(BUILD)/eopt: $(BUILD)/cmd/main.o $(BUILD)/libeopt.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/eopt-tests: $(TEST_OBJ) $(BUILD)/libeopt.a
	$(CC) $(CFLAGS) -o $@ $^ -lcriterion $(LDLIBS)

# `eopt bench` on every optimizer and size, Newton-Schulz, training steps and a checkpoint:
# bench/results/<date>.md and a gnuplot PNG (BENCH_ARGS: e.g. --threads 2 --note "...").
bench: $(BUILD)/eopt
	@command -v gnuplot >/dev/null || { echo "make bench: gnuplot is missing (Debian: apt-get install gnuplot-nox)"; exit 1; }
	/usr/bin/python3 bench/report.py --eopt $(BUILD)/eopt --out bench/results $(BENCH_ARGS)

# Long runs of the small GPT with each matrix optimizer, RSS sampled (tests/soak.sh; STEPS,
# CONFIGS, THREADS, OUT). Hours on 2 cores: not part of `make test` or CI.
soak: $(BUILD)/eopt
	EOPT_BIN=$(abspath $(BUILD)/eopt) sh tests/soak.sh

# Tests read the fixtures in place; the eopt binary is used by the command-line tests.
test: $(BUILD)/eopt-tests $(BUILD)/eopt $(if $(TEST_SCRIPTS),$(BUILD)/libeopt.a $(BUILD)/libeopt.so)
	@for t in $(TEST_SCRIPTS); do BUILD=$(BUILD) CUDA=$(CUDA) sh $$t || exit 1; done
	EOPT_FIXTURES=$(FIXTURES) EOPT_BIN=$(abspath $(BUILD)/eopt) OMP_NUM_THREADS=2 $(BUILD)/eopt-tests $(TEST_ARGS)

# `eopt study --slurm` against a real one-node Slurm on localhost (tests/slurm/: munged, slurmctld
# and slurmd started in a temporary folder, stopped at the end; root only, ~20 s); with the MPI
# build present (make MPI=1), also a 2-rank run through srun --mpi=pmix.
test-slurm: $(BUILD)/eopt
	EOPT_BIN=$(abspath $(BUILD)/eopt) EOPT_MPI_BIN=$(abspath build-mpi/eopt) sh tests/slurm/test.sh

# Data-parallel runs under mpirun (tests/mpi/: 1, 2 and 3 ranks against one process, resume
# across rank counts, a killed rank, a damaged checkpoint), on the MPI build in build-mpi/.
test-mpi:
	$(MAKE) MPI=1 build-mpi/eopt
	EOPT_BIN=$(abspath build-mpi/eopt) EOPT_PLAIN_BIN=$(abspath build/eopt) sh tests/mpi/test.sh

# Gather-to-rank-0 against parallel HDF5 for a data-parallel checkpoint (bench/ckpt_mpi.c; needs
# libhdf5-openmpi-dev, not part of make deps): mpirun -np 2 build-mpi/ckpt-mpi-bench DIR 1024
bench-ckpt-mpi:
	@pkg-config --exists hdf5-openmpi || { echo "make bench-ckpt-mpi: needs libhdf5-openmpi-dev"; exit 1; }
	@mkdir -p build-mpi
	mpicc -O2 -Wall -Wextra $$(pkg-config --cflags hdf5-openmpi) -o build-mpi/ckpt-mpi-bench bench/ckpt_mpi.c \
	  $$(pkg-config --libs hdf5-openmpi)

# The build and install scripts check the plain build only: a sanitized library cannot be
# linked into a program built without the sanitizers.
test-asan:
	LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0 $(MAKE) BUILD=$(BUILD)-asan TEST_SCRIPTS= OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" test

# libFuzzer (Debian's clang-14 and libclang-rt-14-dev) in build-fuzz/: the library instrumented, one program per
# tests/fuzz/ target (fuzz_checkpoint_raw is fuzz_checkpoint without the guard). `make fuzz` runs
# every target FUZZ_SECONDS (default 300) each, `make fuzz-ci` the ones that must never fail
# (config parser; guarded checkpoint open, then the restore of its model and optimizers) 60 s
# each; finds land in build-fuzz/artifacts/.
FUZZ_CC    ?= clang-14
# -Wno-pass-failed: at -O1 clang does not vectorise, and says so of every `omp simd` loop.
FUZZ_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -Wno-pass-failed
fuzz-lib:
	$(MAKE) CC=$(FUZZ_CC) BUILD=build-fuzz OPT="$(FUZZ_FLAGS) -fsanitize=fuzzer-no-link" build-fuzz/libeopt.a
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c fuzz-lib
	$(FUZZ_CC) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< build-fuzz/libeopt.a $(LDLIBS)
build-fuzz/fuzz_checkpoint_raw: tests/fuzz/fuzz_checkpoint.c build-fuzz/fuzz_checkpoint
	$(FUZZ_CC) $(CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -DEOPT_FUZZ_RAW=1 -o $@ $< build-fuzz/libeopt.a $(LDLIBS)
FUZZ_TARGETS := build-fuzz/fuzz_config build-fuzz/fuzz_checkpoint
fuzz: $(FUZZ_TARGETS) build-fuzz/fuzz_checkpoint_raw
	sh tests/fuzz/run.sh $(or $(FUZZ_SECONDS),300) $^
fuzz-ci: $(FUZZ_TARGETS)
	sh tests/fuzz/run.sh 60 $^

# The one prepared check on a lent GPU (docs/gpu.md): the CUDA build, its tests and benchmarks
# and the libraries the device lacks gathered into gpu-check/ (git-ignored, under 64 MiB), then
# gpu-check/run.sh rehearsed here with an empty environment: without a GPU it stops in one line
# (exit 3) after everything before the GPU part has worked.
gpu-check:
	$(MAKE) CUDA=1 BUILD=build-cuda build-cuda/eopt build-cuda/eopt-tests
	$(MAKE) CUDA=1 BUILD=build-cuda gpu-pack
	env -i PATH=/usr/bin:/bin OUT=$(abspath build-cuda/gpu-check-out) sh gpu-check/run.sh; \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 3 ]
gpu-pack:
	BUILD=$(BUILD) CC="$(CC)" CFLAGS="$(CFLAGS)" LDLIBS="$(LDLIBS)" FIXTURES=$(FIXTURES) sh gpu/pack.sh

# valgrind memcheck of short runs of every optimizer and of inspect, replay and resume.
memcheck: $(BUILD)/eopt
	BUILD=$(BUILD) FIXTURES=$(FIXTURES) sh tests/memcheck.sh

# The public headers are eopt.h and every header it includes (found by the compiler, kept in
# their folders); eopt.pc gives the flags of a dynamic link (-leopt, with the rpath of LIBDIR so
# that programs run without LD_LIBRARY_PATH) and, with --static, of a static one.
install: all
	$(if $(filter-out /%,$(PREFIX) $(LIBDIR) $(INCLUDEDIR) $(BINDIR)),$(error make install: PREFIX (LIBDIR, INCLUDEDIR, BINDIR) must be absolute paths))
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/eopt
	install -m 755 $(BUILD)/eopt $(DESTDIR)$(BINDIR)/eopt
	install -m 644 $(BUILD)/libeopt.a $(DESTDIR)$(LIBDIR)/libeopt.a
	install -m 755 $(BUILD)/libeopt.so $(DESTDIR)$(LIBDIR)/libeopt.so.$(VERSION)
	ln -sf libeopt.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libeopt.so.$(SOVERSION)
	ln -sf libeopt.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libeopt.so
	for h in $$($(CC) -I. -MM -MT h eopt.h | sed 's/^h://; s/\\$$//' | xargs realpath --relative-to=. | sort -u); do \
	  install -D -m 644 $$h $(DESTDIR)$(INCLUDEDIR)/eopt/$$h || exit 1; done
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|; s|@LIBS_PRIVATE@|$(strip $(LDLIBS))|' eopt.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/eopt.pc

deps:
	@sh .ci/deps.sh

# docs/config.md's optimizer section is `eopt describe --markdown` (a test checks it is current).
docs: $(BUILD)/eopt
	$(BUILD)/eopt describe --markdown > $(BUILD)/optimizers.md
	awk -v gen=$(BUILD)/optimizers.md '/^<!-- begin: generated by eopt describe/ { while ((getline l < gen) > 0) print l; skip = 1; next } \
	  /^<!-- end: generated by eopt describe/ { skip = 0; next } !skip' docs/config.md > $(BUILD)/config.md
	mv $(BUILD)/config.md docs/config.md

clean:
	rm -rf build build-asan build-cuda build-cuda-asan build-fuzz build-mpi build-cuda-mpi gpu-check

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
